rule render_report:
    input:
        template=repo_path("report", "report.tex.j2"),
        test_metrics=f"{FINAL_DIR}/test_metrics.json",
        summary="results/sweep/summary.csv",
        history=f"{SHOWN}/history.csv",
        best=BEST,
        final_metrics=f"{SHOWN}/metrics.json",
        model=f"{SHOWN}/model.npz",
        data=DATA,
        figures=expand("results/figures/{name}.pdf", name=FIGURES),
    output:
        tex="report/report.tex",
    log:
        "logs/report/render.log",
    conda:
        "../../environment.yml"
    params:
        # the report says when its data are the demo's synthetic images
        synthetic="--synthetic" if config["data"]["synthetic"] else "",
    shell:
        script(
            "render_report.py",
            "--template {input.template:q}"
            " --test-metrics {input.test_metrics} --summary {input.summary} --history {input.history}"
            " --best {input.best} --final-metrics {input.final_metrics} --model {input.model}"
            " --data-meta {input.data} {params.synthetic} --figures-dir results/figures --out {output.tex} 2> {log}",
        )


rule compile_report:
    input:
        tex="report/report.tex",
        figures=expand("results/figures/{name}.pdf", name=FIGURES),
    output:
        pdf="report/report.pdf",
    log:
        "logs/report/compile.log",
    conda:
        "../../environment.yml"
    shell:
        script(
            "compile_report.py",
            "--tex {input.tex} --out {output.pdf} --log {log}",
        )

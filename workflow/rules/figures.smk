rule figure:
    input:
        unpack(figure_inputs),
    output:
        pdf="results/figures/{name}.pdf",
        png=report(
            "results/figures/{name}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
    log:
        "logs/figures/{name}.log",
    wildcard_constraints:
        name="|".join(FIGURES),
    conda:
        "../../environment.yml"
    params:
        flags=figure_flags,
        lang=config["report"]["language"],
        # shown in Snakemake's HTML report (workflow/report/figure.rst)
        caption=lambda w: FIGURE_REGISTRY[w.name].caption["en"],
    shell:
        "MPLBACKEND=Agg "
        + script(
            "plot_figures.py",
            "--which {wildcards.name}"
            " --out-dir results/figures --lang {params.lang} {params.flags} 2> {log}",
        )

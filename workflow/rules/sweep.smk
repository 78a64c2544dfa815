rule train_point:
    input:
        data=DATA,
    output:
        metrics=f"results/sweep/points/{POINT_PATTERN}/metrics.json",
        history=f"results/sweep/points/{POINT_PATTERN}/history.csv",
        model=f"results/sweep/points/{POINT_PATTERN}/model.npz",
    log:
        f"logs/sweep/points/{POINT_PATTERN}.log",
    benchmark:
        f"results/benchmarks/sweep/points/{POINT_PATTERN}.tsv"
    conda:
        "../../environment.yml"
    threads: config["train"]["threads"]
    resources:
        gpu=GPU_SLOTS,
        # resources, not params: changing them must not retrain finished points
        device=config["device"],
        jobs_per_gpu=config["train"]["jobs_per_gpu"],
    params:
        args=lambda w: train_args(
            {h: getattr(w, h) for h in sweeplib.HYPERPARAMETERS},
            config["sweep"]["epochs"],
            config["seed"],
        ),
        out_dir=lambda w, output: os.path.dirname(output.metrics),
    shell:
        script(
            "train.py",
            "--data {input.data} --out-dir {params.out_dir}"
            " {params.args} --device {resources.device} --jobs-per-gpu {resources.jobs_per_gpu} 2> {log}",
        )


checkpoint select_sweep:
    input:
        sweep_metrics,
    output:
        summary="results/sweep/{sweep}/summary.csv",
        best="results/sweep/{sweep}/best.json",
    log:
        "logs/sweep/{sweep}/select.log",
    conda:
        "../../environment.yml"
    shell:
        script(
            "select_best.py",
            "--sweep {wildcards.sweep} --metrics {input}"
            " --out-summary {output.summary} --out-best {output.best} 2> {log}",
        )


checkpoint select:
    input:
        expand("results/sweep/{sweep}/summary.csv", sweep=SWEEPS),
    output:
        summary="results/sweep/summary.csv",
        best=BEST,
    log:
        "logs/sweep/select.log",
    conda:
        "../../environment.yml"
    shell:
        script(
            "select_best.py",
            "--summaries {input}"
            " --out-summary {output.summary} --out-best {output.best} 2> {log}",
        )

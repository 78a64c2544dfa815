rule train_final:
    input:
        unpack(final_input),
    output:
        metrics=f"{FINAL}/metrics.json",
        history=f"{FINAL}/history.csv",
        model=f"{FINAL}/model.npz",
    log:
        "logs/final/seeds/{seed}/train.log",
    benchmark:
        "results/benchmarks/final/seeds/{seed}/train.tsv"
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../environment.yml"
    threads: config["train"]["threads"]
    resources:
        gpu=final_gpu_slots,
        # resources, not params: as in train_point
        device=config["device"],
        jobs_per_gpu=config["train"]["jobs_per_gpu"],
    params:
        # reruns only when the chosen point (or the recipe) changes, not when the sweep files are rewritten
        args=lambda w: train_args(best_point(), config["train"]["epochs"], w.seed),
        out_dir=lambda w, output: os.path.dirname(output.metrics),
        reuse=reuse_flag,
    shell:
        script(
            "train.py",
            f"--data {DATA} --out-dir {{params.out_dir}} {{params.args}}"
            " --device {resources.device} --jobs-per-gpu {resources.jobs_per_gpu} {params.reuse} 2> {log}",
        )


rule evaluate:
    input:
        unpack(after_selection(model=f"{FINAL}/model.npz", data=DATA)),
    output:
        metrics=f"{FINAL}/test_metrics.json",
        per_class=f"{FINAL}/per_class.csv",
        confusion=f"{FINAL}/confusion.csv",
        predictions=f"{FINAL}/predictions.npz",
    log:
        "logs/final/seeds/{seed}/evaluate.log",
    benchmark:
        "results/benchmarks/final/seeds/{seed}/evaluate.tsv"
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../environment.yml"
    resources:
        gpu=GPU_SLOTS,
        # resources, not params: they choose where and how, not what, so changing them reruns nothing
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
    params:
        out_dir=lambda w, output: os.path.dirname(output.metrics),
    shell:
        script(
            "evaluate.py",
            "--model {input.model} --data {input.data}"
            " --out-dir {params.out_dir} --device {resources.device} --batch-size {resources.batch_size}"
            " 2> {log}",
        )


rule summarize_seeds:
    input:
        unpack(
            after_selection(
                runs=expand(f"{FINAL}/test_metrics.json", seed=SEEDS),
                train=expand(f"{FINAL}/metrics.json", seed=SEEDS),
            )
        ),
    output:
        metrics=f"{FINAL_DIR}/test_metrics.json",
    log:
        "logs/final/summarize_seeds.log",
    conda:
        "../../environment.yml"
    params:
        runs=expand(FINAL, seed=SEEDS),
        shown=SEEDS[0],
    shell:
        script(
            "summarize_seeds.py",
            "--runs {params.runs} --shown-seed {params.shown}"
            " --out {output.metrics} 2> {log}",
        )

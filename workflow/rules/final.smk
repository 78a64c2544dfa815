rule train_final:
    input:
        unpack(final_input),
    output:
        metrics="results/final/metrics.json",
        history="results/final/history.csv",
        model="results/final/model.npz",
    log:
        "logs/final/train.log",
    benchmark:
        "results/benchmarks/final/train.tsv"
    conda:
        "../../environment.yml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
        # resources, not params: as in train_point
        device=config["device"],
        jobs_per_gpu=config["train"]["jobs_per_gpu"],
    params:
        # reruns only when the chosen point (or the recipe) changes, not when the sweep files are rewritten
        args=lambda w: train_args(best_point(), config["train"]["epochs"]),
    shell:
        f"python workflow/scripts/train.py --data {DATA} --out-dir results/final {{params.args}}"
        " --device {resources.device} --jobs-per-gpu {resources.jobs_per_gpu} 2> {log}"


rule evaluate:
    input:
        model="results/final/model.npz",
        data=DATA,
    output:
        metrics="results/final/test_metrics.json",
        per_class="results/final/per_class.csv",
        confusion="results/final/confusion.csv",
        predictions="results/final/predictions.npz",
    log:
        "logs/final/evaluate.log",
    conda:
        "../../environment.yml"
    resources:
        gpu=1,
        # resources, not params: they cannot change the metrics, so changing them reruns nothing
        device=config["device"],
        batch_size=config["evaluate"]["batch_size"],
    shell:
        "python workflow/scripts/evaluate.py --model {input.model} --data {input.data}"
        " --out-dir results/final --device {resources.device} --batch-size {resources.batch_size}"
        " 2> {log}"

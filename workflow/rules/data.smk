if config["data"]["synthetic"]:

    rule make_demo_archive:
        output:
            archive=config["data"]["archive"],
        log:
            "logs/data/make_demo_archive.log",
        conda:
            "../../environment.yml"
        params:
            train=config["data"]["synthetic_train_per_class"],
            test=config["data"]["synthetic_test_per_class"],
            seed=config["seed"],
        shell:
            script(
                "make_demo_archive.py",
                "--out {output.archive:q}"
                " --n-train-per-class {params.train} --n-test-per-class {params.test}"
                " --seed {params.seed} 2> {log}",
            )

else:

    rule download:
        output:
            archive=config["data"]["archive"],
        log:
            "logs/data/download.log",
        conda:
            "../../environment.yml"
        resources:
            # a resource, not a param: the md5 fixes the result, so a new address for the
            # same archive (a local copy, a mirror) downloads nothing again
            url=config["data"]["url"],
        params:
            md5=config["data"]["md5"],
        shell:
            script(
                "download.py",
                "--source {resources.url:q} --md5 {params.md5}"
                " --out {output.archive:q} 2> {log}",
            )


rule prepare:
    input:
        archive=config["data"]["archive"],
    output:
        data=DATA,
    log:
        "logs/data/prepare.log",
    benchmark:
        "results/benchmarks/prepare.tsv"
    conda:
        "../../environment.yml"
    params:
        n_val=config["data"]["n_val"],
        split_seed=config["data"]["split_seed"],
        standardize="--standardize" if config["data"]["standardize"] else "",
        expected_train=config["data"]["expected_train"],
        expected_test=config["data"]["expected_test"],
    shell:
        script(
            "prepare.py",
            "--archive {input.archive:q} --out {output.data}"
            " --n-val {params.n_val} --split-seed {params.split_seed} {params.standardize}"
            " --expected-train {params.expected_train} --expected-test {params.expected_test} 2> {log}",
        )

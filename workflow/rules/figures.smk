rule figure:
    input:
        unpack(lambda w: FIGURE_INPUTS[w.name]),
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
    shell:
        "MPLBACKEND=Agg python workflow/scripts/plot_figures.py --which {wildcards.name}"
        " --out-dir results/figures --lang {params.lang} {params.flags} 2> {log}"

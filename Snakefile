# Reproduce the three-layer CNN study on CIFAR-10: download -> prepare -> grid
# search -> final training -> evaluation -> figures -> Chinese PDF report.
#   snakemake --cores 1 --resources gpu=1          everything
#   snakemake --configfile config/demo.yaml ...    the small synthetic demo


from snakemake.utils import min_version

# pyproject.toml's lower bound for Snakemake, the oldest tested (tests/oldest_versions.sh)
min_version("9.16.3")


include: "workflow/rules/before_config.smk"


check_config_syntax("config/config.yaml")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/final.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"


# Under a cluster executor (profiles/slurm) the cheap steps run where Snakemake runs.
localrules:
    select_sweep,
    select,
    summarize_seeds,
    figure,
    render_report,
    compile_report,


if config["data"]["synthetic"]:

    localrules:
        make_demo_archive,

else:

    localrules:
        download,


rule all:
    default_target: True
    input:
        "results/final/test_metrics.json",
        expand("results/figures/{name}.pdf", name=FIGURES),
        "report/report.pdf",

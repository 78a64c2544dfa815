import os
import shlex
import sys

import pandas as pd
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import Paramspace, update_config, validate

# scratchcnn is imported from this checkout: workflow/rules/before_config.smk
from scratchcnn import backend as backendlib
from scratchcnn import configcheck
from scratchcnn import data as datalib
from scratchcnn import io as ioutil
from scratchcnn import model as modellib
from scratchcnn import sweeps as sweeplib
from scratchcnn.figures import FIGURES as FIGURE_REGISTRY


# The working directory is the repository (the usual way) or a run directory of its own
# (`snakemake -s REPO/Snakefile -d RUN`, RUN/config/ a copy of REPO/config/): the step scripts and
# the report's template are found beside the Snakefile. The paths are relative to the working
# directory, so that in the repository the commands read "python workflow/scripts/..." as ever
# (a rule's command text is a rerun trigger).
def repo_path(*parts):
    """A file of this repository, relative to the working directory."""
    target = os.path.realpath(os.path.join(workflow.basedir, *parts))
    return os.path.relpath(target, os.path.realpath(os.getcwd()))


def script(name, args):
    """The command that runs step script workflow/scripts/NAME with ARGS (a shell template)."""
    return f"python {shlex.quote(repo_path('workflow', 'scripts', name))} {args}"


def missing_workflow_profile(argv):
    """The --workflow-profile named in ARGV that Snakemake finds nowhere, or None. (Snakemake 9.27
    then goes on without any profile, silently: a run directory's "profiles/gpu", say.)
    """
    for i, arg in enumerate(argv):
        if arg.startswith("--workflow-profile="):
            name = arg.split("=", 1)[1]
        elif arg == "--workflow-profile" and i + 1 < len(argv):
            name = argv[i + 1]
        else:
            continue
        # where Snakemake looks: as given, under profiles/, under profiles/ beside the Snakefile
        places = (
            name,
            os.path.join("profiles", name),
            os.path.join(workflow.basedir, "profiles", name),
        )
        return None if name == "none" or any(map(os.path.exists, places)) else name
    return None


if missing := missing_workflow_profile(sys.argv):
    ours = sorted(os.listdir(os.path.join(workflow.basedir, "profiles")))
    raise WorkflowError(
        f"--workflow-profile {missing}: no such profile, and Snakemake would go on without one. "
        f"It looks for {missing} and profiles/{missing} in {os.getcwd()}, and for profiles/{missing} "
        f"beside the Snakefile in {workflow.basedir}. This workflow's profiles: {', '.join(ours)}; "
        f"give one by its path, e.g. --workflow-profile {os.path.join(workflow.basedir, 'profiles', 'gpu')}."
    )


def coerce_float_strings(node, source, path=()):
    """YAML reads 1e-4 (no dot) as a string: use it as a number, and say so, naming the file
    (``source(path)``) and the key."""
    if isinstance(node, dict):
        return {k: coerce_float_strings(v, source, (*path, k)) for k, v in node.items()}
    if isinstance(node, list):
        return [coerce_float_strings(v, source, (*path, i)) for i, v in enumerate(node)]
    if isinstance(node, str) and configcheck.FLOAT_STRING.match(node):
        logger.warning(
            f"{source(path)}: {configcheck.dotted(path)}: YAML read {node!r} as a string; using "
            f"{float(node)!r} (write it with a decimal point, e.g. {float(node):.1e}, to silence this)"
        )
        return float(node)
    return node


SCHEMAS = os.path.join(workflow.basedir, "workflow", "schemas")
CLI_CONFIGFILES = [str(f) for f in workflow.overwrite_configfiles or ()]
# in the order Snakemake applies them: the Snakefile's configfile, then --configfile's
CONFIG_FILES = [
    str(f) for f in workflow.configfiles if str(f) not in CLI_CONFIGFILES
] + CLI_CONFIGFILES


def read_schema(name):
    with open(os.path.join(SCHEMAS, name), encoding="utf-8") as f:
        return yaml.safe_load(f)


def checked(data, schema, files, command_line=None):
    """Snakemake's schema check, which also fills in the defaults; where it fails, the
    problems alone, each with its key and file, instead of its dump of schema and data.
    """
    path = os.path.join(SCHEMAS, schema)
    try:
        validate(data, schema=path)
    except WorkflowError:
        lines = configcheck.problems(data, read_schema(schema), files, command_line)
        if not lines:
            raise
        raise ValueError("\n  ".join(["", *lines])) from None


# --config train='{lr: 0.5}' reaches here as strings ('0.5'): read them as the schema types them
update_config(
    config,
    configcheck.typed_command_line(
        workflow.config_settings.config or {}, read_schema("config.schema.yaml")
    ),
)
# Snakemake has read the config files, keeping a repeated key's last value
for config_file in CONFIG_FILES:
    with open(config_file, encoding="utf-8") as f:
        if repeated := configcheck.repeated_keys(f.read()):
            raise WorkflowError(f"config file {config_file}: " + "; ".join(repeated))
config.update(
    coerce_float_strings(
        dict(config),
        lambda path: configcheck.where_set(
            path, CONFIG_FILES, workflow.config_settings.config
        )
        or "config",
    )
)
try:
    checked(config, "config.schema.yaml", CONFIG_FILES, workflow.config_settings.config)
except ValueError as exc:
    raise WorkflowError(
        f"config (schema: {SCHEMAS}/config.schema.yaml):{exc}"
    ) from None
# batch_size: 32.0 is 32 and clip: 5 is 5.0: one command per setting, which the steps accept
config.update(
    configcheck.as_schema_types(dict(config), read_schema("config.schema.yaml"))
)

# the model settings that shape the layers (each one's flag of train.py is its name)
LAYER_KEYS = ("kernel_size", "padding1", "padding2", "pool_size", "pool_stride")
try:  # before anything runs (the download, the data), not in the first training job
    modellib.make_arch(**{k: config["model"][k] for k in LAYER_KEYS})
except ValueError as exc:
    raise WorkflowError(
        "config: the network's layers do not fit a 32x32 image "
        f"(model.{', '.join(LAYER_KEYS)}): {exc}"
    ) from None

if config["data"]["n_val"] >= config["data"]["expected_train"]:
    raise WorkflowError(
        f"config: data.n_val ({config['data']['n_val']}) leaves no training images: the archive "
        f"holds data.expected_train = {config['data']['expected_train']}; keep n_val below that"
    )
n_train = config["data"]["expected_train"] - config["data"]["n_val"]
if config["train"]["train_subset"] > n_train:
    raise WorkflowError(
        f"config: train.train_subset ({config['train']['train_subset']}) asks for more than the "
        f"{n_train} training images (data.expected_train - data.n_val); 0 uses them all"
    )

if config["data"]["synthetic"]:  # the demo archive must hold what prepare will expect
    for part in ("train", "test"):
        per_class = config["data"][f"synthetic_{part}_per_class"]
        expected = config["data"][f"expected_{part}"]
        if per_class * datalib.NUM_CLASSES != expected:
            raise WorkflowError(
                f"config: data.synthetic_{part}_per_class = {per_class} makes "
                f"{per_class * datalib.NUM_CLASSES} {part} images ({datalib.NUM_CLASSES} classes), "
                f"but data.expected_{part} = {expected}: make the two agree"
            )
elif datalib.names_file(config["data"]["url"], config["data"]["archive"]):
    raise WorkflowError(
        f"config: data.url and data.archive name the same file ({config['data']['archive']}). "
        "The download step writes data.archive from data.url, and Snakemake deletes a step's "
        "output before it runs: a rerun would delete this archive. Keep the archive elsewhere "
        "(outside results/) and give that path as data.url."
    )
# as md5sum writes it; the schema takes either case
config["data"]["md5"] = config["data"]["md5"].lower()

GRID_FILE = config["sweep"]["grid"]
try:  # whatever is wrong with the grid, the message names its file
    with open(GRID_FILE, encoding="utf-8") as f:
        text = f.read()
    if problem := configcheck.yaml_syntax_error(text):
        raise ValueError(problem)
    GRID = coerce_float_strings(yaml.safe_load(text) or {}, lambda path: GRID_FILE)
    if not isinstance(GRID, dict):
        raise ValueError(
            f"it holds a {type(GRID).__name__}; expected a mapping with the key sweeps"
        )
    if repeated := configcheck.repeated_keys(text):
        raise ValueError("; ".join(repeated))
    checked(GRID, "grid.schema.yaml", files=())  # the message names the one file
    sweeplib.check_sweep_order(GRID["sweeps"])
except (OSError, yaml.YAMLError, WorkflowError, ValueError) as exc:
    # a list of problems starts on its own line
    sep = "" if str(exc).startswith("\n") else " "
    raise WorkflowError(f"the grid file (sweep.grid) {GRID_FILE}:{sep}{exc}")

SWEEPS = list(GRID["sweeps"])
DEFAULT_POINT = sweeplib.default_point(config)


def point_space(points):
    """Paths like lr~0.01/reg~0.001/filters~32: every value named, so a point that two
    sweeps share (the filter sweep's default count, say) is one job, trained once."""
    return Paramspace(
        pd.DataFrame(points)[list(sweeplib.HYPERPARAMETERS)], param_sep="~"
    )


POINT_PATTERN = point_space([DEFAULT_POINT]).wildcard_pattern
DATA = "results/data/cifar10.npz"
FIGURES = list(FIGURE_REGISTRY)
# A training or evaluation job's share of --resources gpu: one where it may run on a GPU, none
# where it cannot (device cpu, or auto without CuPy), so that CPU jobs run side by side, as many
# as --cores allows at train.threads cores each, instead of one at a time
GPU_SLOTS = 1 if backendlib.may_use_gpu(config["device"]) else 0
if unused_gpu := backendlib.unused_gpu_warning(config["device"]):
    logger.warning(unused_gpu)


def read_json(path):
    """A selection's result (best.json), or an error naming it: Snakemake would show the
    decoder's traceback through this file instead."""
    try:
        return ioutil.read_json_object(path)
    except (OSError, ValueError) as exc:
        raise WorkflowError(
            f"{path} cannot be read ({type(exc).__name__}: {exc}); delete it, then "
            f"`snakemake {path}` with the same --configfile writes it again, and the same "
            "command goes on (a deleted result is made again only when named, README.md)"
        ) from None


def sweep_points(sweep):
    """The points of ``sweep``; a sweep with a base waits for that sweep's selection."""
    spec = GRID["sweeps"][sweep]
    fixed = dict(DEFAULT_POINT)
    if spec.get("base"):
        best = read_json(checkpoints.select_sweep.get(sweep=spec["base"]).output.best)
        fixed.update({h: best[h] for h in sweeplib.HYPERPARAMETERS})
    return sweeplib.expand(spec, fixed)


def point_dir(point):
    return f"results/sweep/points/{next(point_space([point]).instance_patterns)}"


def sweep_metrics(wildcards):
    return [f"{point_dir(p)}/metrics.json" for p in sweep_points(wildcards.sweep)]


def train_args(point, epochs, seed):
    """The flags of workflow/scripts/train.py that decide a run's result, for a param (a rerun
    trigger): the hyperparameters of ``point`` (each one's flag is its name), the rest of the
    recipe from the config. The settings of where and how it runs (which can move the rounding,
    not the recipe) reach train.py as resources (device, jobs per GPU) and threads, neither a
    rerun trigger; its provenance records them.
    """
    m, t = config["model"], config["train"]
    return " ".join(
        [
            *(f"--{h} {v!r}" for h, v in sweeplib.plain_point(point).items()),
            f"--epochs {int(epochs)}",
            f"--batch-size {t['batch_size']} --lr-decay {t['lr_decay']} --lr-step {t['lr_step']}",
            f"--clip {t['clip']} --bn-momentum {m['bn_momentum']} --seed {int(seed)}",
            *(f"--{k.replace('_', '-')} {m[k]}" for k in LAYER_KEYS),
            f"--train-subset {t['train_subset']}",
        ]
    )


BEST = "results/sweep/best.json"  # the chosen point (checkpoint select)


def best_point():
    return read_json(checkpoints.select.get().output.best)


def final_input(wildcards):
    """The data, once the selection has run (the point's values arrive through params); for a
    seed whose flags are the chosen point's own (the sweep's seed and epochs), that point's run
    too, which train.py then copies instead of training it again.
    """
    point = best_point()
    final = train_args(point, config["train"]["epochs"], wildcards.seed)
    if final == train_args(point, config["sweep"]["epochs"], config["seed"]):
        return {"data": DATA, "same_run": f"{point_dir(point)}/metrics.json"}
    return {"data": DATA}


def final_gpu_slots(wildcards, input):
    """A final training's share of --resources gpu: none where it copies the point's run."""
    return 0 if "same_run" in input.keys() else GPU_SLOTS


def reuse_flag(wildcards, input):
    return (
        f"--reuse-from {os.path.dirname(input.same_run)}"
        if "same_run" in input.keys()
        else ""
    )


# The final training runs once per seed, each in its own folder; the figures and the report's
# per-class analysis show the first seed's model, the headline the mean over the seeds.
SEEDS = config["train"]["seeds"]
FINAL_DIR = "results/final"
FINAL = f"{FINAL_DIR}/seeds/{{seed}}"
SHOWN = FINAL.format(seed=SEEDS[0])


def after_selection(**files):
    """An input function for a step fed by the final training: ``files`` (role -> path, with the
    rule's wildcards). Where an earlier run chose a point, it waits for the selection, as
    train_final does: Snakemake then plans the step again once the selection has run, when it
    knows whether the final training reruns, and a new grid point that leaves the choice as it
    was reruns neither the evaluation nor the figures (given as plain paths, they would rerun
    with an untouched model). On a first run there is no model to keep, and plain paths let a
    dry run show the whole plan.
    """

    def inputs(wildcards):
        if os.path.exists(BEST):
            best_point()
        values = dict(wildcards.items())
        return {
            role: path.format(**values) if isinstance(path, str) else path
            for role, path in files.items()
        }

    return inputs


# The results file behind each input role a figure can read (scratchcnn.figures.INPUTS).
RESULT_FILES = {
    "history": f"{SHOWN}/history.csv",
    "summary": "results/sweep/summary.csv",
    "model": f"{SHOWN}/model.npz",
    "test_metrics": f"{FINAL_DIR}/test_metrics.json",
    "data": DATA,
    "predictions": f"{SHOWN}/predictions.npz",
}


def figure_inputs(wildcards):
    """The files figure ``wildcards.name`` is drawn from, by input role (its registry entry);
    a figure of the final training's results waits for the selection (see after_selection).
    """
    files = {
        role: RESULT_FILES[role] for role in FIGURE_REGISTRY[wildcards.name].inputs
    }
    if any(path.startswith(f"{FINAL_DIR}/") for path in files.values()):
        return after_selection(**files)(wildcards)
    return files


def figure_flags(wildcards, input):
    flags = [f"--{role.replace('_', '-')} {path}" for role, path in input.items()]
    if FIGURE_REGISTRY[wildcards.name].seeded:  # which test images it shows
        flags.append(f"--seed {config['seed']}")
    return " ".join(flags)

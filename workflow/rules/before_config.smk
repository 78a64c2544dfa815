import os
import shlex
import sys

from snakemake.exceptions import WorkflowError

# This workflow and its step scripts import the scratchcnn package from this checkout's
# workflow/, pip-installed or not (and never another checkout's copy), also under --use-conda
# and on cluster nodes.
PACKAGE_DIR = os.path.join(workflow.basedir, "workflow")
sys.path.insert(0, PACKAGE_DIR)
shell.prefix(
    "set -euo pipefail; export PYTHONPATH="
    + shlex.quote(PACKAGE_DIR)
    + "${{PYTHONPATH:+:$PYTHONPATH}}; "
)

from scratchcnn import configcheck


# Snakemake's own message for a YAML mistake in the config file says neither where nor what
# ("Config file is not valid JSON or YAML"). A missing file is left to Snakemake's message.
def check_config_syntax(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return
    if problem := configcheck.yaml_syntax_error(text):
        raise WorkflowError(f"config file {path}: {problem}")

"""The pipeline's step scripts (workflow/scripts/NAME.py) loaded as modules, for in-process tests."""

import importlib.util
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


def load_script(name: str):
    """workflow/scripts/``name``.py as a fresh module (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

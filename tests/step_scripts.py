"""The pipeline's step scripts (workflow/scripts/NAME.py) loaded as modules, for in-process tests,
and a training run stopped part-way, as a user's Ctrl-C or a crash stops one."""

import importlib.util
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


def load_script(name: str):
    """workflow/scripts/``name``.py as a fresh module (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stop_after_snapshot(proc, snapshot: Path, stop, timeout: float = 300) -> tuple:
    """Call ``stop()`` (it sends a signal) once the training that ``proc`` runs has written
    ``snapshot`` (its first state.npz), then wait: ``proc.communicate()``'s (stdout, stderr).
    Skips the test where the run finished before the signal arrived."""
    deadline = time.time() + timeout
    while not snapshot.exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be stopped"
        time.sleep(0.01)
    stop()
    said = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    return said

"""Outputs on a shared machine: every atomic write gets the usual mode for the user's umask."""

import json
import os
import stat

import numpy as np
import pytest

from scratchcnn.io import atomic_path, save_npz_atomic, write_json_atomic, write_text_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test; the old one comes back afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_of_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    write_text_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "b.json", {"x": 1})
    save_npz_atomic(tmp_path / "c.npz", {"x": np.zeros(2)})
    with atomic_path(tmp_path / "d.csv") as tmp:
        tmp.write_text("x\n")
    for name in ("a.txt", "b.json", "c.npz", "d.csv"):
        assert mode(tmp_path / name) == expected, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.npz", "d.csv"]


def test_json_has_null_where_a_number_is_not_finite(tmp_path):
    """JSON has no NaN: Python would write a bare NaN (a diverged model's test loss), which strict
    readers refuse; NumPy values, nested ones and arrays included, become plain or null."""
    write_json_atomic(tmp_path / "m.json", {"loss": float("nan"), "runs": [{"x": np.float32("inf")}, -np.inf],
                                            "ok": np.float64(0.5), "a": np.array([1.0, np.nan]), "n": np.int64(3)})  # fmt: skip
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": None, "runs": [{"x": None}, None], "ok": 0.5, "a": [1.0, None], "n": 3}


def test_json_has_null_where_a_number_in_a_tuple_is_not_finite(tmp_path):
    """A tuple is written as a JSON list, so a NaN in it becomes null as in a list (json.dumps
    would refuse the bare NaN and the whole file with it)."""
    write_json_atomic(tmp_path / "t.json", {"a": (1.0, float("nan")), "b": (np.float32(2.5), (np.inf,))})
    assert json.loads((tmp_path / "t.json").read_text()) == {"a": [1.0, None], "b": [2.5, [None]]}


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_a_write_leaves_no_temporary_file_and_no_target(tmp_path):
    """A scheduler's time limit sends SIGTERM: with the steps' handler the clean-up runs (exit
    143); Python's default would die at once and leave the hidden temporary file."""
    import subprocess
    import sys

    code = (
        "import os, signal, sys, time\n"
        "from scratchcnn.io import atomic_path\n"
        "from scratchcnn.logs import exit_on_sigterm\n"
        "exit_on_sigterm()\n"
        f"with atomic_path({str(tmp_path / 'model.npz')!r}) as tmp:\n"
        "    tmp.write_bytes(b'half a model')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
    )
    root = os.path.join(os.path.dirname(__file__), "..", "workflow")
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": root}, timeout=60)
    assert r.returncode == 143 and list(tmp_path.iterdir()) == []


def test_every_step_script_ends_on_sigterm_through_its_clean_up():
    from pathlib import Path

    scripts = sorted((Path(__file__).resolve().parents[1] / "workflow" / "scripts").glob("*.py"))
    assert len(scripts) >= 10
    for script in scripts:
        tail = script.read_text().split('if __name__ == "__main__":')[-1]
        assert tail == "\n    exit_on_sigterm()\n    sys.exit(main())\n", script.name

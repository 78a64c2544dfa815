"""benchmarks/gpu_check.sh and its summary, without a GPU: it must fail loudly, never pass by skipping."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_summary  # noqa: E402

ISSUE_KEYS = {"device_name", "date", "commit", "gpu_tests", "epoch_seconds", "launches_per_step", "peak_train_mb",
              "peak_eval_mb", "parity_test_accuracy", "parity_best_val_accuracy"}  # fmt: skip


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_gpu_check_exits_1_at_the_preflight_without_cupy(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work")}
    env.pop("STEPS", None)
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PREFLIGHT FAILED" in done.stdout and "CuPy cannot be imported" in done.stdout
    results = json.loads((tmp_path / "out" / "gpu_results.json").read_text())
    assert set(results) == ISSUE_KEYS and results["device_name"] is None
    assert "== tests" not in done.stdout  # nothing ran after the preflight


def work_dir(tmp_path, steps, cases):
    (tmp_path / "steps.tsv").write_text("".join(f"{name}\t{rc}\t1\n" for name, rc in steps))
    body = "".join(f'<testcase name="t{i}">{inner}</testcase>' for i, inner in enumerate(cases))
    (tmp_path / "gpu_tests.xml").write_text(f'<testsuites><testsuite errors="0" failures="0">{body}</testsuite></testsuites>')
    (tmp_path / "preflight.json").write_text(json.dumps({"device_name": "NVIDIA H100 80GB HBM3"}))
    (tmp_path / "speed.json").write_text(json.dumps({"rows": [{"filters": 64, "scratchcnn": 2.0, "torch": 2.9,
                                                              "ratio": 0.69}]}))  # fmt: skip
    return tmp_path


def test_summary_has_the_issue_keys_and_passes_only_a_clean_run(tmp_path, capsys):
    work = work_dir(tmp_path, [("preflight", 0), ("tests", 0)], ["", ""])
    out = tmp_path / "gpu_results.json"
    assert gpu_summary.main([str(work), str(out), "--commit", "abc"]) == 0
    results = json.loads(out.read_text())
    assert set(results) == ISSUE_KEYS
    assert results["gpu_tests"] == {"passed": 2, "failed": 0, "skipped": 0}
    assert results["epoch_seconds"] == {"64": {"scratchcnn": 2.0, "torch": 2.9, "ratio": 0.69}}
    assert results["device_name"] == "NVIDIA H100 80GB HBM3" and results["commit"] == "abc"
    assert "ratio at 64 filters <= 1.0 (must): 0.69 met" in capsys.readouterr().out


@pytest.mark.parametrize(
    "steps,cases,problem",
    [
        ([("tests", 0)], ["", '<skipped message="no GPU"/>'], "1 skipped"),
        ([("tests", 1)], ["", '<failure message="x"/>'], "1 failed"),
        ([("tests", 0)], [], "0 passed"),
        ([("tests", 0), ("parity", 124)], [""], "parity exited with 124 (timed out)"),
        ([("tests", 0), ("speed", "no-time")], [""], "speed exited with no-time"),
        ([("preflight", 0), ("tests", 0)], None, "no GPU test report"),
    ],
    ids=["a-skip", "a-failure", "no-tests", "a-timeout", "no-time-left", "no-report"],
)
def test_summary_fails_on_a_skip_a_failure_or_a_step_that_did_not_finish(tmp_path, capsys, steps, cases, problem):
    work = work_dir(tmp_path, steps, cases or [])
    if cases is None:
        (work / "gpu_tests.xml").unlink()
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 1
    assert problem in capsys.readouterr().out


def test_summary_without_a_tests_step_passes_on_the_steps_that_ran(tmp_path, capsys):
    """device_run.sh's STUDY_ONLY calls run the preflight alone: no test report is then no failure,
    and the issue's bars still read as not measured."""
    work = work_dir(tmp_path, [("preflight", 0)], [])
    (work / "gpu_tests.xml").unlink()
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["gpu_tests"] == {"passed": None, "failed": None, "skipped": None}
    assert "all steps passed" in out and "parity test accuracy within 1 point of 70.21 % (CPU): None NOT MET" in out
    (work / "steps.tsv").write_text("preflight\t1\t1\n")
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 1


def test_device_run_sizes_adds_up_each_calls_carry(tmp_path):
    """benchmarks/device_run.sh --sizes: the tree plus each call's carried folders, against 64 MiB."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks/device_run.sh").write_text((ROOT / "benchmarks/device_run.sh").read_text())
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text("/.gpudata/\n/.whl/\n")
    (tmp_path / "tracked.bin").write_bytes(b"x" * (1 << 20))
    for part, mib in ((".gpudata/part1", 55), (".whl/1", 6), (".gpudata/part2", 55), (".whl/2", 9), (".gpudata/part3", 55)):
        (tmp_path / part).mkdir(parents=True)
        with open(tmp_path / part / "blob", "wb") as f:
            f.truncate(mib << 20)  # sparse: its apparent size is what travels
    done = subprocess.run(["bash", "benchmarks/device_run.sh", "--sizes"], cwd=tmp_path, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr  # call 2 is over
    assert lines[0].startswith("call 1: tree 1.") and lines[0].endswith("= 62.0 MiB of 64: ok")
    assert lines[1].endswith("= 65.0 MiB of 64: OVER 64 MiB")
    assert lines[2].endswith("= 56.0 MiB of 64: ok")
    (tmp_path / ".whl/2/blob").unlink()
    (tmp_path / ".whl/2").rmdir()
    done = subprocess.run(["bash", "benchmarks/device_run.sh", "--sizes"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "call 2: .whl/2 is missing" in done.stdout

"""benchmarks/reference_tables.py: the README's results section from the reference outcome's files."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import reference_tables  # noqa: E402

HEADER = "sweep,lr,reg,filters,best_val_acc,best_epoch,epochs,seconds,seconds_per_epoch,status,path,test_accuracy,test_loss\n"
P1 = "results/sweep/points/lr~0.1/reg~0.0001/filters~32"
P2 = "results/sweep/points/lr~0.1/reg~0.005/filters~32"


def reference(tmp_path):
    (tmp_path / "points_test.csv").write_text(
        HEADER
        + f"lr_reg,0.1,0.0001,32,0.6958,18,20,30.1,1.505,ok,{P1},0.6999,0.91\n"
        + f"lr_reg,0.1,0.005,32,0.1,1,3,4.0,1.333,diverged,{P2},,\n"
        + f"filters,0.1,0.0001,32,0.6958,18,20,30.1,1.505,ok,{P1},0.6999,0.91\n"
    )
    (tmp_path / "best.json").write_text(json.dumps({"lr": 0.1, "reg": 1e-4, "filters": 32, "best_val_acc": 0.6958,
                                                    "sweep": "lr_reg", "path": P1}))  # fmt: skip
    (tmp_path / "test_metrics.json").write_text(json.dumps({"seeds": {"shown": 0, "n": 2, "mean": 0.69, "std": 0.0148,
        "runs": [{"seed": 0, "test_accuracy": 0.7005}, {"seed": 1, "test_accuracy": 0.6795}]}}))  # fmt: skip
    setup = ("date: 2026-12-01T10:00:00Z\ncommit: 0123456789abcdef0123\nmode: gpu\n"
             "NVIDIA H100 80GB HBM3, 81559 MiB, 580.159.04\ncpus: 16\n")  # fmt: skip
    runs = [
        {"name": "full", "jobs_per_gpu": 8, "mps": False, "sweep_epochs": None, "exit": 0, "wall_seconds": 212.5,
         "gpu": {"utilization_mean_pct": 61.0, "utilization_mean_busy_pct": 70.2, "memory_used_max_mib": 9000.0}},
        {"name": "sweep-j8-mps", "jobs_per_gpu": 8, "mps": True, "sweep_epochs": 2, "exit": 0, "wall_seconds": 40.0,
         "grid_epochs_per_second": 0.8, "resumed": False, "gpu": None},
    ]  # fmt: skip
    (tmp_path / "timing.json").write_text(json.dumps({"setup": setup, "runs": runs}))
    return tmp_path


def test_the_section_shows_every_point_once_the_choice_and_the_wall_times(tmp_path):
    text = reference_tables.section(reference(tmp_path))
    assert text.startswith("Measured on NVIDIA H100 80GB HBM3 on 2026-12-01, commit 0123456789ab,")
    assert "212.5 s with 8 training jobs on the card" in text
    assert "| lr_reg, filters | 0.1 | 0.0001 | 32 | 20 | ok | 69.58 % (18) | 69.99 % | 1.50 |" in text
    assert "| lr_reg | 0.1 | 0.005 | 32 | 3 | diverged | 10.00 % (1) | – | 1.33 |" in text  # reported, not dropped
    assert text.count("| lr_reg") == 2
    assert "lr 0.1, L2 0.0001, 32 filters (69.58 % validation accuracy in the lr_reg sweep)" in text
    assert "test accuracy 69.00 % ± 1.48 points (mean ± sample std; seed 0: 70.05 %, seed 1: 67.95 %)" in text
    assert "| full (whole pipeline) | 8 | as configured | 212.5 | – | 61 % (70.2 %) | 9000 | 0 |" in text
    assert "| sweep-j8-mps (both sweeps) | 8 (MPS) | 2 | 40 | 0.8 | – | – | 0 |" in text
    assert "CUDA graph" not in text  # runs that do not say so ran the plain steps


def test_points_timed_while_jobs_shared_the_card_say_so(tmp_path):
    ref = reference(tmp_path)
    assert "share" not in reference_tables.section(ref)  # a summary without the column
    lines = (ref / "points_test.csv").read_text().splitlines()
    for jobs, said in (("", False), ("1", False), ("8", True)):
        (ref / "points_test.csv").write_text("\n".join([lines[0] + ",jobs_per_gpu", *(f"{r},{jobs}" for r in lines[1:])]))
        text = reference_tables.section(ref)
        assert ("measured while up to 8 training jobs could share the card" in text) is said, jobs
        assert "| lr_reg | 0.1 | 0.005 | 32 | 3 | diverged | 10.00 % (1) | – | 1.33 |" in text


def test_runs_of_cuda_graph_steps_say_so(tmp_path):
    ref = reference(tmp_path)
    timing = json.loads((ref / "timing.json").read_text())
    for run in timing["runs"]:
        run["cuda_graph"] = True
    (ref / "timing.json").write_text(json.dumps(timing))
    text = reference_tables.section(ref)
    assert "212.5 s with 8 training jobs on the card, each training step replayed as a CUDA graph." in text
    assert "| sweep-j8-mps (both sweeps) | 8 (MPS), CUDA graph | 2 | 40 | 0.8 | – | – | 0 |" in text


def test_write_puts_the_section_into_the_folders_readme(tmp_path, capsys):
    ref = reference(tmp_path)
    assert reference_tables.main([str(ref), "--write"]) == 0
    readme = (ref / "README.md").read_text()
    assert readme.startswith("# The reference outcome\n") and reference_tables.section(ref) in readme
    assert capsys.readouterr().out.strip() == reference_tables.section(ref).strip()


def test_a_pipeline_that_did_not_finish_is_not_given_a_finishing_time(tmp_path, monkeypatch):
    """Call 3 stopped by its time limit after test_metrics.json (the figures and the PDF are made
    here afterwards): its wall time is the limit's, not the pipeline's. A resumed run says so."""
    ref = reference(tmp_path)
    timing = json.loads((ref / "timing.json").read_text())
    timing["runs"][0].update({"exit": 124, "wall_seconds": 538.0})
    (ref / "timing.json").write_text(json.dumps(timing))
    text = reference_tables.section(ref)
    assert "The whole pipeline did not finish on the card: it stopped after 538 s (exit 124) with 8 training jobs" in text
    assert "From the archive to" not in text
    timing["runs"][0].update({"exit": 0, "resumed": True})
    (ref / "timing.json").write_text(json.dumps(timing))
    assert "538 s with 8 training jobs on the card (two device calls, the second resuming the first)." in (
        reference_tables.section(ref))
    # inside the repository the folder is named as the repository has it, not by this machine's path
    monkeypatch.setattr(reference_tables, "ROOT", tmp_path.parent)
    assert f"the files are in `{tmp_path.name}`." in reference_tables.section(ref)

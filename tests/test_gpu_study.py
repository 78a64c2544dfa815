"""benchmarks/gpu_study.sh and its summary, without a GPU: the bundle holds what issue 11 commits."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import study_summary  # noqa: E402

SAMPLE = "2026/11/27 17:00:00.000, {u}, 10, {m}, 81559, 120.0\n"


def fake_run(work: Path, name: str, jobs: int, full: bool) -> None:
    run = work / name
    point = run / "results/sweep/points/lr~0.1/reg~0.0001/filters~32"
    point.mkdir(parents=True)
    (point / "metrics.json").write_text(json.dumps({"status": "ok", "epochs_run": 4, "seconds": 8.0,
                                                    "seconds_per_epoch": 2.0, "best_val_acc": 0.6}))  # fmt: skip
    (point / "history.csv").write_text("epoch,val_acc\n1,0.6\n")
    (point / "model.npz").write_bytes(b"x")
    bench = run / "results/benchmarks/sweep/points/lr~0.1/reg~0.0001/filters~32.tsv"  # Snakemake's columns
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                     "11.2500\t0:00:11\t900.1\t2000.0\t850.0\t860.0\t0.0\t1.5\t95.0\t10.9\n")  # fmt: skip
    (run / "results/sweep/summary.csv").write_text(
        "sweep,lr,reg,filters,best_val_acc,path\nlr_reg,0.1,0.0001,32,0.6,results/sweep/points/lr~0.1/reg~0.0001/filters~32\n"
    )
    (run / "results/sweep/best.json").write_text(json.dumps({"lr": 0.1, "reg": 1e-4, "filters": 32}))
    (run / "gpu_samples.csv").write_text(SAMPLE.format(u=0, m=500) + SAMPLE.format(u=80, m=4000) + "[N/A]\n")
    (run / "gpu_apps.csv").write_text("1.0, 11, 600\n1.0, 12, 700\n2.0, 11, 650\n")
    (run / "snakemake.log").write_text("log\n")
    if full:
        seed = run / "results/final/seeds/0"
        seed.mkdir(parents=True)
        for f in ("metrics.json", "test_metrics.json"):
            (seed / f).write_text("{}")
        for f in ("history.csv", "per_class.csv", "confusion.csv"):
            (seed / f).write_text("a\n")
        (seed / "model.npz").write_bytes(os.urandom(20000))
        (run / "results/final/test_metrics.json").write_text(json.dumps({"seeds": {"mean": 0.7}}))
        (run / "results/figures").mkdir(parents=True)
        (run / "results/figures/curves.pdf").write_bytes(b"%PDF")
        (run / "results/figures/curves.png").write_bytes(os.urandom(20000))
        (run / "report").mkdir()
        (run / "report/report.tex").write_text("\\documentclass{ctexart}")
        tm = work / "points/lr~0.1/reg~0.0001/filters~32"
        tm.mkdir(parents=True)
        (tm / "test_metrics.json").write_text(json.dumps({"test_accuracy": 0.7, "test_loss": 0.9}))
    (work / "timing").mkdir(exist_ok=True)
    (work / "timing" / f"{name}.json").write_text(json.dumps({
        "name": name, "jobs_per_gpu": jobs, "sweep_epochs": None if full else 4, "targets": "t", "exit": 0,
        "start": 100.0, "end": 160.0, "before": 0}))  # fmt: skip


@pytest.fixture
def work(tmp_path):
    fake_run(tmp_path / "work", "full", 8, full=True)
    fake_run(tmp_path / "work", "sweep-j2", 2, full=False)
    return tmp_path / "work"


def members(tarball: Path) -> set:
    with tarfile.open(tarball) as tar:
        return set(tar.getnames())


def test_the_summary_reads_the_runs_and_the_gpu_samples(work, tmp_path):
    out = tmp_path / "study.tar.gz"
    assert study_summary.main([str(work), "--out", str(out), "--json", str(tmp_path / "timing.json")]) == 0
    runs = {r["name"]: r for r in json.loads((tmp_path / "timing.json").read_text())["runs"]}
    assert runs["full"]["wall_seconds"] == 60.0 and runs["full"]["best"]["filters"] == 32
    assert runs["sweep-j2"]["grid_epochs_per_second"] == round(4 / 60, 3)
    # the job took 11.25 s by Snakemake's benchmark, its training loop 8.0 s by its metrics
    point = runs["full"]["points"][0]
    assert point["job_seconds"] == 11.25 and point["outside_training_seconds"] == 3.25
    assert runs["full"]["point_outside_training_seconds_mean"] == 3.25
    gpu = runs["sweep-j2"]["gpu"]
    assert gpu["utilization_mean_pct"] == 40.0 and gpu["utilization_max_pct"] == 80.0
    assert gpu["memory_used_max_mib"] == 4000.0 and gpu["processes_max"] == 2
    assert gpu["processes_memory_sum_max_mib"] == 1300.0 and gpu["process_memory_max_mib"] == 700.0
    names = members(out)
    for name in ("study/timing.json", "study/points_test.csv", "study/full/report/report.tex",
                 "study/full/results/sweep/summary.csv", "study/full/results/final/seeds/0/per_class.csv",
                 "study/full/results/figures/curves.pdf", "study/full/results/figures/curves.png",
                 "study/full/results/final/seeds/0/model.npz", "study/sweep-j2/gpu_samples.csv",
                 "study/points/lr~0.1/reg~0.0001/filters~32/test_metrics.json"):  # fmt: skip
        assert name in names, name
    assert not any(n.startswith("study/sweep-j2/results/figures") or n.endswith("points/lr~0.1/reg~0.0001/filters~32/model.npz")
                   for n in names)  # fmt: skip
    with tarfile.open(out) as tar:
        table = tar.extractfile("study/points_test.csv").read().decode()
    assert table.splitlines()[1].endswith(",0.7,0.9")


def test_whether_the_steps_ran_as_cuda_graphs_comes_from_the_points_provenance(work):
    runs = {r["name"]: r for r in study_summary.summarise(work)["runs"]}
    assert runs["full"]["cuda_graph"] is None  # results that do not say
    metrics = work / "sweep-j2/results/sweep/points/lr~0.1/reg~0.0001/filters~32/metrics.json"
    m = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({**m, "provenance": {"gpu_numerics": {"custom_kernels": True, "cuda_graph": True}}}))
    runs = {r["name"]: r for r in study_summary.summarise(work)["runs"]}
    assert runs["sweep-j2"]["cuda_graph"] is True and runs["sweep-j2"]["points"][0]["cuda_graph"] is True


def test_a_resumed_run_reports_no_time_outside_training(work):
    # its jobs' benchmarks cover only the epochs after the resumption, its metrics every epoch
    timing = work / "timing/sweep-j2.json"
    timing.write_text(json.dumps({**json.loads(timing.read_text()), "before": 30.0}))
    runs = {r["name"]: r for r in study_summary.summarise(work)["runs"]}
    assert runs["sweep-j2"]["resumed"] and runs["sweep-j2"]["wall_seconds"] == 90.0
    assert runs["sweep-j2"]["points"][0]["job_seconds"] == 11.25
    assert runs["sweep-j2"]["points"][0]["outside_training_seconds"] is None
    assert runs["sweep-j2"]["point_outside_training_seconds_mean"] is None
    assert runs["full"]["point_outside_training_seconds_mean"] == 3.25


def test_a_bundle_too_big_leaves_out_pngs_then_checkpoints_then_fails(work, tmp_path, monkeypatch, capsys):
    out = tmp_path / "study.tar.gz"
    study_summary.main([str(work), "--out", str(out)])
    full = out.stat().st_size
    monkeypatch.setattr(study_summary, "LIMIT", full - 5000)  # without the PNG (20 kB) it fits
    assert study_summary.main([str(work), "--out", str(out)]) == 0
    assert "study/full/results/figures/curves.png" not in members(out)
    assert "study/full/results/final/seeds/0/model.npz" in members(out)  # the figures are redrawn from it
    monkeypatch.setattr(study_summary, "LIMIT", full - 25000)  # without both
    assert study_summary.main([str(work), "--out", str(out)]) == 0
    assert "study/full/results/final/seeds/0/model.npz" not in members(out)
    monkeypatch.setattr(study_summary, "LIMIT", 1000)
    assert study_summary.main([str(work), "--out", str(out)]) == 1
    assert "BUNDLE TOO BIG" in capsys.readouterr().out


def device_run_cpu(tmp_path, **extra):
    """benchmarks/device_run.sh --cpu with a stand-in nvidia-smi and MPS daemon; its finished process."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\ncase \"$*\" in\n"
                    "*-lms*) while :; do echo '2026/11/27 17:00:00.000, 50, 10, 2048, 81559, 120.0'; sleep 0.5; done ;;\n"
                    "*compute-apps*) echo '11, 600'; echo '12, 700' ;;\n"
                    "*) echo 'Stand-in GPU, 81559 MiB, 0' ;;\nesac\n")  # fmt: skip
    fake.chmod(0o755)
    mps = bin_dir / "nvidia-cuda-mps-control"  # -d starts the daemon, "quit" on stdin stops it
    mps.write_text('#!/bin/sh\nif [ "$1" = -d ]; then touch "$CUDA_MPS_PIPE_DIRECTORY/control"; exit 0; fi\n'
                   'read cmd; [ "$cmd" = quit ] && rm "$CUDA_MPS_PIPE_DIRECTORY/control"\n')  # fmt: skip
    mps.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out), "COMMIT": "abc123",
           "STUDY_WORK": str(tmp_path / "work"), "CHECK_WORK": str(tmp_path / "check"), "FULL_JOBS": "2+mps",
           "JOBS": "1 2", "SWEEP_EPOCHS": "1", **extra}  # fmt: skip
    for name in ("STEPS", "WORK", "BUDGET", "STUDY_ONLY"):
        if name not in extra:
            env.pop(name, None)
    done = subprocess.run(["bash", "benchmarks/device_run.sh", "--cpu"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "device_run --cpu: every step passed" in done.stdout
    return done


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SCRATCHCNN_SLOW"), reason="two minutes: SCRATCHCNN_SLOW=1 (tests/check.sh)")
@pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake")
def test_study_only_calls_bring_the_data_and_take_the_parity_from_the_study(tmp_path):
    """STUDY_ONLY=1 (issue 11 alone): calls 1 and 2 run the preflight alone, call 3 the study, then
    the parity taken from the grid's point of the parity recipe instead of training it again."""
    device_run_cpu(tmp_path, STUDY_ONLY="1", JOBS="1")
    out = tmp_path / "out"
    results = json.loads((out / "gpu_results.json").read_text())
    assert [row["step"] for row in json.loads((out / "gpu_details.json").read_text())["steps"]] == [
        "preflight", "parity-study"]  # fmt: skip
    assert results["gpu_tests"]["passed"] is None and results["epoch_seconds"] == {}
    point = tmp_path / "work/points/lr~0.05/reg~0.001/filters~8/test_metrics.json"
    assert results["parity_test_accuracy"] == json.loads(point.read_text())["test_accuracy"]
    assert not (tmp_path / "check/parity/model.npz").exists()  # not trained a second time


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SCRATCHCNN_SLOW"), reason="two minutes: SCRATCHCNN_SLOW=1 (tests/check.sh)")
@pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake")
@pytest.mark.skipif(shutil.which("latexmk") is None, reason="needs TeX (the reference outcome's PDF)")
def test_the_three_device_calls_run_every_step_on_the_cpu_and_bundle_the_results(tmp_path):
    """benchmarks/device_run.sh --cpu: the three device calls (gpu_check.sh's steps, then gpu_study.sh's
    on the demo, the whole pipeline under a stand-in MPS, and the parity taken from its grid point)
    with a stand-in nvidia-smi for the sampling."""
    done = device_run_cpu(tmp_path)
    out = tmp_path / "out"
    assert done.stdout.count("== summary") == 3
    results = json.loads((out / "gpu_results.json").read_text())  # issue 10's summary after the third call
    assert results["gpu_tests"]["passed"] > 0 and results["gpu_tests"]["failed"] == 0
    assert set(results["epoch_seconds"]) == {"4"} and results["peak_train_mb"] is not None
    steps = [row["step"] for row in json.loads((out / "gpu_details.json").read_text())["steps"]]
    assert steps == ["preflight", "tests", "graph-tests", "accuracy", "launches", "stages", "speed", "memory", "speed-nokernels", "speed-graph",
                     "parity-study"]
    assert "where a step goes:\n  4 filters, layers: step " in done.stdout
    accuracy = json.loads((tmp_path / "check/accuracy.json").read_text())
    assert accuracy["numpy_float32"]["W1"] < 1e-5 and accuracy["numpy_float32"]["conv1.product_alone"] < 1e-5
    point = tmp_path / "work/points/lr~0.05/reg~0.001/filters~8/test_metrics.json"
    assert results["parity_test_accuracy"] == json.loads(point.read_text())["test_accuracy"]
    assert (out / "parity_history.csv").read_text().startswith("epoch,")
    assert "every step that ran passed" in (out / "study.log").read_text()
    names = members(out / "study.tar.gz")
    figures = [n for n in names if n.startswith("study/full/results/figures/")]
    assert len([n for n in figures if n.endswith(".pdf")]) == len([n for n in figures if n.endswith(".png")]) > 5
    for name in ("study/full/results/final/test_metrics.json", "study/full/results/sweep/best.json",
                 "study/full/report/report.tex", "study/points_test.csv", "study/sweep-j1/snakemake.log",
                 "study/sweep-j2/results/sweep/summary.csv"):  # fmt: skip
        assert name in names, name
    timing = json.loads((out / "timing.json").read_text())
    runs = {r["name"]: r for r in timing["runs"]}
    assert set(runs) == {"full", "sweep-j1", "sweep-j2"} and all(r["exit"] == 0 for r in runs.values())
    assert [name for name, r in runs.items() if r["mps"]] == ["full"] and runs["full"]["jobs_per_gpu"] == 2
    assert not (tmp_path / "work/mps/pipe/control").exists()  # the daemon was stopped
    assert runs["sweep-j1"]["grid_epochs"] == runs["sweep-j1"]["grid_points"]  # sweep.epochs 1
    assert runs["full"]["gpu"]["utilization_mean_pct"] == 50.0 and runs["full"]["gpu"]["processes_max"] == 2
    assert all(v is not None for v in runs["full"]["phases_seconds"].values())
    # Snakemake's own benchmark files: every job took longer than its training loop (start-up, data, writing)
    assert all(0 < p["outside_training_seconds"] < p["job_seconds"] for r in runs.values() for p in r["points"])
    assert "commit: abc123" in timing["setup"]
    with tarfile.open(out / "study.tar.gz") as tar:
        metrics = json.loads(tar.extractfile("study/full/results/final/seeds/0/metrics.json").read())
    assert metrics["provenance"]["git_commit"] == "abc123"

    # then, here: the reference outcome from the bundle, figures and PDF made again without training
    ref = tmp_path / "reference"
    command = ["bash", "benchmarks/reference_outcome.sh", str(out / "study.tar.gz"), str(ref)]
    refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    # a rehearsal's bundle does not become the reference outcome by mistake
    assert refused.returncode == 1 and "is not a GPU run's" in refused.stderr and not ref.exists(), refused.stderr
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "ALLOW_DEMO": "1"}, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in ref.iterdir()) == sorted(
        ["README.md", "best.json", "history.csv", "metrics.json", "per_class.csv", "points_test.csv", "report.pdf",
         "summary.csv", "test_metrics.json", "timing.json"])  # fmt: skip
    assert (ref / "report.pdf").read_bytes().startswith(b"%PDF")
    assert json.loads((ref / "test_metrics.json").read_text())["seeds"]["n"] == 2
    readme = (ref / "README.md").read_text()
    assert "| lr_reg, filters | 0.05 | 0.001 | 8 |" in readme and "| full (whole pipeline) | 2 (MPS) |" in readme


def test_a_call_without_time_for_the_points_keeps_the_earlier_calls_evaluations(tmp_path):
    """A late call (RESUME) with under 30 s left for the points step said it failed, after it had
    removed the evaluations an earlier call made: they now stay."""
    work = tmp_path / "work"
    (work / "full/results/sweep/points/lr~0.1").mkdir(parents=True)
    (work / "full/results/sweep/points/lr~0.1/model.npz").write_bytes(b"x")
    earlier = work / "points/lr~0.1/test_metrics.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"test_accuracy": 0.7}')
    env = {**os.environ, "WORK": str(work), "OUT": str(tmp_path / "out"), "STEPS": "points", "BUDGET": "45"}
    done = subprocess.run(["bash", "benchmarks/gpu_study.sh", "--cpu"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1 and "== points: not started, " in done.stdout, done.stdout[-2000:]
    assert earlier.read_text() == '{"test_accuracy": 0.7}'

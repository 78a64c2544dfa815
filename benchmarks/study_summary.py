"""Summarise benchmarks/gpu_study.sh's runs and bundle their results into one tarball.

    python3 benchmarks/study_summary.py WORK --out study.tar.gz --json timing.json

WORK holds one folder per Snakemake run (``full``, ``sweep-j<N>``), ``timing/<run>.json`` (what the
script measured: jobs per GPU, exit status, start and end), ``points/`` (each grid point's test
metrics) and ``setup.txt``. ``timing.json`` gets one row per run: wall seconds, the phases of the
full run (from its outputs' times), the grid points' epochs, seconds per epoch and seconds outside
the training loop (Snakemake's benchmark of the job less the loop's own time), and the GPU's
utilisation and memory from the nvidia-smi samples. The tarball (folder ``study/``) holds what
issue 11 commits and what the README's results need; it must stay under 16 MiB (the device's limit
per returned file): the PNGs go first, then the checkpoints, and if it is still too big, exit 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import tarfile
from pathlib import Path

LIMIT = 16 * 1024 * 1024 - 64 * 1024

# files of a run folder that the bundle keeps (glob patterns relative to the run folder)
FULL_FILES = [
    "study.yaml", "configfiles.txt", "snakemake.log", "gpu_samples.csv", "gpu_apps.csv",
    "results/sweep/summary.csv", "results/sweep/best.json", "results/sweep/*/summary.csv", "results/sweep/*/best.json",
    "results/sweep/points/**/metrics.json", "results/sweep/points/**/history.csv",
    "results/final/test_metrics.json",
    "results/final/seeds/*/metrics.json", "results/final/seeds/*/history.csv",
    "results/final/seeds/*/test_metrics.json", "results/final/seeds/*/per_class.csv",
    "results/final/seeds/*/confusion.csv", "results/final/seeds/*/predictions.npz",
    "results/figures/*.pdf", "results/benchmarks/**/*.tsv", "report/report.tex", "logs/**/*.log",
]  # fmt: skip
SWEEP_FILES = [
    "study.yaml", "configfiles.txt", "snakemake.log", "gpu_samples.csv", "gpu_apps.csv",
    "results/sweep/summary.csv", "results/sweep/best.json", "results/sweep/points/**/metrics.json", "results/benchmarks/**/*.tsv",
    "logs/**/*.log",
]  # fmt: skip
# left out in this order when the bundle is too big: the PNGs first, since benchmarks/reference_outcome.sh
# redraws every figure here from the checkpoint and the other results
OPTIONAL = [("pngs", ["results/figures/*.png"]), ("checkpoints", ["results/final/seeds/*/model.npz"])]


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def gpu_stats(run: Path) -> dict | None:
    """Utilisation and memory over a run, from gpu_samples.csv and gpu_apps.csv (None without them)."""
    samples = run / "gpu_samples.csv"
    if not samples.is_file() or not samples.read_text().strip():
        return None
    util, mem, total = [], [], None
    for row in csv.reader(io.StringIO(samples.read_text())):
        if len(row) < 5:
            continue
        u, m, t = number(row[1]), number(row[3]), number(row[4])
        if u is not None:
            util.append(u)
        if m is not None:
            mem.append(m)
        total = t if t is not None else total
    per_time: dict[str, list[float]] = {}
    apps = run / "gpu_apps.csv"
    if apps.is_file():
        for row in csv.reader(io.StringIO(apps.read_text())):
            if len(row) >= 3 and number(row[2]) is not None:
                per_time.setdefault(row[0], []).append(number(row[2]))
    busy = [u for u in util if u > 0]
    return {
        "samples": len(util),
        "utilization_mean_pct": round(statistics.fmean(util), 1) if util else None,
        "utilization_mean_busy_pct": round(statistics.fmean(busy), 1) if busy else None,
        "utilization_max_pct": max(util) if util else None,
        "memory_used_max_mib": max(mem) if mem else None,
        "memory_total_mib": total,
        "processes_max": max((len(v) for v in per_time.values()), default=0),
        "process_memory_max_mib": max((max(v) for v in per_time.values()), default=None),
        "processes_memory_sum_max_mib": max((sum(v) for v in per_time.values()), default=None),
    }


def read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def job_seconds(tsv: Path) -> float | None:
    """A job's wall seconds from its Snakemake benchmark file (column ``s``), if it finished."""
    if not tsv.is_file():
        return None
    rows = list(csv.DictReader(io.StringIO(tsv.read_text()), delimiter="\t"))
    return float(rows[0]["s"]) if rows and rows[0].get("s") else None


def points(run: Path, resumed=False) -> list[dict]:
    """Each grid point's metrics, with its whole job's seconds and those outside the training loop
    (the process's start, loading the data onto the device, writing the snapshots and results); not
    for a resumed run, whose jobs' benchmarks cover only the epochs after the resumption."""
    rows = []
    for path in sorted((run / "results/sweep/points").glob("**/metrics.json")):
        m = json.loads(path.read_text())
        point = str(path.parent.relative_to(run / "results/sweep/points"))
        job = job_seconds(run / "results/benchmarks/sweep/points" / f"{point}.tsv")
        rows.append({
            "point": point,
            "status": m.get("status"), "epochs_run": m.get("epochs_run"), "seconds": m.get("seconds"),
            "seconds_per_epoch": m.get("seconds_per_epoch"), "best_val_acc": m.get("best_val_acc"),
            "device_id": m.get("device_id"), "job_seconds": job,
            "cuda_graph": ((m.get("provenance") or {}).get("gpu_numerics") or {}).get("cuda_graph"),
            "outside_training_seconds": (round(job - m["seconds"], 2)
                                         if job is not None and m.get("seconds") is not None and not resumed else None),
        })  # fmt: skip
    return rows


def phases(run: Path, start: float) -> dict:
    """Seconds from the run's start until each stage's last output was written."""
    marks = {
        "data": ["results/data/cifar10.npz"],
        "sweeps": ["results/sweep/best.json"],
        "final_and_evaluation": ["results/final/test_metrics.json"],
        "figures": [str(p.relative_to(run)) for p in (run / "results/figures").glob("*.p*")],
        "report_tex": ["report/report.tex"],
    }
    out = {}
    for name, files in marks.items():
        times = [(run / f).stat().st_mtime for f in files if (run / f).is_file()]
        out[name] = round(max(times) - start, 1) if times else None
    return out


def summarise(work: Path) -> dict:
    runs = []
    for path in sorted((work / "timing").glob("*.json")):
        t = json.loads(path.read_text())
        run = work / t["name"]
        pts = points(run, resumed=bool(t.get("before")))
        spe = [p["seconds_per_epoch"] for p in pts if p["seconds_per_epoch"]]
        outside = [p["outside_training_seconds"] for p in pts if p["outside_training_seconds"] is not None]
        row = {
            **{k: t[k] for k in ("name", "jobs_per_gpu", "sweep_epochs", "targets", "exit")},
            "mps": t.get("mps", False),
            "wall_seconds": round(t["end"] - t["start"] + t.get("before", 0), 1),
            "resumed": bool(t.get("before")),
            "grid_points": len(pts),
            "grid_epochs": sum(p["epochs_run"] or 0 for p in pts),
            "point_seconds_per_epoch_mean": round(statistics.fmean(spe), 3) if spe else None,
            "point_outside_training_seconds_mean": round(statistics.fmean(outside), 2) if outside else None,
            # the steps replayed as CUDA graphs (SCRATCHCNN_GRAPH=1) in every point, in none, or not known
            "cuda_graph": pts[0]["cuda_graph"] if pts and len({p["cuda_graph"] for p in pts}) == 1 else None,
            "gpu": gpu_stats(run),
        }
        if row["grid_epochs"] and t["name"] != "full":
            row["grid_epochs_per_second"] = round(row["grid_epochs"] / row["wall_seconds"], 3)
        if t["name"] == "full":
            row["phases_seconds"] = None if t.get("before") else phases(run, t["start"])
            row["test_metrics"] = {k: v for k, v in (read_json(run / "results/final/test_metrics.json") or {}).items()
                                   if k in ("test_accuracy_mean", "test_accuracy_std", "seeds")}  # fmt: skip
            row["best"] = read_json(run / "results/sweep/best.json")
        row["points"] = pts
        runs.append(row)
    setup = work / "setup.txt"
    return {"setup": setup.read_text() if setup.is_file() else None, "runs": runs}


def points_test_csv(work: Path) -> str | None:
    """Every grid point with its validation and test accuracy and seconds per epoch."""
    summary = work / "full/results/sweep/summary.csv"
    if not summary.is_file():
        return None
    out = io.StringIO()
    rows = list(csv.DictReader(summary.open()))
    fields = list(rows[0]) + ["test_accuracy", "test_loss"] if rows else []
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for row in rows:  # path: results/sweep/points/lr~…/reg~…/filters~…
        rel = Path(row["path"]).relative_to("results/sweep/points")
        tm = read_json(work / "points" / rel / "test_metrics.json") or {}
        writer.writerow({**row, "test_accuracy": tm.get("test_accuracy"), "test_loss": tm.get("test_loss")})
    return out.getvalue()


def add_text(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def bundle(work: Path, out: Path, summary: dict, drop: set[str]) -> None:
    with tarfile.open(out, "w:gz") as tar:
        add_text(tar, "study/timing.json", json.dumps(summary, indent=1))
        table = points_test_csv(work)
        if table:
            add_text(tar, "study/points_test.csv", table)
        for run in summary["runs"]:
            base = work / run["name"]
            patterns = list(FULL_FILES if run["name"] == "full" else SWEEP_FILES)
            if run["name"] == "full":
                patterns += [p for key, pats in OPTIONAL if key not in drop for p in pats]
            for pattern in patterns:
                for path in sorted(base.glob(pattern)):
                    if path.is_file():
                        tar.add(path, f"study/{run['name']}/{path.relative_to(base)}")
        for path in sorted((work / "points").glob("**/*")):
            if path.is_file() and path.name in ("test_metrics.json", "evaluate.log"):
                tar.add(path, f"study/points/{path.relative_to(work / 'points')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the tarball")
    parser.add_argument("--json", type=Path, help="timing.json beside it")
    args = parser.parse_args(argv)
    summary = summarise(args.work)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    drop: set[str] = set()
    for key in [None] + [k for k, _ in OPTIONAL]:
        if key:
            drop.add(key)
            print(f"study_summary: bundle over {LIMIT >> 20} MiB, leaving out the {key}")
        bundle(args.work, args.out, summary, drop)
        if args.out.stat().st_size <= LIMIT:
            break
    size = args.out.stat().st_size
    for run in summary["runs"]:
        gpu = run["gpu"] or {}
        print(f"study_summary: {run['name']}: jobs_per_gpu {run['jobs_per_gpu']}{' with MPS' if run['mps'] else ''}"
              f"{', steps as CUDA graphs' if run['cuda_graph'] else ''}, "
              f"exit {run['exit']}, "
              f"{run['wall_seconds']} s, {run['grid_points']} points / {run['grid_epochs']} epochs, "
              f"{run['point_outside_training_seconds_mean']} s a point outside its training loop, "
              f"GPU util mean {gpu.get('utilization_mean_pct')} %, memory max {gpu.get('memory_used_max_mib')} MiB")  # fmt: skip
    print(f"study_summary: {args.out} {size / 2**20:.2f} MiB")
    if size > LIMIT:
        print(f"study_summary: BUNDLE TOO BIG ({size} bytes > {LIMIT})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

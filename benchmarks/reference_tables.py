"""The README's results section from the reference outcome (docs/reference/), as Markdown.

    python3 benchmarks/reference_tables.py docs/reference            # print the section
    python3 benchmarks/reference_tables.py docs/reference --write    # also docs/reference/README.md

Reads what benchmarks/reference_outcome.sh put there: points_test.csv (every grid point with its
validation and test accuracy), best.json, test_metrics.json (the seeds of the final training) and
timing.json (gpu_study.sh's runs and the machine). Nothing is typed in by hand: the card, the date
and the commit come from timing.json's setup block.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import pandas as pd

from scratchcnn.report.facts import shared_gpu_jobs  # the report's reading of the same column

ROOT = Path(__file__).resolve().parents[1]


def pct(x) -> str:
    return "–" if x in (None, "") else f"{100 * float(x):.2f} %"


def seconds(x) -> str:
    return "–" if x in (None, "") else f"{float(x):.2f}"


def setup_fields(text: str | None) -> dict:
    """``key: value`` lines of gpu_study.sh's setup block; nvidia-smi's line is the card."""
    fields = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(": ")
        if sep and " " not in key:
            fields[key] = value.strip()
        elif "," in line and "MiB" in line:  # nvidia-smi: name, memory.total, driver_version
            fields.setdefault("card", line.split(",")[0].strip())
    return fields


def points_table(rows: list[dict]) -> list[str]:
    """One row per trained point (a point two sweeps share is listed once, with both sweeps)."""
    by_path: dict[str, dict] = {}
    for row in rows:
        kept = by_path.setdefault(row["path"], {**row, "sweeps": []})
        kept["sweeps"].append(row["sweep"])
    lines = ["| sweep | lr | L2 | filters | epochs | status | best val acc (epoch) | test acc | s / epoch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in by_path.values():
        epoch = f" ({r['best_epoch']})" if r.get("best_epoch") not in (None, "") else ""
        lines.append(f"| {', '.join(r['sweeps'])} | {float(r['lr']):g} | {float(r['reg']):g} | {r['filters']} | "
                     f"{r['epochs']} | "
                     f"{r['status']} | {pct(r['best_val_acc'])}{epoch} | {pct(r['test_accuracy'])} | "
                     f"{seconds(r['seconds_per_epoch'])} |")  # fmt: skip
    return lines


def shared_note(rows: list[dict]) -> list[str]:
    """A sentence where the points' times were taken while several jobs could share the card."""
    jobs = shared_gpu_jobs(pd.DataFrame(rows))
    if jobs is None:
        return []
    return ["", f"Each point's seconds per epoch were measured while up to {jobs} training jobs could share "
                "the card: they include waiting for the others' kernels, so they compare the points only roughly "
                "(`benchmarks/gpu_results.json` times one job alone)."]  # fmt: skip


def chosen_lines(best: dict, test_metrics: dict) -> list[str]:
    seeds = test_metrics.get("seeds") or {}
    runs = ", ".join(f"seed {r['seed']}: {pct(r['test_accuracy'])}" for r in seeds.get("runs", []))
    std = f" ± {100 * seeds['std']:.2f} points" if seeds.get("std") is not None else ""
    return [
        f"Chosen on validation accuracy: lr {best['lr']:g}, L2 {best['reg']:g}, {best['filters']} filters "
        f"({pct(best['best_val_acc'])} validation accuracy in the {best['sweep']} sweep).",
        f"Final training, {seeds.get('n', 1)} seed(s): test accuracy {pct(seeds.get('mean'))}{std} "
        f"(mean ± sample std; {runs}); the figures show seed {seeds.get('shown')}.",
    ]


def timing_table(runs: list[dict]) -> list[str]:
    lines = ["| run | jobs per GPU | epochs per point | wall time (s) | grid epochs / s | GPU util mean (busy) | "
             "GPU memory max (MiB) | exit |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in runs:
        gpu = r.get("gpu") or {}
        jobs = f"{r['jobs_per_gpu']}" + (" (MPS)" if r.get("mps") else "") + (", CUDA graph" if r.get("cuda_graph") else "")
        epochs = r["sweep_epochs"] if r.get("sweep_epochs") else "as configured"
        what = "whole pipeline" if r["name"] == "full" else "both sweeps"
        util = gpu.get("utilization_mean_pct")
        busy = gpu.get("utilization_mean_busy_pct")
        util_text = "–" if util is None else f"{util:g} % ({busy:g} %)" if busy is not None else f"{util:g} %"
        mem = gpu.get("memory_used_max_mib")
        lines.append(f"| {r['name']} ({what}) | {jobs} | {epochs} | {r['wall_seconds']:g}"
                     f"{' (resumed)' if r.get('resumed') else ''} | {r.get('grid_epochs_per_second', '–')} | "
                     f"{util_text} | {'–' if mem is None else f'{mem:g}'} | {r['exit']} |")  # fmt: skip
    return lines


def section(ref: Path) -> str:
    timing = json.loads((ref / "timing.json").read_text())
    setup = setup_fields(timing.get("setup"))
    with (ref / "points_test.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    best = json.loads((ref / "best.json").read_text())
    test_metrics = json.loads((ref / "test_metrics.json").read_text())
    full = next((r for r in timing["runs"] if r["name"] == "full"), None)
    try:  # the committed README names the folder as the repository has it, not as this machine does
        shown = ref.resolve().relative_to(ROOT)
    except ValueError:
        shown = ref
    head = (f"Measured on {setup.get('card', 'an unnamed card')} on {setup.get('date', '?')[:10]}, commit "
            f"{setup.get('commit', '?')[:12]}, with `benchmarks/device_run.sh` (benchmarks/NOTES.md); the files "
            f"are in `{shown}`.")  # fmt: skip
    parts = [head, ""]
    if full:
        how = (f"with {full['jobs_per_gpu']} training jobs on the card{' under CUDA MPS' if full.get('mps') else ''}"
               f"{', each training step replayed as a CUDA graph' if full.get('cuda_graph') else ''}"
               f"{' (two device calls, the second resuming the first)' if full.get('resumed') else ''}")  # fmt: skip
        if full["exit"] == 0:
            parts += [f"From the archive to `test_metrics.json`, every figure and `report.tex`: "
                      f"{full['wall_seconds']:g} s {how}.", ""]  # fmt: skip
        else:  # a time limit, say: its wall time is not the pipeline's
            parts += [f"The whole pipeline did not finish on the card: it stopped after {full['wall_seconds']:g} s "
                      f"(exit {full['exit']}) {how}.", ""]  # fmt: skip
    parts += ["Every grid point (test accuracy of its best-validation checkpoint; a diverged point is "
              "listed with its status):", "", *points_table(rows), *shared_note(rows), "",
              *chosen_lines(best, test_metrics), "",
              "Wall time per setting of `train.jobs_per_gpu` (the sweep runs use fewer epochs per point than "
              "the whole pipeline, to fit the device time):", "", *timing_table(timing["runs"])]  # fmt: skip
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ref", type=Path, help="the reference outcome's folder (docs/reference)")
    p.add_argument("--write", action="store_true", help="also write REF/README.md")
    args = p.parse_args(argv)
    text = section(args.ref)
    if args.write:
        (args.ref / "README.md").write_text(
            "# The reference outcome\n\nThe study run on a GPU by `benchmarks/device_run.sh` and gathered by "
            "`benchmarks/reference_outcome.sh`, which drew the figures in `report.pdf` again from these "
            "results and compiled it (the GPU machine has no TeX). Set your own run beside it: the same "
            "files are under `results/` after `snakemake`.\n\n" + text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

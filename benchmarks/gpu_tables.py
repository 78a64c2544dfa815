"""The README's and NOTES' GPU results (issue 10) from benchmarks/gpu_results.json, as Markdown.

    python3 benchmarks/gpu_tables.py benchmarks/gpu_results.json

Reads the summary that benchmarks/gpu_check.sh (through device_run.sh) wrote on the GPU machine;
nothing is typed in by hand: the card, the date and the commit come from the file. A number that
was not measured shows as "–".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpu_summary import CPU_PARITY
from reference_tables import pct, seconds


def num(x, fmt="{:g}") -> str:  # counts and MB; seconds and accuracies as in reference_tables
    return "–" if x is None else fmt.format(x)


def speed_table(epoch_seconds: dict) -> list[str]:
    graph = any(row.get("scratchcnn_graph") is not None for row in epoch_seconds.values())
    lines = ["| filters | scratchcnn s / epoch | PyTorch eager s / epoch | ratio |" + (" scratchcnn, CUDA graph |" if graph else ""),
             "| --- | --- | --- | --- |" + (" --- |" if graph else "")]  # fmt: skip
    for filters in sorted(epoch_seconds, key=int):
        row = epoch_seconds[filters]
        lines.append(f"| {filters} | {seconds(row.get('scratchcnn'))} | {seconds(row.get('torch'))} | "
                     f"{seconds(row.get('ratio'))} |" + (f" {seconds(row.get('scratchcnn_graph'))} |" if graph else ""))  # fmt: skip
    return lines


def section(results: dict) -> str:
    tests = results.get("gpu_tests") or {}
    launches = results.get("launches_per_step") or {}
    acc = results.get("parity_test_accuracy")
    parity = pct(acc) + ("" if acc is None else f" ({100 * (acc - CPU_PARITY):+.2f} points against the CPU's {pct(CPU_PARITY)})")
    lines = [
        f"Measured on {results.get('device_name') or 'an unnamed card'} on {results.get('date', '?')}, commit "
        f"{str(results.get('commit', '?'))[:12]}, with `benchmarks/device_run.sh` (benchmarks/NOTES.md); "
        "the numbers are `benchmarks/gpu_results.json`.",
        "",
        "Seconds per training epoch (45,000 images, batch 64), side by side in one process:",
        "",
        *speed_table(results.get("epoch_seconds") or {}),
        "",
        f"- GPU tests (CuPy against NumPy): {num(tests.get('passed'))} passed, {num(tests.get('failed'))} failed, "
        f"{num(tests.get('skipped'))} skipped.",
        f"- Kernel launches per training step (64 filters, batch 64): {num(launches.get('kernels'))} with the "
        f"custom kernels, {num(launches.get('no_kernels'))} without ({launches.get('method', 'not measured')}).",
        f"- Peak memory at 256 filters besides the dataset: training {num(results.get('peak_train_mb'), '{:.0f}')} MB "
        f"(batch 64), evaluation {num(results.get('peak_eval_mb'), '{:.0f}')} MB.",
        f"- Parity (32 filters, lr 0.1, L2 1e-4, seed 0, 20 epochs, stand-in archive): test accuracy {parity}, "
        f"best validation accuracy {pct(results.get('parity_best_val_accuracy'))}.",
    ]  # fmt: skip
    if any("–" in line for line in lines):
        lines.append("- A dash: not measured in that run.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, help="gpu_results.json")
    args = p.parse_args(argv)
    print(section(json.loads(args.results.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Combine the final training's seeds into ``results/final/test_metrics.json``.

Each seed was trained and evaluated on its own (``results/final/seeds/<seed>/``).
The combined file is the shown seed's test metrics (the model the figures and
the per-class tables describe) with a ``seeds`` block added: every seed's test
and best validation accuracy (and, for a run copied from the chosen grid point,
that point), their mean and sample standard deviation::

    python workflow/scripts/summarize_seeds.py --runs results/final/seeds/0 results/final/seeds/1 \\
        --shown-seed 0 --out results/final/test_metrics.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scratchcnn.io import write_json_atomic
from scratchcnn.metrics import seed_summary


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"error: {path} does not exist (train and evaluate that seed first)")
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: {path} is not valid JSON ({exc})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, nargs="+", required=True,
                    help="one folder per seed, holding test_metrics.json and metrics.json")  # fmt: skip
    ap.add_argument("--shown-seed", type=int, required=True, help="the seed whose model the figures show")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    runs, shown = [], None
    for folder in args.runs:
        test, train = read_json(folder / "test_metrics.json"), read_json(folder / "metrics.json")
        seed = (train.get("hyperparameters") or {}).get("seed")
        if seed is None:
            raise SystemExit(f"error: {folder / 'metrics.json'} records no hyperparameters.seed")
        runs.append({"seed": int(seed), "test_accuracy": float(test["test_accuracy"]),
                     "best_val_acc": float(train["best_val_acc"]), "best_epoch": int(train["best_epoch"]),
                     "status": train.get("status", "ok"), "path": str(folder),
                     "reused_from": train.get("reused_from")})  # fmt: skip
        if int(seed) == args.shown_seed:
            shown = test
    if shown is None:
        raise SystemExit(f"error: --shown-seed {args.shown_seed} is not among the runs' seeds "
                         f"{[r['seed'] for r in runs]}")  # fmt: skip
    try:
        summary = seed_summary(runs)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}")
    write_json_atomic(args.out, {**shown, "seeds": {"shown": args.shown_seed, **summary}})
    print(f"summarize_seeds: {summary['n']} seeds, test accuracy mean {summary['mean']:.4f}; wrote {args.out}",
          file=sys.stderr)  # the rule sends stderr to its log
    return 0


if __name__ == "__main__":
    sys.exit(main())

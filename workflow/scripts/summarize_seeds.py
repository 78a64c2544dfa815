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
import math
import sys
from pathlib import Path

from scratchcnn.io import read_json_object, write_json_atomic
from scratchcnn.logs import exit_on_sigterm
from scratchcnn.metrics import seed_summary


def read_json(path: Path) -> dict:
    try:
        return read_json_object(path)
    except FileNotFoundError:
        raise SystemExit(f"error: {path} does not exist (train and evaluate that seed first)")
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: {path} is not valid JSON ({exc})")
    except (OSError, ValueError) as exc:  # a folder, unreadable bytes, a JSON list
        raise SystemExit(f"error: {path} cannot be read ({exc})")


def number(obj: dict, keys: tuple, kind: type, path: Path, may_be_null=False):
    """``obj[keys[0]][keys[1]]...`` as ``kind``; a missing, null or non-numeric value is an error naming
    the file and the key (null is passed through where ``may_be_null``)."""
    value = obj
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if value is None and may_be_null:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or (kind is int and value != int(value))):  # fmt: skip
        raise SystemExit(f"error: {path}: {'.'.join(keys)} is {value!r}, expected a number"
                         f"{' (an integer)' if kind is int else ''}")  # fmt: skip
    return kind(value)


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
        run = {"seed": number(train, ("hyperparameters", "seed"), int, folder / "metrics.json"),
               "test_accuracy": number(test, ("test_accuracy",), float, folder / "test_metrics.json"),
               # null where the seed diverged in its first epoch: it has no best epoch
               "best_val_acc": number(train, ("best_val_acc",), float, folder / "metrics.json", may_be_null=True),
               "best_epoch": number(train, ("best_epoch",), int, folder / "metrics.json"),
               "status": train.get("status", "ok"), "path": str(folder), "reused_from": train.get("reused_from")}  # fmt: skip
        runs.append(run)
        if run["seed"] == args.shown_seed:
            shown = test
    if shown is None:
        raise SystemExit(f"error: --shown-seed {args.shown_seed} is not among the runs' seeds "
                         f"{[r['seed'] for r in runs]}")  # fmt: skip
    try:
        summary = seed_summary(runs)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}")
    try:
        write_json_atomic(args.out, {**shown, "seeds": {"shown": args.shown_seed, **summary}})
    except OSError as exc:
        raise SystemExit(f"error: cannot write {args.out} ({exc})")
    print(f"summarize_seeds: {summary['n']} seeds, test accuracy mean {summary['mean']:.4f}; wrote {args.out}",
          file=sys.stderr)  # the rule sends stderr to its log
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())

"""Summarise grid points and choose the best one on validation accuracy.

One sweep (reads each point's metrics.json):
    python workflow/scripts/select_best.py --sweep lr_reg \\
        --metrics results/sweep/points/lr~*/reg~*/filters~32/metrics.json \\
        --out-summary results/sweep/lr_reg/summary.csv --out-best results/sweep/lr_reg/best.json

All sweeps (concatenates their summaries):
    python workflow/scripts/select_best.py --summaries results/sweep/*/summary.csv \\
        --out-summary results/sweep/summary.csv --out-best results/sweep/best.json

Points that diverged are listed but never chosen; if every point diverged the
step fails and says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from scratchcnn.logs import setup_logging
from scratchcnn import sweeps
from scratchcnn.io import atomic_path, write_json_atomic

log = logging.getLogger("select")


def rows_from_metrics(sweep: str, paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        try:
            metrics = json.loads(Path(path).read_text())
            point = metrics["hyperparameters"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise SystemExit(f"select: cannot read grid point {path}: {exc}") from exc
        rows.append({**sweeps.summary_row(sweep, point, metrics), "path": str(Path(path).parent)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--metrics", nargs="+", type=Path, help="metrics.json of each point (with --sweep)")
    src.add_argument("--summaries", nargs="+", type=Path, help="per-sweep summary.csv files")
    p.add_argument("--sweep", help="the sweep's name (with --metrics)")
    p.add_argument("--out-summary", required=True, type=Path)
    p.add_argument("--out-best", required=True, type=Path)
    args = p.parse_args(argv)
    setup_logging()

    if args.metrics:
        if not args.sweep:
            p.error("--metrics needs --sweep")
        rows = rows_from_metrics(args.sweep, args.metrics)
    else:
        rows = pd.concat([pd.read_csv(s) for s in args.summaries]).to_dict("records")
        for r in rows:  # pandas reads an empty accuracy as NaN
            if pd.isna(r["best_val_acc"]):
                r["best_val_acc"] = None
    try:
        best = sweeps.choose_best(rows)
    except sweeps.SelectionError as exc:
        log.error("%s", exc)
        return 1
    table = pd.DataFrame(rows, columns=sweeps.SUMMARY_COLUMNS + ["path"])
    with atomic_path(args.out_summary) as tmp:
        table.to_csv(tmp, index=False)
    chosen = {**sweeps.plain_point(best), "best_val_acc": float(best["best_val_acc"]),
              "sweep": best["sweep"], "path": best["path"]}  # fmt: skip
    write_json_atomic(args.out_best, chosen)
    n_div = sum(r["status"] != "ok" for r in rows)
    log.info("%d points (%d diverged); best: %s", len(rows), n_div, chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import logging
import sys
from pathlib import Path

import pandas as pd

from scratchcnn.logs import exit_on_sigterm, setup_logging
from scratchcnn import sweeps
from scratchcnn.io import READ_ERRORS, all_or_none, atomic_path, read_json_object, write_json_atomic

log = logging.getLogger("select")


def rows_from_metrics(sweep: str, paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        try:
            metrics = read_json_object(path)
            row = {**sweeps.summary_row(sweep, metrics["hyperparameters"], metrics), "path": str(Path(path).parent)}
        except READ_ERRORS as exc:
            raise SystemExit(f"select: cannot read grid point {path} ({type(exc).__name__}: {exc})") from exc
        rows.append(checked(row, path))
    return rows


def rows_from_summaries(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        try:
            table = pd.read_csv(path)
        except READ_ERRORS as exc:
            raise SystemExit(f"select: cannot read sweep summary {path} ({type(exc).__name__}: {exc})") from exc
        missing = [c for c in COLUMNS if c not in table.columns and c not in ADDED_LATER]
        if missing:
            raise SystemExit(f"select: sweep summary {path} lacks the columns {', '.join(missing)}")
        # pandas reads an empty cell as NaN
        rows += [checked({k: None if pd.isna(v) else v for k, v in r.items()}, path) for r in table.to_dict("records")]
    return rows


def checked(row: dict, source: Path) -> dict:
    """``row`` with its hyperparameters as plain numbers, or an error naming ``source``: a point
    that finished has a status and, unless it diverged in its first epoch, an accuracy."""
    try:
        row.update(sweeps.plain_point(row))
        if row["best_val_acc"] is not None:
            row["best_val_acc"] = float(row["best_val_acc"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SystemExit(f"select: {source}: a hyperparameter or best_val_acc is missing or not a number "
                         f"({type(exc).__name__}: {exc})") from exc  # fmt: skip
    if row["status"] not in ("ok", "diverged") or (row["status"] == "ok" and row["best_val_acc"] is None):
        raise SystemExit(f"select: {source}: status {row['status']!r} with best_val_acc {row['best_val_acc']!r}; "
                         "a finished point has status ok with an accuracy, or diverged")  # fmt: skip
    return row


COLUMNS = sweeps.SUMMARY_COLUMNS + ["path"]
# columns a sweep summary written by an earlier version lacks; empty when it does (Snakemake does
# not rerun a step because its script changed, so a study updated midway mixes the two)
ADDED_LATER = ("jobs_per_gpu",)


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
        rows = rows_from_summaries(args.summaries)
    try:
        best = sweeps.choose_best(rows)
    except sweeps.SelectionError as exc:
        log.error("%s", exc)
        return 1
    chosen = {**sweeps.plain_point(best), "best_val_acc": best["best_val_acc"], "sweep": best["sweep"], "path": best["path"]}
    try:
        with all_or_none([args.out_summary, args.out_best]):
            with atomic_path(args.out_summary) as tmp:
                pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp, index=False)
            write_json_atomic(args.out_best, chosen)
    except OSError as exc:
        raise SystemExit(f"select: cannot write the selection ({exc})") from exc
    n_div = sum(r["status"] != "ok" for r in rows)
    log.info("%d points (%d diverged); best: %s", len(rows), n_div, chosen)
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())

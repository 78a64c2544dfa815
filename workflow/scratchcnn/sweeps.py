"""The grid search: expand sweeps into points, summarise them, choose the best.

A point is a dict ``{"lr": float, "reg": float, "filters": int}``. A sweep
sweeps some of these and takes the others from its ``base`` sweep's best
point, or from the config's defaults.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from .provenance import shared_gpu_jobs

#: The hyperparameters a sweep can vary: each one's type and its (section, key) in the config.
#: Its name is also the flag of workflow/scripts/train.py and the column of the summaries.
_HYPERPARAMETER_SPEC = {
    "lr": (float, ("train", "lr")),
    "reg": (float, ("train", "reg")),
    "filters": (int, ("model", "filters")),
}
HYPERPARAMETERS = tuple(_HYPERPARAMETER_SPEC)
SUMMARY_COLUMNS = ["sweep", *HYPERPARAMETERS, "best_val_acc", "best_epoch", "epochs",
                   "seconds", "seconds_per_epoch", "status", "jobs_per_gpu"]  # fmt: skip


class SelectionError(RuntimeError):
    """No grid point can be chosen."""


def check_sweep_order(sweeps: dict) -> None:
    """Each ``base`` names an earlier sweep."""
    seen = []
    for name, spec in sweeps.items():
        base = spec.get("base")
        if base is not None and base not in seen:
            raise ValueError(
                f"sweep {name!r}: base {base!r} is not an earlier sweep (earlier: {', '.join(seen) or 'none'})"
            )
        if not any(h in spec for h in HYPERPARAMETERS):
            raise ValueError(f"sweep {name!r} sweeps nothing: give at least one of {', '.join(HYPERPARAMETERS)}")
        seen.append(name)


def plain_point(point: dict) -> dict:
    """The hyperparameters of ``point`` (other keys are dropped) as plain Python types
    (``json.dump`` refuses NumPy scalars; Snakemake wildcards are strings)."""
    return {h: kind(point[h]) for h, (kind, _) in _HYPERPARAMETER_SPEC.items()}


def default_point(config: dict) -> dict:
    """The point the config describes (a sweep takes from it what it does not vary)."""
    return {h: config[section][key] for h, (_, (section, key)) in _HYPERPARAMETER_SPEC.items()}


def expand(spec: dict, fixed: dict) -> list[dict]:
    """All points of one sweep: the product of its axes, the rest from ``fixed``."""
    axes = [h for h in HYPERPARAMETERS if h in spec]
    points = []
    for values in itertools.product(*(spec[h] for h in axes)):
        point = {h: fixed[h] for h in HYPERPARAMETERS}
        point.update(dict(zip(axes, values)))
        points.append(plain_point(point))
    return points


def summary_row(sweep: str, point: dict, metrics: dict) -> dict:
    return {
        "sweep": sweep,
        **plain_point(point),
        "best_val_acc": metrics.get("best_val_acc"),
        "best_epoch": metrics.get("best_epoch"),
        "epochs": metrics.get("epochs_run"),
        "seconds": metrics.get("seconds"),
        "seconds_per_epoch": metrics.get("seconds_per_epoch"),
        "status": metrics.get("status"),
        "jobs_per_gpu": shared_gpu_jobs(metrics),  # empty on the CPU
    }


def choose_best(rows: list[dict]) -> dict:
    """The row with the highest validation accuracy among points that did not diverge.

    Ties go to the earlier row, so the choice is stable.
    """
    if not rows:
        raise SelectionError("no grid points to choose from: the sweep summaries have no rows")
    usable = [r for r in rows if r["status"] == "ok" and r["best_val_acc"] is not None]
    if not usable:
        statuses = ", ".join(sorted({str(r["status"]) for r in rows})) or "no points"
        which = "the only point" if len(rows) == 1 else f"all {len(rows)} points"
        raise SelectionError(
            f"no grid point can be chosen: {which} ended without a usable result ({statuses}); "
            "lower the learning rates in the grid file (sweep.grid)"
        )
    return max(usable, key=lambda r: r["best_val_acc"])  # max keeps the first of equals


def shown_sweep(summary, vary):
    """The sweep a figure over the hyperparameters ``vary`` shows, and the report describes with it.

    ``summary`` is the sweep summary (a DataFrame). The sweep varying most of ``vary`` wins, then
    the one with the most distinct combinations of them, then the earlier one; ``None`` where no
    sweep varies any of them.
    """
    shown, shown_rank = None, (0, 0)
    for name, rows in summary.groupby("sweep", sort=False):
        rank = (sum(rows[h].nunique() > 1 for h in vary), len(rows[list(vary)].drop_duplicates()))
        if rank[0] and rank > shown_rank:
            shown, shown_rank = name, rank
    return shown


def finished(rows: pd.DataFrame) -> pd.Series:
    """Which summary rows the selection may choose: status ok and a finite validation accuracy."""
    acc = pd.to_numeric(rows["best_val_acc"], errors="coerce")
    return (rows["status"].astype(str) == "ok") & np.isfinite(acc)


def by_value(rows: pd.DataFrame, keys) -> pd.DataFrame:
    """Summary ``rows`` grouped by their values of the hyperparameters ``keys`` (as floats, in
    ascending order): each group's best validation accuracy among its finished points (NaN where
    none finished; ``diverged`` is then True), and the mean seconds per epoch of all its points
    (a diverged point's epochs took their time too). The figures and the report both read this.
    """
    keys = list(keys)
    table = rows[keys].astype(float).assign(
        best_val_acc=pd.to_numeric(rows["best_val_acc"], errors="coerce").where(finished(rows)),
        seconds_per_epoch=pd.to_numeric(rows["seconds_per_epoch"], errors="coerce"),
    )
    out = table.groupby(keys, sort=True).agg(best_val_acc=("best_val_acc", "max"),
                                             seconds_per_epoch=("seconds_per_epoch", "mean")).reset_index()
    out["diverged"] = out["best_val_acc"].isna()
    return out

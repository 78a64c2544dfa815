"""Facts derived from the results, as plain numbers: testable apart from any wording.

Nothing here formats text or reads files. :mod:`.context` turns these facts
into the pre-formatted strings the template prints.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import study
from ..architecture import layer_table  # noqa: F401  (a fact of the report too)
from ..data.classes import ANIMALS, VEHICLES
from ..sweeps import HYPERPARAMETERS, by_value, shown_sweep


#: Test accuracy of the study being reproduced (its abstract).
STUDY_TEST_ACCURACY = study.TEST_ACCURACY_ABSTRACT

#: Differences smaller than this many percentage points count as "equal".
EQUAL_PP = 0.05
#: Grid points tie, and costs are equal, only where they are equal up to float rounding.
TIE_PP = 1e-9
#: A relative change of the validation loss over the last epochs below this counts as flat.
FLAT_REL = 0.02
#: A training accuracy this many percentage points above the validation accuracy is overfitting.
OVERFIT_PP = 2.0
#: Epoch times within this fraction of each other count as the same cost.
COST_EQUAL_REL = 0.05
#: An accuracy less than this many percentage points above guessing (1 / classes) learned nothing
#: worth reading: a rising validation loss there is not overfitting, a falling one not progress.
CHANCE_PP = 5.0


def points_apart(a, b) -> float:
    """Fraction ``a`` minus fraction ``b`` in percentage points, rounded off float noise: 0.6125
    against 0.613 is -0.04999999999999449 points in floats, exactly 0.05 as printed; 0.70 against
    0.68 is 1.99999999999999, exactly 2."""
    return round(100.0 * (float(a) - float(b)), 12)


def compare(a, b, equal_pp=EQUAL_PP) -> str:
    """``"above"``, ``"below"`` or ``"equal"``: fraction ``a`` against fraction ``b``."""
    d = points_apart(a, b)
    if abs(d) < equal_pp:
        return "equal"
    return "above" if d > 0 else "below"


def val_loss_trend(history, window=None, flat_rel=FLAT_REL) -> dict:
    """How the validation loss behaves over the last ``window`` epochs.

    ``direction`` is ``rising``, ``falling``, ``flat`` (least-squares change over
    the window below ``flat_rel`` of its mean), ``short`` (fewer than 3 epochs)
    or ``nonfinite`` (the loss diverged).
    """
    vl = [float(v) for v in history["val_loss"]]
    ep = [int(e) for e in history["epoch"]]
    n = len(vl)
    if not all(math.isfinite(v) for v in vl):
        return {"direction": "nonfinite", "window": n}
    if n < 3:
        return {"direction": "short", "window": n}
    if window is None:
        window = max(3, min(10, n // 4))
    window = min(window, n)
    y = np.array(vl[-window:])
    x = np.arange(window, dtype=float)
    slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    change = slope * (window - 1)
    # relative to the fitted value at the start of the window (the mean when that is not positive)
    base = intercept if intercept > 0 else float(np.mean(y))
    rel = change / base
    direction = "flat" if abs(rel) < flat_rel else ("rising" if rel > 0 else "falling")
    i_min = int(np.argmin(vl))
    return {
        "direction": direction,
        "window": window,
        "first_epoch": ep[-window],
        "last_epoch": ep[-1],
        "first": vl[-window],
        "last": vl[-1],
        # the fitted line's ends: they agree with ``direction``, where the raw ends may not
        "fit_first": intercept,
        "fit_last": intercept + change,
        "rel_change": rel,
        "min_epoch": ep[i_min],
        "min": vl[i_min],
        "min_in_window": i_min >= n - window,
        "min_is_last": i_min == n - 1,
        # risen above an earlier minimum: a fit that ends at its lowest value has not
        "rose": direction == "rising" and i_min != n - 1,
    }


def near_chance(acc, num_classes: int) -> bool:
    """True where accuracy ``acc`` (a fraction) is less than :data:`CHANCE_PP` points above
    guessing among ``num_classes`` classes; a missing or non-finite accuracy is not."""
    return finite(acc) and points_apart(acc, 1.0 / num_classes) < CHANCE_PP


def fit_reading(train_acc, val_acc, trend: dict, status: str, learned: bool = True) -> str:
    """How the final run ended, for the report's shortcomings: ``diverged`` (it did not finish);
    ``chance`` (it finished without learning: ``learned`` False, its best validation accuracy
    :func:`near_chance`); ``overfit`` (the validation loss rose at the end above an earlier
    minimum, as :func:`val_loss_trend` reads it, or the training accuracy leads by
    :data:`OVERFIT_PP` points or more); ``underfit`` (the training accuracy does not lead, and the
    loss did not rise); else ``close`` (a small lead)."""
    if status != "ok":
        return "diverged"
    if not learned:
        return "chance"
    if trend.get("rose") or points_apart(train_acc, val_acc) >= OVERFIT_PP:
        return "overfit"
    return "underfit" if compare(train_acc, val_acc) != "above" else "close"


def class_extremes(per_class: list[dict], key="accuracy") -> dict:
    """The best and worst classes by ``key`` (all tied classes are listed); ``all_equal`` where
    every class has the same value (a perfect test set, say)."""
    vals = [float(r[key]) for r in per_class]
    hi, lo = max(vals), min(vals)
    return {
        "best": [r for r in per_class if float(r[key]) == hi],
        "worst": [r for r in per_class if float(r[key]) == lo],
        "best_value": hi,
        "worst_value": lo,
        "all_equal": hi == lo,
    }


def filter_cost(summary) -> dict | None:
    """Seconds per epoch and best validation accuracy per filter count.

    Uses the sweep the filters figure shows (``shown_sweep``), with the figure's numbers
    (``by_value``); ``None`` when no sweep varies the filter count. ``comparable`` is False
    where fewer than two filter counts have a finished point: then only ``sweep``, ``rows`` and
    ``n_finished`` are given. Otherwise ``low`` and ``high`` are the smallest and the largest
    filter count with a finished point, and each row's ``ratio`` is its time over the first row's.
    """
    if summary is None or len(summary) == 0 or "filters" not in summary:
        return None
    best_sweep = shown_sweep(summary, ("filters",))
    if best_sweep is None:
        return None
    table = by_value(summary[summary["sweep"] == best_sweep], ("filters",))
    rows = [{"filters": float(r.filters), "seconds_per_epoch": float(r.seconds_per_epoch),
             "best_val_acc": None if r.diverged else float(r.best_val_acc), "diverged": bool(r.diverged)}
            for r in table.itertuples()]  # fmt: skip
    base = rows[0]["seconds_per_epoch"]
    for r in rows:
        r["ratio"] = r["seconds_per_epoch"] / base if base > 0 else float("nan")
    done = [r for r in rows if not r["diverged"]]
    if len(done) < 2:
        return {"sweep": best_sweep, "rows": rows, "n_finished": len(done), "comparable": False}
    lo, hi = done[0], done[-1]
    per_filter = (hi["seconds_per_epoch"] - lo["seconds_per_epoch"]) / (hi["filters"] - lo["filters"])
    top = max(r["best_val_acc"] for r in done)
    return {
        "sweep": best_sweep,
        "rows": rows,
        "n_finished": len(done),
        "comparable": True,
        "low": lo,
        "high": hi,
        "ratio": hi["seconds_per_epoch"] / lo["seconds_per_epoch"] if lo["seconds_per_epoch"] > 0 else float("nan"),
        "per_filter_seconds": per_filter,
        # relative: 30.01 against 30.04 s is no cost, though the two differ
        "cost_direction": "equal" if abs(hi["seconds_per_epoch"] / lo["seconds_per_epoch"] - 1) < COST_EQUAL_REL
        else ("above" if hi["seconds_per_epoch"] > lo["seconds_per_epoch"] else "below"),
        "acc_direction": compare(hi["best_val_acc"], lo["best_val_acc"]),
        "best_acc_filters": [r["filters"] for r in done if compare(r["best_val_acc"], top, TIE_PP) == "equal"],
    }


def sharing(jobs) -> int | None:
    """``jobs`` (how many training jobs could share a GPU) where above 1, when a run's times
    include waiting for the others' kernels; None otherwise (one job, the CPU, not said)."""
    return int(jobs) if jobs is not None and jobs > 1 else None  # NaN > 1 is False


def shared_gpu_jobs(summary) -> int | None:
    """The most training jobs that could share a GPU while the grid points were timed (their
    ``jobs_per_gpu`` column), as :func:`sharing` reads it."""
    if summary is None or "jobs_per_gpu" not in summary:
        return None
    return sharing(pd.to_numeric(summary["jobs_per_gpu"], errors="coerce").max())


def sort_key(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def same_point(row, best, tol=1e-12) -> bool:
    """Whether summary row ``row`` is the grid point ``best`` (every hyperparameter equal)."""
    for key in HYPERPARAMETERS:
        a, b = float(row[key]), float(best[key])
        if abs(a - b) > tol * max(1.0, abs(a), abs(b)):
            return False
    return True


def selection(summary, best: dict) -> dict:
    """Where the chosen point stands among all grid points (ties and margins)."""
    ok = summary[summary["status"] == "ok"]
    is_chosen = summary.apply(lambda r: same_point(r, best), axis=1)
    others = ok[~is_chosen.loc[ok.index]] if len(ok) else ok
    chosen_acc = float(best["best_val_acc"])
    runner = None
    if len(others):
        r = others.loc[others["best_val_acc"].astype(float).idxmax()]
        runner = {"sweep": r["sweep"], "lr": r["lr"], "reg": r["reg"], "filters": r["filters"],
                  "best_val_acc": float(r["best_val_acc"])}  # fmt: skip
    max_acc = float(ok["best_val_acc"].max()) if len(ok) else chosen_acc
    return {
        "n_points": int(len(summary)),
        "n_unique": int(summary[list(HYPERPARAMETERS)].astype(str).drop_duplicates().shape[0]),
        # distinct points: a later sweep may repeat an earlier one's point (trained once)
        "n_ok": int(ok[list(HYPERPARAMETERS)].astype(float).drop_duplicates().shape[0]),
        "n_diverged": int((summary["status"] == "diverged").sum()),
        "is_max": chosen_acc >= max_acc - 1e-12,
        "runner_up": runner,
        "margin_pp": None if runner is None else 100.0 * (chosen_acc - runner["best_val_acc"]),
        "max_acc": max_acc,
    }


def finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def array_stats(arrays: dict) -> dict:
    """Shape, size, mean, std, min, max of each array (host NumPy arrays)."""
    out = {}
    for name, a in arrays.items():
        a = np.asarray(a, dtype=np.float64)
        out[name] = {"shape": list(a.shape), "size": int(a.size), "mean": float(a.mean()),
                     "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}  # fmt: skip
    return out


def group_means(per_class: list[dict]) -> dict | None:
    """Mean accuracy of the vehicle and the animal classes; None for other class sets."""
    names = [str(r["name"]) for r in per_class]
    if sorted(names) != sorted(VEHICLES + ANIMALS):
        return None

    def mean(group):
        return float(np.mean([float(r["accuracy"]) for r in per_class if r["name"] in group]))

    return {"vehicles": mean(VEHICLES), "animals": mean(ANIMALS)}


def first_layer_kernels(W1, flat_share=0.5, grey_share=0.5) -> dict:
    """Colour detectors against edge detectors among the first-layer kernels ``W1 (F, k, k, 3)``.

    Each kernel splits into its spatially constant part (the per-channel means:
    it responds to the colour of a patch) and the rest (spatial structure:
    edges and textures). A kernel whose constant part holds at least
    ``flat_share`` of its energy counts as a colour detector, else as an edge
    detector; an edge detector whose structure is the same in the three
    channels for at least ``grey_share`` of its energy is a luminance edge.
    """
    w = np.asarray(W1, dtype=np.float64)
    flat = w.mean(axis=(1, 2), keepdims=True)
    struct = w - flat
    energy = np.maximum((w * w).sum(axis=(1, 2, 3)), 1e-300)
    flat_frac = (flat * flat).sum(axis=(1, 2, 3)) * w.shape[1] * w.shape[2] / energy
    grey = struct.mean(axis=3, keepdims=True)
    struct_energy = np.maximum((struct * struct).sum(axis=(1, 2, 3)), 1e-300)
    grey_frac = (grey * grey).sum(axis=(1, 2, 3)) * w.shape[3] / struct_energy
    # how different the channels are, over the whole kernel
    chroma_frac = ((w - w.mean(axis=3, keepdims=True)) ** 2).sum(axis=(1, 2, 3)) / energy
    colour = flat_frac >= flat_share
    grey_edge = ~colour & (grey_frac >= grey_share)
    return {
        "n": int(len(w)),
        "n_colour": int(colour.sum()),
        "n_edge": int((~colour).sum()),
        "n_grey_edge": int(grey_edge.sum()),
        "mean_flat_share": float(flat_frac.mean()),
        "mean_chroma_share": float(chroma_frac.mean()),
        "flat_share": flat_share,
        "grey_share": grey_share,
    }


def full_batch_bytes(n_images: int, shape, itemsize: int = 4) -> int:
    """Bytes of one activation tensor of ``shape`` (per image) for ``n_images`` images."""
    return int(n_images) * int(np.prod(shape)) * int(itemsize)


def split_size(data_meta: dict, split: str) -> int | None:
    """Images in ``split`` (train, val, test) of the data file: its ``shapes``, else ``n_<split>``."""
    shapes = data_meta.get("shapes") or {}
    if f"x_{split}" in shapes:
        return int(shapes[f"x_{split}"][0])
    v = data_meta.get(f"n_{split}")
    return int(v) if v is not None else None


def training_images(data_meta: dict, final_metrics: dict) -> int | None:
    """How many training images updated the parameters: the split's training set, or its first
    ``train_subset`` where the final training's provenance sets one (train.train_subset; the
    sweeps ran with the same config)."""
    n_train = split_size(data_meta, "train")
    config = (final_metrics.get("provenance") or {}).get("config") or {}
    subset = int(config.get("train_subset") or 0)
    if n_train is None:
        return subset or None
    return min(subset, n_train) if subset else n_train


def headline_accuracy(test_metrics: dict) -> float:
    """The test accuracy the report leads with: the mean over the seeds where there are several
    runs (``test_metrics["seeds"]``), else the one model's."""
    return float((test_metrics.get("seeds") or {}).get("mean", test_metrics["test_accuracy"]))

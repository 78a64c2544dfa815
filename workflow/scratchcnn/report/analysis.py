"""The report's sections that analyse the results: the search, the classes, the figures and
parameters, the study beside ours, the method's numbers, the kernels and the seeds.

Each function turns facts (:mod:`.facts`) into the strings the template prints; no file I/O.
"""

from __future__ import annotations

import posixpath

import numpy as np

from ..figures.registry import FIGURES
from .. import study
from ..sweeps import HYPERPARAMETERS, by_value, shown_sweep
from . import facts
from .fmt import duration, integer, norm_value, pct, plain, ratio, seconds, shape, size, stat
from .latex import TexStr, tex_escape, tex_file, tex_path



# ---------------------------------------------------------------------------- sweeps and selection


def _point(row) -> dict:
    return {
        "sweep": tex_escape(row["sweep"]),
        "lr": plain(row["lr"]),
        "reg": plain(row["reg"]),
        "filters": tex_escape(norm_value(row["filters"])),
        "val_pct": pct(row["best_val_acc"]),
    }


def _sweeps_context(summary, best: dict) -> list[dict]:
    out = []
    for name, g in summary.groupby("sweep", sort=False):
        ok = g[g["status"] == "ok"]
        # ranked in the summary's order, which is the selection's: a tie goes to the earlier row,
        # as sweeps.choose_best (and so the sweep's best.json, which a later sweep builds on) decides
        top = ok.sort_values("best_val_acc", ascending=False, kind="stable") if len(ok) else ok
        g = g.copy()
        g["_key"] = [tuple(facts.sort_key(v) for v in values) for values in zip(*(g[h] for h in HYPERPARAMETERS))]
        g = g.sort_values("_key", kind="stable")  # the table's rows in the order of their values
        varying = [c for c in HYPERPARAMETERS if g[c].astype(str).nunique() > 1]
        rows = []
        for _, r in g.iterrows():
            status = str(r["status"])
            rows.append({
                "lr": plain(r["lr"]),
                "reg": plain(r["reg"]),
                "filters": tex_escape(norm_value(r["filters"])),
                "val_acc": pct(r["best_val_acc"]) if facts.finite(r["best_val_acc"]) else None,
                "best_epoch": str(int(r["best_epoch"])) if facts.finite(r["best_epoch"]) and r["best_epoch"] > 0 else None,
                "epochs": str(int(r["epochs"])),
                "seconds_per_epoch": seconds(r["seconds_per_epoch"]),
                "status": status,
                "status_tex": tex_escape(status),
                "chosen": str(r["sweep"]) == str(best.get("sweep", r["sweep"])) and facts.same_point(r, best),
            })  # fmt: skip
        entry = {
            "name": tex_escape(name),
            "raw_name": str(name),
            "varying": varying,
            "rows": rows,
            "n_points": str(len(g)),
            "n_diverged": str(int((g["status"] == "diverged").sum())),
            "best": _point(top.iloc[0]) if len(top) else None,
            "margin_pp": (
                pct(top["best_val_acc"].iloc[0] - top["best_val_acc"].iloc[1]) if len(top) > 1 else None
            ),
            "margin_kind": (
                facts.compare(top["best_val_acc"].iloc[0], top["best_val_acc"].iloc[1], facts.TIE_PP) if len(top) > 1 else None
            ),
            "spread_pp": (
                pct(top["best_val_acc"].iloc[0] - top["best_val_acc"].iloc[-1]) if len(top) > 1 else None
            ),
            "second": _point(top.iloc[1]) if len(top) > 1 else None,
            "worst": _point(top.iloc[-1]) if len(top) > 1 else None,
        }
        out.append(entry)
    return out


def chosen_context(summary, best: dict) -> dict:
    """The chosen point and where it stands among all grid points."""
    sel = facts.selection(summary, best)
    chosen = {
        "sweep": tex_escape(best.get("sweep", "?")),
        "lr": plain(best["lr"]),
        "reg": plain(best["reg"]),
        "filters": tex_escape(norm_value(best["filters"])),
        "val_pct": pct(best["best_val_acc"]),
        "path": tex_path(best["path"]) if best.get("path") else None,
        "is_max": sel["is_max"],
        "n_points": str(sel["n_points"]),
        "n_unique": str(sel["n_unique"]),
        "n_ok": str(sel["n_ok"]),
        "n_diverged": str(sel["n_diverged"]),
        "max_pct": pct(sel["max_acc"]),
        "runner_up": None,
        "margin_pp": None,
        "margin_kind": None,
    }
    if sel["runner_up"] is not None:
        chosen["runner_up"] = _point(sel["runner_up"])
        chosen["margin_pp"] = pct(abs(sel["margin_pp"]) / 100.0)
        chosen["margin_kind"] = facts.compare(float(best["best_val_acc"]), sel["runner_up"]["best_val_acc"], facts.TIE_PP)
    return chosen


def _per_filter(sec):
    """The cost of one more filter per epoch: milliseconds below one second, else seconds."""
    if sec is None or sec <= 0:
        return None
    return {"value": f"{1000 * sec:.1f}", "unit": "ms"} if sec < 1 else {"value": seconds(sec), "unit": "s"}


def filter_cost_context(summary) -> dict | None:
    fc = facts.filter_cost(summary)
    if fc is None:
        return None
    out = {
        "sweep": tex_escape(fc["sweep"]),
        "comparable": fc["comparable"],
        "n_finished": str(fc["n_finished"]),
        "filters": [tex_escape(norm_value(r["filters"])) for r in fc["rows"]],
        "rows": [{"filters": tex_escape(norm_value(r["filters"])), "seconds_per_epoch": seconds(r["seconds_per_epoch"]),
                  "ratio": ratio(r["ratio"]),
                  "val_pct": None if r["diverged"] else pct(r["best_val_acc"])} for r in fc["rows"]],  # fmt: skip
    }
    if not fc["comparable"]:
        return out
    lo, hi = fc["low"], fc["high"]
    return {
        **out,
        "low_filters": tex_escape(norm_value(lo["filters"])),
        "high_filters": tex_escape(norm_value(hi["filters"])),
        "low_seconds": seconds(lo["seconds_per_epoch"]),
        "high_seconds": seconds(hi["seconds_per_epoch"]),
        "ratio": ratio(fc["ratio"]),
        "per_filter": _per_filter(fc["per_filter_seconds"]),
        "cost_direction": fc["cost_direction"],
        "low_val_pct": pct(lo["best_val_acc"]),
        "high_val_pct": pct(hi["best_val_acc"]),
        "acc_direction": fc["acc_direction"],
        "acc_diff_pp": pct(abs(hi["best_val_acc"] - lo["best_val_acc"])),
        "best_acc_filters": [tex_escape(norm_value(f)) for f in fc["best_acc_filters"]],
    }


def heatmap_sweep(sweeps: list[dict], summary) -> dict | None:
    """The sweep the lr x L2 heat map shows, as its cells: the best and the worst cell with a
    finished point (each cell's value is its best point's, as the figure shows); None where no
    sweep varies either. ``best`` is the cell of the sweep's selected point (ties as the selection
    breaks them), None where no point finished; ``worst`` is None where only one cell did."""
    name = shown_sweep(summary, ("lr", "reg"))
    entry = next((s for s in sweeps if s["raw_name"] == str(name)), None) if name is not None else None
    if entry is None:
        return None
    cells = by_value(summary[summary["sweep"] == name], ("lr", "reg"))
    done = cells[~cells["diverged"]]

    def cell(c):
        return {"lr": plain(c["lr"]), "reg": plain(c["reg"]), "val_pct": pct(c["best_val_acc"])}

    best = entry["best"]  # the sweep's selected point: its cell's value is the cell's best
    worst = done.loc[done["best_val_acc"].idxmin()] if len(done) > 1 else None
    return {
        "name": entry["name"],
        "raw_name": entry["raw_name"],
        "best": best,
        "worst": None if worst is None else cell(worst),
        # every finished cell the same: no worst to name
        "all_equal": worst is not None
        and facts.compare(done["best_val_acc"].max(), worst["best_val_acc"], facts.TIE_PP) == "equal",
    }


# ---------------------------------------------------------------------------- per class


def _class_refs(rows: list[dict]) -> list[dict]:
    return [{"name": tex_escape(r["name"]), "raw_name": str(r["name"]), "acc_pct": pct(r["accuracy"]),
             "precision_pct": pct(r["precision"]), "recall_pct": pct(r["recall"])} for r in rows]  # fmt: skip


def _class_rows(per_class: list[dict], ext: dict) -> list[dict]:
    return [{
        "index": str(int(r["class"])),
        "name": tex_escape(r["name"]),
        "raw_name": str(r["name"]),
        "correct": integer(r["correct"]),
        "total": integer(r["total"]),
        "acc_pct": pct(r["accuracy"]),
        "precision_pct": pct(float(r["precision"])),
        "recall_pct": pct(float(r["recall"])),
        "f1_pct": pct(float(r["f1"])),
        # every class equal: none stands out
        "is_best": r in ext["best"] and not ext["all_equal"],
        "is_worst": r in ext["worst"] and not ext["all_equal"],
    } for r in per_class]  # fmt: skip


def _confusions(most_confused: list[dict], per_class: list[dict]) -> tuple[list[dict], list[dict]]:
    """The most confused pairs, and the pairs confused both ways."""
    totals = {int(r["class"]): int(r["total"]) for r in per_class}
    pairs = {(int(c["true"]), int(c["pred"])) for c in most_confused}
    confused, mutual, seen = [], [], set()
    for c in most_confused:
        t, p = int(c["true"]), int(c["pred"])
        confused.append({
            "true_name": tex_escape(c["true_name"]),
            "pred_name": tex_escape(c["pred_name"]),
            "raw_true": str(c["true_name"]),
            "raw_pred": str(c["pred_name"]),
            "count": integer(c["count"]),
            "share_pct": pct(int(c["count"]) / totals[t], 1) if totals.get(t) else None,
            "mutual": (p, t) in pairs,
        })  # fmt: skip
    for c in most_confused:
        t, p = int(c["true"]), int(c["pred"])
        if (p, t) in pairs and frozenset((t, p)) not in seen:
            seen.add(frozenset((t, p)))
            mutual.append({"a": tex_escape(c["true_name"]), "b": tex_escape(c["pred_name"]),
                           "raw_a": str(c["true_name"]), "raw_b": str(c["pred_name"])})  # fmt: skip
    return confused, mutual


def _groups_context(per_class: list[dict]) -> dict | None:
    g = facts.group_means(per_class)
    if g is None:
        return None
    v, a = g["vehicles"], g["animals"]
    return {"vehicles": pct(v), "animals": pct(a), "higher": facts.compare(v, a), "diff_pp": pct(abs(v - a))}


def classes_context(test_metrics: dict) -> dict:
    per_class, acc = list(test_metrics["per_class"]), float(test_metrics["test_accuracy"])
    most_confused = test_metrics.get("most_confused", [])
    ext, ext_p = facts.class_extremes(per_class, "accuracy"), facts.class_extremes(per_class, "precision")
    accs = [float(r["accuracy"]) for r in per_class]
    confused, mutual = _confusions(most_confused, per_class)
    errors = int(test_metrics["n_test"]) - sum(int(r["correct"]) for r in per_class)
    # a class no image was predicted as has precision 0 by convention, not "the most wrong predictions"
    predicted = np.asarray(test_metrics["confusion"]).sum(axis=0)
    never = [r for r in per_class if predicted[int(r["class"])] == 0]
    top_share = sum(int(c["count"]) for c in most_confused) / errors if errors else 0.0
    return {
        "rows": _class_rows(per_class, ext),
        "best": _class_refs(ext["best"]),
        "worst": _class_refs(ext["worst"]),
        "all_equal": ext["all_equal"],
        "precision_all_equal": ext_p["all_equal"],
        "best_pct": pct(ext["best_value"]),
        "worst_pct": pct(ext["worst_value"]),
        "spread_pp": pct(ext["best_value"] - ext["worst_value"]),
        "mean_pct": pct(float(np.mean(accs))),
        "n_above": str(sum(a_ > acc for a_ in accs)),
        "n_classes": str(len(per_class)),
        "lowest_precision": _class_refs(ext_p["worst"]),
        "never_predicted": _class_refs(never),
        "highest_precision": _class_refs(ext_p["best"]),
        "groups": _groups_context(per_class),
        "confused": confused,
        "mutual": mutual,
        "errors": integer(errors),
        "no_errors": errors == 0,
        "top_confused_share_pct": pct(top_share, 1),
    }


# ---------------------------------------------------------------------------- figures and parameters


def figures_context(figures_dir: str) -> dict:
    """Each registered figure's PDF path as LaTeX sees it, and its caption (LaTeX, from the registry)."""
    folder = str(figures_dir).replace("\\", "/")
    return {
        name: {"path": tex_file(posixpath.join(folder, f"{name}.pdf")), "caption": TexStr(spec.caption["zh"])}
        for name, spec in FIGURES.items()
    }


def _param_stats_context(param_stats) -> list[dict] | None:
    if not param_stats:
        return None
    rows = []
    for name, s in param_stats.items():
        rows.append({
            "name": tex_escape(name),
            "shape": shape(s["shape"]),
            "size": integer(s["size"]),
            "mean": stat(s["mean"]),
            "std": stat(s["std"]),
            "min": stat(s["min"]),
            "max": stat(s["max"]),
        })  # fmt: skip
    return rows


# ---------------------------------------------------------------------------- the study, the method, the kernels


def _our_seconds(summary, filters: int):
    rows = summary[(summary["filters"].astype(float) == filters) & (summary["status"] == "ok")]
    return float(rows["seconds_per_epoch"].mean()) if len(rows) else None


def study_context(summary, test_acc: float) -> dict:
    """The study's stated numbers beside ours (:mod:`scratchcnn.study`); ``test_acc`` is our headline."""
    speed = []
    for filters, theirs in sorted(study.SECONDS_PER_EPOCH.items()):
        ours = _our_seconds(summary, filters)
        speed.append({"filters": str(filters), "study": duration(theirs),
                      "ours": duration(ours) if ours is not None else None})  # fmt: skip
    oom = []
    for filters in study.OUT_OF_MEMORY_FILTERS:
        ours = _our_seconds(summary, filters)
        oom.append({"filters": str(filters), "ours": duration(ours) if ours is not None else None})
    return {
        "abstract_pct": pct(study.TEST_ACCURACY_ABSTRACT, 1),
        "section7_pct": pct(study.TEST_ACCURACY_SECTION_7, 1),
        "ours_pct": pct(test_acc),
        "chosen_lr": plain(study.CHOSEN["lr"]),
        "chosen_reg": plain(study.CHOSEN["reg"]),
        "speed": speed,
        "oom": oom,
        "gpu_memory_gb": str(study.GPU_MEMORY_GB),
    }


def method_context(n_train: int | None, layers: list[dict], hp: dict, summary) -> dict:
    """Numbers for the method sections: mini-batch against full batch, sweep length against the final run.

    ``n_train``: the training images that updated the parameters (:func:`.facts.training_images`);
    ``layers``: :func:`.facts.layer_table` of the network.
    """
    n_train = n_train or 0
    batch = int(hp["batch_size"])
    conv1 = next(tuple(r["output"]) for r in layers if r["name"] == "conv1")
    sweep_epochs = int(summary["epochs"].max()) if len(summary) else None
    return {
        "n_train": integer(n_train),
        "updates_per_epoch": integer(-(-int(n_train) // batch)) if n_train else None,
        "conv1_shape": shape(conv1),
        "full_batch": size(facts.full_batch_bytes(n_train, conv1)),
        # a batch holds at most the whole training set
        "batch": size(facts.full_batch_bytes(min(batch, n_train) if n_train else batch, conv1)),
        "sweep_epochs": str(sweep_epochs) if sweep_epochs else None,
        "sweep_same_length": sweep_epochs is not None and hp.get("epochs") is not None
        and sweep_epochs == int(hp["epochs"]),
        "sweep_longer": sweep_epochs is not None and hp.get("epochs") is not None and sweep_epochs > int(hp["epochs"]),
    }


def kernels_context(W1) -> dict | None:
    """The reading of the first-layer kernels, from :func:`.facts.first_layer_kernels`."""
    if W1 is None:
        return None
    k = facts.first_layer_kernels(W1)
    return {
        "n": str(k["n"]),
        "n_colour": str(k["n_colour"]),
        "n_edge": str(k["n_edge"]),
        "n_grey_edge": str(k["n_grey_edge"]),
        "mean_flat_pct": pct(k["mean_flat_share"], 1),
        "mean_chroma_pct": pct(k["mean_chroma_share"], 1),
        "flat_share_pct": pct(k["flat_share"], 0),
        "grey_share_pct": pct(k["grey_share"], 0),
        "mostly": "colour" if k["n_colour"] > k["n_edge"] else "edge" if k["n_edge"] > k["n_colour"] else "equal",
    }


def seeds_context(seeds: dict | None) -> dict | None:
    """The final training over several seeds: mean, spread, each seed's value, the one shown."""
    if not seeds:
        return None
    runs = sorted(seeds["runs"], key=lambda r: int(r["seed"]))
    return {
        "n": str(int(seeds["n"])),
        "several": int(seeds["n"]) > 1,
        "mean_pct": pct(seeds["mean"]),
        "std_pp": pct(seeds["std"]) if seeds.get("std") is not None else None,
        "min_pct": pct(seeds["min"]),
        "max_pct": pct(seeds["max"]),
        "shown": str(int(seeds["shown"])),
        # the seed whose run is the chosen grid point's own: its validation accuracy is the one selected
        "grid_run": next((str(int(r["seed"])) for r in runs if r.get("reused_from")), None),
        "diverged": "、".join(str(int(r["seed"])) for r in runs if r.get("status") == "diverged"),
        "runs": [{"seed": str(int(r["seed"])), "acc_pct": pct(r["test_accuracy"]),
                  # a seed that diverged in its first epoch has no best epoch
                  "val_pct": pct(r["best_val_acc"]) if r.get("best_val_acc") is not None else "--",
                  "best_epoch": str(int(r["best_epoch"])) if r.get("best_val_acc") is not None else "--",
                  "shown": int(r["seed"]) == int(seeds["shown"])}
                 for r in runs],  # fmt: skip
    }

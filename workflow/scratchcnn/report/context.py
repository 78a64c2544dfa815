"""The template's context, one function per report section: facts in, formatted strings out.

:func:`build_context` turns the results files (already parsed by the caller)
into a dict of pre-formatted strings and computed facts; :func:`.latex.render`
fills ``report/report.tex.j2`` with it. The wording lives in the template, the
numbers in :mod:`.facts`; here they meet. No file I/O.
"""

from __future__ import annotations

import math
import posixpath
from pathlib import Path

import numpy as np

from ..figures.registry import FIGURES
from ..figures.style import t as label
from .. import study
from ..data.download import OFFICIAL_MD5
from ..sweeps import HYPERPARAMETERS
from . import facts
from .fmt import duration, fixed, integer, loss, norm_value, pct, plain, ratio, seconds, shape, stat
from .latex import TexStr, tex_escape, tex_file, tex_path


# ---------------------------------------------------------------------------- headline and environment


def test_context(test_metrics: dict, study_accuracy: float) -> dict:
    """The shown model's test results; the comparison with the study uses the mean over the seeds."""
    acc = float(test_metrics["test_accuracy"])
    headline = float((test_metrics.get("seeds") or {}).get("mean", acc))
    per_class = test_metrics["per_class"]
    tp = test_metrics.get("throughput") or {}
    ckpt = test_metrics.get("checkpoint") or {}
    return {
        "acc": fixed(acc, 4),
        "acc_pct": pct(acc),
        "loss": fixed(test_metrics["test_loss"], 4),
        "n": integer(test_metrics["n_test"]),
        "correct": integer(sum(int(r["correct"]) for r in per_class)),
        "vs_study": facts.compare(headline, study_accuracy),
        "diff_pp": pct(abs(headline - study_accuracy)),
        "study_pct": pct(study_accuracy, 1),
        "images_per_second": integer(tp["images_per_second"]) if tp.get("images_per_second") else None,
        "throughput_backend": tex_escape(tp.get("backend", "?")),
        "throughput_device": tex_escape(tp.get("device", "?")),
        "checkpoint_path": tex_path(ckpt["path"]) if ckpt.get("path") else None,
        "checkpoint_epoch": str(int(ckpt["epoch"])) if ckpt.get("epoch") is not None else None,
        "checkpoint_val_pct": pct(ckpt["val_acc"]) if ckpt.get("val_acc") is not None else None,
    }


def _env_context(prov: dict) -> dict:
    versions = prov.get("versions") or {}
    commit = prov.get("git_commit")
    return {
        "backend": tex_escape(prov.get("backend", "?")),
        "device": tex_escape(prov.get("device", "?")),
        "python": tex_escape(versions.get("python", "?")),
        "numpy": tex_escape(versions.get("numpy", "?")),
        "cupy": tex_escape(versions["cupy"]) if versions.get("cupy") else None,
        "snakemake": tex_escape(versions["snakemake"]) if versions.get("snakemake") else None,
        "scratchcnn": tex_escape(versions["scratchcnn"]) if versions.get("scratchcnn") else None,
        "git_commit": tex_escape(commit) if commit else None,
        "created": tex_escape(prov.get("created", "?")),
        "created_date": tex_escape(str(prov.get("created", "?"))[:10]),
    }


def environments_context(final_metrics: dict, test_metrics: dict) -> dict:
    """The training run's and the evaluation's environments, and whether they match."""
    prov = final_metrics.get("provenance") or {}
    train_env = _env_context(prov)
    train_env["backend"] = tex_escape(final_metrics.get("backend") or prov.get("backend", "?"))
    train_env["device"] = tex_escape(final_metrics.get("device") or prov.get("device", "?"))
    eval_env = _env_context(test_metrics.get("provenance") or {})
    same = str(train_env["device"]) == str(eval_env["device"]) and str(train_env["backend"]) == str(eval_env["backend"])
    return {"train": train_env, "eval": eval_env, "same_device": same}


# ---------------------------------------------------------------------------- data and architecture


def is_synthetic(data_meta: dict) -> bool:
    """Whether the data came from the synthetic demo archive (render_report.py --synthetic sets it)."""
    return bool(data_meta.get("synthetic", False))


def data_context(data_meta: dict, test_metrics: dict, synthetic: bool) -> dict:
    """``data_meta``: the data file's ``meta_json`` with ``shapes`` and ``class_names`` added."""
    shapes = data_meta.get("shapes") or {}

    def size(split):
        if f"x_{split}" in shapes:
            return int(shapes[f"x_{split}"][0])
        v = data_meta.get(f"n_{split}")
        return int(v) if v is not None else None

    n_train, n_val, n_test = size("train"), size("val"), size("test")
    if n_test is None:
        n_test = int(test_metrics["n_test"])
    img = shapes.get("x_train") or shapes.get("x_test") or [None, 32, 32, 3]
    std = data_meta.get("standardize")
    seed, md5, archive = data_meta.get("split_seed"), data_meta.get("archive_md5"), data_meta.get("archive")
    names = data_meta.get("class_names") or test_metrics["class_names"]
    return {
        "archive": tex_escape(Path(str(archive)).name) if archive else None,
        "n_train": integer(n_train) if n_train is not None else None,
        "n_val": integer(n_val) if n_val is not None else None,
        "n_test": integer(n_test),
        "n_train_total": integer(n_train + n_val) if None not in (n_train, n_val) else None,
        "height": str(int(img[1])),
        "width": str(int(img[2])),
        "channels": str(int(img[3])),
        "flat": str(int(img[1]) * int(img[2]) * int(img[3])),
        "num_classes": str(len(names)),
        "class_names": [tex_escape(n) for n in names],
        "seed": str(int(seed)) if seed is not None else None,
        "synthetic": synthetic,
        "md5": tex_escape(md5) if md5 else None,
        # a copy in the official format that is not the official file (a stand-in) must say so
        "official": None if not md5 else md5 == OFFICIAL_MD5,
        "official_md5": tex_escape(OFFICIAL_MD5),
        "standardize": None if not std else {
            "mean": [fixed(v, 4) for v in std["mean"]],
            "std": [fixed(v, 4) for v in std["std"]],
        },
    }  # fmt: skip


def layers_context(layers: list[dict]) -> list[dict]:
    """The rows of the layer table (:func:`.facts.layer_table`), formatted."""
    return [{
        "name": tex_escape(r["name"]),
        "kind": r["kind"],
        "kind_name": tex_escape(label("kind_" + r["kind"], "zh")),
        "input": shape(r["input"]),
        "output": shape(r["output"]),
        "input_h": str(r["input"][0]),
        "output_h": str(r["output"][0]),
        "params": integer(r["params"]),
        "buffers": integer(r["buffers"]),
        "kernel": str(r["kernel"]) if "kernel" in r else None,
        "stride": str(r["stride"]) if "stride" in r else None,
        "padding": str(r["padding"]) if "padding" in r else None,
    } for r in layers]  # fmt: skip


def arch_context(arch: dict, layers: list[dict]) -> dict:
    total = sum(r["params"] for r in layers)
    by_name = {r["name"]: r for r in layers}
    return {
        "f1": str(int(arch["filters1"])),
        "f2": str(int(arch["filters2"])),
        "k": str(int(arch["kernel_size"])),
        "p1": str(int(arch["padding1"])),
        "p2": str(int(arch["padding2"])),
        "stride": str(int(arch.get("stride", 1))),
        "pool": str(int(arch["pool_size"])),
        "pool_stride": str(int(arch["pool_stride"])),
        "bn_eps": np.format_float_positional(float(arch["bn_eps"]), trim="-"),
        "num_classes": str(int(arch["num_classes"])),
        "h2": str(by_name["pool2"]["output"][0]),
        "w2": str(by_name["pool2"]["output"][1]),
        "d": integer(by_name["fc"]["input"][0]),
        "d_raw": str(by_name["fc"]["input"][0]),
        "conv1_out": shape(by_name["conv1"]["output"]),
        "pool1_out": shape(by_name["pool1"]["output"]),
        "conv2_out": shape(by_name["conv2"]["output"]),
        "pool2_out": shape(by_name["pool2"]["output"]),
        "total_params": integer(total),
        "total_buffers": integer(sum(r["buffers"] for r in layers)),
        "fc_share_pct": pct(by_name["fc"]["params"] / total, 1),
        "fc_params": integer(by_name["fc"]["params"]),
        "conv_params": integer(by_name["conv1"]["params"] + by_name["conv2"]["params"]),
    }


# ---------------------------------------------------------------------------- the final training


def _hp_context(hp: dict) -> dict:
    def opt(key, fmt=plain):
        return fmt(hp[key]) if hp.get(key) is not None else None

    return {
        "lr": plain(hp["lr"]),
        "reg": plain(hp["reg"]),
        "filters": tex_escape(norm_value(hp["filters"])),
        "batch_size": plain(hp["batch_size"]),
        "epochs": plain(hp["epochs"]),
        "lr_decay": plain(hp["lr_decay"]),
        "lr_step": plain(hp["lr_step"]),
        "clip": opt("clip"),
        "seed": opt("seed"),
        "bn_momentum": opt("bn_momentum"),
    }


def train_context(final_metrics: dict, history, hp: dict, test_acc: float) -> dict:
    """The final run: ``history`` sorted by epoch, ``hp`` its hyperparameters."""
    h, last = history, history.iloc[-1]
    best_epoch = int(final_metrics["best_epoch"])
    best_val = float(final_metrics["best_val_acc"])
    epochs_run = int(final_metrics.get("epochs_run", len(h)))
    total = final_metrics.get("seconds", h["seconds"].sum())
    return {
        "status": str(final_metrics.get("status", "ok")),
        "status_tex": tex_escape(final_metrics.get("status", "ok")),
        "epochs_run": str(epochs_run),
        "epochs_planned": str(int(final_metrics.get("epochs_planned", hp.get("epochs", len(h))))),
        "stopped_early": epochs_run < int(final_metrics.get("epochs_planned", len(h))),
        "best_epoch": str(best_epoch),
        "best_is_last": best_epoch == int(last["epoch"]),
        "best_val_pct": pct(best_val),
        "seconds_total": seconds(total),
        "duration": duration(total),
        "seconds_per_epoch": seconds(final_metrics.get("seconds_per_epoch", h["seconds"].mean())),
        "last_train_pct": pct(last["train_acc"]),
        "last_val_pct": pct(last["val_acc"]),
        "last_train_loss": loss(last["train_loss"]),
        "last_val_loss": loss(last["val_loss"]),
        "gap_pp": pct(float(last["train_acc"]) - float(last["val_acc"])),
        "gap_sign": facts.compare(last["train_acc"], last["val_acc"]),
        "first_val_pct": pct(h.iloc[0]["val_acc"]),
        "lr_first": plain(h.iloc[0]["lr"]),
        "lr_last": plain(last["lr"]),
        "n_lr_values": str(h["lr"].nunique()),
        "test_vs_val": facts.compare(test_acc, best_val),
        "test_val_diff_pp": pct(abs(test_acc - best_val)),
    }


def val_loss_context(history) -> dict:
    trend = facts.val_loss_trend(history)
    vl = {"direction": trend["direction"], "window": str(trend["window"])}
    if trend["direction"] not in ("short", "nonfinite"):
        vl.update({
            "first_epoch": str(trend["first_epoch"]),
            "last_epoch": str(trend["last_epoch"]),
            "first": fixed(trend["first"], 4),
            "last": fixed(trend["last"], 4),
            "change_pct": pct(abs(trend["rel_change"]), 1),
            "min_epoch": str(trend["min_epoch"]),
            "min": fixed(trend["min"], 4),
            "min_in_window": trend["min_in_window"],
        })  # fmt: skip
    return vl


def _history_rows(history, best_epoch, max_rows=14) -> list[dict]:
    n = len(history)
    if n <= max_rows:
        keep = set(range(n))
    else:
        stride = math.ceil(n / (max_rows - 2))
        keep = set(range(0, n, stride)) | {n - 1}
        keep |= {i for i in range(n) if int(history["epoch"].iloc[i]) == int(best_epoch)}
    rows = []
    for i in sorted(keep):
        r = history.iloc[i]
        rows.append({
            "epoch": str(int(r["epoch"])),
            "lr": plain(r["lr"]),
            "train_loss": loss(r["train_loss"]),
            # the training loss's parts (histories written before they were recorded lack them)
            "train_ce": loss(r["train_ce"]) if "train_ce" in r and facts.finite(r["train_ce"]) else None,
            "train_l2": loss(r["train_l2"]) if "train_l2" in r and facts.finite(r["train_l2"]) else None,
            "train_acc": pct(r["train_acc"]),
            "val_loss": loss(r["val_loss"]),
            "val_acc": pct(r["val_acc"]),
            "seconds": seconds(r["seconds"]),
            "is_best": int(r["epoch"]) == int(best_epoch),
        })  # fmt: skip
    return rows


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
        g = g.copy()
        g["_key"] = [tuple(facts.sort_key(v) for v in values) for values in zip(*(g[h] for h in HYPERPARAMETERS))]
        g = g.sort_values("_key", kind="stable")
        ok = g[g["status"] == "ok"]
        top = ok.sort_values("best_val_acc", ascending=False, kind="stable") if len(ok) else ok
        best_idx = top.index[0] if len(top) else None
        varying = [c for c in HYPERPARAMETERS if g[c].astype(str).nunique() > 1]
        rows = []
        for idx, r in g.iterrows():
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
                "sweep_best": idx == best_idx,
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
        chosen["margin_kind"] = facts.compare(float(best["best_val_acc"]), sel["runner_up"]["best_val_acc"], 1e-9)
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
    lo, hi = fc["low"], fc["high"]
    return {
        "sweep": tex_escape(fc["sweep"]),
        "rows": [{"filters": tex_escape(norm_value(r["filters"])), "seconds_per_epoch": seconds(r["seconds_per_epoch"]),
                  "ratio": ratio(r["ratio"]), "val_pct": pct(r["best_val_acc"])} for r in fc["rows"]],  # fmt: skip
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
        "best_acc_filters": tex_escape(norm_value(fc["best_acc_filters"])),
    }


def heatmap_sweep(sweeps: list[dict]) -> dict | None:
    """The sweep the lr x L2 heat map shows: one varying both, else one varying either."""
    both = next((s for s in sweeps if {"lr", "reg"} <= set(s["varying"])), None)
    return both or next((s for s in sweeps if {"lr", "reg"} & set(s["varying"])), None)


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
        "is_best": r in ext["best"],
        "is_worst": r in ext["worst"],
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
    top_share = sum(int(c["count"]) for c in most_confused) / errors if errors else 0.0
    return {
        "rows": _class_rows(per_class, ext),
        "best": _class_refs(ext["best"]),
        "worst": _class_refs(ext["worst"]),
        "best_pct": pct(ext["best_value"]),
        "worst_pct": pct(ext["worst_value"]),
        "spread_pp": pct(ext["best_value"] - ext["worst_value"]),
        "mean_pct": pct(float(np.mean(accs))),
        "n_above": str(sum(a_ > acc for a_ in accs)),
        "n_classes": str(len(per_class)),
        "lowest_precision": _class_refs(ext_p["worst"]),
        "highest_precision": _class_refs(ext_p["best"]),
        "groups": _groups_context(per_class),
        "confused": confused,
        "mutual": mutual,
        "errors": integer(errors),
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


def study_context(summary, test_acc: float, hp: dict, final_metrics: dict) -> dict:
    """The study's stated numbers beside ours (:mod:`scratchcnn.study`)."""
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
        "vs_abstract": facts.compare(test_acc, study.TEST_ACCURACY_ABSTRACT),
        "vs_section7": facts.compare(test_acc, study.TEST_ACCURACY_SECTION_7),
        "chosen_lr": plain(study.CHOSEN["lr"]),
        "chosen_reg": plain(study.CHOSEN["reg"]),
        "speed": speed,
        "oom": oom,
        "gpu_memory_gb": str(study.GPU_MEMORY_GB),
        "device": tex_escape(final_metrics.get("device") or "?"),
        "lr_decay": plain(hp["lr_decay"]),
    }


def method_context(data_meta: dict, arch: dict, hp: dict, summary) -> dict:
    """Numbers for the method sections: mini-batch against full batch, sweep length against the final run."""
    n_train = (data_meta.get("shapes") or {}).get("x_train", [data_meta.get("n_train") or 0])[0]
    batch = int(hp["batch_size"])
    conv1 = cnn_layer_output(arch, "conv1")
    sweep_epochs = int(summary["epochs"].max()) if len(summary) else None
    return {
        "n_train": integer(n_train),
        "updates_per_epoch": integer(-(-int(n_train) // batch)) if n_train else None,
        "conv1_shape": shape(conv1),
        "full_batch_gb": f"{facts.full_batch_bytes(n_train, conv1) / 1e9:.1f}",
        "batch_mb": f"{facts.full_batch_bytes(batch, conv1) / 1e6:.1f}",
        "sweep_epochs": str(sweep_epochs) if sweep_epochs else None,
        "sweep_same_length": sweep_epochs is not None and hp.get("epochs") is not None
        and sweep_epochs == int(hp["epochs"]),
    }


def cnn_layer_output(arch: dict, name: str) -> tuple:
    return next(tuple(r["output"]) for r in facts.layer_table(arch) if r["name"] == name)


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
        "runs": [{"seed": str(int(r["seed"])), "acc_pct": pct(r["test_accuracy"]), "val_pct": pct(r["best_val_acc"]),
                  "best_epoch": str(int(r["best_epoch"])), "shown": int(r["seed"]) == int(seeds["shown"])}
                 for r in runs],  # fmt: skip
    }


# ---------------------------------------------------------------------------- the whole report


def build_context(
    test_metrics: dict,
    summary,
    history,
    best: dict,
    data_meta: dict,
    arch: dict,
    final_metrics: dict,
    figures_dir: str,
    *,
    param_stats: dict | None = None,
    first_layer: "np.ndarray | None" = None,
    study_accuracy: float = facts.STUDY_TEST_ACCURACY,
) -> dict:
    """Everything the template needs, as pre-formatted strings and computed facts.

    ``summary`` and ``history`` are DataFrames of ``results/sweep/summary.csv`` and
    ``results/final/history.csv``; ``data_meta`` is the ``meta_json`` of the data
    file, optionally with ``shapes`` (array name -> shape) and ``class_names``;
    ``arch`` is the checkpoint's ``arch_json``; ``figures_dir`` is the figures
    folder as the LaTeX run will see it (relative to the folder of the .tex);
    ``param_stats`` is optional (:func:`.facts.array_stats` of the checkpoint arrays),
    and so is ``first_layer``, the checkpoint's ``W1`` (for the reading of its kernels).
    """
    layers = facts.layer_table(arch)
    hp = final_metrics.get("hyperparameters") or test_metrics.get("hyperparameters") or {}
    h = history.sort_values("epoch")
    best_epoch = int(final_metrics["best_epoch"])
    sweeps = _sweeps_context(summary, best)
    history_rows = _history_rows(h, best_epoch)
    train = train_context(final_metrics, h, hp, float(test_metrics["test_accuracy"]))
    train["n_rows_shown"] = str(len(history_rows))
    return {
        "test": test_context(test_metrics, study_accuracy),
        "env": environments_context(final_metrics, test_metrics),
        "data": data_context(data_meta, test_metrics, is_synthetic(data_meta)),
        "arch": arch_context(arch, layers),
        "layers": layers_context(layers),
        "hp": _hp_context(hp),
        "train": train,
        "val_loss": val_loss_context(h),
        "history_rows": history_rows,
        "n_history": str(len(h)),
        "sweeps": sweeps,
        "heatmap_sweep": heatmap_sweep(sweeps),
        "chosen": chosen_context(summary, best),
        "filter_cost": filter_cost_context(summary),
        "classes": classes_context(test_metrics),
        "figures": figures_context(figures_dir),
        "param_stats": _param_stats_context(param_stats),
        "study": study_context(summary, float((test_metrics.get("seeds") or test_metrics).get("mean", test_metrics["test_accuracy"])), hp, final_metrics),
        "method": method_context(data_meta, arch, hp, summary),
        "kernels": kernels_context(first_layer),
        "seeds": seeds_context(test_metrics.get("seeds")),
    }

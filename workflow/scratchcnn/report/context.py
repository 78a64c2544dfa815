"""The template's context: :func:`build_context`, and the sections on the setting and the final run.

One function per report section: facts in, formatted strings out (the sections that analyse the
results are in :mod:`.analysis`).

:func:`build_context` turns the results files (already parsed by the caller)
into a dict of pre-formatted strings and computed facts; :func:`.latex.render`
fills ``report/report.tex.j2`` with it. The wording lives in the template, the
numbers in :mod:`.facts`; here they meet. No file I/O.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..backend import display_name
from ..provenance import shared_gpu_jobs
from ..figures.style import t as label
from ..data.download import OFFICIAL_MD5
from . import facts
from .fmt import cuda_version, duration, fixed, integer, loss, norm_value, pct, plain, seconds, shape
from .latex import tex_escape, tex_path
from .analysis import (
    _param_stats_context,
    _sweeps_context,
    chosen_context,
    classes_context,
    figures_context,
    filter_cost_context,
    heatmap_sweep,
    kernels_context,
    method_context,
    seeds_context,
    study_context,
)


# ---------------------------------------------------------------------------- headline and environment


def test_context(test_metrics: dict, study_accuracy: float, headline: float) -> dict:
    """The shown model's test results; the comparison with the study uses ``headline``
    (:func:`.facts.headline_accuracy`)."""
    acc = float(test_metrics["test_accuracy"])
    per_class = test_metrics["per_class"]
    tp = test_metrics.get("throughput") or {}
    ckpt = test_metrics.get("checkpoint") or {}
    return {
        "acc": fixed(acc, 4),
        "acc_pct": pct(acc),
        # null in test_metrics.json where the parameters diverged
        "loss": fixed(test_metrics["test_loss"], 4) if facts.finite(test_metrics["test_loss"]) else None,
        "n": integer(test_metrics["n_test"]),
        "correct": integer(sum(int(r["correct"]) for r in per_class)),
        "vs_study": facts.compare(headline, study_accuracy),
        "diff_pp": pct(abs(headline - study_accuracy)),
        "study_pct": pct(study_accuracy, 1),
        "equal_pp": plain(facts.EQUAL_PP),  # what vs_study's "equal" means, in the words
        "images_per_second": integer(tp["images_per_second"]) if tp.get("images_per_second") else None,
        "throughput_backend": tex_escape(display_name(tp.get("backend", "?"))),
        "throughput_device": tex_escape(tp.get("device", "?")),
        "checkpoint_path": tex_path(ckpt["path"]) if ckpt.get("path") else None,
        "checkpoint_epoch": str(int(ckpt["epoch"])) if ckpt.get("epoch") is not None else None,
        "checkpoint_val_pct": pct(ckpt["val_acc"]) if ckpt.get("val_acc") is not None else None,
    }


def _env_context(prov: dict) -> dict:
    versions = prov.get("versions") or {}
    commit = prov.get("git_commit")
    return {
        "backend": tex_escape(display_name(prov.get("backend", "?"))),
        "device": tex_escape(prov.get("device", "?")),
        "python": tex_escape(versions.get("python", "?")),
        "numpy": tex_escape(versions.get("numpy", "?")),
        "blas": tex_escape(versions["blas"]) if versions.get("blas") else None,
        # BLAS splits its sums by thread count: on the CPU the count moves the rounding
        "threads": str(int(t)) if isinstance(t := (prov.get("settings") or {}).get("threads"), int) else None,
        "cupy": tex_escape(versions["cupy"]) if versions.get("cupy") else None,
        "cuda": cuda_version(versions.get("cuda_runtime")),
        "snakemake": tex_escape(versions["snakemake"]) if versions.get("snakemake") else None,
        "scratchcnn": tex_escape(versions["scratchcnn"]) if versions.get("scratchcnn") else None,
        "git_commit": tex_escape(commit) if commit else None,
        "gpu_numerics": prov.get("gpu_numerics"),  # CuPy runs: custom_kernels, tf32 (booleans)
        "created": tex_escape(prov.get("created", "?")),
        "created_date": tex_escape(str(prov.get("created", "?"))[:10]),
    }


def environments_context(final_metrics: dict, test_metrics: dict, report_commit: str | None = None) -> dict:
    """The training run's and the evaluation's environments, and whether they match;
    ``report_commit``, the code that writes the report, where it is not the training run's (the
    figures and the report made again after a code update)."""
    prov = final_metrics.get("provenance") or {}
    train_env = _env_context(prov)
    train_env["backend"] = tex_escape(display_name(final_metrics.get("backend") or prov.get("backend", "?")))
    train_env["device"] = tex_escape(final_metrics.get("device") or prov.get("device", "?"))
    eval_env = _env_context(test_metrics.get("provenance") or {})
    same = str(train_env["device"]) == str(eval_env["device"]) and str(train_env["backend"]) == str(eval_env["backend"])
    other = report_commit if report_commit and report_commit != prov.get("git_commit") else None
    return {"train": train_env, "eval": eval_env, "same_device": same,
            "report_commit": tex_escape(other) if other else None}  # fmt: skip


# ---------------------------------------------------------------------------- data and architecture


def is_synthetic(data_meta: dict) -> bool:
    """Whether the data came from the synthetic demo archive (render_report.py --synthetic sets it)."""
    return bool(data_meta.get("synthetic", False))


def data_context(data_meta: dict, test_metrics: dict, synthetic: bool, n_used: int | None = None) -> dict:
    """``data_meta``: the data file's ``meta_json`` with ``shapes`` and ``class_names`` added;
    ``n_used``: :func:`.facts.training_images`, where training used fewer than the training set."""
    shapes = data_meta.get("shapes") or {}
    n_train, n_val, n_test = (facts.split_size(data_meta, s) for s in ("train", "val", "test"))
    if n_test is None:
        n_test = int(test_metrics["n_test"])
    img = shapes.get("x_train") or shapes.get("x_test") or [None, 32, 32, 3]
    std = data_meta.get("standardize")
    seed, md5, archive = data_meta.get("split_seed"), data_meta.get("archive_md5"), data_meta.get("archive")
    names = data_meta.get("class_names") or test_metrics["class_names"]
    return {
        "archive": tex_escape(Path(str(archive)).name) if archive else None,
        "n_train": integer(n_train) if n_train is not None else None,
        # train.train_subset: only the first n_used training images updated the parameters
        "n_train_used": integer(n_used) if None not in (n_used, n_train) and n_used < n_train else None,
        "n_val": integer(n_val) if n_val is not None else None,
        "n_test": integer(n_test),
        "n_train_total": integer(n_train + n_val) if None not in (n_train, n_val) else None,
        "height": str(int(img[1])),
        "width": str(int(img[2])),
        "channels": str(int(img[3])),
        "flat": str(int(img[1]) * int(img[2]) * int(img[3])),
        "num_classes": str(len(names)),
        "last_label": str(len(names) - 1),
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
        # most of the parameters: only then is the FC layer the "large" one the report says to replace
        "fc_majority": by_name["fc"]["params"] / total > 0.5,
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
        "regularized": float(hp["reg"]) > 0,  # a grid may hold reg 0, and it may win
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
    # a run that diverged in its first epoch has no best checkpoint (train.py writes None, epoch 0)
    has_best = final_metrics.get("best_val_acc") is not None and best_epoch > 0
    best_val = float(final_metrics["best_val_acc"]) if has_best else None
    epochs_run = int(final_metrics.get("epochs_run", len(h)))
    total = final_metrics.get("seconds", h["seconds"].sum())
    return {
        "status": str(final_metrics.get("status", "ok")),
        "status_tex": tex_escape(final_metrics.get("status", "ok")),
        "epochs_run": str(epochs_run),
        "epochs_planned": str(int(final_metrics.get("epochs_planned", hp.get("epochs", len(h))))),
        "stopped_early": epochs_run < int(final_metrics.get("epochs_planned", len(h))),
        "has_best": has_best,
        "best_epoch": str(best_epoch),
        "best_is_first": best_epoch == int(h.iloc[0]["epoch"]),
        "best_is_last": best_epoch == int(last["epoch"]),
        "best_val_pct": pct(best_val) if has_best else None,
        "seconds_total": seconds(total),
        "duration": duration(total),
        "seconds_per_epoch": seconds(final_metrics.get("seconds_per_epoch", h["seconds"].mean())),
        "last_train_pct": pct(last["train_acc"]),
        "last_val_pct": pct(last["val_acc"]),
        "last_train_loss": loss(last["train_loss"]),
        "last_val_loss": loss(last["val_loss"]),
        "gap_pp": pct(abs(float(last["train_acc"]) - float(last["val_acc"]))),  # the words say which leads
        "gap_sign": facts.compare(last["train_acc"], last["val_acc"]),
        "first_val_pct": pct(h.iloc[0]["val_acc"]),
        "lr_first": plain(h.iloc[0]["lr"]),
        "lr_last": plain(last["lr"]),
        "n_lr_values": str(h["lr"].nunique()),
        "test_vs_val": facts.compare(test_acc, best_val) if has_best else None,
        "test_val_diff_pp": pct(abs(test_acc - best_val)) if has_best else None,
    }


def val_loss_context(trend: dict) -> dict:
    """:func:`.facts.val_loss_trend`'s reading, formatted."""
    vl = {"direction": trend["direction"], "window": str(trend["window"]), "rose": trend.get("rose", False)}
    if trend["direction"] not in ("short", "nonfinite"):
        vl.update({
            "first_epoch": str(trend["first_epoch"]),
            "last_epoch": str(trend["last_epoch"]),
            "fit_first": fixed(trend["fit_first"], 4),
            "fit_last": fixed(trend["fit_last"], 4),
            "change_pct": pct(abs(trend["rel_change"]), 1),
            "min_epoch": str(trend["min_epoch"]),
            "min": fixed(trend["min"], 4),
            "min_in_window": trend["min_in_window"],
            "min_is_last": trend["min_is_last"],
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
    report_commit: str | None = None,
) -> dict:
    """Everything the template needs, as pre-formatted strings and computed facts.

    ``summary`` and ``history`` are DataFrames of ``results/sweep/summary.csv`` and
    the ``history.csv`` of the final run shown (the first of ``train.seeds``); ``data_meta`` is the ``meta_json`` of the data
    file, optionally with ``shapes`` (array name -> shape) and ``class_names``;
    ``arch`` is the checkpoint's ``arch_json``; ``figures_dir`` is the figures
    folder as the LaTeX run will see it (relative to the folder of the .tex);
    ``param_stats`` is optional (:func:`.facts.array_stats` of the checkpoint arrays),
    and so is ``first_layer``, the checkpoint's ``W1`` (for the reading of its kernels).
    """
    layers = facts.layer_table(arch)
    hp = final_metrics.get("hyperparameters") or test_metrics.get("hyperparameters") or {}
    headline = facts.headline_accuracy(test_metrics)
    h = history.sort_values("epoch")
    best_epoch = int(final_metrics["best_epoch"])
    sweeps = _sweeps_context(summary, best)
    history_rows = _history_rows(h, best_epoch)
    train = train_context(final_metrics, h, hp, float(test_metrics["test_accuracy"]))
    train["n_rows_shown"] = str(len(history_rows))
    trend = facts.val_loss_trend(h)
    num_classes = int(arch["num_classes"])
    learned = not (train["has_best"] and facts.near_chance(final_metrics["best_val_acc"], num_classes))
    train["fit"] = facts.fit_reading(h.iloc[-1]["train_acc"], h.iloc[-1]["val_acc"], trend, train["status"], learned)
    train["chance_pct"] = pct(1.0 / num_classes)
    test = test_context(test_metrics, study_accuracy, headline)
    test["near_chance"] = facts.near_chance(test_metrics["test_accuracy"], num_classes)
    n_used = facts.training_images(data_meta, final_metrics)
    shared_gpu = {"sweeps": facts.shared_gpu_jobs(summary), "final": facts.sharing(shared_gpu_jobs(final_metrics))}
    return {
        "test": test,
        "env": environments_context(final_metrics, test_metrics, report_commit),
        "data": data_context(data_meta, test_metrics, is_synthetic(data_meta), n_used),
        "arch": arch_context(arch, layers),
        "layers": layers_context(layers),
        "hp": _hp_context(hp),
        "train": train,
        "val_loss": val_loss_context(trend),
        "history_rows": history_rows,
        "n_history": str(len(h)),
        "sweeps": sweeps,
        "heatmap_sweep": heatmap_sweep(sweeps, summary),
        "chosen": chosen_context(summary, best),
        "filter_cost": filter_cost_context(summary),
        # above 1, the seconds per epoch include waiting for other jobs on the same GPU
        "shared_gpu": {k: integer(jobs) if jobs else None for k, jobs in shared_gpu.items()},
        "classes": classes_context(test_metrics),
        "figures": figures_context(figures_dir),
        "param_stats": _param_stats_context(param_stats),
        "study": study_context(summary, headline),
        "method": method_context(n_used, layers, hp, summary),
        "kernels": kernels_context(first_layer),
        "seeds": seeds_context(test_metrics.get("seeds")),
    }

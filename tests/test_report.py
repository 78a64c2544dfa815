"""The auto-filled report: context facts, escaping, layer table, rendering and (with TeX) the PDF.

The fixture is built here: small results dicts/CSVs, tiny checkpoint and data
files and matplotlib figures, laid out like the repository (``results/...``
beside ``report/``).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import pytest

from cifar_fixtures import write_prepared
from scratchcnn.metrics import classification_report
from scratchcnn import report as R
from scratchcnn.sweeps import choose_best

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "report" / "report.tex.j2"
SCRIPTS = ROOT / "workflow" / "scripts"
sys.path.insert(0, str(SCRIPTS))

import compile_report  # noqa: E402
import render_report  # noqa: E402

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# correct per 1000 test images; sums to 6247 -> test accuracy 0.6247
DIAG = [680, 760, 480, 420, 560, 530, 720, 670, 747, 680]
HEAVY = {(3, 5): 180, (5, 3): 150, (1, 9): 100, (9, 1): 120, (2, 4): 90, (4, 7): 80, (0, 8): 90}
WEIRD_DEVICE = "Intel(R) Xeon(R) CPU @ 2.20GHz #2 & 50% load_x ~{^}"


# ----------------------------------------------------------------------------- fixture


def confusion_matrix(diag=DIAG, heavy=HEAVY, per_class=1000):
    k = len(diag)
    cm = np.zeros((k, k), dtype=int)
    for i in range(k):
        cm[i, i] = diag[i]
        left = per_class - diag[i]
        for (t, p), n in heavy.items():
            if t == i:
                cm[t, p] = n
                left -= n
        others = [j for j in range(k) if j != i and (i, j) not in heavy]
        for n, j in enumerate(others):
            cm[i, j] += left // len(others) + (1 if n < left % len(others) else 0)
    assert (cm.sum(axis=1) == per_class).all()
    return cm


def make_test_metrics(cm, names, provenance):
    # labels that reproduce the confusion matrix, through the metrics the pipeline uses
    t, p = np.nonzero(cm)
    counts = cm[t, p]
    report = classification_report(np.repeat(t, counts), np.repeat(p, counts), names)
    return {
        **report,
        "test_loss": 1.0834,
        "throughput": {
            "images_per_second": 1834.6,
            "backend": provenance["backend"],
            "device": provenance["device"],
        },
        "checkpoint": {"path": "results/final/model.npz", "epoch": 12, "val_acc": 0.6412},
        "hyperparameters": HP,
        "provenance": provenance,
    }


HP = {"lr": 0.01, "reg": 0.001, "filters": 64, "batch_size": 64, "epochs": 20, "lr_decay": 0.5,
      "lr_step": 5, "clip": 5.0, "seed": 0}  # fmt: skip
VAL_LOSS = [1.65, 1.42, 1.30, 1.22, 1.16, 1.10, 1.07, 1.05, 1.04, 1.035,
            1.04, 1.05, 1.06, 1.08, 1.10, 1.12, 1.13, 1.15, 1.17, 1.19]  # fmt: skip


def make_history(val_loss=VAL_LOSS, best_epoch=12):
    n = len(val_loss)
    rows = []
    for e in range(1, n + 1):
        val_acc = 0.40 + 0.2412 * min(e, best_epoch) / best_epoch - 0.002 * max(0, e - best_epoch)
        rows.append({"epoch": e, "lr": 0.01 * 0.5 ** ((e - 1) // 5), "train_loss": 2.0 - 1.4 * e / n,
                     "train_acc": 0.35 + 0.40 * e / n, "val_loss": val_loss[e - 1], "val_acc": val_acc,
                     "seconds": 60.0 + 0.1 * e})  # fmt: skip
    return pd.DataFrame(rows)


def make_summary():
    rows = []
    accs = {(0.1, 0.01): 0.5213, (0.1, 0.001): 0.5402, (0.1, 0.0001): None,
            (0.01, 0.01): 0.6011, (0.01, 0.001): 0.6398, (0.01, 0.0001): 0.6322,
            (0.001, 0.01): 0.4810, (0.001, 0.001): 0.4955, (0.001, 0.0001): 0.4901}  # fmt: skip
    for (lr, reg), acc in accs.items():
        ok = acc is not None
        rows.append({"sweep": "lr_reg", "lr": lr, "reg": reg, "filters": 32,
                     "best_val_acc": acc if ok else 0.1, "best_epoch": 7 if ok else 0,
                     "epochs": 10 if ok else 2, "seconds": 300.0 if ok else 61.0,
                     "seconds_per_epoch": 30.0 if ok else 30.5, "status": "ok" if ok else "diverged"})  # fmt: skip
    for filters, acc, spe in ((8, 0.5521, 12.0), (16, 0.6013, 18.5), (32, 0.6402, 30.2), (64, 0.6531, 61.7)):
        rows.append({"sweep": "filters", "lr": 0.01, "reg": 0.001, "filters": filters, "best_val_acc": acc,
                     "best_epoch": 9, "epochs": 10, "seconds": spe * 10, "seconds_per_epoch": spe,
                     "status": "ok"})  # fmt: skip
    return pd.DataFrame(rows)


def fixture_inputs(weird=False) -> dict:
    """The keyword arguments of ``build_context`` for a plausible final result."""
    names = list(CIFAR)
    device = "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"
    path = "results/sweep/filters/lr~0.01/reg~0.001/filters~64"
    if weird:
        names[3] = "cat_%~&#"
        names[5] = "[dog]{^}$\\*"  # starts a row of the confusion table: "[" after \\ is an option
        device = WEIRD_DEVICE
        path = "results/sweep/filters_x/lr~0.01/reg~0.001/filters~64#%&"
    prov = {"config": {}, "backend": "numpy", "device": device,
            "versions": {"python": "3.11.7", "numpy": "2.4.6", "scratchcnn": "0.1.0", "snakemake": "9.1.0"},
            "git_commit": "0123456789abcdef0123456789abcdef01234567-dirty",
            "created": "2025-01-27T10:11:12+00:00"}  # fmt: skip
    cm = confusion_matrix()
    tm = make_test_metrics(cm, names, prov)
    history = make_history()
    final = {"status": "ok", "best_val_acc": 0.6412, "best_epoch": 12, "epochs_run": 20, "epochs_planned": 20,
             "seconds": float(history["seconds"].sum()), "seconds_per_epoch": float(history["seconds"].mean()),
             "hyperparameters": HP, "backend": "numpy", "device": device, "provenance": prov}  # fmt: skip
    return {
        "test_metrics": tm,
        "summary": make_summary(),
        "history": history,
        "best": {"lr": 0.01, "reg": 0.001, "filters": 64, "best_val_acc": 0.6531, "sweep": "filters",
                 "path": path},  # fmt: skip
        "data_meta": {"split_seed": 0, "archive_md5": "c58f30108f718f92721af3b95e74349a", "standardize": None,
                      "class_names": names,
                      "shapes": {"x_train": [45000, 32, 32, 3], "x_val": [5000, 32, 32, 3],
                                 "x_test": [10000, 32, 32, 3]}},  # fmt: skip
        "arch": arch(64, 64),
        "final_metrics": final,
        "figures_dir": "../results/figures",
    }


def arch(f1=32, f2=32, k=3, p1=1, p2=0):
    return {"input_shape": [32, 32, 3], "num_classes": 10, "filters1": f1, "filters2": f2, "kernel_size": k,
            "padding1": p1, "padding2": p2, "stride": 1, "pool_size": 2, "pool_stride": 2, "bn_eps": 1e-5}  # fmt: skip


def make_figures(fig_dir: Path, names=CIFAR):
    """Small but realistic-looking figures (vector PDF and raster images inside)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ep = np.arange(1, 21)

    def save(fig, name):
        fig.savefig(fig_dir / f"{name}.pdf", bbox_inches="tight")
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(ep, 2 - 1.4 * ep / 20, label="train")
    ax.plot(ep, VAL_LOSS, label="val")
    ax.set_xlabel("epoch"), ax.set_ylabel("loss"), ax.legend()
    save(fig, "loss_curve")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(ep, 0.35 + 0.4 * ep / 20, label="train")
    ax.plot(ep, 0.4 + 0.24 * np.minimum(ep, 12) / 12, label="val")
    ax.set_xlabel("epoch"), ax.set_ylabel("accuracy"), ax.legend()
    save(fig, "val_accuracy")
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(rng.uniform(0.45, 0.65, (3, 3)), cmap="viridis")
    fig.colorbar(im)
    ax.set_xlabel("reg"), ax.set_ylabel("lr")
    save(fig, "sweep_heatmap")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([8, 16, 32, 64], [0.55, 0.60, 0.64, 0.65], "o-")
    ax.set_xscale("log", base=2), ax.set_xlabel("filters")
    save(fig, "filters_sweep")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(10), np.array(DIAG) / 1000)
    ax.set_xticks(range(10), names, rotation=30)
    save(fig, "per_class_accuracy")
    for name, n in (("conv1_kernels", 32), ("conv2_kernels", 64)):
        fig, axes = plt.subplots(4, n // 4, figsize=(n / 4 * 0.6, 2.6))
        for a in axes.flat:
            a.imshow(rng.uniform(0, 1, (3, 3, 3)), interpolation="nearest")
            a.axis("off")
        save(fig, name)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.imshow(rng.standard_normal((10, 200)), aspect="auto", cmap="RdBu")
    ax.set_yticks(range(10), names)
    save(fig, "fc_weights")
    fig, axes = plt.subplots(2, 3, figsize=(8, 4))
    for a in axes.flat:
        a.hist(rng.standard_normal(500), bins=30)
    save(fig, "histograms")
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(confusion_matrix(), cmap="Blues")
    ax.set_xticks(range(10), names, rotation=90), ax.set_yticks(range(10), names)
    save(fig, "confusion_matrix")
    fig, axes = plt.subplots(3, 8, figsize=(8, 3.4))
    for i, a in enumerate(axes.flat):
        a.imshow(rng.uniform(0, 1, (32, 32, 3)))
        a.set_title(names[i % 10], fontsize=6)
        a.axis("off")
    save(fig, "test_samples")
    for name in R.FIGURES:  # any other registered figure: a plain stand-in
        if not (fig_dir / f"{name}.pdf").exists():
            fig, ax = plt.subplots(figsize=(6, 3))
            ax.plot(ep, np.sqrt(ep))
            save(fig, name)


def write_results(root: Path, inputs: dict) -> dict:
    """Write ``inputs`` as the pipeline's results files under ``root``; returns the CLI paths."""
    res = root / "results"
    (res / "final").mkdir(parents=True, exist_ok=True)
    (res / "sweep").mkdir(parents=True, exist_ok=True)
    (res / "data").mkdir(parents=True, exist_ok=True)
    paths = {
        "test_metrics": res / "final" / "test_metrics.json",
        "final_metrics": res / "final" / "metrics.json",
        "history": res / "final" / "history.csv",
        "model": res / "final" / "model.npz",
        "summary": res / "sweep" / "summary.csv",
        "best": res / "sweep" / "best.json",
        "data": res / "data" / "cifar10.npz",
        "figures": res / "figures",
    }
    paths["test_metrics"].write_text(json.dumps(inputs["test_metrics"], indent=2))
    paths["final_metrics"].write_text(json.dumps(inputs["final_metrics"], indent=2))
    paths["best"].write_text(json.dumps(inputs["best"], indent=2))
    inputs["history"].to_csv(paths["history"], index=False)
    inputs["summary"].to_csv(paths["summary"], index=False)
    a = inputs["arch"]
    shapes = {r["name"]: r for r in R.layer_table(a)}
    d, f1, f2, k = shapes["fc"]["input"][0], a["filters1"], a["filters2"], a["kernel_size"]
    rng = np.random.default_rng(1)
    arrays = {"W1": (f1, k, k, 3), "b1": (f1,), "gamma1": (f1,), "beta1": (f1,), "W2": (f2, k, k, f1),
              "b2": (f2,), "gamma2": (f2,), "beta2": (f2,), "W3": (d, 10), "b3": (10,),
              "running_mean1": (f1,), "running_var1": (f1,), "running_mean2": (f2,), "running_var2": (f2,)}  # fmt: skip
    model = {n: (0.05 * rng.standard_normal(s)).astype(np.float32) for n, s in arrays.items()}
    model["arch_json"] = np.array(json.dumps(a))
    model["meta_json"] = np.array(json.dumps({"epoch": 12, "val_acc": 0.6412}))
    np.savez(paths["model"], **model)
    meta = {k: v for k, v in inputs["data_meta"].items() if k not in ("shapes", "class_names")}
    write_prepared(
        paths["data"], class_names=inputs["data_meta"]["class_names"], meta=meta,
        x_train=np.zeros((45, 32, 32, 3)), y_train=np.zeros(45), x_val=np.zeros((5, 32, 32, 3)), y_val=np.zeros(5),
        x_test=np.zeros((10, 32, 32, 3)), y_test=np.zeros(10),
    )  # fmt: skip
    make_figures(paths["figures"], inputs["test_metrics"]["class_names"])
    return paths


def render_cli(root: Path, paths: dict, out: Path, *extra) -> int:
    return render_report.main([
        "--template", str(TEMPLATE), "--test-metrics", str(paths["test_metrics"]),
        "--summary", str(paths["summary"]), "--history", str(paths["history"]), "--best", str(paths["best"]),
        "--final-metrics", str(paths["final_metrics"]), "--model", str(paths["model"]),
        "--data-meta", str(paths["data"]), "--figures-dir", str(paths["figures"]), "--out", str(out), *extra,
    ])  # fmt: skip


def ctx(weird=False, **changes):
    inputs = fixture_inputs(weird)
    inputs.update(changes)
    return R.build_context(**inputs)


def text(context) -> str:
    return R.render(TEMPLATE, context)


def table_rows(tex: str, label: str) -> dict:
    """The body of the LaTeX table labelled ``label``: first cell -> the other cells."""
    body = tex[tex.index(rf"\label{{{label}}}"):]
    body = body[body.index(r"\midrule") + len(r"\midrule"):body.index(r"\bottomrule")]
    rows = [[c.strip() for c in r.split("&")] for r in body.split(r"\\") if r.strip()]
    return {r[0]: r[1:] for r in rows}


def split_sizes(tex: str) -> dict:
    """The image counts of the data split table, as written."""
    return {name: cells[0] for name, cells in table_rows(tex, "tab:split").items()}


def says(tex: str, phrase: str) -> bool:
    """``phrase`` appears in ``tex``, any run of whitespace matching any other."""
    return re.search(r"\s+".join(map(re.escape, phrase.split())), tex) is not None


# ----------------------------------------------------------------------------- layer table


def test_layer_table_32_32_default_padding():
    rows = {r["name"]: r for r in R.layer_table(arch(32, 32, k=3, p1=1, p2=0))}
    assert rows["conv1"]["input"] == (32, 32, 3) and rows["conv1"]["output"] == (32, 32, 32)
    assert rows["conv1"]["params"] == 3 * 3 * 3 * 32 + 32 == 896
    assert rows["bn1"]["params"] == 64 and rows["bn1"]["buffers"] == 64
    assert rows["pool1"]["output"] == (16, 16, 32)
    assert rows["conv2"]["output"] == (14, 14, 32)
    assert rows["conv2"]["params"] == 3 * 3 * 32 * 32 + 32 == 9248
    assert rows["pool2"]["output"] == (7, 7, 32)
    assert rows["flatten"]["output"] == (1568,)
    assert rows["fc"]["params"] == 1568 * 10 + 10 == 15690
    assert sum(r["params"] for r in rows.values()) == 896 + 64 + 9248 + 64 + 15690 == 25962


def test_layer_table_32_32_padding_2_kernel_5():
    rows = {r["name"]: r for r in R.layer_table(arch(32, 32, k=5, p1=2, p2=2))}
    assert rows["conv1"]["output"] == (32, 32, 32) and rows["conv1"]["params"] == 5 * 5 * 3 * 32 + 32
    assert rows["conv2"]["output"] == (16, 16, 32) and rows["conv2"]["params"] == 5 * 5 * 32 * 32 + 32
    assert rows["fc"]["input"] == (8 * 8 * 32,) and rows["fc"]["params"] == 2048 * 10 + 10


def test_layer_table_16_64_padding_2():
    rows = {r["name"]: r for r in R.layer_table(arch(16, 64, k=5, p1=2, p2=2))}
    assert rows["conv1"]["output"] == (32, 32, 16) and rows["conv1"]["params"] == 1216
    assert rows["bn1"]["params"] == 32
    assert rows["pool1"]["output"] == (16, 16, 16)
    assert rows["conv2"]["input"] == (16, 16, 16) and rows["conv2"]["output"] == (16, 16, 64)
    assert rows["conv2"]["params"] == 5 * 5 * 16 * 64 + 64 == 25664
    assert rows["bn2"]["params"] == 128
    assert rows["pool2"]["output"] == (8, 8, 64)
    assert rows["fc"]["input"] == (4096,) and rows["fc"]["params"] == 40970
    assert sum(r["params"] for r in rows.values()) == 1216 + 32 + 25664 + 128 + 40970 == 68010
    # 3x3 kernels with padding 2 grow the map: 32 -> 34 -> 17 -> 19 -> 9 (floor)
    rows = {r["name"]: r for r in R.layer_table(arch(16, 64, k=3, p1=2, p2=2))}
    assert rows["conv1"]["output"] == (34, 34, 16)
    assert rows["pool1"]["output"] == (17, 17, 16)
    assert rows["conv2"]["output"] == (19, 19, 64) and rows["conv2"]["params"] == 3 * 3 * 16 * 64 + 64
    assert rows["pool2"]["output"] == (9, 9, 64)
    assert rows["fc"]["params"] == 9 * 9 * 64 * 10 + 10


def test_a_pool_reads_its_conv_and_has_its_own_stride():
    """Each pool takes the conv block's output (not the block's input), and its stride is
    pool_stride, not the window: a 3x3 window moved by 2 maps 32 -> 15 and 13 -> 6."""
    rows = {r["name"]: r for r in R.layer_table({**arch(32, 32, k=3, p1=1, p2=0), "pool_size": 3})}
    assert rows["pool1"]["input"] == rows["conv1"]["output"] == (32, 32, 32)
    assert rows["pool2"]["input"] == rows["conv2"]["output"] == (13, 13, 32)
    assert (rows["pool1"]["kernel"], rows["pool1"]["stride"], rows["pool1"]["output"]) == (3, 2, (15, 15, 32))
    assert (rows["pool2"]["kernel"], rows["pool2"]["stride"], rows["pool2"]["output"]) == (3, 2, (6, 6, 32))


def test_layer_table_agrees_with_the_model():
    from scratchcnn import model  # a project module: failing to import is a failure, not a skip
    for a in (arch(32, 32), arch(16, 64, k=5, p1=2, p2=2), arch(8, 24, k=3, p1=2, p2=1)):
        rows = {r["name"]: r for r in R.layer_table(a)}
        shapes = model.layer_shapes(a)
        for name in ("conv1", "pool1", "conv2", "pool2"):
            assert tuple(rows[name]["output"]) == tuple(shapes[name])
        ps = model.param_shapes(a)
        learnable = sum(int(np.prod(ps[n])) for n in model.PARAM_NAMES)
        assert sum(r["params"] for r in rows.values()) == learnable


def test_layer_table_rejects_a_kernel_that_does_not_fit():
    with pytest.raises(ValueError):
        R.layer_table({**arch(), "input_shape": [4, 4, 3], "kernel_size": 5, "padding1": 0})


# ----------------------------------------------------------------------------- escaping


def test_tex_escape_every_special():
    assert R.tex_escape(r"a\b&c%d$e#f_g{h}i~j^k") == (
        r"a\textbackslash{}b\&c\%d\$e\#f\_g\{h\}i\textasciitilde{}j\textasciicircum{}k"
    )
    assert R.tex_escape("plain 中文 text") == "plain 中文 text"
    # a value starting a table row must not read as \\'s option or starred form
    assert R.tex_escape("[x]*") == "{[}x{]}{*}"
    assert isinstance(R.tex_escape("x"), R.TexStr)
    assert R.tex_escape(R.tex_escape("a_b")) == r"a\_b"  # idempotent on escaped text
    assert R.tex_path("a_b/c~d") == r"a\_b/\allowbreak{}c\textasciitilde{}d"
    assert R.tex_file("../results/figures/loss_curve.pdf") == "../results/figures/loss_curve.pdf"
    with pytest.raises(ValueError):
        R.tex_file("../res%ults/x.pdf")


def test_special_characters_are_escaped_in_the_report():
    tex = text(ctx(weird=True))
    assert r"cat\_\%\textasciitilde{}\&\#" in tex
    assert r"{[}dog{]}\{\textasciicircum{}\}\$\textbackslash{}{*}" in tex
    assert R.tex_escape(WEIRD_DEVICE) in tex
    assert r"filters\_x/\allowbreak{}lr\textasciitilde{}0.01" in tex
    for raw in ("cat_%~&#", "[dog]{^}$\\*", WEIRD_DEVICE, "filters_x"):
        assert raw not in tex
    # the figure paths are given to \includegraphics as they are
    assert r"{../results/figures/loss_curve.pdf}" in tex


def test_unescaped_or_missing_values_are_refused():
    c = ctx()
    c["classes"]["best"][0]["name"] = "raw_name"  # a plain str with a TeX special
    with pytest.raises(ValueError, match="unescaped"):
        text(c)
    c = ctx()
    c["test"]["acc_pct"] = None
    with pytest.raises(ValueError):
        text(c)
    c = ctx()
    c["test"]["acc_pct"] = 62.47  # numbers must be formatted in scratchcnn.report
    with pytest.raises(ValueError):
        text(c)


def test_strict_undefined_fails_loudly():
    c = ctx()
    del c["test"]["acc_pct"]
    with pytest.raises(jinja2.UndefinedError):
        text(c)
    c = ctx()
    del c["figures"]
    with pytest.raises(jinja2.UndefinedError):
        text(c)


# ----------------------------------------------------------------------------- numbers and facts


def test_numbers_are_formatted():
    c = ctx()
    tex = text(c)
    assert c["test"]["acc_pct"] == "62.47" and c["test"]["acc"] == "0.6247"
    assert r"\textbf{62.47\%}" in tex and "0.6247" in tex
    assert says(tex, "在 10,000 张测试图像上正确分类 6,247 张")  # total, correct
    assert r"61.3\%" in tex and "高 1.17 个百分点" in tex
    assert split_sizes(tex) == {"训练集": "45,000", "验证集": "5,000", "测试集": "10,000"}
    assert says(tex, "全部 50,000 张训练图像和 10,000 张测试图像")
    assert r"$\eta_0=0.01$" in tex and r"$\lambda=0.001$" in tex
    # 64/64 filters, 3x3, padding 1/0: D = 7*7*64 = 3136
    assert c["arch"]["d_raw"] == "3136" and c["arch"]["fc_params"] == "31,370"
    total = 3 * 3 * 3 * 64 + 64 + 128 + 3 * 3 * 64 * 64 + 64 + 128 + 31370
    assert c["arch"]["total_params"] == f"{total:,}" and says(tex, f"网络共有 {total:,} 个可训练参数")
    assert c["hp"]["reg"] == "0.001" and R.plain(1e-5) == "0.00001" and R.plain(64.0) == "64"
    assert says(tex, r"最终选用的点的验证准确率为 65.31\%")


def test_best_and_worst_class_follow_the_data():
    c = ctx()
    assert [x["raw_name"] for x in c["classes"]["best"]] == ["automobile"]
    assert [x["raw_name"] for x in c["classes"]["worst"]] == ["cat"]
    tex = text(c)
    assert re.search(r"表现最好的类别是\s*“automobile（汽车）”", tex)
    assert re.search(r"最差的是\s*“cat（猫）”", tex)
    assert "交通工具高出" in tex
    # swap automobile and cat: the prose must follow
    inputs = fixture_inputs()
    diag = list(DIAG)
    diag[1], diag[3] = diag[3], diag[1]
    inputs["test_metrics"] = make_test_metrics(
        confusion_matrix(diag), CIFAR, inputs["test_metrics"]["provenance"]
    )
    tex2 = text(R.build_context(**inputs))
    assert re.search(r"表现最好的类别是\s*“cat（猫）”", tex2)
    assert re.search(r"最差的是\s*“automobile（汽车）”", tex2)
    assert tex2 != tex


def test_confusions_and_mutual_pairs():
    c = ctx()
    confused = c["classes"]["confused"]
    assert (confused[0]["raw_true"], confused[0]["raw_pred"], confused[0]["count"]) == ("cat", "dog", "180")
    assert confused[0]["share_pct"] == "18.0"
    pairs = {frozenset((m["raw_a"], m["raw_b"])) for m in c["classes"]["mutual"]}
    assert frozenset(("cat", "dog")) in pairs and frozenset(("automobile", "truck")) in pairs


def test_a_class_exactly_at_the_overall_accuracy_is_not_above_it():
    """Every class at 50 % and the test accuracy 50 %: no class is above it."""
    y_true = np.repeat(np.arange(10), 2)
    y_pred = np.array([c if n == 0 else (c + 1) % 10 for c in range(10) for n in range(2)])
    classes = R.analysis.classes_context(classification_report(y_true, y_pred, CIFAR))
    assert (classes["n_above"], classes["n_classes"]) == ("0", "10")


def test_a_confusions_share_is_of_the_true_classs_images():
    """5 of class 0's 10 images taken for class 1 (which has 40) is 50 % of class 0, not 12.5 %."""
    y_true = np.array([0] * 10 + [1] * 40)
    y_pred = np.array([0] * 5 + [1] * 5 + [1] * 40)
    [confused] = R.analysis.classes_context(classification_report(y_true, y_pred, ["a", "b"]))["confused"]
    said = (confused["raw_true"], confused["raw_pred"], confused["count"], confused["share_pct"])
    assert said == ("a", "b", "5", "50.0")


def test_val_loss_trend_wording():
    rising = ctx()
    assert rising["val_loss"]["direction"] == "rising"
    assert "回升到" in text(rising) and "过拟合" in text(rising)
    flat = [1.6, 1.3, 1.2, 1.1, 1.05, 1.04, 1.03, 1.03, 1.031, 1.029, 1.03, 1.03, 1.031, 1.03, 1.029, 1.03,
            1.03, 1.031, 1.03, 1.03]  # fmt: skip
    c = ctx(history=make_history(flat))
    assert c["val_loss"]["direction"] == "flat" and "基本持平" in text(c)
    falling = list(np.linspace(1.8, 0.9, 20))
    c = ctx(history=make_history(falling, best_epoch=20))
    assert c["val_loss"]["direction"] == "falling" and "仍由" in text(c)
    assert R.val_loss_trend(make_history([1.0, 0.9]))["direction"] == "short"


def test_study_comparison_wording():
    inputs = fixture_inputs()
    assert "比原研究报告的 61.3\\% 高 1.17 个百分点" in text(R.build_context(**inputs))
    tex = text(R.build_context(**inputs, study_accuracy=0.70))
    assert "比原研究报告的 70.0\\% 低 7.53 个百分点" in tex
    tex = text(R.build_context(**inputs, study_accuracy=0.6247))
    assert "持平" in tex


def test_filter_cost_and_selection_facts():
    c = ctx()
    fc = c["filter_cost"]
    assert fc["low_filters"] == "8" and fc["high_filters"] == "64"
    assert fc["low_seconds"] == "12.0" and fc["high_seconds"] == "61.7"
    assert fc["ratio"] == "5.14" and fc["cost_direction"] == "above" and fc["acc_direction"] == "above"
    assert fc["per_filter"] == {"value": f"{1000 * (61.7 - 12.0) / 56:.1f}", "unit": "ms"}
    assert "多花约 887.5 毫秒" in text(c)
    assert "共 20.4 分钟" in text(c)  # 1221 s of training
    assert R.duration(59) == {"value": "59.0", "unit": "s"} and R.duration(3 * 3600)["unit"] == "h"
    assert R.stat(-0.00001) == "0.0000" and R.stat(-0.5) == "-0.5000"
    tex = text(c)
    assert "是前者的 5.14 倍" in tex
    ch = c["chosen"]
    assert ch["is_max"] and ch["margin_kind"] == "above"
    # runner-up: the best other (lr, reg, filters) point, here filters 32 in the filters sweep
    assert ch["runner_up"]["filters"] == "32" and ch["runner_up"]["val_pct"] == "64.02"
    assert ch["margin_pp"] == "1.29" and "高 1.29 个百分点" in tex
    assert ch["n_points"] == "13" and ch["n_diverged"] == "1"
    # the chosen row is highlighted in exactly one sweep table
    assert sum(r["chosen"] for s in c["sweeps"] for r in s["rows"]) == 1
    # a different winner changes the prose
    summary = make_summary()
    summary.loc[(summary["sweep"] == "filters") & (summary["filters"] == 32), "best_val_acc"] = 0.6531
    c2 = ctx(summary=summary)
    assert c2["chosen"]["margin_kind"] == "equal" and "并列最高" in text(c2)
    # no sweep varies the filter count: no cost sentence
    c3 = ctx(summary=make_summary().query("sweep == 'lr_reg'").reset_index(drop=True),
             best={**fixture_inputs()["best"], "filters": 32, "sweep": "lr_reg", "best_val_acc": 0.6398})  # fmt: skip
    assert c3["filter_cost"] is None and "没有改变卷积核数量" in text(c3)


def test_facts_are_plain_functions():
    assert R.compare(0.62, 0.613) == "above" and R.compare(0.6, 0.613) == "below"
    assert R.compare(0.6130004, 0.613) == "equal"
    ext = R.class_extremes([{"name": "a", "accuracy": 0.5}, {"name": "b", "accuracy": 0.7},
                            {"name": "c", "accuracy": 0.7}])  # fmt: skip
    assert [r["name"] for r in ext["best"]] == ["b", "c"] and [r["name"] for r in ext["worst"]] == ["a"]


# ----------------------------------------------------------------------------- scripts


def test_render_cli_writes_the_tex(tmp_path):
    paths = write_results(tmp_path, fixture_inputs(weird=True))
    out = tmp_path / "report" / "report.tex"
    assert render_cli(tmp_path, paths, out) == 0
    tex = out.read_text(encoding="utf-8")
    assert r"\documentclass[UTF8,a4paper,zihao=-4]{ctexart}" in tex
    assert "62.47" in tex and r"cat\_\%" in tex
    assert "{../results/figures/confusion_matrix.pdf}" in tex
    assert r"\texttt{W3}" in tex  # parameter statistics from the checkpoint
    # split sizes from the data file's array headers (45 / 5 / 10 images)
    assert split_sizes(tex) == {"训练集": "45", "验证集": "5", "测试集": "10"}
    assert says(tex, "全部 50 张训练图像和 10 张测试图像")
    assert not list(out.parent.glob(".report.tex.*"))  # no temporary left behind


def test_render_cli_says_when_the_data_are_synthetic(tmp_path):
    """The workflow passes --synthetic from data.synthetic (no result file records it)."""
    paths = write_results(tmp_path, fixture_inputs())
    out = tmp_path / "report" / "report.tex"
    assert render_cli(tmp_path, paths, out, "--synthetic") == 0
    assert "流水线生成的合成数据" in out.read_text(encoding="utf-8")


def test_render_cli_refuses_missing_figures(tmp_path, capsys):
    paths = write_results(tmp_path, fixture_inputs())
    (paths["figures"] / "histograms.pdf").unlink()
    out = tmp_path / "report" / "report.tex"
    assert render_cli(tmp_path, paths, out) == 1
    assert "histograms.pdf" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("role, damage, said", [
    ("test_metrics", lambda p: p.write_text("{"), "--test-metrics {p} cannot be read (JSONDecodeError"),
    ("summary", lambda p: p.write_text(""), "--summary {p} cannot be read (EmptyDataError"),
    ("model", lambda p: p.write_bytes(p.read_bytes()[:100]), "--model {p} cannot be read (CheckpointError"),
    ("data", lambda p: p.write_text("[]"), "--data-meta {p} cannot be read (DataError"),
    ("best", lambda p: p.write_text("[]"), "--best {p} cannot be read (ValueError: {p} holds a JSON list, expected an object)"),
    ("final_metrics", lambda p: p.write_text("{}"), "the results lack or garble a value the report needs (KeyError"),
])  # fmt: skip
def test_render_cli_names_a_bad_input_and_writes_nothing(tmp_path, capsys, role, damage, said):
    paths = write_results(tmp_path, fixture_inputs())
    damage(paths[role])
    out = tmp_path / "report" / "report.tex"
    assert render_cli(tmp_path, paths, out) == 1
    err = capsys.readouterr().err
    assert err.startswith("render_report: error: ") and said.format(p=paths[role]) in err and "Traceback" not in err, err
    assert not out.exists()


def test_compile_without_tex_names_the_packages(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(compile_report.shutil, "which", lambda name: None)
    tex = tmp_path / "report.tex"
    tex.write_text("x")
    code = compile_report.main(
        ["--tex", str(tex), "--out", str(tmp_path / "r.pdf"), "--log", str(tmp_path / "l")]
    )
    assert code == 1
    err = capsys.readouterr().err
    for pkg in ("texlive-xetex", "texlive-lang-chinese", "latexmk", "fonts-noto-cjk"):
        assert pkg in err
    assert "texlive-xetex" in (tmp_path / "l").read_text()
    assert not (tmp_path / "r.pdf").exists()


def test_compile_into_a_folder_it_cannot_write_says_so_in_one_line_and_keeps_its_log(tmp_path, monkeypatch, capsys):
    def fake_latexmk(cmd, cwd, **kw):  # what latexmk leaves: the PDF in the build folder
        outdir = Path(next(a for a in cmd if a.startswith("-outdir=")).split("=", 1)[1])
        (outdir / "report.pdf").write_bytes(b"%PDF-1.5 stand-in")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(compile_report, "find_tools", lambda: [])
    monkeypatch.setattr(compile_report.subprocess, "run", fake_latexmk)
    tex = tmp_path / "report.tex"
    tex.write_text("x")
    blocked = tmp_path / "a file"
    blocked.write_text("where a folder should be")
    log = tmp_path / "logs" / "compile.log"
    for flags, said in ((["--build-dir", str(blocked / "build")], f"cannot make the build folder {blocked / 'build'}"),
                        ([], f"compile_report: cannot write {blocked / 'r.pdf'} (")):  # fmt: skip
        assert compile_report.main(["--tex", str(tex), "--out", str(blocked / "r.pdf"), "--log", str(log), *flags]) == 1
        assert said in capsys.readouterr().err and said in log.read_text()
    assert compile_report.main(["--tex", str(tex), "--out", str(tmp_path / "r.pdf")]) == 0  # the stand-in works
    assert (tmp_path / "r.pdf").read_bytes() == b"%PDF-1.5 stand-in"


def test_a_failed_compile_shows_the_first_errors_each_with_the_lines_after_it():
    """The first error is the cause, the later ones its echoes: the first 40 lines are kept; and
    TeX names the undefined command on the line after "! Undefined control sequence"."""
    flood = "\n".join(f"! Error {i}" for i in range(50))
    assert compile_report.relevant_log_lines(flood) == [f"! Error {i}" for i in range(40)]
    log = "This is XeTeX\n! Undefined control sequence.\n<recently read> \\foo"
    assert compile_report.relevant_log_lines(log) == ["! Undefined control sequence.", "<recently read> \\foo"]


def test_a_failed_latexmk_does_not_ship_the_old_pdf_left_in_the_build_folder(tmp_path, monkeypatch, capsys):
    """latexmk exits 1 while report.pdf from an earlier run still lies in build/: the exit status
    is 1 and --out is not written from that stale PDF."""

    def failing_latexmk(cmd, cwd, **kw):
        outdir = Path(next(a for a in cmd if a.startswith("-outdir=")).split("=", 1)[1])
        (outdir / "report.log").write_text("./report.tex:3: Undefined control sequence.\n")
        return subprocess.CompletedProcess(cmd, 1, "", "")

    monkeypatch.setattr(compile_report, "find_tools", lambda: [])
    monkeypatch.setattr(compile_report.subprocess, "run", failing_latexmk)
    tex = tmp_path / "report.tex"
    tex.write_text("x")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "report.pdf").write_bytes(b"%PDF-1.5 from the last run")
    assert compile_report.main(["--tex", str(tex), "--out", str(tmp_path / "r.pdf")]) == 1
    assert not (tmp_path / "r.pdf").exists()
    err = capsys.readouterr().err
    assert "latexmk failed (1)" in err and "./report.tex:3: Undefined control sequence." in err


def test_overfull_boxes_are_counted_on_every_line_of_the_log():
    """The log's first line is never an Overfull warning: the count reads each line's start."""
    assert compile_report.log_warnings("x\nOverfull \\hbox (1.5pt too wide)\ny")["overfull_boxes"] == 1


HAVE_TEX = all(shutil.which(t) for t in ("xelatex", "latexmk", "pdftotext", "pdfinfo"))


@pytest.mark.skipif(not HAVE_TEX, reason="needs xelatex, latexmk and poppler-utils")
def test_compile_fixture_report(tmp_path):
    inputs = fixture_inputs(weird=True)
    # the sentences on jobs sharing a GPU compile too
    inputs["summary"]["jobs_per_gpu"] = [4 if s == "filters" else None for s in inputs["summary"]["sweep"]]
    inputs["final_metrics"].update(backend="cupy", provenance={**inputs["final_metrics"]["provenance"],
                                                               "settings": {"jobs_per_gpu": 4}})  # fmt: skip
    paths = write_results(tmp_path, inputs)
    tex = tmp_path / "report" / "report.tex"
    assert render_cli(tmp_path, paths, tex) == 0
    pdf, log = tmp_path / "report" / "report.pdf", tmp_path / "logs" / "compile.log"
    assert (
        compile_report.main(["--tex", str(tex), "--out", str(pdf), "--log", str(log)]) == 0
    ), log.read_text()
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert 10 <= pages <= 30
    latex_log = (tmp_path / "report" / "build" / "report.log").read_text(errors="replace")
    used = set(re.findall(r"<use (?:\.\./results/figures/)?([a-z0-9_]+)\.pdf", latex_log))
    assert used == set(R.FIGURES)
    assert "Missing character" not in latex_log
    assert "Overfull \\hbox" not in latex_log
    assert not re.search(r"Reference `[^']*' on page \d+ undefined", latex_log)
    body = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    acc = inputs["test_metrics"]["test_accuracy"]
    assert f"{acc:.4f}" in body and f"{100 * acc:.2f}%" in body
    assert "cat_%~&#" in body and "[dog]{^}$\\*" in body
    assert "测试与评估" in body
    flat = "".join(body.split())
    assert "不同点之间只能粗略比较" in flat and "含等待其它任务的时间" in flat


def test_optional_fields_render():
    """Clip off, standardized data, a CuPy run, no git commit, no throughput, sizes from meta only."""
    inputs = fixture_inputs()
    inputs["final_metrics"] = copy.deepcopy(inputs["final_metrics"])
    inputs["final_metrics"]["hyperparameters"] = {**HP, "clip": None, "bn_momentum": 0.9}
    prov = inputs["final_metrics"]["provenance"]
    prov.update(backend="cupy", device="NVIDIA H100 80GB HBM3", git_commit=None,
                versions={"python": "3.11.7", "numpy": "2.4.6", "cupy": "13.3.0", "cuda_runtime": 12080},
                gpu_numerics={"custom_kernels": False, "tf32": True})  # fmt: skip
    inputs["final_metrics"]["backend"], inputs["final_metrics"]["device"] = "cupy", "NVIDIA H100 80GB HBM3"
    inputs["test_metrics"] = {**inputs["test_metrics"], "throughput": {}, "checkpoint": {}}
    inputs["data_meta"] = {"split_seed": 7, "n_train": 45000, "n_val": 5000, "n_test": 10000,
                           "standardize": {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}}  # fmt: skip
    c = R.build_context(**inputs)
    tex = text(c)
    assert "不裁剪" in tex and "没有启用梯度裁剪" in tex
    assert r"$\rho=0.9$" in tex
    assert "CuPy & 13.3.0" in tex and "NVIDIA H100 80GB HBM3" in tex and "CUDA 运行时 & 12.8" in tex
    assert "NVIDIA H100 80GB HBM3（CuPy 后端）上进行" in tex and "训练计算后端 & CuPy" in tex
    assert r"自定义 CUDA 核函数 & 关闭（\texttt{SCRATCHCNN\_KERNELS=0}）" in tex
    assert r"TF32 矩阵乘法 & 开启（\texttt{CUPY\_TF32}）" in tex
    assert "未记录" in tex
    assert "0.4900" in tex and "标准化" in tex
    assert split_sizes(tex) == {"训练集": "45,000", "验证集": "5,000", "测试集": "10,000"}
    assert "用随机种子 7" in tex
    assert "推理速度" not in tex


def test_the_blas_library_and_its_threads_are_shown_where_recorded():
    """Both move a CPU run's rounding (README); results made before they were recorded lack them."""
    inputs = fixture_inputs()
    assert "BLAS" not in text(R.build_context(**inputs))
    inputs["final_metrics"] = copy.deepcopy(inputs["final_metrics"])
    prov = inputs["final_metrics"]["provenance"]
    prov["versions"]["blas"] = "scipy-openblas 0.3.31.188.0"
    prov["settings"] = {"device": "cpu", "jobs_per_gpu": 1, "threads": 2}
    tex = text(R.build_context(**inputs))
    assert "BLAS 库 & scipy-openblas 0.3.31.188.0" in tex and "训练的 BLAS 线程数 & 2" in tex


def test_the_reports_own_code_version_is_shown_where_it_is_not_the_training_runs():
    """Figures and report made again after a code update (README: --forcerun figure render_report)."""
    inputs = fixture_inputs()
    trained = inputs["final_metrics"]["provenance"]["git_commit"]
    for same in (None, trained):
        assert "生成本报告的代码版本" not in text(R.build_context(**inputs, report_commit=same))
    tex = text(R.build_context(**inputs, report_commit="fedcba9876543210fedcba9876543210fedcba98"))
    assert r"生成本报告的代码版本 & \texttt{fedcba9876543210fedcba9876543210fedcba98}" in tex
    assert f"代码版本（git commit） & \\texttt{{{trained}}}" in tex


def test_gpu_numerics_rows_only_for_a_cupy_run():
    inputs = fixture_inputs()
    tex = text(R.build_context(**inputs))
    assert "CUDA 核函数" not in tex and "CUDA 运行时" not in tex  # a NumPy run has none
    assert "训练计算后端 & NumPy" in tex and "（NumPy 后端）上，推理速度" in tex and "numpy 后端" not in tex
    inputs["final_metrics"] = copy.deepcopy(inputs["final_metrics"])
    inputs["final_metrics"]["provenance"].update(backend="cupy", gpu_numerics={"custom_kernels": True, "tf32": False})
    tex = text(R.build_context(**inputs))
    assert "自定义 CUDA 核函数 & 启用" in tex and "TF32 矩阵乘法 & 关闭（完整 float32）" in tex
    assert "CUDA 图" not in tex  # results made before SCRATCHCNN_GRAPH existed do not say
    for on, said in ((True, r"训练步的 CUDA 图 & 启用（\texttt{SCRATCHCNN\_GRAPH=1}）"), (False, "训练步的 CUDA 图 & 关闭")):
        graph_inputs = copy.deepcopy(inputs)
        graph_inputs["final_metrics"]["provenance"]["gpu_numerics"]["cuda_graph"] = on
        assert said in text(R.build_context(**graph_inputs))
    # results made while SCRATCHCNN_WGRAD existed also record weight_gradients: they still render
    inputs["final_metrics"]["provenance"]["gpu_numerics"]["weight_gradients"] = "float64"
    assert text(R.build_context(**inputs)) == tex


def test_synthetic_data_and_diverged_loss_are_said():
    inputs = fixture_inputs()
    inputs["data_meta"] = {**inputs["data_meta"], "archive": "demo-cifar-10-python.tar.gz", "synthetic": True}
    tex = text(R.build_context(**inputs))
    assert "合成数据" in tex and r"demo-cifar-10-python.tar.gz" in tex
    assert "CIFAR-10 官方 Python 版本中的全部" not in tex
    assert "合成数据" not in text(ctx())
    c = ctx(history=make_history(VAL_LOSS[:-1] + [float("nan")]))
    assert c["val_loss"]["direction"] == "nonfinite"
    tex = text(c)
    assert "非有限值（训练发散）" in tex and not re.search(r"\bnan\b", tex.lower())


def test_first_layer_kernels_tells_colour_from_edges():
    """A flat red kernel is a colour detector; a vertical grey edge and a red/green edge are edge
    detectors, and only the grey one is a luminance edge."""
    k = 3
    flat_red = np.zeros((k, k, 3))
    flat_red[..., 0] = 1.0
    grey_edge = np.zeros((k, k, 3))
    grey_edge[:, 0, :], grey_edge[:, 2, :] = -1.0, 1.0
    colour_edge = np.zeros((k, k, 3))
    colour_edge[:, 0, 0], colour_edge[:, 2, 1] = 1.0, 1.0
    colour_edge[:, 0, 1], colour_edge[:, 2, 0] = -1.0, -1.0
    facts = R.facts.first_layer_kernels(np.stack([flat_red, grey_edge, colour_edge]))
    assert (facts["n"], facts["n_colour"], facts["n_edge"], facts["n_grey_edge"]) == (3, 1, 2, 1)
    # flat share: 1 (all of the red kernel is constant), 0, 0
    assert facts["mean_flat_share"] == pytest.approx(1 / 3)
    # chroma share: red alone -> 2/3 of its energy off the grey mean; grey edge 0; red/green edge 1
    assert facts["mean_chroma_share"] == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_as_many_colour_as_edge_kernels_read_as_equal():
    """Two flat colour kernels and two edge kernels: neither kind is the majority."""
    flat = np.zeros((3, 3, 3))
    flat[..., 0] = 1.0
    edge = np.zeros((3, 3, 3))
    edge[:, 0, :], edge[:, 2, :] = -1.0, 1.0
    kernels = ctx(first_layer=np.stack([flat, flat, edge, edge]))["kernels"]
    assert (kernels["n_colour"], kernels["n_edge"], kernels["mostly"]) == ("2", "2", "equal")


def test_a_test_accuracy_above_the_validation_accuracy_is_said_to_be_above():
    """Test 70 % against the best validation accuracy 60 %: 10 points higher, not lower."""
    inputs = fixture_inputs()
    inputs["final_metrics"]["best_val_acc"] = 0.60
    inputs["test_metrics"]["test_accuracy"] = 0.70
    c = R.build_context(**inputs)
    assert (c["train"]["test_vs_val"], c["train"]["test_val_diff_pp"]) == ("above", "10.00")
    assert says(text(c), r"测试准确率比验证集上的最好准确率（60.00\%）高 10.00 个百分点")


def test_a_shortened_history_table_keeps_the_best_epoch():
    """30 epochs are shown every third (1, 4, 7, ..., 28) and the last; the best epoch, 8, is
    not among them and gets its own row, marked best."""
    val_loss = [1.6 - 0.05 * min(e, 8) + 0.01 * max(0, e - 8) for e in range(1, 31)]
    inputs = fixture_inputs()
    inputs["history"] = make_history(val_loss, best_epoch=8)
    inputs["final_metrics"].update(best_epoch=8, epochs_run=30, epochs_planned=30)
    rows = R.build_context(**inputs)["history_rows"]
    assert [r["epoch"] for r in rows] == ["1", "4", "7", "8", "10", "13", "16", "19", "22", "25", "28", "30"]
    assert [r["epoch"] for r in rows if r["is_best"]] == ["8"]


def test_two_cpus_with_the_same_backend_are_not_the_same_device():
    """Training and evaluation both on NumPy, but on different processors: both are listed."""
    inputs = fixture_inputs()
    other = "AMD EPYC 7763 64-Core Processor"
    inputs["test_metrics"]["provenance"] = {**inputs["test_metrics"]["provenance"], "device": other}
    c = R.build_context(**inputs)
    assert c["env"]["same_device"] is False
    assert says(text(c), rf"评估设备 & {other} \\")


def test_full_batch_bytes():
    assert R.facts.full_batch_bytes(45000, (32, 32, 32)) == 45000 * 32 * 32 * 32 * 4


def test_memory_sizes_print_in_megabytes_below_a_gigabyte():
    assert R.size(5.9e9) == {"value": "5.9", "unit": "GB"} and R.size(1e9)["unit"] == "GB"
    assert R.size(9.83e6) == {"value": "9.8", "unit": "MB"} and R.size(999e6)["unit"] == "MB"
    # the fixture: 45,000 training images, a 32 x 32 x 64 first-layer output, batch 64
    tex = text(ctx())
    assert says(tex, f"就需要约 {45000 * 32 * 32 * 64 * 4 / 1e9:.1f}~GB，") and says(tex, "只需约 16.8~MB")
    demo = fixture_inputs(False)
    demo["data_meta"] = {**demo["data_meta"], "shapes": {"x_train": [300, 32, 32, 3]}}
    assert says(text(R.build_context(**demo)), f"就需要约 {300 * 32 * 32 * 64 * 4 / 1e6:.1f}~MB，")


def test_report_states_the_sweep_length_honestly():
    final_epochs = HP["epochs"]
    same = text(ctx(summary=make_summary().assign(epochs=final_epochs)))
    assert f"每个点都用与最终训练相同的方法训练（同为 {final_epochs} 个 epoch）" in same
    shorter = text(ctx(summary=make_summary().assign(epochs=5)))
    assert f"每个点都用与最终训练相同的方法训练（但只训练 5 个 epoch，最终训练为 {final_epochs} 个）" in shorter


def test_seeds_give_mean_and_spread_and_name_the_shown_seed():
    inputs = fixture_inputs()
    runs = [{"seed": s, "test_accuracy": a, "best_val_acc": v, "best_epoch": 12}
            for s, a, v in ((0, 0.6247, 0.6531), (1, 0.6101, 0.6488), (2, 0.6305, 0.6550))]  # fmt: skip
    inputs["test_metrics"] = {**inputs["test_metrics"], "seeds": {
        "shown": 0, "n": 3, "mean": 0.6217666, "std": 0.0105, "min": 0.6101, "max": 0.6305, "runs": runs}}  # fmt: skip
    tex = text(R.build_context(**inputs))
    assert r"\textbf{62.18\% $\pm$ 1.05\%}" in tex
    assert "种子 0：62.47\\%，种子 1：61.01\\%，种子 2：63.05\\%" in tex
    assert "使用种子 0 的模型" in tex
    assert r"\rowcolor{chosen}0 & 12 & 65.31 & 62.47 \\" in tex
    assert "62.18\\% $\\pm$ 1.05（3 个种子的均值）" in tex
    assert "个种子各训练一次" not in text(ctx())  # one run: no seed statistics claimed
    assert "沿用了那次训练的结果" not in tex  # no run was copied from the grid
    runs[1]["reused_from"] = "results/sweep/points/lr~0.01/reg~0.001/filters~32"
    copied = text(R.build_context(**inputs))
    assert "种子 1 的训练与参数查找中选中点的那次训练完全相同" in copied and "验证准确率正是参数查找按最高值选中该点的依据" in copied
    assert "的训练发散（损失不再有限而提前停止）" not in copied
    runs[2].update(status="diverged", best_val_acc=None, best_epoch=0)  # diverged in its first epoch
    diverged = text(R.build_context(**inputs))
    assert "种子 2 的训练发散（损失不再有限而提前停止），它的测试准确率照样计入均值和标准差。" in diverged
    assert r"2 & -- & -- & 63.05 \\" in diverged


def test_a_stand_in_archive_is_not_called_official():
    official = text(ctx())
    assert "本实验使用 CIFAR-10 官方 Python 版本中的全部" in official and "不是官方发布文件" not in official
    inputs = fixture_inputs()
    inputs["data_meta"] = {**inputs["data_meta"], "archive_md5": "90b78273681b59d9505503deffe130da"}
    stand_in = text(R.build_context(**inputs))
    assert "不是官方发布文件" in stand_in and "官方 Python 版本中的全部" not in stand_in
    assert r"其 MD5 为 \texttt{90b78273681b59d9505503deffe130da}（官方压缩包为 \texttt{c58f30108f718f92721af3b95e74349a}）" in stand_in


def test_the_official_md5_is_the_schema_default():
    import yaml

    from scratchcnn.data.download import OFFICIAL_MD5

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["data"]["properties"]["md5"]["default"] == OFFICIAL_MD5


def test_a_training_subset_is_said_where_the_training_set_is_counted():
    inputs = fixture_inputs()
    whole = text(R.build_context(**inputs))
    assert "train\\_subset" not in whole and says(whole, "本实验 $M=45,000$") and "更新 704 次参数" in whole
    inputs["final_metrics"]["provenance"] = {**inputs["final_metrics"]["provenance"], "config": {"train_subset": 6000}}
    tex = text(R.build_context(**inputs))
    assert table_rows(tex, "tab:split")["训练集"] == ["45,000", "更新参数（本次只用了前 6,000 张）"]
    assert says(tex, "按配置项 \\texttt{train.train\\_subset}，参数查找和最终训练都只用了训练集 45,000 张图像中的前 6,000 张")
    assert says(tex, "本实验 $M=6,000$") and "更新 94 次参数" in tex  # ceil(6,000 / 64)
    # a subset no smaller than the training set changes nothing
    inputs["final_metrics"]["provenance"]["config"] = {"train_subset": 50000}
    assert text(R.build_context(**inputs)) == whole


def test_training_images_come_from_the_split_and_the_subset():
    shapes = {"shapes": {"x_train": [45000, 32, 32, 3]}}
    prov = {"provenance": {"config": {"train_subset": 6000}}}
    assert R.facts.training_images(shapes, {}) == 45000
    assert R.facts.training_images(shapes, prov) == 6000
    assert R.facts.training_images({"n_train": 400}, prov) == 400
    assert R.facts.training_images({}, prov) == 6000 and R.facts.training_images({}, {}) is None


def test_without_clipping_the_report_does_not_credit_it():
    inputs = fixture_inputs()
    tex = text(R.build_context(**inputs))
    assert "批归一化、梯度裁剪与学习率阶梯衰减使训练稳定" in tex and "L2 正则化与梯度裁剪）训练网络" in tex
    inputs["final_metrics"]["hyperparameters"] = {**inputs["final_metrics"]["hyperparameters"], "clip": None}  # clip 0: recorded as None
    tex = text(R.build_context(**inputs))
    assert "批归一化与学习率阶梯衰减使训练稳定" in tex and "L2 正则化）训练网络" in tex
    assert "本次训练没有启用梯度裁剪" in tex
    assert "梯度裁剪" not in tex.replace("没有启用梯度裁剪", "")


def test_without_l2_the_report_does_not_claim_it():
    inputs = fixture_inputs()
    tex = text(R.build_context(**inputs))
    assert "配合学习率阶梯衰减、L2 正则化与梯度裁剪" in tex and "模型只用了 L2 正则化，没有数据增强或 dropout。" in tex
    inputs["final_metrics"]["hyperparameters"] = {**inputs["final_metrics"]["hyperparameters"], "reg": 0.0}
    tex = text(R.build_context(**inputs))
    assert "配合学习率阶梯衰减与梯度裁剪" in tex and "只用了 L2 正则化" not in tex
    assert "模型没有任何正则化（$\\lambda=0$），也没有数据增强或 dropout。" in tex


def test_a_grid_that_keeps_lr_and_reg_says_its_heat_map_has_one_cell():
    inputs = fixture_inputs()
    assert "以热图展示了查找 \\texttt{lr\\_reg} 中每个" in text(R.build_context(**inputs))
    summary = inputs["summary"]
    inputs["summary"] = summary[summary["sweep"] == "filters"].reset_index(drop=True)
    tex = text(R.build_context(**inputs))
    assert says(tex, "本次的网格没有改变学习率和正则化强度，所有网格点都用 lr=0.01、reg=0.001")
    assert "以热图展示了" not in tex


def test_a_sweep_of_one_point_says_it_varies_nothing():
    inputs = fixture_inputs()
    tex = text(R.build_context(**inputs))
    assert "这一组共 9 个点，改变的是" in tex and "没有改变任何超参数" not in tex
    summary = inputs["summary"]
    inputs["summary"] = summary[(summary["sweep"] == "filters") & (summary["filters"] == 64)].reset_index(drop=True)
    tex = text(R.build_context(**inputs))
    assert "这一组共 1 个点，没有改变任何超参数。" in tex and "改变的是" not in tex


def test_the_labels_are_counted_from_zero_to_the_last():
    tex = text(ctx())
    assert "标签以整数 $0,\\dots,9$ 保存" in tex and "-1$ 保存" not in tex


def test_a_heat_map_sweep_without_a_finished_point_is_not_called_unvaried():
    inputs = fixture_inputs()
    summary = inputs["summary"].copy()
    lr_reg = summary["sweep"] == "lr_reg"
    summary.loc[lr_reg, "status"] = "diverged"
    inputs["summary"] = summary
    tex = text(R.build_context(**inputs))
    assert "以热图展示了学习率与正则化强度组合的最好验证准确率" in tex and "没有改变学习率和正则化强度" not in tex


def test_a_tie_in_a_sweep_is_told_as_the_selection_broke_it():
    """Two points of a sweep with the same accuracy: the report's best of the sweep is the one the
    selection chose (the earlier in the grid: sweeps.choose_best, whose pick a later sweep builds
    on), not the first in the table's order of values, and the prose calls it a tie."""
    summary = make_summary()
    lr_reg = summary["sweep"] == "lr_reg"
    summary.loc[lr_reg & (summary["lr"] == 0.01) & (summary["reg"] == 0.0001), "best_val_acc"] = 0.6398
    chosen = choose_best(summary[lr_reg].to_dict("records"))
    assert (chosen["lr"], chosen["reg"]) == (0.01, 0.001)  # the grid's order, not the table's (reg 0.0001 first)
    [sweep] = [s for s in ctx(summary=summary)["sweeps"] if s["raw_name"] == "lr_reg"]
    assert (sweep["best"]["lr"], sweep["best"]["reg"]) == ("0.01", "0.001")
    assert (sweep["second"]["lr"], sweep["second"]["reg"]) == ("0.01", "0.0001") and sweep["margin_kind"] == "equal"
    tex = text(ctx(summary=summary))
    assert says(tex, "其中最好的点是 lr=0.01、reg=0.001、filters=32，验证准确率 63.98\\%，")
    assert says(tex, "与 lr=0.01、reg=0.0001、filters=32 的点并列（准确率相同时取网格中排在前面的点）")
    assert "高 0.00 个百分点" not in tex
    assert says(text(ctx()), "比第二名（lr=0.01、reg=0.0001、filters=32，63.22\\%）高 0.76 个百分点")


def test_the_heat_map_paragraph_describes_the_sweep_the_figure_shows():
    """The report's words on the lr x L2 heat map and the figure pick the same sweep (one rule,
    sweeps.shown_sweep), also where an earlier sweep varies fewer values; a sweep with one point
    left finished (the others diverged) has a best but no worst, and the report still renders."""
    import matplotlib.pyplot as plt

    from scratchcnn import figures

    rows = lambda sweep, pts, status="ok": [{"sweep": sweep, "lr": lr, "reg": reg, "filters": 32, "best_val_acc": acc,
                                             "best_epoch": 5, "epochs": 10, "seconds": 300.0, "seconds_per_epoch": 30.0,
                                             "status": status} for lr, reg, acc in pts]  # fmt: skip
    summary = pd.DataFrame(rows("regs", [(0.01, 1e-3, 0.6398), (0.01, 1e-2, 0.6011)])
                           + rows("lrs", [(0.1, 1e-3, 0.5402), (0.01, 1e-3, 0.6398), (0.001, 1e-3, 0.4955)]))  # fmt: skip
    best = {"sweep": "regs", "lr": 0.01, "reg": 1e-3, "filters": 32, "best_val_acc": 0.6398}
    c = ctx(summary=summary, best=best)
    assert c["heatmap_sweep"]["raw_name"] == "lrs"
    fig = figures.sweep_heatmap(summary, "en")
    assert len(fig.axes[0].get_xticks()) == 3 and len(fig.axes[0].get_yticks()) == 1  # lrs' three lrs, one reg
    plt.close(fig)
    assert says(text(c), "以热图展示了查找 \\texttt{lrs} 中每个")
    summary.loc[summary["lr"] != 0.01, ["status", "best_val_acc"]] = ["diverged", float("nan")]
    tex = text(ctx(summary=summary, best=best))
    assert says(tex, "最好的组合是 lr=0.01、reg=0.001（63.98\\%），其余的组合都没有正常完成。")


def test_a_best_first_epoch_is_not_called_a_rise():
    history = make_history(best_epoch=1)
    final = {**fixture_inputs()["final_metrics"], "best_epoch": 1, "best_val_acc": float(history["val_acc"][0])}
    tex = text(ctx(history=history, final_metrics=final))
    assert says(tex, "验证准确率在第 1 个 epoch 就达到最高值 64.12\\%，之后的 epoch 都没有超过它。")
    assert "升到第 1 个 epoch" not in tex
    one = history.iloc[:1]
    tex = text(ctx(history=one, final_metrics={**final, "epochs_run": 1, "epochs_planned": 1}))
    assert says(tex, "验证准确率为 64.12\\%。") and "就达到最高值" not in tex
    assert says(text(ctx()), "验证准确率从第 1 个 epoch 的 42.01\\% 升到第 12 个 epoch 的最高值 64.12\\%")


def test_the_loss_trend_quotes_its_fitted_line_and_doubts_a_minimum_in_the_last_epoch():
    """The trend word comes from a line fitted to the last epochs: the numbers quoted beside it are
    that line's ends (the raw first and last values may go the other way), and a rise whose lowest
    value is the last epoch's is not called overfitting."""
    val_loss = [1.6, 1.4, 1.3, 1.2, 1.1, 1.05, 1.02, 1.01, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.5, 0.99]
    c = ctx(history=make_history(val_loss, best_epoch=10))
    trend = R.val_loss_trend(make_history(val_loss, best_epoch=10))
    assert trend["direction"] == "rising" and trend["last"] < trend["first"] and trend["min_is_last"]
    assert trend["fit_last"] > trend["fit_first"]
    tex = text(c)
    assert says(tex, f"中按线性拟合由 {trend['fit_first']:.4f} 回升到 {trend['fit_last']:.4f}")
    assert says(tex, "但最低值 0.9900 恰好出现在最后一个 epoch，走势并不明确") and "过拟合，继续训练" not in tex
    tex = text(ctx())  # the fixture's loss rises after epoch 10, its lowest value
    assert says(tex, "最低值 1.0350 出现在第 10 个 epoch：模型在后期开始过拟合") and "走势并不明确" not in tex


def test_a_point_repeated_by_a_later_sweep_is_counted_once():
    """The filters sweep repeats lr_reg's best point (trained once, in two summaries): the chosen
    point is not the best "of 2 finished points" and "the only one" at once."""
    row = {"lr": 0.01, "reg": 0.001, "filters": 32, "best_val_acc": 0.64, "best_epoch": 9, "epochs": 10,
           "seconds": 300.0, "seconds_per_epoch": 30.0, "status": "ok"}  # fmt: skip
    summary = pd.DataFrame([{"sweep": "lr_reg", **row}, {"sweep": "filters", **row},
                            {"sweep": "filters", **row, "filters": 64, "best_val_acc": None, "status": "diverged"}])  # fmt: skip
    best = {**row, "sweep": "lr_reg", "path": "results/sweep/points/x"}
    c = ctx(summary=summary, best=best)
    assert c["chosen"]["n_ok"] == "1" and c["chosen"]["n_points"] == "3"
    assert says(text(c), "它是全部 1 个正常完成的网格点中验证准确率最高的一个， 也是唯一一个正常完成的点。")
    assert ctx()["chosen"]["n_ok"] == "11"  # the fixture's 13 rows: one diverged, (0.01, 0.001, 32) in both sweeps


def test_the_heat_map_words_name_its_cells_not_single_points():
    """A sweep over lr, reg and filters: each heat-map cell shows its best point over the filter
    counts, and the worst cell the report names is the one with the lowest such value."""
    rows = [(0.1, 1e-3, 16, 0.60), (0.1, 1e-3, 64, 0.40), (0.01, 1e-3, 16, 0.50), (0.01, 1e-3, 64, 0.55)]
    summary = pd.DataFrame([{"sweep": "all3", "lr": lr, "reg": reg, "filters": f, "best_val_acc": acc,
                             "best_epoch": 5, "epochs": 10, "seconds": 10.0 * f, "seconds_per_epoch": float(f),
                             "status": "ok"} for lr, reg, f, acc in rows])  # fmt: skip
    best = {"sweep": "all3", "lr": 0.1, "reg": 1e-3, "filters": 16, "best_val_acc": 0.60}
    tex = text(ctx(summary=summary, best=best))
    assert says(tex, "最好的组合是 lr=0.1、reg=0.001（60.00\\%）， 最差的正常完成的组合是 lr=0.01、reg=0.001（55.00\\%）。")
    summary["best_val_acc"] = 0.6  # every cell the same
    tex = text(ctx(summary=summary, best=best))
    assert says(tex, "最好的组合是 lr=0.1、reg=0.001（60.00\\%），所有正常完成的组合都是这一准确率。")


def test_the_filter_cost_reads_the_figures_numbers_and_says_when_too_few_finished():
    from scratchcnn.sweeps import by_value

    summary = make_summary()
    filters = summary["sweep"] == "filters"
    summary.loc[filters & (summary["filters"] == 8), ["status", "best_val_acc", "seconds_per_epoch"]] = ["diverged", None, 14.0]
    extra = summary[filters & (summary["filters"] == 64)].assign(status="diverged", best_val_acc=None, seconds_per_epoch=90.0)
    summary = pd.concat([summary, extra], ignore_index=True)
    table = by_value(summary[summary["sweep"] == "filters"], ("filters",))
    assert list(table["seconds_per_epoch"]) == [14.0, 18.5, 30.2, (61.7 + 90.0) / 2]  # every point's time
    assert list(table["diverged"]) == [True, False, False, False]
    fc = ctx(summary=summary)["filter_cost"]
    # the table's times are the figure's (all points); the words compare the finished filter counts
    assert [r["seconds_per_epoch"] for r in fc["rows"]] == ["14.0", "18.5", "30.2", "75.8"]
    assert [r["val_pct"] for r in fc["rows"]] == [None, "60.13", "64.02", "65.31"]
    assert (fc["low_filters"], fc["high_filters"], fc["ratio"]) == ("16", "64", f"{75.85 / 18.5:.2f}")
    tex = text(ctx(summary=summary))
    assert says(tex, "8 & 14.0 & 1.00 & --（发散） \\\\")
    summary.loc[(summary["sweep"] == "filters") & (summary["filters"] != 32), ["status", "best_val_acc"]] = ["diverged", None]
    c = ctx(summary=summary)
    assert c["filter_cost"]["comparable"] is False and c["filter_cost"]["n_finished"] == "1"
    tex = text(c)
    assert says(tex, "查找 \\texttt{filters} 改变了卷积核数量（8、16、32、64），但只有一个卷积核数量的点正常完成")
    assert "没有改变卷积核数量" not in tex and "更多的卷积核要花更多时间" not in tex


def test_a_rate_that_never_decays_is_not_said_to_fall():
    history = make_history().iloc[:5]
    final = {**fixture_inputs()["final_metrics"], "epochs_run": 5, "epochs_planned": 5, "best_epoch": 5,
             "best_val_acc": float(history["val_acc"].max())}  # fmt: skip
    tex = text(ctx(history=history, final_metrics=final))
    assert "最终训练中学习率始终为 0.01，没有衰减。" in tex and "降到" not in tex.split("学习率按阶梯衰减")[1][:300]
    assert "最终训练中学习率从 0.01 降到 0.00125，共使用了 4 个不同的取值。" in text(ctx())


def test_a_perfect_test_set_names_no_best_or_worst_class_and_no_confusion():
    inputs = fixture_inputs()
    tm = make_test_metrics(np.diag([20] * 10), CIFAR, inputs["test_metrics"]["provenance"])
    c = ctx(test_metrics=tm)
    assert c["classes"]["all_equal"] and c["classes"]["no_errors"]
    assert not any(r["is_best"] or r["is_worst"] for r in c["classes"]["rows"])
    tex = text(c)
    assert "10 个类别的准确率都是 100.00\\%" in tex and "各类别的精确率都是 100.00\\%" in tex
    assert "测试集上没有分类错误" in tex
    for claim in ("表现最好的类别是", "最弱的类别", "个错误中", "tab:confused", "精确率最低的类别是"):
        assert claim not in tex, claim


def test_a_shown_seed_that_diverged_in_its_first_epoch_renders():
    """train.py writes best_val_acc None and best_epoch 0 for a run that diverged in its first
    epoch (the shown seed may be another than the chosen grid point's): the report says so."""
    history = make_history().iloc[:1].copy()
    history[["train_loss", "val_loss"]] = float("nan")
    final = {**fixture_inputs()["final_metrics"], "status": "diverged", "best_val_acc": None, "best_epoch": 0,
             "epochs_run": 1}  # fmt: skip
    test_metrics = {**fixture_inputs()["test_metrics"], "test_loss": None}  # NaN, written as null
    tex = text(ctx(history=history, final_metrics=final, test_metrics=test_metrics))
    assert "第 1 个 epoch 的损失就不再有限（发散），没有得到有效的验证准确率，因此也没有最优检查点。" in tex
    assert "交叉熵损失不是有限值（参数已发散）" in tex and "测试损失不是有限值" in tex
    assert "载入训练发散时保存的参数（没有最优检查点）" in tex
    assert "最优检查点使测试结果" in tex  # the method's design, still true
    assert "验证集上的最好准确率为" not in tex and "灰色底纹标出最优 epoch" not in tex


def shortcomings(tex: str) -> str:
    return tex[tex.index("\\subsection{不足}"):tex.index("\\subsection{改进方向}")]


def test_the_fit_is_read_from_the_gap_and_the_loss_together():
    """The shortcomings call overfitting where the validation loss rose or the training accuracy
    leads by 2 points or more, underfitting only where it does not lead and the loss did not
    rise, and neither for a small lead; a gap is a size, its direction in the words."""
    h = make_history()  # the fixture: training 75.00 %, validation 62.52 %, the loss rising after epoch 10
    tex = text(ctx(history=h))
    assert says(shortcomings(tex), "存在过拟合（最后一个 epoch 的训练准确率比验证准确率高 12.48 个百分点，验证损失在最后 5 个 epoch 中回升）")
    assert "dropout，以缩小训练与验证之间的差距" in tex
    below = h.copy()
    below.loc[below.index[-1], "train_acc"] = 0.58
    tex = text(ctx(history=below))
    assert "训练准确率反而低 4.52 个百分点" in tex and "-4.52" not in tex
    # the loss still rose: overfitting, not also underfitting
    assert "存在过拟合（验证损失在最后 5 个 epoch 中回升）" in shortcomings(tex) and "欠拟合" not in tex
    falling = make_history(list(np.linspace(1.8, 0.9, 20)), best_epoch=20)
    close = falling.copy()
    close.loc[close.index[-1], "train_acc"] = float(close["val_acc"].iloc[-1]) + 0.0006  # a 0.06-point lead
    tex = text(ctx(history=close))
    assert "过拟合" not in shortcomings(tex) and "欠拟合" not in tex and "以缩小训练与验证之间的差距" not in tex
    equal = falling.copy()
    equal.loc[equal.index[-1], "train_acc"] = float(equal["val_acc"].iloc[-1]) + 0.0004  # prints as a lead
    tex = text(ctx(history=equal))
    assert "两者基本相同" in tex and "可能不足（欠拟合）" in shortcomings(tex)
    assert R.facts.fit_reading(0.75, 0.6252, R.val_loss_trend(falling), "diverged") == "diverged"
    # exactly the overfitting margin (2 points) as printed, whatever the float subtraction gives
    assert [R.facts.fit_reading(a, b, {}, "ok") for a, b in ((0.70, 0.68), (0.75, 0.73), (0.70, 0.6801))] == [
        "overfit", "overfit", "close"]  # fmt: skip
    short = h.iloc[:2].copy()  # too few epochs for a trend: the gap alone decides
    short.loc[1, "train_acc"] = 0.9
    final = {**fixture_inputs()["final_metrics"], "epochs_run": 2, "best_epoch": 2, "best_val_acc": 0.4482}
    assert "存在过拟合（最后一个 epoch 的训练准确率比验证准确率高 45.98 个百分点）" in text(ctx(history=short, final_metrics=final))


def test_a_final_run_that_diverged_is_not_credited_with_stable_training():
    h = make_history().iloc[:4].copy()
    h.loc[h.index[-1], ["train_loss", "val_loss", "val_acc"]] = [np.nan, np.nan, 0.1]
    final = {**fixture_inputs()["final_metrics"], "status": "diverged", "best_epoch": 3, "epochs_run": 4,
             "best_val_acc": float(h["val_acc"].iloc[2])}  # fmt: skip
    tex = text(ctx(history=h, final_metrics=final))
    assert "使训练稳定" not in tex and "过拟合；" not in tex
    assert "实际完成 4 个（状态：发散）" in tex and "diverged" not in tex.split("\\subsection{训练记录}")[1][:300]  # in Chinese
    assert says(shortcomings(tex), "最终训练没有正常完成：第 4 个 epoch 的损失不再有限（发散），测试用的是此前验证准确率最高的第 3 个 epoch 的检查点。")
    assert says(text(ctx()), "批归一化、梯度裁剪与学习率阶梯衰减使训练稳定")
    no_decay = make_history().iloc[:5]
    final = {**fixture_inputs()["final_metrics"], "epochs_run": 5, "best_epoch": 5,
             "best_val_acc": float(no_decay["val_acc"].max())}  # fmt: skip
    assert says(text(ctx(history=no_decay, final_metrics=final)), "批归一化与梯度裁剪使训练稳定")


def test_epoch_times_within_five_percent_are_no_cost():
    summary = make_summary()
    filters = summary["sweep"] == "filters"
    summary.loc[filters, "seconds_per_epoch"] = [30.01, 30.02, 30.03, 30.04]
    c = ctx(summary=summary)
    assert c["filter_cost"]["cost_direction"] == "equal"
    tex = text(c)
    assert "几乎不变（30.0 秒）" in tex and "多花约" not in tex and "要花更多时间" not in tex
    assert "更多的卷积核要花更多时间：从 8 个增加到 64 个，每个 epoch 的耗时变为" in text(ctx())  # 12.0 -> 61.7 s


def test_a_sweep_longer_than_the_final_training_is_not_called_shorter():
    summary = make_summary()
    summary["epochs"] = 30
    tex = text(ctx(summary=summary))
    assert "每个点训练 30 个 epoch，比最终训练的 20 个多" in tex and "但只训练" not in tex
    summary["epochs"] = 10
    assert "但只训练 10 个 epoch，最终训练为 20 个" in text(ctx(summary=summary))


def test_a_class_never_predicted_is_said_so_not_the_most_wrong():
    cm = confusion_matrix()
    cm[:, 0] += cm[:, 9]  # no image predicted as truck: its column moves to airplane's
    cm[:, 9] = 0
    inputs = fixture_inputs()
    tm = make_test_metrics(cm, CIFAR, inputs["test_metrics"]["provenance"])
    tex = text(ctx(test_metrics=tm))
    assert says(tex, "没有一张测试图像被预测为 “truck（卡车）”， 网络从不给出这一预测（其精确率按 0 计）。")
    assert "精确率最低的类别是" not in tex
    assert "精确率最低的类别是" in text(ctx())


def test_synthetic_data_get_no_reasons_drawn_from_photographs():
    inputs = fixture_inputs()
    tex = text(R.build_context(**inputs))
    assert "天空、道路、水面" in tex and "外观相近的类别" in tex
    inputs["data_meta"] = {**inputs["data_meta"], "synthetic": True}
    tex = text(R.build_context(**inputs))
    assert "天空、道路、水面" not in tex and "外观相近" not in tex
    assert "说明网络难以区分这些类别" in tex


def test_one_update_an_epoch_is_not_called_more_steps_than_full_batch():
    inputs = fixture_inputs()
    inputs["final_metrics"] = {**inputs["final_metrics"], "provenance": {
        **inputs["final_metrics"]["provenance"], "config": {"train_subset": 50}}}  # 50 images, batch 64
    tex = text(R.build_context(**inputs))
    assert "每个 epoch 只更新 1 次参数，与全批量梯度下降相同" in tex and "多走得多的步数" not in tex
    assert "每个 epoch 更新 704 次参数" in text(ctx())


@pytest.mark.parametrize("seed", range(40))
def test_any_grid_renders_and_names_each_sweeps_pick_as_the_selection_does(seed):
    """Random grids (one to three sweeps varying any of lr, reg and filters, ties, diverged points,
    sweeps where one or no point finished): the report renders, highlights the chosen row once, and
    names as each sweep's best the point sweeps.choose_best picks from that sweep's rows."""
    rng = np.random.default_rng(seed)
    values = {"lr": [0.1, 0.01, 0.001], "reg": [0.0, 1e-4, 1e-3], "filters": [8, 16, 32]}
    rows = []
    for s in range(rng.integers(1, 4)):
        varied = [h for h in values if rng.random() < 0.5] or [str(rng.choice(list(values)))]
        axes = {h: list(rng.choice(values[h], size=rng.integers(1, 4), replace=False)) if h in varied
                else [values[h][1]] for h in values}  # fmt: skip
        for lr in axes["lr"]:
            for reg in axes["reg"]:
                for f in axes["filters"]:
                    diverged = rng.random() < 0.3
                    rows.append({"sweep": f"s{s}", "lr": float(lr), "reg": float(reg), "filters": int(f),
                                 "best_val_acc": np.nan if diverged else float(rng.choice([0.5, 0.6, 0.6, 0.7])),
                                 "best_epoch": 0 if diverged else 3, "epochs": 2 if diverged else 10,
                                 "seconds": 10.0 * f, "seconds_per_epoch": float(f),
                                 "status": "diverged" if diverged else "ok"})  # fmt: skip
    summary = pd.DataFrame(rows)
    if not (summary["status"] == "ok").any():
        summary.loc[0, ["status", "best_val_acc", "best_epoch", "epochs"]] = ["ok", 0.55, 3, 10]
    records = [{**r, "best_val_acc": None if r["status"] != "ok" else r["best_val_acc"]}
               for r in summary.to_dict("records")]  # fmt: skip
    best = {**choose_best(records), "path": "results/sweep/points/x"}
    inputs = fixture_inputs()
    inputs["final_metrics"]["hyperparameters"] = {**HP, **{h: best[h] for h in ("lr", "reg", "filters")}}
    c = R.build_context(**{**inputs, "summary": summary, "best": best})
    text(c)  # renders: no attribute of a missing point is asked for
    assert sum(r["chosen"] for s in c["sweeps"] for r in s["rows"]) == 1
    for entry in c["sweeps"]:
        sweep_rows = [r for r in records if r["sweep"] == entry["raw_name"]]
        if not any(r["status"] == "ok" for r in sweep_rows):
            assert entry["best"] is None
            continue
        pick = choose_best(sweep_rows)
        assert (entry["best"]["lr"], entry["best"]["reg"], entry["best"]["filters"]) == (
            R.plain(pick["lr"]), R.plain(pick["reg"]), str(pick["filters"])), entry["raw_name"]


def test_times_measured_while_jobs_shared_a_gpu_say_so():
    """Where several jobs could share a GPU (jobs_per_gpu above 1), a point's seconds per epoch
    include waiting for the others: the report says so wherever it quotes or compares them."""
    sweeps_said = ("含有等待同一 GPU 上其它任务的时间", "耗时的差别可能有一部分来自同时运行的其它任务",
                   "上测得（每块 GPU 最多同时运行 4 个训练任务）")  # fmt: skip
    final_said = "（每块 GPU 最多同时运行 4 个训练任务，含等待其它任务的时间）"
    alone = text(ctx())  # the CPU's points: no column at all
    assert not any(s in alone for s in (*sweeps_said, final_said))
    summary = make_summary()
    summary["jobs_per_gpu"] = 1
    assert text(ctx(summary=summary)) == alone
    summary["jobs_per_gpu"] = [4 if s == "filters" else None for s in summary["sweep"]]
    tex = text(ctx(summary=summary))
    assert all(s in tex for s in sweeps_said) and final_said not in tex
    assert "\\texttt{jobs\\_per\\_gpu} = 4" in tex
    final = copy.deepcopy(fixture_inputs()["final_metrics"])
    final["backend"] = "cupy"
    final["provenance"]["settings"] = {"device": "gpu", "jobs_per_gpu": 4}
    tex = text(ctx(final_metrics=final))
    assert final_said in tex and not any(s in tex for s in sweeps_said)
    assert re.search(r"共 \S+ (秒|分钟|小时)（每块 GPU 最多同时运行 4 个训练任务）。", tex)  # the overview's final run


# ----------------------------------------------------------------------------- words at the numbers' edges


def test_a_seed_mean_level_with_the_study_is_named_as_the_mean():
    """The verdict comes from the seeds' mean; the sentence must not read as the shown seed's."""
    inputs = fixture_inputs()
    runs = [{"seed": s, "test_accuracy": a, "best_val_acc": 0.65, "best_epoch": 12}
            for s, a in ((0, 0.6247), (1, 0.6001), (2, 0.6142))]  # fmt: skip
    inputs["test_metrics"] = {**inputs["test_metrics"], "seeds": {
        "shown": 0, "n": 3, "mean": 0.613, "std": 0.0123, "min": 0.6001, "max": 0.6247, "runs": runs}}  # fmt: skip
    tex = text(R.build_context(**inputs))
    assert says(tex, "与原研究报告的 61.3\\% 相比，本次复现（按 3 个种子的均值 61.30\\% 计）与之持平（相差不到 0.05 个百分点）。")


def test_a_difference_of_exactly_the_equal_margin_is_not_called_equal_either_way():
    assert R.facts.compare(0.6125, 0.613) == "below" and R.facts.compare(0.6135, 0.613) == "above"
    assert R.facts.compare(0.61305, 0.613) == "equal"


def test_the_fc_layer_is_called_large_only_where_it_holds_most_parameters():
    few = text(ctx(arch=arch(8, 8)))  # FC 82 % of the parameters
    assert "全连接层却占了 82.4\\% 的参数" in few and "或全局平均池化代替大的全连接层，以较少的参数获得更大的感受野" in few
    many = text(ctx(arch=arch(128, 128)))  # FC 29 %
    assert "全连接层却占了" not in many and "全局平均池化" not in many
    assert says(many, "网络只有两个卷积层，感受野小。") and "更深的网络（每个阶段两层卷积），以获得更大的感受野；" in many


def test_classes_never_predicted_get_a_plural_and_no_reasons_for_the_groups():
    cm = confusion_matrix()
    for gone in (2, 9):  # bird and truck never predicted: their columns move to airplane's
        cm[:, 0] += cm[:, gone]
        cm[:, gone] = 0
    inputs = fixture_inputs()
    tex = text(ctx(test_metrics=make_test_metrics(cm, CIFAR, inputs["test_metrics"]["provenance"])))
    assert says(tex, "网络从不给出这些预测（其精确率按 0 计）") and "天空、道路、水面" not in tex
    assert "天空、道路、水面" in text(ctx())


def test_a_training_subset_is_not_called_all_of_the_training_images():
    inputs = fixture_inputs()
    assert "官方 Python 版本中的全部" in text(R.build_context(**inputs))
    inputs["final_metrics"]["provenance"] = {**inputs["final_metrics"]["provenance"], "config": {"train_subset": 6000}}
    tex = text(R.build_context(**inputs))
    assert "中的全部" not in tex and "本实验使用 CIFAR-10 官方 Python 版本中的" in tex


def test_the_goals_name_step_decay_only_where_the_rate_fell():
    assert "用小批量随机梯度下降（配合学习率阶梯衰减、L2 正则化与梯度裁剪）训练网络" in text(ctx())
    no_decay = make_history().iloc[:5]
    final = {**fixture_inputs()["final_metrics"], "epochs_run": 5, "best_epoch": 5,
             "best_val_acc": float(no_decay["val_acc"].max())}  # fmt: skip
    assert "用小批量随机梯度下降（配合L2 正则化与梯度裁剪）训练网络" in text(ctx(history=no_decay, final_metrics=final))


def test_filter_counts_tied_for_the_best_are_all_named():
    summary = make_summary()
    summary.loc[(summary["sweep"] == "filters") & (summary["filters"] == 32), "best_val_acc"] = 0.6531
    assert "这一组中验证准确率最高的卷积核数量为 32、64（并列）。" in text(ctx(summary=summary))
    assert "这一组中验证准确率最高的卷积核数量为 64。" in text(ctx())


def chance_level_inputs():
    """A final run that finished without learning (the fuzzed lr 1000 of 2026-12-08): accuracies
    near 10 %, a validation loss falling at first, then rising again."""
    inputs = fixture_inputs()
    h = make_history([2.40, 2.35, 2.30, 2.45, 2.60, 2.80], best_epoch=3)
    h["train_acc"] = [0.101, 0.112, 0.125, 0.131, 0.140, 0.1467]
    h["val_acc"] = [0.098, 0.104, 0.1212, 0.100, 0.100, 0.100]
    inputs["history"] = h
    inputs["final_metrics"] = {**inputs["final_metrics"], "best_val_acc": 0.1212, "best_epoch": 3, "epochs_run": 6,
                               "epochs_planned": 6}  # fmt: skip
    n = 1000  # every test image called airplane: 10 % correct
    cm = np.zeros((10, 10), dtype=int)
    cm[:, 0] = n
    inputs["test_metrics"] = make_test_metrics(cm, CIFAR, inputs["final_metrics"]["provenance"])
    return inputs


def test_a_model_at_chance_is_not_read_as_overfitting_or_as_still_learning():
    """A run that learned nothing gets no overfitting verdict nor advice to train longer: the report
    says it is at chance, in the summary and the shortcomings, and what to check."""
    near = R.facts.near_chance
    assert near(0.10, 10) and near(0.1499, 10) and not near(0.15, 10) and not near(0.5733, 10)
    assert near(0.52, 2) and not near(0.55, 2) and not near(None, 10) and not near(float("nan"), 10)
    assert R.facts.fit_reading(0.1467, 0.10, {"rose": True}, "ok", learned=False) == "chance"
    assert R.facts.fit_reading(0.1467, 0.10, {"rose": True}, "diverged", learned=False) == "diverged"
    tex = text(R.build_context(**chance_level_inputs()))
    assert "过拟合" not in shortcomings(tex) and "欠拟合" not in tex
    assert says(tex, "最终模型没有学到东西：验证集上的最好准确率只有 12.12\\%，接近随机猜测的 10.00\\%")
    assert says(tex, "注意：这一测试准确率接近随机猜测（10 个类别时为 10.00\\%）")
    assert "这一回升并不是过拟合" in tex and "模型在后期开始过拟合" not in tex
    assert "以缩小训练与验证之间的差距" not in tex
    # the same history with accuracies that learned: the old readings stand
    learned = chance_level_inputs()
    learned["history"]["train_acc"] += 0.5
    learned["history"]["val_acc"] += 0.4
    learned["final_metrics"]["best_val_acc"] = 0.5212
    learned["test_metrics"] = fixture_inputs()["test_metrics"]
    tex = text(R.build_context(**learned))
    assert "模型在后期开始过拟合" in tex and "存在过拟合" in shortcomings(tex) and "接近随机猜测" not in tex


def test_a_model_at_chance_with_a_falling_loss_is_not_told_to_train_longer():
    inputs = chance_level_inputs()
    inputs["history"]["val_loss"] = [2.40, 2.35, 2.30, 2.20, 2.10, 2.00]
    tex = text(R.build_context(**inputs))
    assert "与其增加 epoch 数，不如先检查学习率等设置" in tex
    assert "增加训练的 epoch 数可能还能进一步提高准确率" not in tex and "可以增加训练的 epoch 数" not in tex


def test_a_batch_larger_than_the_training_set_is_not_said_to_need_less_memory():
    """B above M: one batch is the whole training set, so the two memory figures are one."""
    inputs = fixture_inputs()
    tex = text(R.build_context(**inputs))
    assert says(tex, "而一个小批量只需约 16.8~MB")  # 64 x 32 x 32 x 64 float32
    inputs["data_meta"] = {**inputs["data_meta"], "shapes": {**inputs["data_meta"]["shapes"], "x_train": [300, 32, 32, 3]}}
    inputs["final_metrics"]["hyperparameters"] = {**HP, "batch_size": 1000}
    tex = text(R.build_context(**inputs))
    assert "训练集不超过一个小批量" in tex and "本实验的一个小批量就是整个训练集，占用相同。" in tex
    assert "只需约" not in tex


def test_learning_rates_after_decay_print_as_written():
    """0.05 decayed three times by 0.1 is 5.0000000000000016e-05 in floats: the report says 0.00005."""
    assert [R.plain(v) for v in (0.05 * 0.1**3, 0.05 * 0.1, 1e20, 5e-7, 1e-6, 1234567.0, 0.0)] == [
        "0.00005", "0.005", "1e+20", "5e-07", "0.000001", "1234567", "0"]  # fmt: skip
    inputs = fixture_inputs()
    h = make_history()
    h["lr"] = [0.05 * 0.1 ** (e // 5) for e in range(len(h))]
    tex = text(R.build_context(**{**inputs, "history": h}))
    assert "0.00005" in tex and "00000000001" not in tex


def test_one_diverged_point_is_it_not_they():
    inputs = fixture_inputs()
    assert "（网格中仍有 1 个点发散，它被如实记录并排除在选择之外）" in text(R.build_context(**inputs))
    summary = inputs["summary"].copy()
    summary.loc[0, ["status", "best_val_acc"]] = ["diverged", 0.1]
    tex = text(R.build_context(**{**inputs, "summary": summary}))
    assert "（网格中仍有 2 个点发散，它们被如实记录并排除在选择之外）" in tex

"""Every figure renders from small hand-made inputs to a valid PDF and PNG."""

from __future__ import annotations

import io
import json
import logging
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from cifar_fixtures import write_prepared  # noqa: E402
from scratchcnn import figures  # noqa: E402
from scratchcnn.data import CLASS_NAMES  # noqa: E402
from scratchcnn.metrics import classification_report  # noqa: E402
from step_scripts import load_script  # noqa: E402

CLASSES = list(CLASS_NAMES)


# --------------------------------------------------------------------------- fixture builders


def make_history(epochs=12, step=4, lr0=0.01, decay=0.5) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    lr = lr0 * decay ** ((e - 1) // step)
    train_loss = 2.1 * np.exp(-e / 5) + 0.6
    val_loss = 2.0 * np.exp(-e / 6) + 0.8 + 0.01 * e
    train_acc = 0.9 - 0.55 * np.exp(-e / 4)
    val_acc = 0.7 - 0.4 * np.exp(-e / 4) - 0.002 * np.maximum(e - 9, 0)
    return pd.DataFrame(
        {"epoch": e, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
         "val_loss": val_loss, "val_acc": val_acc, "seconds": np.full(epochs, 12.5)}
    )  # fmt: skip


def make_summary() -> pd.DataFrame:
    rows = []
    for lr in (0.1, 0.01, 0.001, 0.0001):
        for reg in (0.0, 1e-4, 1e-3, 1e-2):
            diverged = lr == 0.1 and reg < 1e-3
            acc = np.nan if diverged else 0.45 + 0.2 * (1 - abs(np.log10(lr) + 2) / 2) - 3 * reg
            rows.append(("lr_reg", lr, reg, 32, acc, 5, 10, 100.0, 10.0, "diverged" if diverged else "ok"))
    for f in (8, 16, 32, 64):
        rows.append(("filters", 0.01, 1e-4, f, 0.5 + 0.04 * np.log2(f), 8, 10, 3.0 * f, 0.3 * f, "ok"))
    cols = "sweep,lr,reg,filters,best_val_acc,best_epoch,epochs,seconds,seconds_per_epoch,status"
    return pd.DataFrame(rows, columns=cols.split(","))


def make_params(f1=16, f2=16, k=3, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    d = 7 * 7 * f2  # 32 -pad1 conv-> 32 -pool-> 16 -conv-> 14 -pool-> 7
    p = {
        "W1": rng.normal(0, 0.2, (f1, k, k, 3)), "b1": rng.normal(0, 0.01, f1),
        "gamma1": 1 + rng.normal(0, 0.1, f1), "beta1": rng.normal(0, 0.1, f1),
        "W2": rng.normal(0, 0.1, (f2, k, k, f1)), "b2": rng.normal(0, 0.01, f2),
        "gamma2": 1 + rng.normal(0, 0.1, f2), "beta2": rng.normal(0, 0.1, f2),
        "W3": rng.normal(0, 0.05, (d, 10)), "b3": np.zeros(10),
        "running_mean1": np.zeros(f1), "running_var1": np.ones(f1),
        "running_mean2": np.zeros(f2), "running_var2": np.ones(f2),
    }  # fmt: skip
    return {k: v.astype(np.float32) for k, v in p.items()}


def make_predictions(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y_true = np.arange(n) % 10
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, 10, n))
    probs = rng.dirichlet(np.ones(10), n).astype(np.float32)
    return y_true.astype(np.int64), y_pred.astype(np.int64), probs


def make_images(n=60, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    base = np.stack([yy, xx, 1 - yy], axis=-1)
    return np.clip(base[None] * rng.random((n, 1, 1, 3)) + 0.1 * rng.random((n, 32, 32, 3)), 0, 1).astype(
        np.float32
    )


def make_test_metrics():
    y_true, y_pred, _ = make_predictions(200)
    return classification_report(y_true, y_pred, CLASSES)


def build_all(lang: str) -> dict:
    """name -> Figure for every figure."""
    history, summary, params = make_history(), make_summary(), make_params()
    tm = make_test_metrics()
    y_true, y_pred, _ = make_predictions()
    arch = {"input_shape": [32, 32, 3], "num_classes": 10, "filters1": 16, "filters2": 24, "kernel_size": 3,
            "padding1": 1, "padding2": 0, "stride": 1, "pool_size": 2, "pool_stride": 2, "bn_eps": 1e-5}  # fmt: skip
    return {
        "network": lambda: figures.network_diagram(arch, lang),
        "activations": lambda: figures.activation_functions(lang),
        "loss_curve": lambda: figures.loss_curve(history, lang),
        "val_accuracy": lambda: figures.val_accuracy(history, lang),
        "sweep_heatmap": lambda: figures.sweep_heatmap(summary, lang),
        "filters_sweep": lambda: figures.filters_sweep(summary, lang),
        "per_class_accuracy": lambda: figures.per_class_accuracy(tm, lang),
        "conv1_kernels": lambda: figures.conv1_kernels(params["W1"], lang),
        "conv2_kernels": lambda: figures.conv2_kernels(params["W2"], lang),
        "fc_weights": lambda: figures.fc_weights(params["W3"], CLASSES, lang),
        "histograms": lambda: figures.histograms(params, lang),
        "confusion_matrix": lambda: figures.confusion_matrix(tm["confusion"], CLASSES, lang),
        "test_samples": lambda: figures.test_samples(make_images(), y_true, y_pred, CLASSES, lang),
    }


def plt_close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


# --------------------------------------------------------------------------- file checks


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_outputs(stem: Path) -> None:
    pdf, png = stem.with_suffix(".pdf"), stem.with_suffix(".png")
    assert pdf.read_bytes()[:4] == b"%PDF"
    w, h = png_size(png)
    assert 300 < w < 4000 and 80 < h < 4000, (w, h)
    assert not list(stem.parent.glob(".*tmp*")), "temporary files left behind"


def has_cjk_font() -> bool:
    return figures.find_cjk_font() is not None


# --------------------------------------------------------------------------- tests


def test_every_figure_has_a_builder():
    assert sorted(build_all("en")) == sorted(figures.FIGURES)


def test_english_figure_renders(tmp_path):
    lang = figures.setup_style("en")
    assert lang == "en"
    figures.save_figure(build_all(lang)["sweep_heatmap"](), tmp_path / "sweep_heatmap", dpi=60)
    check_outputs(tmp_path / "sweep_heatmap")


@pytest.mark.skipif(not has_cjk_font(), reason="no CJK font installed")
def test_zh_uses_cjk_font():
    assert figures.setup_style("zh") == "zh"
    import matplotlib

    assert matplotlib.rcParams["font.sans-serif"][0] == figures.find_cjk_font()


def test_zh_falls_back_to_english_without_cjk_font(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(figures.style, "find_cjk_font", lambda: None)
    with caplog.at_level(logging.WARNING, logger="scratchcnn.figures"):
        lang = figures.setup_style("zh")
    assert lang == "en"
    assert any("CJK" in r.getMessage() for r in caplog.records)
    fig = figures.per_class_accuracy(make_test_metrics(), lang)
    texts = [fig.axes[0].get_title()] + [tl.get_text() for tl in fig.axes[0].get_xticklabels()]
    assert all(ord(ch) < 0x2E80 for s in texts for ch in s), texts  # no CJK characters
    figures.save_figure(fig, tmp_path / "fallback", dpi=60)
    check_outputs(tmp_path / "fallback")


def test_setup_style_rejects_unknown_language():
    with pytest.raises(ValueError):
        figures.setup_style("fr")


def test_labels_complete_in_both_languages():
    for key, entry in figures.LABELS.items():
        assert entry.get("zh") and entry.get("en"), key
    for name, spec in figures.FIGURES.items():
        assert spec.name == name
        for text in (spec.title, spec.caption):
            assert text.get("zh") and text.get("en"), name


def test_each_figure_is_drawn_with_its_registry_title():
    lang = figures.setup_style("en")
    for name, build in build_all(lang).items():
        fig = build()
        shown = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
        assert figures.FIGURES[name].title["en"] in shown, name
        plt_close(fig)


def test_decay_epochs_from_lr_changes():
    assert figures._decay_epochs(make_history(epochs=12, step=4)) == [(5, 0.005), (9, 0.0025)]
    assert figures._decay_epochs(make_history(epochs=3, step=10)) == []


def test_heatmap_marks_diverged_cells():
    figures.setup_style("en")
    fig = figures.sweep_heatmap(make_summary(), "en")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("diverged") == 2
    assert len(texts) == 16  # one label per grid point


def test_heatmap_cells_show_each_points_accuracy_where_its_ticks_say():
    """Each cell's number (and colour) sits at its own (lr, reg) by the axis labels; the best is bold."""
    from scratchcnn.figures.style import num_label

    figures.setup_style("en")
    summary = make_summary()
    fig = figures.sweep_heatmap(summary, "en")
    ax = fig.axes[0]
    x_at = {tl.get_text(): x for x, tl in zip(ax.get_xticks(), ax.get_xticklabels())}
    y_at = {tl.get_text(): y for y, tl in zip(ax.get_yticks(), ax.get_yticklabels())}
    cells = {(round(tx.get_position()[0]), round(tx.get_position()[1])): tx for tx in ax.texts}
    image = ax.images[0].get_array()
    rows = summary[summary["sweep"] == "lr_reg"]
    label = {h: dict(zip(vals, num_label(vals))) for h in ("lr", "reg") for vals in [sorted(set(rows[h]))]}
    best = rows["best_val_acc"].idxmax()
    for i, row in rows.iterrows():
        x, y = round(x_at[label["lr"][row["lr"]]]), round(y_at[label["reg"][row["reg"]]])
        text = cells[(x, y)]
        if row["status"] == "diverged":
            assert text.get_text() == "diverged" and np.ma.is_masked(image[y, x])
        else:
            assert text.get_text() == f"{100 * row['best_val_acc']:.1f}", (row["lr"], row["reg"])
            assert image[y, x] == pytest.approx(100 * row["best_val_acc"])
            assert (text.get_fontweight() == "bold") == (i == best)
    plt_close(fig)


def test_heatmap_marks_the_point_the_selection_takes_from_a_tie():
    """Two cells with the same accuracy: the box and the bold number go to the earlier point in
    the summary's order, the one sweeps.choose_best picks, wherever the axes place it."""
    from matplotlib.patches import Rectangle

    from scratchcnn.sweeps import choose_best

    figures.setup_style("en")
    summary = make_summary()
    lr_reg = summary["sweep"] == "lr_reg"
    top = summary.loc[lr_reg, "best_val_acc"].max()
    late = lr_reg & (summary["lr"] == 0.0001) & (summary["reg"] == 0.0)  # drawn first: the lowest lr and reg
    summary.loc[late, "best_val_acc"] = top
    pick = choose_best(summary[lr_reg].to_dict("records"))
    assert (pick["lr"], pick["reg"]) != (0.0001, 0.0)
    fig = figures.sweep_heatmap(summary, "en")
    ax = fig.axes[0]
    [box] = [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]
    x, y = box.get_x() + 0.5, box.get_y() + 0.5
    lrs, regs = sorted(set(summary.loc[lr_reg, "lr"])), sorted(set(summary.loc[lr_reg, "reg"]))
    assert (lrs[round(x)], regs[round(y)]) == (pick["lr"], pick["reg"])
    bold = [t for t in ax.texts if t.get_fontweight() == "bold"]
    assert [(round(t.get_position()[0]), round(t.get_position()[1])) for t in bold] == [(round(x), round(y))]
    plt_close(fig)


@pytest.mark.parametrize("seed", range(12))
def test_any_grid_draws_both_sweep_figures_and_boxes_the_selections_pick(seed):
    """Random grids (sweeps varying lr, reg or both, ties, diverged points): both sweep figures
    draw, and the heat map's box sits on the point sweeps.choose_best picks from the sweep shown."""
    from matplotlib.patches import Rectangle

    from scratchcnn.sweeps import choose_best, shown_sweep

    rng = np.random.default_rng(seed)
    rows = []
    for s in range(rng.integers(1, 4)):
        lrs = rng.choice([0.1, 0.01, 0.001], size=rng.integers(1, 4), replace=False)
        regs = rng.choice([0.0, 1e-4, 1e-3], size=rng.integers(1, 4), replace=False)
        for lr in lrs:
            for reg in regs:
                diverged = rng.random() < 0.3
                acc = np.nan if diverged else float(rng.choice([0.5, 0.6, 0.6, 0.7]))
                rows.append((f"s{s}", float(lr), float(reg), 32, acc, 3, 10, 100.0, 10.0,
                             "diverged" if diverged else "ok"))  # fmt: skip
    summary = pd.DataFrame(rows, columns=make_summary().columns)
    figures.setup_style("en")
    plt_close(figures.filters_sweep(summary, "en"))
    fig = figures.sweep_heatmap(summary, "en")
    name = shown_sweep(summary, ("lr", "reg"))
    shown = summary if name is None else summary[summary["sweep"] == name]
    boxes = [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and not p.get_fill()]
    if not (shown["status"] == "ok").any():
        assert boxes == []
    else:
        records = [{**r, "best_val_acc": r["best_val_acc"] if r["status"] == "ok" else None}
                   for r in shown.to_dict("records")]  # fmt: skip
        pick = choose_best(records)
        lrs, regs = sorted(set(shown["lr"])), sorted(set(shown["reg"]))
        [box] = boxes
        assert (lrs[round(box.get_x() + 0.5)], regs[round(box.get_y() + 0.5)]) == (pick["lr"], pick["reg"])
    plt_close(fig)


def test_per_class_bars_are_each_class_accuracy():
    """Bar heights and their labels are the per-class accuracy (not precision or recall), in class order."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 10, 400)
    pred = np.where(rng.random(400) < 0.6, y, rng.integers(0, 10, 400))
    metrics = classification_report(y, pred, CLASSES)
    figures.setup_style("en")
    fig = figures.per_class_accuracy(metrics, "en")
    ax = fig.axes[0]
    want = [100 * np.mean(pred[y == k] == k) for k in range(10)]
    assert [b.get_height() for b in ax.patches] == pytest.approx(want)
    assert [tl.get_text() for tl in ax.get_xticklabels()] == [figures.class_label(c, "en") for c in CLASSES]
    assert [tx.get_text() for tx in ax.texts] == [f"{a:.1f}" for a in want]
    overall = 100 * metrics["test_accuracy"]
    assert [ln.get_label() for ln in ax.get_lines()] == [f"Overall accuracy: {overall:.2f}%"]
    plt_close(fig)
    # one seed of several: the line is that seed's, not the report's headline (the seeds' mean)
    fig = figures.per_class_accuracy({**metrics, "seeds": {"shown": 3, "n": 2}}, "en")
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == [f"Overall accuracy of seed 3: {overall:.2f}%"]
    plt_close(fig)


def test_filters_sweep_plots_accuracy_and_seconds_per_filter_count():
    summary = make_summary()
    rows = summary[summary["sweep"] == "filters"].sort_values("filters")
    figures.setup_style("en")
    fig = figures.filters_sweep(summary, "en")
    ax, ax2 = fig.axes[:2]
    [acc_line] = [line for line in ax.get_lines() if line.get_marker() == "o"]
    [spe_line] = ax2.get_lines()
    assert list(acc_line.get_xdata()) == list(rows["filters"]) == list(spe_line.get_xdata())
    assert list(acc_line.get_ydata()) == pytest.approx(list(100 * rows["best_val_acc"]))
    assert list(spe_line.get_ydata()) == pytest.approx(list(rows["seconds_per_epoch"]))
    assert [a.get_text() for a in ax.texts] == [f"{100 * a:.1f}" for a in rows["best_val_acc"]]
    assert ax.get_legend() is None and len(fig.legends) == 1  # below the plot, not over its points
    plt_close(fig)
    diverged = summary.assign(best_val_acc=np.nan, status="diverged")
    fig = figures.filters_sweep(diverged, "en")
    assert fig.axes[0].get_ylim() == (0, 100)  # a percent scale, not matplotlib's -0.04..0.04
    plt_close(fig)


def test_minmax_scales_each_kernel_independently():
    w = np.stack([np.full((3, 3, 3), 5.0), np.arange(27.0).reshape(3, 3, 3) * 10])
    s = figures._minmax(w)
    assert np.all(s[0] == 0.5)  # constant kernel -> mid grey
    assert s[1].min() == 0 and s[1].max() == 1


def test_the_fc_heat_map_draws_every_weight_unsmoothed_with_classes_as_rows():
    """One large weight among 1,568 features (32 filters) keeps its own colour: no resampling."""
    W3 = np.zeros((1568, 10))
    W3[400, 7] = 0.5
    W3[::97, 2] = -0.01  # a scale for the colours below the outlier
    ax = figures.fc_weights(W3, CLASSES, "en").axes[0]
    im = ax.images[0]
    assert im.get_interpolation() == "none"
    np.testing.assert_array_equal(im.get_array(), W3.T)
    assert [t.get_text() for t in ax.get_yticklabels()] == [figures.class_label(c, "en") for c in CLASSES]
    assert "classes × features" in ax.get_title()


def test_the_fc_heat_maps_colours_reach_the_995th_percentile_of_the_magnitudes():
    """Weights almost all -2 (one +0.5): 99.5 % of |W3| is 2, so the colours span -2..2 about 0;
    the percentile of the signed weights would be -2, and the range would fall back to -1..1."""
    W3 = np.full((200, 10), -2.0)
    W3[0, 0] = 0.5
    norm = figures.fc_weights(W3, CLASSES, "en").axes[0].images[0].norm
    assert (norm.vmin, norm.vcenter, norm.vmax) == (-2.0, 0.0, 2.0)


def test_the_histograms_of_a_diverged_model_draw_its_finite_values():
    """W1 all NaN and W2 with an inf among 1, 2, 3 (training diverged): the figure still draws,
    W1's panel is empty and W2's mean and spread are those of 1, 2, 3 (2 and sqrt(2/3))."""
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(50) for k in ("W3", "b1", "b2", "beta1", "gamma1", "beta2", "gamma2")}
    params.update(W1=np.full(27, np.nan), W2=np.array([1.0, np.inf, 2.0, np.nan, 3.0]))
    fig = figures.histograms(params, "en")
    fig.savefig(io.BytesIO(), format="png")
    said = {ax.get_title(): [tx.get_text() for tx in ax.texts] for ax in fig.axes}
    assert said[figures.LABELS["W1"]["en"]] == []
    assert said[figures.LABELS["W2"]["en"]] == ["μ=2\nσ=0.816"]
    plt_close(fig)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_conv_bias_histograms_say_when_batch_norm_left_them_at_zero(lang):
    """b1 and b2 get only rounding noise (about 1e-8): the panel says so rather than showing a spread."""
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(50) for k in ("W1", "W2", "W3", "beta1", "gamma1", "beta2", "gamma2")}
    params.update(b1=rng.standard_normal(8) * 1e-8, b2=rng.standard_normal(8) * 0.3)  # b2 learnt, say
    figures.setup_style(lang)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = figures.histograms(params, lang)
        fig.savefig(io.BytesIO(), format="png")
    assert not [str(w.message) for w in caught if "missing from" in str(w.message)]
    said = {ax.get_title(): [tx.get_text() for tx in ax.texts] for ax in fig.axes}
    note = figures.LABELS["bn_cancels_bias"][lang]
    assert note in said[figures.LABELS["b1"][lang]] and note not in said[figures.LABELS["b2"][lang]]
    assert sum(note in texts for texts in said.values()) == 1
    plt_close(fig)


def test_the_conv2_figure_draws_the_second_layers_kernels():
    """The registry passes W2 (2 kernels here), input channel 0 of each min-max scaled: a ramp
    0..8 becomes 0..1 by eighths, a constant kernel mid grey, a NaN column between the tiles."""
    params = make_params(f1=4, f2=2)
    params["W2"][0, :, :, 0] = np.arange(9).reshape(3, 3)
    params["W2"][1, :, :, 0] = 7.0
    model = type("Model", (), {"params": params})
    fig = figures.FIGURES["conv2_kernels"].draw({"model": model}, "en", 0)
    want = np.full((3, 7), np.nan)
    want[:, :3] = np.arange(9).reshape(3, 3) / 8
    want[:, 4:] = 0.5
    np.testing.assert_array_equal(np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan), want)
    plt_close(fig)


def test_each_sample_tile_shows_its_own_image_under_its_own_title():
    """Images 5, 0 and 3 (each a flat grey of a tenth of its index) in a 2 x 2 grid: the third
    tile, on the second row, is image 3 with its labels; the fourth is empty."""
    images = np.stack([np.full((4, 4, 3), i / 10, np.float32) for i in range(6)])
    y_true = np.arange(6)
    y_pred = np.array([0, 1, 2, 9, 4, 5])
    fig = figures.test_samples(images, y_true, y_pred, CLASSES, "en", rows=2, cols=2, indices=[5, 0, 3])
    axes = fig.axes
    for ax, i, title in zip(axes, (5, 0, 3), ("pred: dog\ntrue: dog", "pred: airplane\ntrue: airplane",
                                                "pred: truck\ntrue: cat")):  # fmt: skip
        np.testing.assert_allclose(ax.images[0].get_array(), np.full((4, 4, 3), i / 10), rtol=1e-6)
        assert ax.get_title() == title
    assert not axes[3].images and axes[3].get_title() == ""
    plt_close(fig)


def test_the_network_diagram_gives_the_pools_own_stride():
    """A 3x3 pooling window moved by 2: the pool boxes say s=2, not the window's 3."""
    arch = {"input_shape": [32, 32, 3], "num_classes": 10, "filters1": 8, "filters2": 8, "kernel_size": 3,
            "padding1": 1, "padding2": 0, "stride": 1, "pool_size": 3, "pool_stride": 2, "bn_eps": 1e-5}  # fmt: skip
    fig = figures.network_diagram(arch, "en")
    pools = [tx.get_text() for tx in fig.axes[0].texts if tx.get_text().startswith("pool")]
    assert len(pools) == 2 and all(p.endswith("(3×3, s=2)") for p in pools), pools
    plt_close(fig)


def test_display_images_undoes_standardization():
    x = np.full((1, 2, 2, 3), 0.25, np.float32)
    std = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}
    z = (x - np.array(std["mean"], np.float32)) / np.array(std["std"], np.float32)
    np.testing.assert_allclose(figures.display_images(z, std), x, atol=1e-6)


# --------------------------------------------------------------------------- the plot script


def write_inputs(tmp: Path) -> dict:
    """The files plot_figures reads, written in the docs/outputs.md layout."""
    make_history().to_csv(tmp / "history.csv", index=False)
    make_summary().to_csv(tmp / "summary.csv", index=False)
    params = make_params()
    arch = {"input_shape": [32, 32, 3], "num_classes": 10, "filters1": 16, "filters2": 16,
            "kernel_size": 3, "padding1": 1, "padding2": 0, "stride": 1, "pool_size": 2,
            "pool_stride": 2, "bn_eps": 1e-5}  # fmt: skip
    meta = {"epoch": 3, "val_acc": 0.5, "config": {}, "backend": "numpy", "device": "cpu",
            "versions": {}, "git_commit": None}  # fmt: skip
    np.savez(tmp / "model.npz", **params, arch_json=np.array(json.dumps(arch)), meta_json=np.array(json.dumps(meta)))
    (tmp / "test_metrics.json").write_text(json.dumps(make_test_metrics()), encoding="utf-8")
    y_true, y_pred, probs = make_predictions()
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    x = (make_images() - np.float32(mean)) / np.float32(std)
    data_meta = {"seed": 0, "standardize": {"mean": mean, "std": std}}
    write_prepared(tmp / "cifar10.npz", class_names=CLASSES, meta=data_meta, x_test=x, y_test=y_true)
    np.savez(tmp / "predictions.npz", y_true=y_true, y_pred=y_pred, probs=probs)
    return {
        "--history": tmp / "history.csv", "--summary": tmp / "summary.csv", "--model": tmp / "model.npz",
        "--test-metrics": tmp / "test_metrics.json", "--data": tmp / "cifar10.npz",
        "--predictions": tmp / "predictions.npz",
    }  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    return write_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.mark.parametrize("name", figures.FIGURES)
def test_each_figure_alone_through_the_script(name, inputs, tmp_path):
    """plot_figures.py builds NAME from only the inputs its registry entry names: valid
    PDF and PNG, and no glyph missing from the fonts (no empty boxes instead of CJK text)."""
    mod = load_script("plot_figures")
    argv = ["--which", name, "--out-dir", str(tmp_path), "--lang", "zh", "--dpi", "60", "--seed", "0"]
    for role in figures.FIGURES[name].inputs:
        flag = "--" + role.replace("_", "-")
        argv += [flag, str(inputs[flag])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mod.main(argv) == 0
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert not missing, missing
    check_outputs(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.pdf", f"{name}.png"]


def test_plot_script_names_the_missing_flag(tmp_path, capsys):
    mod = load_script("plot_figures")
    with pytest.raises(SystemExit) as exc:
        mod.main(["--which", "loss_curve", "--out-dir", str(tmp_path), "--lang", "en"])
    assert exc.value.code == 2
    assert "--history" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_figure_of_a_random_sample_needs_the_seed(inputs, tmp_path, capsys):
    """test_samples shows a seeded sample of test images: the pipeline passes the config's seed."""
    argv = ["--which", "test_samples", "--out-dir", str(tmp_path), "--lang", "en"]
    for role in figures.FIGURES["test_samples"].inputs:
        argv += ["--" + role.replace("_", "-"), str(inputs["--" + role.replace("_", "-")])]
    with pytest.raises(SystemExit) as exc:
        load_script("plot_figures").main(argv)
    assert exc.value.code == 2 and "figure 'test_samples' needs --seed" in capsys.readouterr().err
    assert [name for name, spec in figures.FIGURES.items() if spec.seeded] == ["test_samples"]


@pytest.mark.parametrize("name, flag, damage, said", [
    ("loss_curve", "--history", lambda p: p.write_text("epoch,lr\n"), "--history {p} cannot be read (ValueError: it has a header but no rows)"),
    ("loss_curve", "--history", lambda p: p.write_text("epoch,lr\n1,0.1\n"), "figure 'loss_curve' cannot be drawn from --history {p} (KeyError"),
    ("per_class_accuracy", "--test-metrics", lambda p: p.write_text("{"), "--test-metrics {p} cannot be read (JSONDecodeError"),
    ("test_samples", "--predictions", lambda p: p.write_bytes(b"PK\x03\x04 cut short"), "--predictions {p} cannot be read ("),
    ("test_samples", "--data", lambda p: p.write_bytes(b"not a zip"), "--data {p} cannot be read (DataError: {p} is not a readable .npz"),
])  # fmt: skip
def test_a_bad_input_file_is_named_and_no_figure_is_written(inputs, tmp_path, name, flag, damage, said):
    files = {f: inputs[f] for f in ["--" + role.replace("_", "-") for role in figures.FIGURES[name].inputs]}
    files[flag] = tmp_path / Path(inputs[flag]).name
    damage(files[flag])
    argv = ["--which", name, "--out-dir", str(tmp_path / "out"), "--lang", "en", "--seed", "0"]
    with pytest.raises(SystemExit) as ei:
        load_script("plot_figures").main(argv + [str(a) for pair in files.items() for a in pair])
    assert str(ei.value).startswith(f"error: figure {name!r}") and said.format(p=files[flag]) in str(ei.value), ei.value
    assert not (tmp_path / "out").exists()


def test_several_figures_with_one_bad_input_write_none(inputs, tmp_path):
    """By hand, several --which at once: a figure that cannot be drawn stops the run before the
    figures drawn ahead of it are written, so the folder never holds a partial set."""
    bad = tmp_path / "history.csv"
    bad.write_text("epoch,lr\n1,0.1\n")  # lacks the loss columns
    argv = ["--which", "per_class_accuracy", "loss_curve", "--out-dir", str(tmp_path / "out"), "--lang", "en",
            "--test-metrics", str(inputs["--test-metrics"]), "--history", str(bad)]  # fmt: skip
    with pytest.raises(SystemExit) as ei:
        load_script("plot_figures").main(argv)
    assert str(ei.value).startswith("error: figure 'loss_curve' cannot be drawn from --history")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- what the figures show


def drawn(monkeypatch, tmp_path, name: str, files: dict):
    """The Figure plot_figures.py draws for ``name`` from ``files`` (flag -> path), in English."""
    import matplotlib.figure

    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    argv = ["--which", name, "--out-dir", str(tmp_path / "out"), "--lang", "en", "--seed", "0"]
    for flag, path in files.items():
        argv += [flag, str(path)]
    assert load_script("plot_figures").main(argv) == 0
    assert saved and all(f is saved[0] for f in saved)
    return saved[0]


def test_confusion_matrix_shows_rows_as_true_classes(monkeypatch, tmp_path):
    """Image and cell numbers follow test_metrics.json's matrix, rows true and columns predicted
    (an asymmetric matrix with unequal row totals, so a transposition shows)."""
    rng = np.random.default_rng(3)
    cm = rng.integers(0, 12, (10, 10)) + np.diag(rng.integers(20, 60, 10))
    cm[2, 7], cm[7, 2] = 40, 1
    t, p = np.nonzero(cm)
    metrics = classification_report(np.repeat(t, cm[t, p]), np.repeat(p, cm[t, p]), CLASSES)
    path = tmp_path / "test_metrics.json"
    path.write_text(json.dumps(metrics), encoding="utf-8")
    fig = drawn(monkeypatch, tmp_path, "confusion_matrix", {"--test-metrics": path})
    [ax] = [a for a in fig.axes if len(a.texts) == cm.size]
    assert "true" in ax.get_ylabel().lower() and "pred" in ax.get_xlabel().lower()
    assert [tl.get_text() for tl in ax.get_yticklabels()] == CLASSES
    assert [tl.get_text() for tl in ax.get_xticklabels()] == CLASSES
    image = np.asarray(ax.images[0].get_array(), dtype=float)
    # counts or shares of the true class: either way each row is proportional to the matrix's row
    np.testing.assert_allclose(image / image.sum(axis=1, keepdims=True), cm / cm.sum(axis=1, keepdims=True))
    cells = {(round(tx.get_position()[1]), round(tx.get_position()[0])): tx.get_text() for tx in ax.texts}
    assert cells == {(i, j): str(cm[i, j]) for i in range(10) for j in range(10)}


@pytest.mark.parametrize("name,curves,scale", [
    ("loss_curve", {"train": "train_ce", "val": "val_loss", "train_l2": "train_l2"}, 1),
    ("val_accuracy", {"train": "train_acc", "val": "val_acc"}, 100),
])  # fmt: skip
def test_curves_plot_the_history(monkeypatch, tmp_path, name, curves, scale):
    """Each labelled line's points are its history.csv column against the epoch."""
    history = make_history()
    history["train_l2"] = 0.05 + 0.01 * np.cos(history["epoch"])
    history["train_ce"] = history["train_loss"] - history["train_l2"]
    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    history = pd.read_csv(path)
    fig = drawn(monkeypatch, tmp_path, name, {"--history": path})
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    for key, column in curves.items():
        line = lines[figures.LABELS[key]["en"]]
        np.testing.assert_array_equal(line.get_xdata(), history["epoch"])
        np.testing.assert_allclose(line.get_ydata(), scale * history[column])


def test_a_figure_that_cannot_be_written_leaves_the_previous_pair_and_no_new_file(inputs, tmp_path, monkeypatch):
    """The PNG fails after the PDF was rendered (a full disk): the folder keeps the previous PDF
    and PNG, not a new PDF beside an old PNG; an error of any kind at writing time (matplotlib
    raises ValueError for text it cannot typeset) is the script's one-line error, and every
    figure written earlier in the same call is removed."""
    import matplotlib.figure

    out = tmp_path / "out"
    argv = ["--which", "per_class_accuracy", "loss_curve", "--out-dir", str(out), "--lang", "en", "--dpi", "40",
            "--test-metrics", str(inputs["--test-metrics"]), "--history", str(inputs["--history"])]  # fmt: skip
    assert load_script("plot_figures").main(argv) == 0
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in out.iterdir()}  # a replaced file has a new inode
    real = matplotlib.figure.Figure.savefig

    def failing(fig, fname, *a, format=None, **k):
        if format == "png" and fig.axes[0].get_title() == figures.FIGURES["loss_curve"].title["en"]:
            raise ValueError("cannot typeset the label")
        return real(fig, fname, *a, format=format, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", failing)
    with pytest.raises(SystemExit) as ei:
        load_script("plot_figures").main(argv)
    assert str(ei.value) == f"error: figure 'loss_curve' cannot be written to {out} (ValueError: cannot typeset the label)"
    # per_class_accuracy, written first in this call, is gone; loss_curve's old pair is untouched
    after = {p.name: (p.stat().st_ino, p.read_bytes()) for p in out.iterdir()}
    assert after == {k: v for k, v in before.items() if k.startswith("loss")}


def test_a_pdf_that_cannot_replace_the_old_one_takes_its_new_png_with_it(inputs, tmp_path, monkeypatch):
    """The PNG is renamed into place first; where the PDF's rename then fails, no pair of a new PNG
    and an old PDF is left (the figure is drawn again on the next run)."""
    import errno
    import os

    out = tmp_path / "out"
    argv = ["--which", "loss_curve", "--out-dir", str(out), "--lang", "en", "--dpi", "40",
            "--history", str(inputs["--history"])]  # fmt: skip
    assert load_script("plot_figures").main(argv) == 0
    real = os.replace

    def pdf_disk_full(src, dst):
        if str(dst).endswith("loss_curve.pdf"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", pdf_disk_full)
    with pytest.raises(SystemExit, match="error: figure 'loss_curve' cannot be written to"):
        load_script("plot_figures").main(argv)
    assert list(out.iterdir()) == []  # no leftover temporary files either


def test_a_class_name_with_dollars_is_drawn_as_written(monkeypatch, tmp_path):
    """Class names come from the archive: two $ would make matplotlib typeset the text between
    them as mathematics, and a name like $\\foo$ would stop the figure."""
    from matplotlib.text import Text

    names = ["price $5 or $6", r"$\foo$"] + CLASSES[2:]
    assert figures.class_label(names[0], "en") == r"price \$5 or \$6"
    cm = np.diag(np.full(10, 5)) + 1
    t, p = np.nonzero(cm)
    path = tmp_path / "test_metrics.json"
    path.write_text(json.dumps(classification_report(np.repeat(t, cm[t, p]), np.repeat(p, cm[t, p]), names)))
    fig = drawn(monkeypatch, tmp_path, "confusion_matrix", {"--test-metrics": path})
    ticks = [tl.get_text() for tl in fig.axes[0].get_yticklabels()]
    shown = [Text(text=s)._preprocess_math(s) for s in ticks[:2]]
    assert shown == [(names[0], False), (names[1], False)]  # plain text, as written
    fig.savefig(tmp_path / "c.png", format="png")  # the real savefig: it typesets


def test_the_best_validation_star_skips_the_epoch_that_diverged(monkeypatch, tmp_path):
    """training.train appends the epoch whose loss went non-finite and stops: that epoch's
    accuracy (a NaN model's, about 10 %) is not the best epoch's, even when it is the only one."""
    history = make_history(epochs=3)
    history.loc[2, ["train_loss", "val_loss", "val_acc"]] = [np.nan, np.inf, 0.95]
    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    lines = {ln.get_label(): ln for ln in drawn(monkeypatch, tmp_path, "val_accuracy", {"--history": path}).axes[0].get_lines()}
    [star] = [ln for label, ln in lines.items() if label.startswith(figures.LABELS["best_val"]["en"])]
    best = history.loc[:1, "val_acc"].max()
    assert list(star.get_ydata()) == [100 * best] and star.get_label().endswith(f"{100 * best:.2f}%")
    history.loc[:, ["train_loss", "val_loss", "val_acc"]] = [np.nan, np.nan, 0.1]
    history.iloc[:1].to_csv(path, index=False)  # diverged in its first epoch: no best at all
    lines = drawn(monkeypatch, tmp_path / "one", "val_accuracy", {"--history": path}).axes[0].get_lines()
    assert not [ln for ln in lines if ln.get_label().startswith(figures.LABELS["best_val"]["en"])]


def test_the_curves_mark_the_epoch_whose_loss_was_not_finite(monkeypatch, tmp_path):
    """Both curves stop before it (NaN is not drawn): a cross on the axis says the run diverged
    there; a run that diverged in its only epoch keeps its legend and gets one tick, epoch 1."""
    history = make_history(epochs=4).assign(train_l2=0.01)
    history = history.assign(train_ce=history["train_loss"] - 0.01)
    history.loc[3, ["train_loss", "train_ce", "val_loss"]] = [np.nan, np.nan, np.nan]
    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    for name in ("loss_curve", "val_accuracy"):
        lines = drawn(monkeypatch, tmp_path / name, name, {"--history": path}).axes[0].get_lines()
        [cross] = [ln for ln in lines if ln.get_label() == figures.LABELS["not_finite"]["en"]]
        assert list(cross.get_xdata()) == [4], name
        curves = [ln for ln in lines if ln.get_label() in (figures.LABELS["train"]["en"], figures.LABELS["val"]["en"])]
        assert curves and all(list(ln.get_xdata()) == [1, 2, 3] for ln in curves), name  # no NaN model's point
    history.iloc[:1].assign(train_loss=np.nan, train_ce=np.nan, val_loss=np.nan).to_csv(path, index=False)
    ax = drawn(monkeypatch, tmp_path / "first", "loss_curve", {"--history": path}).axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert figures.LABELS["train"]["en"] in labels and figures.LABELS["train_total"]["en"] not in labels
    assert list(ax.get_xticks()) == [1]

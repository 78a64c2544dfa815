"""The test set: per-class accuracy, the confusion matrix, sample predictions."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .style import COLORS, class_label, new_figure, t, text_color, title


def per_class_accuracy(test_metrics: Mapping, lang: str) -> Figure:
    """Bars of per-class test accuracy (%), overall accuracy as a dashed line."""
    per = sorted(test_metrics["per_class"], key=lambda r: r["class"])
    names = [class_label(r["name"], lang) for r in per]
    acc = np.array([100 * r["accuracy"] for r in per])
    overall = 100 * float(test_metrics["test_accuracy"])
    fig = new_figure(3.4)
    ax = fig.add_subplot()
    x = np.arange(len(per))
    ax.bar(x, acc, color=COLORS["train"], width=0.7, zorder=2)
    for xi, a in zip(x, acc):  # above the bars, on white so the overall line never hides them
        ax.text(xi, a + 1.0, f"{a:.1f}", ha="center", va="bottom", fontsize=7.5, zorder=4,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.6})  # fmt: skip
    seeds = test_metrics.get("seeds") or {}
    # one of several seeds: its accuracy is not the report's headline (their mean)
    what = t("overall_of_seed", lang).format(seed=seeds["shown"]) if seeds.get("n", 1) > 1 else t("overall", lang)
    line = ax.axhline(overall, color=COLORS["val"], ls="--", lw=1.2, zorder=3, label=f"{what}: {overall:.2f}%")
    rot = 0 if lang == "zh" else 30
    ax.set_xticks(x, names, rotation=rot, ha="right" if rot else "center", rotation_mode="anchor")
    ax.set_xlabel(t("class", lang))
    ax.set_ylabel(t("test_acc_pct", lang))
    ax.set_ylim(0, 108)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="x", visible=False)
    fig.legend(handles=[line], loc="outside lower center")
    ax.set_title(title("per_class_accuracy", lang))
    return fig


def confusion_matrix(confusion, class_names: Sequence[str], lang: str) -> Figure:
    """Counts in cells, colours = share of the true class (rows sum to 100%)."""
    cm = np.asarray(confusion, dtype=np.int64)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion must be ({k}, {k}), got {cm.shape}")
    rows = cm.sum(axis=1, keepdims=True)
    share = 100 * cm / np.where(rows > 0, rows, 1)
    fig = new_figure(5.2)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Blues"]
    im = ax.imshow(share, cmap=cmap, vmin=0, vmax=100)
    size = 8 if cm.max(initial=0) < 1000 else 7
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=size,
                    color=text_color(cmap(share[i, j] / 100)),
                    fontweight="bold" if i == j else "normal")  # fmt: skip
    names = [class_label(c, lang) for c in class_names]
    rot = 0 if lang == "zh" else 40
    ax.set_xticks(range(k), names, rotation=rot, ha="right" if rot else "center", rotation_mode="anchor")
    ax.set_yticks(range(k), names)
    ax.set_xlabel(t("pred_class", lang))
    ax.set_ylabel(t("true_class", lang))
    ax.grid(False)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    fig.colorbar(im, ax=ax, label=t("row_share", lang), shrink=0.85)
    ax.set_title(title("confusion_matrix", lang))
    return fig


def display_images(x: np.ndarray, standardize: Mapping | None = None) -> np.ndarray:
    """Images ready for ``imshow``: standardization undone, clipped to [0, 1]."""
    x = np.asarray(x, dtype=np.float32)
    if standardize:
        mean = np.asarray(standardize["mean"], dtype=np.float32)
        std = np.asarray(standardize["std"], dtype=np.float32)
        x = x * std + mean
    return np.clip(x, 0.0, 1.0)


def sample_indices(n: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` distinct indices in 0..n-1 (sorted), the same for the same seed."""
    count = min(count, n)
    return np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))


def test_samples(
    images: np.ndarray,
    y_true,
    y_pred,
    class_names: Sequence[str],
    lang: str,
    *,
    standardize: Mapping | None = None,
    rows: int = 4,
    cols: int = 6,
    seed: int = 0,
    indices: Sequence[int] | None = None,
) -> Figure:
    """A ``rows × cols`` grid of test images titled predicted/true; errors in red.

    ``indices`` picks the images; by default a seeded random sample.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not (len(images) == len(y_true) == len(y_pred)):
        raise ValueError("images, y_true and y_pred must have the same length")
    idx = np.asarray(indices if indices is not None else sample_indices(len(images), rows * cols, seed))
    shown = display_images(images[idx], standardize)
    fig = new_figure(rows * 1.2 + 0.35)
    axes = fig.subplots(rows, cols, squeeze=False)
    for a, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if a >= len(idx):
            continue
        i = int(idx[a])
        ok = y_true[i] == y_pred[i]
        ax.set_axis_on()
        ax.imshow(shown[a])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        color = COLORS["ok"] if ok else COLORS["wrong"]
        for s in ax.spines.values():
            s.set_visible(not ok)
            s.set_color(color)
            s.set_linewidth(2.5)
        pred = class_label(class_names[int(y_pred[i])], lang)
        true = class_label(class_names[int(y_true[i])], lang)
        ax.set_title(f"{t('pred_short', lang)}: {pred}\n{t('true_short', lang)}: {true}",
                     fontsize=7, color="black" if ok else color, linespacing=1.15, pad=2)  # fmt: skip
    fig.suptitle(title("test_samples", lang))
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.02)
    return fig


test_samples.__test__ = False  # not a pytest test, despite the name

"""Training curves of the final run: loss and accuracy per epoch."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .style import COLORS, new_figure, t, title


def _decay_epochs(history: pd.DataFrame) -> list[tuple[int, float]]:
    """(epoch, new lr) for every epoch whose lr differs from the epoch before."""
    h = history.sort_values("epoch")
    lr = h["lr"].to_numpy(dtype=float)
    ep = h["epoch"].to_numpy()
    return [(int(ep[i]), float(lr[i])) for i in range(1, len(lr)) if not np.isclose(lr[i], lr[i - 1])]


def _mark_decays(ax, history: pd.DataFrame, lang: str) -> None:
    """Dashed lines where the step decay took effect (between epoch e-1 and e);
    the learning rates go into the legend, not over the curves."""
    decays = _decay_epochs(history)
    if not decays:
        return
    h = history.sort_values("epoch")
    rates = [float(h["lr"].iloc[0])] + [lr for _, lr in decays]
    label = f"{t('lr_decay', lang)} (η: {' → '.join(f'{r:g}' for r in rates)})"
    for i, (e, _) in enumerate(decays):
        ax.axvline(e - 0.5, color="0.45", ls="--", lw=1.0, label=label if i == 0 else None)


def _epoch_axis(ax, history: pd.DataFrame, lang: str) -> None:
    ax.set_xlabel(t("epoch", lang))
    e = history["epoch"]
    if 0 < len(e) <= 10:  # each epoch its tick (a locator would put 0.5 steps around a single one)
        ax.set_xticks([int(v) for v in e])
    else:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if len(e):
        ax.set_xlim(float(e.min()) - 0.5, float(e.max()) + 0.5)


def _not_finite(history: pd.DataFrame) -> pd.Series:
    """The epochs whose training or validation loss was not finite: the run diverged there."""
    losses = [pd.to_numeric(history[c], errors="coerce") for c in ("train_loss", "val_loss") if c in history]
    bad = pd.Series(False, index=history.index)
    for y in losses:
        bad |= ~np.isfinite(y)
    return bad


def _mark_divergence(ax, history: pd.DataFrame, lang: str) -> None:
    """A cross on the axis at each epoch whose loss was not finite, which the curves cannot show."""
    bad = _not_finite(history)
    if bad.any():
        epochs = history["epoch"][bad]
        ax.plot(epochs, [0.02] * len(epochs), transform=ax.get_xaxis_transform(), ls="none", marker="X", ms=10,
                color="black", label=t("not_finite", lang), zorder=6, clip_on=False)  # fmt: skip


def loss_curve(history: pd.DataFrame, lang: str) -> Figure:
    """Training and validation cross-entropy per epoch (like with like), the training loss's L2
    term apart, dashed lines at the lr decays.

    A history without the ``train_ce`` column (written before it existed) shows its
    training loss, cross-entropy and L2 together, and says so in the legend.
    """
    h = history.sort_values("epoch")
    fig = new_figure(3.4)
    ax = fig.add_subplot()
    split = "train_ce" in h
    curves = [("train_ce", "train", "-", "o"), ("val_loss", "val", "-", "o")] if split else [
        ("train_loss", "train_total", "-", "o"), ("val_loss", "val", "-", "o")]  # fmt: skip
    if split:
        curves.append(("train_l2", "train_l2", "--", "s"))
    for col, key, ls, marker in curves:
        y = pd.to_numeric(h[col], errors="coerce")
        ok = np.isfinite(y)
        color = COLORS["train" if key.startswith("train") else "val"]
        ax.plot(h["epoch"][ok], y[ok], marker=marker, ls=ls, color=color, label=t(key, lang),
                alpha=0.7 if key == "train_l2" else 1.0)  # fmt: skip
    _mark_decays(ax, h, lang)
    _mark_divergence(ax, h, lang)
    _epoch_axis(ax, h, lang)
    ax.set_ylabel(t("loss", lang))
    ax.set_title(title("loss_curve", lang))
    ax.legend(loc="best")
    return fig


def val_accuracy(history: pd.DataFrame, lang: str) -> Figure:
    """Validation and training accuracy (%) per epoch, best validation epoch marked."""
    h = history.sort_values("epoch")
    fig = new_figure(3.4)
    ax = fig.add_subplot()
    diverged = _not_finite(h)  # a NaN model's accuracy (about 10 %) is not a point of the curve
    for col, key in (("train_acc", "train"), ("val_acc", "val")):
        y = 100 * pd.to_numeric(h[col], errors="coerce")
        ok = np.isfinite(y) & ~diverged
        ax.plot(h["epoch"][ok], y[ok], marker="o", color=COLORS[key], label=t(key, lang))
    val = 100 * pd.to_numeric(h["val_acc"], errors="coerce")
    # as training keeps its best: not the epoch whose loss went non-finite (its accuracy is a NaN model's)
    val = val.where(~diverged)
    if np.isfinite(val).any():
        i = int(np.nanargmax(val.to_numpy()))
        e, v = h["epoch"].iloc[i], val.iloc[i]
        ax.plot([e], [v], marker="*", ms=12, color=COLORS["val"], ls="none", zorder=5,
                label=f"{t('best_val', lang)}: {v:.2f}%")  # fmt: skip
    _mark_decays(ax, h, lang)
    _mark_divergence(ax, h, lang)
    _epoch_axis(ax, h, lang)
    ax.set_ylabel(t("accuracy_pct", lang))
    ax.set_title(title("val_accuracy", lang))
    ax.legend(loc="best")
    return fig

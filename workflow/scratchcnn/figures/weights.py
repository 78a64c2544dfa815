"""The learned weights: conv kernels, the FC heat map, parameter histograms."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from matplotlib.colors import TwoSlopeNorm

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .style import COLORS, WIDTH, class_label, new_figure, t, title


def _mosaic(tiles: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Tile ``(n, h, w[, c])`` images into one array, NaN between tiles."""
    n, h, w = tiles.shape[:3]
    rest = tiles.shape[3:]
    nrows = math.ceil(n / ncols)
    out = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad, *rest), np.nan)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tiles[i]
    return out


def _minmax(a: np.ndarray) -> np.ndarray:
    """Scale each tile (first axis) to [0, 1]; a constant tile becomes 0.5."""
    a = np.asarray(a, dtype=np.float64)
    flat = a.reshape(len(a), -1)
    lo = flat.min(axis=1)
    span = flat.max(axis=1) - lo
    shape = (-1,) + (1,) * (a.ndim - 1)
    safe = np.where(span > 0, span, 1.0)
    scaled = (a - lo.reshape(shape)) / safe.reshape(shape)
    return np.where(span.reshape(shape) > 0, scaled, 0.5)


def _grid_cols(n: int) -> int:
    return 8 if n <= 64 else 16


def _kernel_figure(mosaic: np.ndarray, heading: str, ncols: int, cmap=None) -> Figure:
    width = min(WIDTH, 0.62 * ncols + 0.3)
    height = width * mosaic.shape[0] / mosaic.shape[1] + 0.45
    fig = new_figure(height, width)
    ax = fig.add_subplot()
    if mosaic.ndim == 3:  # RGB: white gaps
        img = np.where(np.isnan(mosaic), 1.0, mosaic)
        ax.imshow(img, interpolation="nearest")
    else:
        cm = matplotlib.colormaps[cmap or "gray"].with_extremes(bad="white")
        ax.imshow(np.ma.masked_invalid(mosaic), cmap=cm, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(heading)
    return fig


def conv1_kernels(W1: np.ndarray, lang: str) -> Figure:
    """First-layer kernels ``(F1, k, k, 3)`` as RGB tiles, each min-max scaled."""
    W1 = np.asarray(W1)
    if W1.ndim != 4 or W1.shape[3] != 3:
        raise ValueError(f"W1 must be (F1, k, k, 3), got {W1.shape}")
    n = W1.shape[0]
    ncols = min(_grid_cols(n), n)
    return _kernel_figure(_mosaic(_minmax(W1), ncols), title("conv1_kernels", lang), ncols)


def conv2_kernels(W2: np.ndarray, lang: str) -> Figure:
    """Second-layer kernels ``(F2, k, k, F1)``: input channel 0 of each as a grey tile."""
    W2 = np.asarray(W2)
    if W2.ndim != 4:
        raise ValueError(f"W2 must be (F2, k, k, F1), got {W2.shape}")
    n = W2.shape[0]
    ncols = min(_grid_cols(n), n)
    return _kernel_figure(_mosaic(_minmax(W2[..., 0]), ncols), title("conv2_kernels", lang), ncols, "gray")


def fc_weights(W3: np.ndarray, class_names: Sequence[str], lang: str) -> Figure:
    """``W3 (D, C)`` as a classes × features heat map, diverging colours centred at 0."""
    W3 = np.asarray(W3, dtype=np.float64)
    if W3.ndim != 2 or W3.shape[1] != len(class_names):
        raise ValueError(f"W3 must be (D, {len(class_names)}), got {W3.shape}")
    # Clip the colour range at the 99.5th percentile so a few outliers do not wash it out.
    m = float(np.percentile(np.abs(W3), 99.5)) if W3.size else 1.0
    m = m if m > 0 else 1.0
    fig = new_figure(3.0)
    ax = fig.add_subplot()
    # no resampling: smoothing 1,568 feature columns into a page's width hid single large weights
    im = ax.imshow(W3.T, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -m, m), interpolation="none")
    ax.set_yticks(range(len(class_names)), [class_label(c, lang) for c in class_names])
    ax.set_xlabel(t("feature", lang))
    ax.set_ylabel(t("class", lang))
    ax.grid(False)
    fig.colorbar(im, ax=ax, label=t("weight_value", lang), extend="both", shrink=0.95)
    ax.set_title(title("fc_weights", lang))
    return fig


HIST_PANELS = (("W1", "W2", "W3"), ("b1", "beta1", "gamma1"), ("b2", "beta2", "gamma2"))
BIAS_NOISE = 1e-4  # conv biases all below this are batch norm's rounding noise, not a learnt shift


def histograms(params: Mapping[str, np.ndarray], lang: str) -> Figure:
    """Histograms of all weights, conv biases, BN shifts and BN scales (3 × 3 panels)."""
    fig = new_figure(5.6)
    axes = fig.subplots(3, 3)
    for r, row in enumerate(HIST_PANELS):
        for c, name in enumerate(row):
            ax = axes[r, c]
            v = np.asarray(params[name], dtype=np.float64).ravel()
            v = v[np.isfinite(v)]
            bins = int(np.clip(np.sqrt(v.size), 8, 60))
            color = COLORS["train"] if name.startswith("W") else COLORS["time"] if r == 1 else COLORS["val"]
            counts, _, _ = ax.hist(v, bins=bins, color=color, alpha=0.85, zorder=2)
            ax.set_ylim(0, max(counts.max(initial=0), 1) * 1.35)  # headroom for the μ/σ text
            ax.set_title(t(name, lang), fontsize=8.5)
            if v.size:
                ax.text(0.98, 0.95, f"μ={v.mean():.3g}\nσ={v.std():.3g}", transform=ax.transAxes,
                        ha="right", va="top", fontsize=6.5, color="0.25")  # fmt: skip
            # the conv biases start at 0 and get only rounding noise (batch norm subtracts them):
            # a spread of 1e-8 drawn full width would read as a distribution
            if name in ("b1", "b2") and v.size and np.abs(v).max() < BIAS_NOISE:
                ax.text(0.02, 0.95, t("bn_cancels_bias", lang), transform=ax.transAxes, ha="left", va="top",
                        fontsize=6.5, color="0.25")  # fmt: skip
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4, integer=True))
            if r == 2:
                ax.set_xlabel(t("value", lang), fontsize=8)
            if c == 0:
                ax.set_ylabel(t("count", lang), fontsize=8)
    fig.suptitle(title("histograms", lang))
    return fig

"""The model itself: the network's layers drawn from its architecture, and the activation functions."""

from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..architecture import layer_table
from .style import COLORS, new_figure, t, title

# Box colours by layer kind: learnable layers darker than the parameter-free ones.
KIND_COLORS = {
    "input": "#e9ecef", "conv": "#a5c8ed", "batchnorm": "#c3e6cb", "relu": "#f8e1a8",
    "maxpool": "#f4c7a8", "flatten": "#e9ecef", "affine": "#a5c8ed", "softmax": "#f1b8c0",
}  # fmt: skip


def _shape_text(shape) -> str:
    return "×".join(str(int(v)) for v in shape)


def _layer_detail(row: Mapping) -> str:
    if row["kind"] == "conv":
        return f"{row['kernel']}×{row['kernel']}, s={row['stride']}, p={row['padding']}"
    if row["kind"] == "maxpool":
        return f"{row['kernel']}×{row['kernel']}, s={row['stride']}"
    return ""


def network_diagram(arch: Mapping, lang: str) -> Figure:
    """Every layer as a box, top to bottom, with its output shape and parameter count.

    The rows come from :func:`scratchcnn.architecture.layer_table`, so the figure
    always shows the architecture the checkpoint was trained with.
    """
    rows = [{"name": "input", "kind": "input", "output": tuple(arch["input_shape"]), "params": 0}]
    rows += layer_table(dict(arch))
    n = len(rows)
    fig = new_figure(0.36 * n + 0.7)
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(n - 0.5, -0.9)
    ax.set_axis_off()
    ax.text(0.2, -0.75, t("layer", lang), fontweight="bold", va="center")
    ax.text(6.1, -0.75, t("output_shape", lang), fontweight="bold", va="center")
    ax.text(9.8, -0.75, t("n_params", lang), fontweight="bold", va="center", ha="right")
    for i, r in enumerate(rows):
        ax.add_patch(FancyBboxPatch((0.2, i - 0.32), 5.5, 0.64, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=KIND_COLORS[r["kind"]], edgecolor="0.35", lw=0.8))  # fmt: skip
        detail = _layer_detail(r)
        kind = t("kind_" + r["kind"], lang)
        label = r["name"] if kind.lower() in r["name"] else f"{r['name']}  {kind}"  # no "relu1 ReLU"
        label += f"  ({detail})" if detail else ""
        ax.text(0.4, i, label, va="center", fontsize=8.5)
        ax.text(6.1, i, _shape_text(r["output"]), va="center", fontsize=8.5, family="monospace")
        ax.text(9.8, i, f"{int(r['params']):,}" if r["params"] else "–", va="center", ha="right", fontsize=8.5)
        if i + 1 < n:
            ax.add_patch(FancyArrowPatch((2.95, i + 0.33), (2.95, i + 0.67), arrowstyle="-|>", mutation_scale=8,
                                         color="0.35", lw=0.8))  # fmt: skip
    total = sum(int(r["params"]) for r in rows)
    ax.text(9.8, n - 0.05, f"{t('total', lang)}: {total:,}", va="top", ha="right", fontsize=8.5, fontweight="bold")
    ax.set_title(title("network", lang))
    return fig


ACTIVATIONS = {
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
}
ACTIVATION_COLORS = {"relu": COLORS["val"], "sigmoid": COLORS["train"], "tanh": COLORS["time"]}


def activation_functions(lang: str) -> Figure:
    """ReLU, sigmoid and tanh (left) and their derivatives (right) on [-5, 5]."""
    x = np.linspace(-5, 5, 1001)
    fig = new_figure(2.8)
    left, right = fig.subplots(1, 2)
    for name, (f, df) in ACTIVATIONS.items():
        left.plot(x, f(x), color=ACTIVATION_COLORS[name], label=t("act_" + name, lang))
        right.plot(x, df(x), color=ACTIVATION_COLORS[name], label=t("act_" + name, lang))
    left.set_ylim(-1.2, 3.2)
    right.set_ylim(-0.05, 1.1)
    for ax, key in ((left, "activation"), (right, "derivative")):
        ax.set_xlabel("x")
        ax.set_title(t(key, lang), fontsize=9)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.axvline(0, color="0.6", lw=0.6)
    left.legend(loc="upper left")
    fig.suptitle(title("activations", lang))
    return fig

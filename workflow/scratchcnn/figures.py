"""The report's figures, one function per figure, in one consistent style.

Every figure function takes already-loaded data (DataFrames, arrays, dicts)
and ``lang`` ("zh" or "en") and returns a :class:`matplotlib.figure.Figure`;
nothing here reads the pipeline's files. Call :func:`setup_style` once first
(it picks a CJK font for "zh", or falls back to English when there is none)
and pass the language it returns. :func:`save_figure` writes ``stem.pdf`` and
``stem.png`` atomically.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .io import atomic_path  # noqa: E402

log = logging.getLogger(__name__)

FIGURES = (
    "loss_curve",
    "val_accuracy",
    "sweep_heatmap",
    "filters_sweep",
    "per_class_accuracy",
    "conv1_kernels",
    "conv2_kernels",
    "fc_weights",
    "histograms",
    "confusion_matrix",
    "test_samples",
)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# Fonts tried for Chinese text, best first.
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Serif CJK SC",
    "Source Han Sans SC",
    "Source Han Serif SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Serif CJK JP",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
)

# Full-page width of A4 minus margins is ~6.3 in; figures are drawn at ~6 in
# and shown at 0.8\textwidth, so 9-10 pt text stays readable.
WIDTH = 6.0
PNG_DPI = 200

# Every piece of text a figure shows, in both languages.
LABELS: dict[str, dict[str, str]] = {
    "epoch": {"zh": "训练轮次 (epoch)", "en": "Epoch"},
    "loss": {"zh": "交叉熵损失", "en": "Cross-entropy loss"},
    "accuracy_pct": {"zh": "准确率 (%)", "en": "Accuracy (%)"},
    "train": {"zh": "训练集", "en": "Training"},
    "val": {"zh": "验证集", "en": "Validation"},
    "lr_decay": {"zh": "学习率阶梯衰减", "en": "Step decay of the learning rate"},
    "best_val": {"zh": "最佳验证准确率", "en": "Best validation accuracy"},
    "loss_title": {
        "zh": "最终模型的训练与验证损失",
        "en": "Training and validation loss of the final model",
    },
    "acc_title": {
        "zh": "最终模型的训练与验证准确率",
        "en": "Training and validation accuracy of the final model",
    },
    "lr": {"zh": "学习率 η", "en": "Learning rate η"},
    "reg": {"zh": "L2 正则化系数 λ", "en": "L2 regularization strength λ"},
    "best_val_pct": {"zh": "最佳验证准确率 (%)", "en": "Best validation accuracy (%)"},
    "diverged": {"zh": "发散", "en": "diverged"},
    "not_run": {"zh": "未运行", "en": "not run"},
    "heatmap_title": {
        "zh": "学习率 × 正则化网格搜索：最佳验证准确率",
        "en": "Learning-rate × regularization sweep: best validation accuracy",
    },
    "filters": {"zh": "卷积核数量（每个卷积层）", "en": "Number of filters per convolutional layer"},
    "sec_per_epoch": {"zh": "每轮耗时 (s)", "en": "Time per epoch (s)"},
    "filters_title": {
        "zh": "卷积核数量对验证准确率与训练耗时的影响",
        "en": "Validation accuracy and training time vs number of filters",
    },
    "class": {"zh": "类别", "en": "Class"},
    "test_acc_pct": {"zh": "测试准确率 (%)", "en": "Test accuracy (%)"},
    "overall": {"zh": "总体准确率", "en": "Overall accuracy"},
    "per_class_title": {"zh": "各类别的测试准确率", "en": "Test accuracy per class"},
    "conv1_title": {
        "zh": "第一层卷积核 $W_1$（RGB，各核独立归一化）",
        "en": "First-layer kernels $W_1$ (RGB, each min-max scaled)",
    },
    "conv2_title": {
        "zh": "第二层卷积核 $W_2$ 的第 1 个输入通道（各核独立归一化）",
        "en": "Second-layer kernels $W_2$, input channel 1 (each min-max scaled)",
    },
    "fc_title": {
        "zh": "全连接层权重 $W_3$（特征 × 类别）",
        "en": "Fully connected weights $W_3$ (features × classes)",
    },
    "feature": {
        "zh": "特征索引（按 行、列、通道 展平）",
        "en": "Feature index (flattened row, column, channel)",
    },
    "weight_value": {"zh": "权重值", "en": "Weight value"},
    "hist_title": {"zh": "最终模型参数的分布", "en": "Distributions of the final model's parameters"},
    "value": {"zh": "取值", "en": "Value"},
    "count": {"zh": "个数", "en": "Count"},
    "W1": {"zh": "$W_1$ 第一层卷积权重", "en": "$W_1$ conv1 weights"},
    "W2": {"zh": "$W_2$ 第二层卷积权重", "en": "$W_2$ conv2 weights"},
    "W3": {"zh": "$W_3$ 全连接权重", "en": "$W_3$ FC weights"},
    "b1": {"zh": "$b_1$ 第一层卷积偏置", "en": "$b_1$ conv1 biases"},
    "b2": {"zh": "$b_2$ 第二层卷积偏置", "en": "$b_2$ conv2 biases"},
    "beta1": {"zh": r"$\beta_1$ BN1 平移", "en": r"$\beta_1$ BN1 shifts"},
    "beta2": {"zh": r"$\beta_2$ BN2 平移", "en": r"$\beta_2$ BN2 shifts"},
    "gamma1": {"zh": r"$\gamma_1$ BN1 缩放", "en": r"$\gamma_1$ BN1 scales"},
    "gamma2": {"zh": r"$\gamma_2$ BN2 缩放", "en": r"$\gamma_2$ BN2 scales"},
    "true_class": {"zh": "真实类别", "en": "True class"},
    "pred_class": {"zh": "预测类别", "en": "Predicted class"},
    "row_share": {"zh": "占该真实类别的比例 (%)", "en": "Share of the true class (%)"},
    "cm_title": {
        "zh": "测试集混淆矩阵（颜色按行归一化，数字为样本数）",
        "en": "Test confusion matrix (colours row-normalized, numbers are counts)",
    },
    "pred_short": {"zh": "预测", "en": "pred"},
    "true_short": {"zh": "真实", "en": "true"},
    "samples_title": {
        "zh": "测试样本及其预测（红色为分类错误）",
        "en": "Test images with predictions (misclassified in red)",
    },
}

CLASS_NAMES_ZH = {
    "airplane": "飞机",
    "automobile": "汽车",
    "bird": "鸟",
    "cat": "猫",
    "deer": "鹿",
    "dog": "狗",
    "frog": "青蛙",
    "horse": "马",
    "ship": "船",
    "truck": "卡车",
}

COLORS = {"train": "#1f77b4", "val": "#d62728", "time": "#2ca02c", "wrong": "#d62728", "ok": "#2b8a3e"}


def t(key: str, lang: str) -> str:
    """The label ``key`` in ``lang`` (English for an unknown language)."""
    entry = LABELS[key]
    return entry.get(lang, entry["en"])


def class_label(name: str, lang: str) -> str:
    """A class name as shown in ``lang`` (CIFAR-10 names are translated for zh)."""
    name = str(name)
    if lang == "zh":
        return CLASS_NAMES_ZH.get(name, name)
    return name


# --------------------------------------------------------------------------- style


def find_cjk_font() -> str | None:
    """The family name of an installed CJK font, or ``None``."""
    available = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in available:
            return name
    # The font cache may predate a fresh install (e.g. apt fonts-noto-cjk).
    for path in font_manager.findSystemFonts():
        if "cjk" in os.path.basename(path).lower():
            try:
                font_manager.fontManager.addfont(path)
            except Exception:  # unreadable font file: keep looking
                continue
    available = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in available:
            return name
    return None


def setup_style(lang: str = "zh") -> str:
    """Set the shared rcParams; return the language the figures can use.

    For ``"zh"`` a CJK font is looked up; without one the figures fall back to
    English labels (with a logged warning) instead of drawing empty boxes.
    """
    if lang not in ("zh", "en"):
        raise ValueError(f"lang must be 'zh' or 'en', got {lang!r}")
    plt.rcdefaults()
    sans = ["DejaVu Sans"]
    lang_used = lang
    if lang == "zh":
        font = find_cjk_font()
        if font is None:
            log.warning("no CJK font found (install fonts-noto-cjk); drawing English labels")
            lang_used = "en"
        else:
            sans = [font, "DejaVu Sans"]  # DejaVu fills glyphs the CJK font lacks
    matplotlib.rcParams.update(
        {
            "font.family": "sans-serif",
            "font.sans-serif": sans,
            "mathtext.fontset": "dejavusans",
            "axes.unicode_minus": True,
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.labelsize": 9,
            "xtick.labelsize": 8,
            "ytick.labelsize": 8,
            "legend.fontsize": 8,
            "figure.titlesize": 11,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "grid.linestyle": "--",
            "lines.linewidth": 1.6,
            "lines.markersize": 4,
            "legend.frameon": True,
            "legend.framealpha": 0.85,
            "legend.edgecolor": "none",
            "figure.dpi": 100,
            "savefig.dpi": PNG_DPI,
            "image.interpolation": "nearest",
            "pdf.fonttype": 3,
        }
    )
    return lang_used


def _figure(height: float, width: float = WIDTH, **kw) -> Figure:
    return plt.figure(figsize=(width, height), layout="constrained", **kw)


def save_figure(fig: Figure, stem, dpi: int | None = None, close: bool = True) -> list[Path]:
    """Write ``stem.pdf`` and ``stem.png`` atomically; return both paths.

    The PDF carries no creation date, so the same figure gives the same bytes.
    """
    stem = Path(stem)
    written = []
    for ext in ("pdf", "png"):
        target = stem.with_name(f"{stem.name}.{ext}")
        with atomic_path(target, suffix=f".{ext}") as tmp:
            meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
            fig.savefig(tmp, format=ext, dpi=dpi or PNG_DPI, metadata=meta)
        written.append(target)
    if close:
        plt.close(fig)
    return written


# --------------------------------------------------------------------------- helpers


def _num_label(values: Sequence[float]) -> list[str]:
    """Tick labels for hyperparameter values: plain decimals, or powers of ten
    when some value is outside [1e-3, 1e3]."""
    vals = [float(v) for v in values]
    nonzero = [abs(v) for v in vals if v != 0]
    if all(1e-3 <= v < 1e3 for v in nonzero):
        return [f"{v:g}" for v in vals]
    out = []
    for v in vals:
        if v == 0:
            out.append("0")
            continue
        e = math.floor(math.log10(abs(v)))
        m = v / 10**e
        if abs(m - round(m)) < 1e-9:
            m = round(m)
        out.append(f"$10^{{{e}}}$" if m == 1 else f"${m:g}\\times10^{{{e}}}$")
    return out


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
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    e = history["epoch"]
    if len(e):
        ax.set_xlim(float(e.min()) - 0.5, float(e.max()) + 0.5)


def _text_color(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def _pick_sweep(summary: pd.DataFrame, vary: Sequence[str], sweep: str | None) -> pd.DataFrame:
    """The rows of the sweep named ``sweep``, or of the sweep varying most of ``vary``.

    A grid that varies none of them (a single point, say) gives all its rows.
    """
    if sweep is not None:
        rows = summary[summary["sweep"] == sweep]
        if rows.empty:
            raise ValueError(f"summary has no rows of sweep {sweep!r}")
        return rows
    candidates = []
    for name, rows in summary.groupby("sweep", sort=True):
        varied = sum(rows[c].nunique() > 1 for c in vary)
        if varied:
            candidates.append((-varied, -len(rows), str(name), rows))
    if not candidates:
        return summary
    return sorted(candidates, key=lambda c: c[:3])[0][3]


def _is_diverged(rows: pd.DataFrame) -> pd.Series:
    acc = pd.to_numeric(rows["best_val_acc"], errors="coerce")
    return (rows["status"].astype(str) == "diverged") | ~np.isfinite(acc)


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


def _kernel_figure(mosaic: np.ndarray, n: int, ncols: int, title: str, cmap=None) -> Figure:
    nrows = math.ceil(n / ncols)
    width = min(WIDTH, 0.62 * ncols + 0.3)
    height = width * mosaic.shape[0] / mosaic.shape[1] + 0.45
    fig = _figure(height, width)
    ax = fig.add_subplot()
    if mosaic.ndim == 3:  # RGB: white gaps
        img = np.where(np.isnan(mosaic), 1.0, mosaic)
        ax.imshow(img, interpolation="nearest")
    else:
        cm = matplotlib.colormaps[cmap or "gray"].copy()
        cm.set_bad("white")
        ax.imshow(np.ma.masked_invalid(mosaic), cmap=cm, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    del nrows
    return fig


# --------------------------------------------------------------------------- figures


def loss_curve(history: pd.DataFrame, lang: str) -> Figure:
    """Training and validation loss per epoch, dashed lines at the lr decays."""
    h = history.sort_values("epoch")
    fig = _figure(3.4)
    ax = fig.add_subplot()
    for col, key in (("train_loss", "train"), ("val_loss", "val")):
        y = pd.to_numeric(h[col], errors="coerce")
        ok = np.isfinite(y)
        ax.plot(h["epoch"][ok], y[ok], marker="o", color=COLORS[key], label=t(key, lang))
    _mark_decays(ax, h, lang)
    _epoch_axis(ax, h, lang)
    ax.set_ylabel(t("loss", lang))
    ax.set_title(t("loss_title", lang))
    ax.legend(loc="best")
    return fig


def val_accuracy(history: pd.DataFrame, lang: str) -> Figure:
    """Validation and training accuracy (%) per epoch, best validation epoch marked."""
    h = history.sort_values("epoch")
    fig = _figure(3.4)
    ax = fig.add_subplot()
    for col, key in (("train_acc", "train"), ("val_acc", "val")):
        y = 100 * pd.to_numeric(h[col], errors="coerce")
        ok = np.isfinite(y)
        ax.plot(h["epoch"][ok], y[ok], marker="o", color=COLORS[key], label=t(key, lang))
    val = 100 * pd.to_numeric(h["val_acc"], errors="coerce")
    if np.isfinite(val).any():
        i = int(np.nanargmax(val.to_numpy()))
        e, v = h["epoch"].iloc[i], val.iloc[i]
        ax.plot([e], [v], marker="*", ms=12, color=COLORS["val"], ls="none", zorder=5,
                label=f"{t('best_val', lang)}: {v:.2f}%")  # fmt: skip
    _mark_decays(ax, h, lang)
    _epoch_axis(ax, h, lang)
    ax.set_ylabel(t("accuracy_pct", lang))
    ax.set_title(t("acc_title", lang))
    ax.legend(loc="best")
    return fig


def sweep_heatmap(summary: pd.DataFrame, lang: str, sweep: str | None = None) -> Figure:
    """Best validation accuracy over the lr × reg grid; diverged cells hatched grey."""
    rows = _pick_sweep(summary, ("lr", "reg"), sweep).copy()
    rows["diverged"] = _is_diverged(rows)
    rows["acc"] = 100 * pd.to_numeric(rows["best_val_acc"], errors="coerce")
    lrs = sorted(rows["lr"].astype(float).unique())
    regs = sorted(rows["reg"].astype(float).unique())
    acc = np.full((len(regs), len(lrs)), np.nan)
    div = np.zeros_like(acc, dtype=bool)
    seen = np.zeros_like(div)
    for (lr, reg), g in rows.groupby(["lr", "reg"]):
        i, j = regs.index(float(reg)), lrs.index(float(lr))
        seen[i, j] = True
        ok = g[~g["diverged"]]
        if ok.empty:
            div[i, j] = True
        else:
            acc[i, j] = ok["acc"].max()
    fig = _figure(max(2.6, 0.55 * len(regs) + 1.5))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"]
    finite = acc[np.isfinite(acc)]
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 100.0)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    im = ax.imshow(np.ma.masked_invalid(acc), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
    best = np.unravel_index(np.nanargmax(acc), acc.shape) if finite.size else None
    for i in range(len(regs)):
        for j in range(len(lrs)):
            if div[i, j] or not seen[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85", edgecolor="0.55",
                                       hatch="///", lw=0))  # fmt: skip
                label = t("diverged" if div[i, j] else "not_run", lang)
                ax.text(j, i, label, ha="center", va="center", fontsize=8, color="0.2",
                        bbox={"facecolor": "0.85", "edgecolor": "none", "pad": 1})  # fmt: skip
            else:
                color = _text_color(cmap((acc[i, j] - vmin) / (vmax - vmin)))
                weight = "bold" if best is not None and (i, j) == tuple(best) else "normal"
                ax.text(j, i, f"{acc[i, j]:.1f}", ha="center", va="center", fontsize=9, color=color,
                        fontweight=weight)  # fmt: skip
    if best is not None:
        ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="#d62728", lw=2.2,
                               clip_on=False, zorder=4))  # fmt: skip
    ax.set_xticks(range(len(lrs)), _num_label(lrs))
    ax.set_yticks(range(len(regs)), _num_label(regs))
    ax.set_xlabel(t("lr", lang))
    ax.set_ylabel(t("reg", lang))
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.tick_params(length=0)
    fig.colorbar(im, ax=ax, label=t("best_val_pct", lang), shrink=0.9)
    ax.set_title(t("heatmap_title", lang))
    return fig


def filters_sweep(summary: pd.DataFrame, lang: str, sweep: str | None = None) -> Figure:
    """Best validation accuracy vs filters (left axis), seconds per epoch (right axis)."""
    rows = _pick_sweep(summary, ("filters",), sweep).copy()
    rows["diverged"] = _is_diverged(rows)
    rows["acc"] = 100 * pd.to_numeric(rows["best_val_acc"], errors="coerce")
    rows["spe"] = pd.to_numeric(rows["seconds_per_epoch"], errors="coerce")
    filters = sorted(int(f) for f in rows["filters"].unique())
    acc, spe, div = [], [], []
    for f in filters:
        g = rows[rows["filters"].astype(int) == f]
        ok = g[~g["diverged"]]
        div.append(ok.empty)
        acc.append(ok["acc"].max() if not ok.empty else np.nan)
        spe.append(g["spe"].mean())
    acc, spe = np.array(acc), np.array(spe)
    fig = _figure(3.4)
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    ax2.grid(False)
    ax2.spines["right"].set_visible(True)
    h1 = ax.plot(filters, acc, marker="o", color=COLORS["train"], label=t("best_val_pct", lang))
    h2 = ax2.plot(filters, spe, marker="s", ls="--", color=COLORS["time"], label=t("sec_per_epoch", lang))
    for f, a in zip(filters, acc):
        if np.isfinite(a):
            ax.annotate(f"{a:.1f}", (f, a), xytext=(-5, 5), textcoords="offset points", ha="right",
                        va="bottom", fontsize=7.5, color=COLORS["train"], zorder=6,
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})  # fmt: skip
    handles = h1 + h2
    if any(div):
        xs = [f for f, d in zip(filters, div) if d]
        handles += ax.plot(xs, [0.0] * len(xs), ls="none", marker="x", ms=8, color=COLORS["wrong"],
                           transform=ax.get_xaxis_transform(), clip_on=False,
                           label=t("diverged", lang))  # fmt: skip
    if len(filters) > 1 and filters[0] > 0 and filters[-1] / filters[0] >= 4:
        ax.set_xscale("log", base=2)
        ax.set_xlim(filters[0] / 1.35, filters[-1] * 1.35)  # room for the value labels
    ax.set_xticks(filters, [str(f) for f in filters])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(t("filters", lang))
    ax.set_ylabel(t("best_val_pct", lang), color=COLORS["train"])
    ax2.set_ylabel(t("sec_per_epoch", lang), color=COLORS["time"])
    ax.tick_params(axis="y", colors=COLORS["train"])
    ax2.tick_params(axis="y", colors=COLORS["time"])
    if np.isfinite(acc).any():
        lo, hi = np.nanmin(acc), np.nanmax(acc)
        margin = max(1.0, 0.15 * (hi - lo))
        ax.set_ylim(lo - margin, hi + 1.6 * margin)
    if np.isfinite(spe).any():
        ax2.set_ylim(0, np.nanmax(spe) * 1.15)
    ax.legend(handles=handles, loc="upper left")
    ax.set_title(t("filters_title", lang))
    return fig


def per_class_accuracy(test_metrics: Mapping, lang: str) -> Figure:
    """Bars of per-class test accuracy (%), overall accuracy as a dashed line."""
    per = sorted(test_metrics["per_class"], key=lambda r: r["class"])
    names = [class_label(r["name"], lang) for r in per]
    acc = np.array([100 * r["accuracy"] for r in per])
    overall = 100 * float(test_metrics["test_accuracy"])
    fig = _figure(3.4)
    ax = fig.add_subplot()
    x = np.arange(len(per))
    ax.bar(x, acc, color=COLORS["train"], width=0.7, zorder=2)
    for xi, a in zip(x, acc):  # above the bars, on white so the overall line never hides them
        ax.text(xi, a + 1.0, f"{a:.1f}", ha="center", va="bottom", fontsize=7.5, zorder=4,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.6})  # fmt: skip
    line = ax.axhline(overall, color=COLORS["val"], ls="--", lw=1.2, zorder=3,
                      label=f"{t('overall', lang)}: {overall:.2f}%")  # fmt: skip
    rot = 0 if lang == "zh" else 30
    ax.set_xticks(x, names, rotation=rot, ha="right" if rot else "center", rotation_mode="anchor")
    ax.set_xlabel(t("class", lang))
    ax.set_ylabel(t("test_acc_pct", lang))
    ax.set_ylim(0, 108)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="x", visible=False)
    fig.legend(handles=[line], loc="outside lower center")
    ax.set_title(t("per_class_title", lang))
    return fig


def conv1_kernels(W1: np.ndarray, lang: str) -> Figure:
    """First-layer kernels ``(F1, k, k, 3)`` as RGB tiles, each min-max scaled."""
    W1 = np.asarray(W1)
    if W1.ndim != 4 or W1.shape[3] != 3:
        raise ValueError(f"W1 must be (F1, k, k, 3), got {W1.shape}")
    n = W1.shape[0]
    ncols = min(_grid_cols(n), n)
    return _kernel_figure(_mosaic(_minmax(W1), ncols), n, ncols, t("conv1_title", lang))


def conv2_kernels(W2: np.ndarray, lang: str) -> Figure:
    """Second-layer kernels ``(F2, k, k, F1)``: input channel 0 of each as a grey tile."""
    W2 = np.asarray(W2)
    if W2.ndim != 4:
        raise ValueError(f"W2 must be (F2, k, k, F1), got {W2.shape}")
    n = W2.shape[0]
    ncols = min(_grid_cols(n), n)
    return _kernel_figure(_mosaic(_minmax(W2[..., 0]), ncols), n, ncols, t("conv2_title", lang), "gray")


def fc_weights(W3: np.ndarray, class_names: Sequence[str], lang: str) -> Figure:
    """``W3 (D, C)`` as a classes × features heat map, diverging colours centred at 0."""
    W3 = np.asarray(W3, dtype=np.float64)
    if W3.ndim != 2 or W3.shape[1] != len(class_names):
        raise ValueError(f"W3 must be (D, {len(class_names)}), got {W3.shape}")
    # Clip the colour range at the 99.5th percentile so a few outliers do not wash it out.
    m = float(np.percentile(np.abs(W3), 99.5)) if W3.size else 1.0
    m = m if m > 0 else 1.0
    fig = _figure(3.0)
    ax = fig.add_subplot()
    im = ax.imshow(W3.T, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -m, m),
                   interpolation="antialiased")  # fmt: skip
    ax.set_yticks(range(len(class_names)), [class_label(c, lang) for c in class_names])
    ax.set_xlabel(t("feature", lang))
    ax.set_ylabel(t("class", lang))
    ax.grid(False)
    fig.colorbar(im, ax=ax, label=t("weight_value", lang), extend="both", shrink=0.95)
    ax.set_title(t("fc_title", lang))
    return fig


HIST_PANELS = (("W1", "W2", "W3"), ("b1", "beta1", "gamma1"), ("b2", "beta2", "gamma2"))


def histograms(params: Mapping[str, np.ndarray], lang: str) -> Figure:
    """Histograms of all weights, conv biases, BN shifts and BN scales (3 × 3 panels)."""
    fig = _figure(5.6)
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
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4, integer=True))
            if r == 2:
                ax.set_xlabel(t("value", lang), fontsize=8)
            if c == 0:
                ax.set_ylabel(t("count", lang), fontsize=8)
    fig.suptitle(t("hist_title", lang))
    return fig


def confusion_matrix(confusion, class_names: Sequence[str], lang: str) -> Figure:
    """Counts in cells, colours = share of the true class (rows sum to 100%)."""
    cm = np.asarray(confusion, dtype=np.int64)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion must be ({k}, {k}), got {cm.shape}")
    rows = cm.sum(axis=1, keepdims=True)
    share = 100 * cm / np.where(rows > 0, rows, 1)
    fig = _figure(5.2)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Blues"]
    im = ax.imshow(share, cmap=cmap, vmin=0, vmax=100)
    size = 8 if cm.max(initial=0) < 1000 else 7
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=size,
                    color=_text_color(cmap(share[i, j] / 100)),
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
    ax.set_title(t("cm_title", lang))
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
    fig = _figure(rows * 1.2 + 0.35)
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
    fig.suptitle(t("samples_title", lang))
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.02)
    return fig


test_samples.__test__ = False  # not a pytest test, despite the name

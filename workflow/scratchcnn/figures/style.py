"""The figures' shared style: fonts, sizes, colours, bilingual labels, saving.

Call :func:`setup_style` once before drawing (it picks a CJK font for "zh", or
falls back to English when there is none) and pass the language it returns.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..data.classes import CLASS_NAMES_ZH  # noqa: E402
from ..io import atomic_path  # noqa: E402

log = logging.getLogger(__name__)

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

# Every label a figure shows, in both languages (titles and captions live in the registry).
LABELS: dict[str, dict[str, str]] = {
    "epoch": {"zh": "训练轮次 (epoch)", "en": "Epoch"},
    "loss": {"zh": "交叉熵损失", "en": "Cross-entropy loss"},
    "accuracy_pct": {"zh": "准确率 (%)", "en": "Accuracy (%)"},
    "train": {"zh": "训练集", "en": "Training"},
    "train_total": {"zh": "训练集（交叉熵 + L2 正则项）", "en": "Training (cross-entropy + L2 term)"},
    "train_l2": {"zh": "训练损失中的 L2 正则项", "en": "L2 term of the training loss"},
    "val": {"zh": "验证集", "en": "Validation"},
    "lr_decay": {"zh": "学习率阶梯衰减", "en": "Step decay of the learning rate"},
    "best_val": {"zh": "最佳验证准确率", "en": "Best validation accuracy"},
    "lr": {"zh": "学习率 η", "en": "Learning rate η"},
    "reg": {"zh": "L2 正则化系数 λ", "en": "L2 regularization strength λ"},
    "best_val_pct": {"zh": "最佳验证准确率 (%)", "en": "Best validation accuracy (%)"},
    "diverged": {"zh": "发散", "en": "diverged"},
    "not_finite": {"zh": "发散（损失不再有限）", "en": "diverged (loss not finite)"},
    "bn_cancels_bias": {"zh": "约为 0：被批归一化抵消", "en": "about 0: batch norm cancels it"},
    "not_run": {"zh": "未运行", "en": "not run"},
    "filters": {"zh": "卷积核数量（每个卷积层）", "en": "Number of filters per convolutional layer"},
    "sec_per_epoch": {"zh": "每轮耗时 (s)", "en": "Time per epoch (s)"},
    "class": {"zh": "类别", "en": "Class"},
    "test_acc_pct": {"zh": "测试准确率 (%)", "en": "Test accuracy (%)"},
    "overall": {"zh": "总体准确率", "en": "Overall accuracy"},
    "overall_of_seed": {"zh": "种子 {seed} 的总体准确率", "en": "Overall accuracy of seed {seed}"},
    "feature": {
        "zh": "特征索引（按 行、列、通道 展平）",
        "en": "Feature index (flattened row, column, channel)",
    },
    "weight_value": {"zh": "权重值", "en": "Weight value"},
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
    "pred_short": {"zh": "预测", "en": "pred"},
    "true_short": {"zh": "真实", "en": "true"},
    "layer": {"zh": "层", "en": "Layer"},
    "output_shape": {"zh": "输出形状", "en": "Output shape"},
    "n_params": {"zh": "参数量", "en": "Parameters"},
    "total": {"zh": "合计", "en": "Total"},
    "kind_input": {"zh": "输入", "en": "input"},
    "kind_conv": {"zh": "卷积", "en": "convolution"},
    "kind_batchnorm": {"zh": "批归一化", "en": "batch norm"},
    "kind_relu": {"zh": "ReLU", "en": "ReLU"},
    "kind_maxpool": {"zh": "最大池化", "en": "max pooling"},
    "kind_flatten": {"zh": "展平", "en": "flatten"},
    "kind_affine": {"zh": "全连接", "en": "fully connected"},
    "kind_softmax": {"zh": "softmax", "en": "softmax"},
    "activation": {"zh": "激活函数 $f(x)$", "en": "Activation $f(x)$"},
    "derivative": {"zh": "导数 $f'(x)$", "en": "Derivative $f'(x)$"},
    "act_relu": {"zh": "ReLU", "en": "ReLU"},
    "act_sigmoid": {"zh": "sigmoid", "en": "sigmoid"},
    "act_tanh": {"zh": "tanh", "en": "tanh"},
}


COLORS = {"train": "#1f77b4", "val": "#d62728", "time": "#2ca02c", "wrong": "#d62728", "ok": "#2b8a3e"}


def t(key: str, lang: str) -> str:
    """The label ``key`` in ``lang`` (English for an unknown language)."""
    entry = LABELS[key]
    return entry.get(lang, entry["en"])


def title(figure: str, lang: str) -> str:
    """The title drawn on ``figure``, from its registry entry."""
    from .registry import FIGURES  # the registry imports the drawing modules, which import this one

    entry = FIGURES[figure].title
    return entry.get(lang, entry["en"])


def class_label(name: str, lang: str) -> str:
    """A class name as shown in ``lang`` (CIFAR-10 names are translated for zh), its ``$`` escaped:
    names come from the archive, and matplotlib would typeset text between two as mathematics."""
    name = str(name)
    if lang == "zh":
        name = CLASS_NAMES_ZH.get(name, name)
    return name.replace("$", r"\$")


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


def new_figure(height: float, width: float = WIDTH, **kw) -> Figure:
    return plt.figure(figsize=(width, height), layout="constrained", **kw)


def save_figure(fig: Figure, stem, dpi: int | None = None, close: bool = True) -> list[Path]:
    """Write ``stem.pdf`` and ``stem.png`` atomically; return both paths.

    The PDF carries no creation date, so the same figure gives the same bytes.
    """
    stem = Path(stem)
    pdf, png = stem.with_name(f"{stem.name}.pdf"), stem.with_name(f"{stem.name}.png")
    # both rendered before either replaces a file: a failure in the second (a full disk) leaves
    # the previous pair. The PNG is renamed first; where the PDF's rename then fails, neither is
    # kept, never a new PNG beside an old PDF
    png_replaced = False
    try:
        with atomic_path(pdf, suffix=".pdf") as tmp_pdf:
            with atomic_path(png, suffix=".png") as tmp_png:
                fig.savefig(tmp_pdf, format="pdf", dpi=dpi or PNG_DPI, metadata={"CreationDate": None})
                fig.savefig(tmp_png, format="png", dpi=dpi or PNG_DPI, metadata={"Software": None})
            png_replaced = True
    except BaseException:
        if png_replaced:
            for path in (pdf, png):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        raise
    written = [pdf, png]
    if close:
        plt.close(fig)
    return written


# --------------------------------------------------------------------------- helpers


def num_label(values: Sequence[float]) -> list[str]:
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


def text_color(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"

"""The one list of the report's figures: each name with its drawing, inputs, title and caption.

The rules (which files each figure job needs), the plot script (what it loads
and draws), the report context (captions and paths) and the captions of
Snakemake's HTML report all read :data:`FIGURES`. Adding a figure: a drawing
function in the module of its subject, and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from matplotlib.figure import Figure

from . import curves, evaluation, network, sweeps, weights

#: What each input role holds; the pipeline maps every role to one results file.
INPUTS = {
    "history": "history.csv of the final run (DataFrame)",
    "summary": "results/sweep/summary.csv: every grid point (DataFrame)",
    "model": "model.npz of the final run (a Checkpoint: .params, .arch)",
    "test_metrics": "results/final/test_metrics.json: the seeds together (dict)",
    "data": "results/data/cifar10.npz: x_test, y_test, class_names, meta",
    "predictions": "predictions.npz of the final run's evaluation: y_true, y_pred",
}


@dataclass(frozen=True)
class FigureSpec:
    name: str
    inputs: tuple[str, ...]  # roles of INPUTS it reads
    draw: Callable[[Mapping[str, Any], str, int], Figure]  # (loaded inputs by role, lang, seed)
    title: dict  # drawn on the figure, {"zh": ..., "en": ...}
    caption: dict  # under the figure in the PDF report (zh) and Snakemake's HTML report (en)
    seeded: bool = False  # draws a random sample: the pipeline passes the config's seed


def _test_samples(i, lang, seed):
    data, pred = i["data"], i["predictions"]
    if len(pred["y_true"]) != len(data["y_test"]) or not np.array_equal(pred["y_true"], data["y_test"]):
        raise ValueError("the predictions do not belong to the data file (their y_true differs from y_test)")
    return evaluation.test_samples(
        data["x_test"], pred["y_true"], pred["y_pred"], data["class_names"], lang,
        standardize=data["meta"].get("standardize"), seed=seed,
    )  # fmt: skip


_SPECS = (
    FigureSpec(
        "network", ("model",),
        lambda i, lang, seed: network.network_diagram(i["model"].arch, lang),
        title={"zh": "网络结构：各层的输出形状与参数量", "en": "The network: output shape and parameters of each layer"},
        caption={"zh": "由检查点中的网络结构绘制的网络示意图", "en": "The network drawn from the checkpoint's architecture"},
    ),
    FigureSpec(
        "activations", (),
        lambda i, lang, seed: network.activation_functions(lang),
        title={"zh": "ReLU、sigmoid 与 tanh 及其导数", "en": "ReLU, sigmoid and tanh and their derivatives"},
        caption={"zh": "三种激活函数（左）及其导数（右）", "en": "Three activation functions (left) and their derivatives (right)"},
    ),
    FigureSpec(
        "loss_curve", ("history",),
        lambda i, lang, seed: curves.loss_curve(i["history"], lang),
        title={"zh": "最终模型的训练与验证交叉熵", "en": "Training and validation cross-entropy of the final model"},
        caption={"zh": "最终训练的训练与验证交叉熵（虚线为训练损失中的 L2 正则项）", "en": "Training and validation cross-entropy of the final training per epoch, and the L2 term of the training loss (dashed)"},
    ),
    FigureSpec(
        "val_accuracy", ("history",),
        lambda i, lang, seed: curves.val_accuracy(i["history"], lang),
        title={"zh": "最终模型的训练与验证准确率", "en": "Training and validation accuracy of the final model"},
        caption={"zh": "最终训练的训练准确率与验证准确率", "en": "Training and validation accuracy of the final training, per epoch"},
    ),
    FigureSpec(
        "sweep_heatmap", ("summary",),
        lambda i, lang, seed: sweeps.sweep_heatmap(i["summary"], lang),
        title={"zh": "学习率 × 正则化网格搜索：最佳验证准确率", "en": "Learning-rate × regularization sweep: best validation accuracy"},
        caption={"zh": "学习率与正则化强度查找的最好验证准确率", "en": "Best validation accuracy over the learning-rate x L2 grid"},
    ),
    FigureSpec(
        "filters_sweep", ("summary",),
        lambda i, lang, seed: sweeps.filters_sweep(i["summary"], lang),
        title={"zh": "卷积核数量对验证准确率与训练耗时的影响", "en": "Validation accuracy and training time vs number of filters"},
        caption={"zh": "卷积核数量对验证准确率与每个 epoch 耗时的影响", "en": "Best validation accuracy and seconds per epoch against the number of filters"},
    ),
    FigureSpec(
        "per_class_accuracy", ("test_metrics",),
        lambda i, lang, seed: evaluation.per_class_accuracy(i["test_metrics"], lang),
        title={"zh": "各类别的测试准确率", "en": "Test accuracy per class"},
        caption={"zh": "各类别的测试准确率", "en": "Test accuracy per class"},
    ),
    FigureSpec(
        "conv1_kernels", ("model",),
        lambda i, lang, seed: weights.conv1_kernels(i["model"].params["W1"], lang),
        title={"zh": "第一层卷积核 $W_1$（RGB，各核独立归一化）", "en": "First-layer kernels $W_1$ (RGB, each min-max scaled)"},
        caption={"zh": "第一层卷积核（conv1）", "en": "First-layer kernels (conv1)"},
    ),
    FigureSpec(
        "conv2_kernels", ("model",),
        lambda i, lang, seed: weights.conv2_kernels(i["model"].params["W2"], lang),
        title={"zh": "第二层卷积核 $W_2$ 的第 1 个输入通道（各核独立归一化）", "en": "Second-layer kernels $W_2$, input channel 1 (each min-max scaled)"},
        caption={"zh": "第二层卷积核（conv2）", "en": "Second-layer kernels (conv2)"},
    ),
    FigureSpec(
        "fc_weights", ("model", "test_metrics"),
        lambda i, lang, seed: weights.fc_weights(i["model"].params["W3"], i["test_metrics"]["class_names"], lang),
        title={"zh": "全连接层权重 $W_3$（类别 × 特征）", "en": "Fully connected weights $W_3$ (classes × features)"},
        caption={"zh": "全连接层权重 $W_3$ 的热图（颜色范围截在权重绝对值的 99.5\\% 分位数）",
                 "en": "Heat map of the fully connected weights W3 (colours clipped at the 99.5th percentile of "
                       "their magnitudes)"},
    ),
    FigureSpec(
        "histograms", ("model",),
        lambda i, lang, seed: weights.histograms(i["model"].params, lang),
        title={"zh": "最终模型参数的分布", "en": "Distributions of the final model's parameters"},
        caption={"zh": "各层参数的分布", "en": "Distributions of every parameter array"},
    ),
    FigureSpec(
        "confusion_matrix", ("test_metrics",),
        lambda i, lang, seed: evaluation.confusion_matrix(i["test_metrics"]["confusion"], i["test_metrics"]["class_names"], lang),
        title={"zh": "测试集混淆矩阵（颜色按行归一化，数字为样本数）", "en": "Test confusion matrix (colours row-normalized, numbers are counts)"},
        caption={"zh": "测试集混淆矩阵", "en": "Test confusion matrix"},
    ),
    FigureSpec(
        "test_samples", ("data", "predictions", "test_metrics"),
        _test_samples,
        title={"zh": "测试样本及其预测（红色为分类错误）", "en": "Test images with predictions (misclassified in red)"},
        caption={"zh": "测试样本及其预测结果", "en": "Test images with their predictions"},
        seeded=True,
    ),
)  # fmt: skip

#: name -> spec, in the report's order.
FIGURES: dict[str, FigureSpec] = {s.name: s for s in _SPECS}
assert set(i for s in _SPECS for i in s.inputs) <= set(INPUTS)

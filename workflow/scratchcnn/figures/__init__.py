"""The report's figures: :data:`FIGURES` (the registry) and one drawing function per figure.

Every drawing function takes already-loaded data (DataFrames, arrays, dicts)
and ``lang`` ("zh" or "en") and returns a :class:`matplotlib.figure.Figure`;
nothing here reads the pipeline's files. The functions are grouped by subject:
``network`` (the model), ``curves`` (training curves), ``sweeps`` (the grid search), ``weights`` (the
learned parameters) and ``evaluation`` (the test set). Call :func:`setup_style`
once first and pass the language it returns; :func:`save_figure` writes
``stem.pdf`` and ``stem.png`` atomically.
"""

from .curves import _decay_epochs, loss_curve, val_accuracy
from .evaluation import confusion_matrix, display_images, per_class_accuracy, sample_indices, test_samples
from .network import activation_functions, network_diagram
from .registry import FIGURES, INPUTS, FigureSpec
from .style import (
    LABELS,
    PNG_DPI,
    class_label,
    find_cjk_font,
    save_figure,
    setup_style,
    t,
    title,
)
from .sweeps import filters_sweep, sweep_heatmap
from .weights import _minmax, conv1_kernels, conv2_kernels, fc_weights, histograms

__all__ = [
    "FIGURES", "INPUTS", "FigureSpec", "LABELS", "PNG_DPI",
    "class_label", "find_cjk_font", "save_figure", "setup_style", "t", "title",
    "loss_curve", "val_accuracy", "sweep_heatmap", "filters_sweep", "per_class_accuracy",
    "conv1_kernels", "conv2_kernels", "fc_weights", "histograms", "confusion_matrix",
    "test_samples", "network_diagram", "activation_functions", "display_images", "sample_indices", "_decay_epochs", "_minmax",
]  # fmt: skip

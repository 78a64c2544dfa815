"""The auto-filled report: results in, LaTeX text out.

:mod:`.facts` derives numbers from the results (no wording), :mod:`.context`
and :mod:`.analysis` format them section by section for the template, :mod:`.fmt` holds the number
formats and :mod:`.latex` the escaping and the jinja2 environment. The wording
lives in ``report/report.tex.j2``. No file I/O here except reading the template.
"""

from . import facts
from .context import build_context
from .facts import (
    STUDY_TEST_ACCURACY,
    array_stats,
    class_extremes,
    compare,
    filter_cost,
    layer_table,
    selection,
    val_loss_trend,
)
from .fmt import duration, fixed, integer, pct, plain, ratio, seconds, shape, size, stat
from .latex import TexStr, make_environment, render, tex_escape, tex_file, tex_path
from ..figures.registry import FIGURES as _FIGURE_REGISTRY

#: Figure names the report includes (the figure registry's).
FIGURES = tuple(_FIGURE_REGISTRY)

__all__ = [
    "build_context", "STUDY_TEST_ACCURACY", "array_stats", "class_extremes", "compare", "filter_cost",
    "layer_table", "selection", "val_loss_trend", "duration", "fixed", "integer", "pct", "plain", "ratio",
    "seconds", "shape", "size", "stat", "TexStr", "make_environment", "render", "tex_escape", "tex_file", "tex_path",
    "FIGURES", "facts",
]  # fmt: skip

"""Numbers as the report prints them: percentages, decimals, hyperparameters, durations."""

from __future__ import annotations

import math

import numpy as np

from .latex import TexStr


def pct(x, digits=2) -> str:
    """A fraction as a percentage number without the sign: ``0.6247 -> "62.47"``."""
    return f"{100.0 * float(x):.{digits}f}"


def fixed(x, digits=4) -> str:
    return f"{float(x):.{digits}f}"


def integer(x) -> str:
    return f"{int(round(float(x))):,}"


def plain(x) -> str:
    """A hyper-parameter as written in a config: ``0.001``, ``1e-05 -> 0.00001``, ``64``.

    To 12 significant digits, so that a value computed from one reads as written (the step decay's
    ``0.05 * 0.1**3`` is 5.0000000000000016e-05: ``0.00005``); below a millionth, or beyond twelve
    digits, in powers of ten (``1e+20``, not twenty-one digits)."""
    x = float(f"{float(x):.12g}")
    if not math.isfinite(x) or (x != 0 and not 1e-6 <= abs(x) < 1e6):
        return f"{x:.12g}"
    if x == int(x):
        return str(int(x))
    return np.format_float_positional(x, trim="-")


def seconds(x) -> str:
    x = float(x)
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def stat(x, digits=4) -> str:
    """A statistic with fixed decimals and no negative zero."""
    out = f"{float(x):.{digits}f}"
    return out[1:] if out.startswith("-") and float(out) == 0 else out


def duration(sec) -> dict:
    """``{"value", "unit"}`` with unit ``s`` below 2 minutes, ``min`` below 2 hours, else ``h``."""
    sec = float(sec)
    if sec < 120:
        return {"value": seconds(sec), "unit": "s"}
    if sec < 7200:
        return {"value": f"{sec / 60:.1f}", "unit": "min"}
    return {"value": f"{sec / 3600:.2f}", "unit": "h"}


def size(nbytes) -> dict:
    """``{"value", "unit"}`` in decimal units: ``MB`` below 1 GB (one decimal), else ``GB``."""
    nbytes = float(nbytes)
    if nbytes < 1e9:
        return {"value": f"{nbytes / 1e6:.1f}", "unit": "MB"}
    return {"value": f"{nbytes / 1e9:.1f}", "unit": "GB"}


def cuda_version(runtime) -> str | None:
    """CUDA's runtime version as CuPy reports it (13000 -> "13.0", 12080 -> "12.8"), or None."""
    if not isinstance(runtime, int) or runtime <= 0:
        return None
    return f"{runtime // 1000}.{runtime % 1000 // 10}"


def ratio(x) -> str:
    return f"{float(x):.2f}"


def shape(t) -> TexStr:
    """A shape for math mode: ``(32, 32, 3) -> 32\\times 32\\times 3``."""
    return TexStr(r"\times ".join(str(int(v)) for v in t))


def loss(x):
    """A loss with 4 decimals, or None when it is not finite (a diverged run)."""
    x = float(x)
    return fixed(x, 4) if math.isfinite(x) else None


def norm_value(v):
    """``32.0 -> 32``, ``0.5 -> 0.5``; a value that is not a number is kept."""
    try:
        f = float(v)
        return int(f) if f == int(f) else f
    except (TypeError, ValueError):
        return v

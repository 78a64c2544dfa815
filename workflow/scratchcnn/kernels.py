"""Custom CUDA kernels for the CuPy path, from ``kernels.cu`` (CuPy ``RawModule``).

On the GPU each step of the network is otherwise a chain of small CuPy calls,
one kernel launch each, and at this network's size the launches set the pace.
The kernels here do such a chain in one or two launches. They run only on
float32 CuPy arrays; the NumPy code in ``layers.py`` and ``training.py`` is the
reference, and ``tests/test_cupy.py`` checks each kernel against it.

``SCRATCHCNN_KERNELS=0`` in the environment turns them off: the CuPy path then
runs the reference code, so both can be measured on the same machine.
Nothing here imports CuPy before a kernel is first launched.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("kernels.cu")
BLOCK = 256  # threads per block, passed to the source as -DBLOCK
MAX_BLOCKS = 8192  # grid-stride loops cover larger arrays

_functions: dict = {}  # (device, kernel name) -> cupy.RawKernel


def enabled() -> bool:
    """False when ``SCRATCHCNN_KERNELS=0``."""
    return os.environ.get("SCRATCHCNN_KERNELS", "1") != "0"


def use(a) -> bool:
    """Whether the kernels handle ``a``: a float32 CuPy array, kernels on."""
    return type(a).__module__.startswith("cupy") and a.dtype == np.float32 and enabled()


def _function(name):
    import cupy

    key = (cupy.cuda.runtime.getDevice(), name)
    fn = _functions.get(key)
    if fn is None:
        module = cupy.RawModule(code=SOURCE.read_text(encoding="utf-8"), options=("--std=c++17", f"-DBLOCK={BLOCK}"))
        fn = _functions[key] = module.get_function(name)
    return fn


def _blocks(total: int) -> int:
    return max(1, min(math.ceil(total / BLOCK), MAX_BLOCKS))


def _i32(*values):
    return tuple(np.int32(v) for v in values)


# --------------------------------------------------------------------------- #
# im2col / col2im


def im2col(x, kh, kw, stride, pad, out_h, out_w):
    """:func:`scratchcnn.layers.im2col` in one launch, the padding folded in."""
    import cupy

    x = cupy.ascontiguousarray(x)
    n, h, w, c = x.shape
    cols = cupy.empty((n, out_h, out_w, kh, kw, c), dtype=np.float32)
    _function("im2col_pad")(
        (_blocks(cols.size),), (BLOCK,), (x, cols, *_i32(n, h, w, c, kh, kw, stride, pad, out_h, out_w))
    )
    return cols


def col2im(cols, x_shape, stride, pad):
    """:func:`scratchcnn.layers.col2im` in one launch: a gather, one thread per pixel."""
    import cupy

    cols = cupy.ascontiguousarray(cols)
    _, out_h, out_w, kh, kw, _ = cols.shape
    n, h, w, c = x_shape
    dx = cupy.empty((n, h, w, c), dtype=np.float32)
    _function("col2im_gather")(
        (_blocks(dx.size),), (BLOCK,), (cols, dx, *_i32(n, h, w, c, kh, kw, stride, pad, out_h, out_w))
    )
    return dx


# --------------------------------------------------------------------------- #
# Softmax cross-entropy


def softmax_cross_entropy(logits, y, *, need_grad=True, correct=None):
    """:func:`scratchcnn.layers.softmax_cross_entropy` in one launch."""
    import cupy

    logits = cupy.ascontiguousarray(logits)
    y = cupy.ascontiguousarray(y, dtype=np.int64)
    n, k = logits.shape
    if correct is not None and (correct.dtype != np.int64 or correct.shape != ()):
        raise ValueError(f"correct must be a 0-d int64 array, not {correct.dtype} {correct.shape}")
    loss = cupy.empty((), dtype=np.float32)
    dlogits = cupy.empty_like(logits) if need_grad else None
    # pointers that a flag switches off are never read; `loss` stands in for them
    _function("softmax_xent")(
        (1,), (BLOCK,),
        (logits, y, *_i32(n, k), loss, dlogits if need_grad else loss, np.int32(need_grad),
         correct if correct is not None else loss, np.int32(correct is not None)),
    )  # fmt: skip
    return loss, dlogits


# --------------------------------------------------------------------------- #
# Fused clip + L2 + SGD


class SgdPlan:
    """The segment table of a flat parameter buffer, on the device once.

    ``sizes`` are the arrays' element counts in buffer order, ``decayed``
    whether the L2 term applies to each.
    """

    def __init__(self, sizes, decayed):
        import cupy

        self.n_segments = len(sizes)
        self.seg = cupy.asarray(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        self.decayed = cupy.asarray(np.asarray(decayed, dtype=np.int32))
        # blocks per segment: enough for the largest array, bounded
        self.parts = max(1, min(math.ceil(max(sizes) / (BLOCK * 4)), 64))
        self.partial = cupy.empty(self.n_segments * self.parts, dtype=np.float64)


def sgd_update(plan: SgdPlan, p_flat, g_flat, lr, clip, reg):
    """:func:`scratchcnn.training.sgd_step` over every segment in two launches (one without clip)."""
    grid = (plan.parts, plan.n_segments)
    clip = float(clip or 0.0)
    if clip > 0:
        _function("sgd_sumsq")(grid, (BLOCK,), (p_flat, g_flat, plan.seg, plan.decayed, np.float32(reg), plan.partial))
    _function("sgd_apply")(
        grid, (BLOCK,),
        (p_flat, g_flat, plan.seg, plan.decayed, np.float32(reg), plan.partial, np.int32(plan.parts),
         np.float32(lr), np.float32(clip)),
    )  # fmt: skip

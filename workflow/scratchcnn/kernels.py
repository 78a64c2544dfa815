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
from typing import NamedTuple

import numpy as np

SOURCE = Path(__file__).with_name("kernels.cu")
BLOCK = 256  # threads per block, passed to the source as -DBLOCK
MAX_BLOCKS = 8192  # grid-stride loops cover larger arrays
MAX_GRID_Y = 65535  # CUDA's limit on a grid's second dimension; the kernels loop over more images
MAX_POOL_SIZE = 16  # a window's maximum is kept as a uint8 offset: at most 16 x 16 = 256 of them

_modules: dict = {}  # device -> cupy.RawModule of kernels.cu, compiled at first use
_functions: dict = {}  # (device, kernel name) -> its function, looked up once


class KernelBuildError(RuntimeError):
    """kernels.cu did not compile or load on this GPU."""


def enabled() -> bool:
    """False when ``SCRATCHCNN_KERNELS=0``."""
    return os.environ.get("SCRATCHCNN_KERNELS", "1") != "0"


def use(a) -> bool:
    """Whether the kernels handle ``a``: a float32 CuPy array, kernels on."""
    return type(a).__module__.startswith("cupy") and a.dtype == np.float32 and enabled()


def _function(name):
    """The kernel ``name`` on the current device."""
    import cupy

    device = cupy.cuda.runtime.getDevice()
    fn = _functions.get((device, name))
    if fn is None:
        try:  # CuPy compiles the module (NVRTC) and loads it (driver) at the first lookup
            if device not in _modules:
                options = ("--std=c++17", f"-DBLOCK={BLOCK}")
                _modules[device] = cupy.RawModule(code=SOURCE.read_text(encoding="utf-8"), options=options)
            fn = _modules[device].get_function(name)
        except Exception as exc:
            _modules.pop(device, None)
            raise KernelBuildError(
                f"the CUDA kernel {name} from {SOURCE} could not be built for GPU {device} "
                f"({type(exc).__name__}: {exc}); SCRATCHCNN_KERNELS=0 in the environment runs "
                "the same steps without these kernels"
            ) from exc
        _functions[(device, name)] = fn
    return fn


def _blocks(total: int) -> int:
    return max(1, min(math.ceil(total / BLOCK), MAX_BLOCKS))


def _per_image_grid(a) -> tuple[int, int]:
    """The grid of the per-pixel kernels for ``a`` (n, ...): blocks over one image, one row per image."""
    n, per_image = a.shape[0], a.size // max(a.shape[0], 1)
    # the kernels index within an image in 32 bits, and their grid-stride step must not pass 2**31 either
    if per_image > 2**31 - 1 - MAX_BLOCKS * BLOCK:
        raise ValueError(f"one image of {a.shape} holds {per_image} elements; the CUDA kernels take under "
                         f"2**31 - {MAX_BLOCKS * BLOCK}")  # fmt: skip
    return _blocks(per_image), max(1, min(n, MAX_GRID_Y))


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
        _per_image_grid(cols), (BLOCK,), (x, cols, *_i32(n, h, w, c, kh, kw, stride, pad, out_h, out_w))
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
        _per_image_grid(dx), (BLOCK,), (cols, dx, *_i32(n, h, w, c, kh, kw, stride, pad, out_h, out_w))
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
    # pointers that a flag switches off are never touched; arrays of their types stand in for them
    _function("softmax_xent")(
        (1,), (BLOCK,),
        (logits, y, *_i32(n, k), loss, dlogits if need_grad else loss, np.int32(need_grad),
         correct if correct is not None else y, np.int32(correct is not None)),
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
        self.wsq = cupy.empty_like(self.partial)


def sgd_update(plan: SgdPlan, p_flat, g_flat, lr, clip, reg, sums=None, data_loss=None, batch=0):
    """:func:`scratchcnn.training.sgd_step` over every segment in two launches (one without clip
    or ``sums``), which also add the step to ``sums`` (a :class:`scratchcnn.training.EpochSums`)
    as :meth:`scratchcnn.training.FlatSGD.step` does on NumPy: ``data_loss`` (0-d) and the L2
    term of the parameters before the update, each times ``batch``."""
    grid = (plan.parts, plan.n_segments)
    clip = float(clip or 0.0)
    reg = np.float32(reg)
    if sums is not None:
        for name, a, dtype in (("data_loss", data_loss, np.float32), ("sums.ce", sums.ce, np.float64),
                               ("sums.l2", sums.l2, np.float64)):  # fmt: skip
            if a is None or a.dtype != dtype or a.shape != ():
                raise ValueError(f"{name} must be a 0-d {np.dtype(dtype)} array, not {getattr(a, 'dtype', a)}")
    if clip > 0 or sums is not None:
        _function("sgd_sumsq")(grid, (BLOCK,), (p_flat, g_flat, plan.seg, plan.decayed, reg, plan.partial, plan.wsq))
    # pointers that want_sums switches off are never read; arrays of their types stand in for them
    ce_sum, l2_sum, dl = (sums.ce, sums.l2, data_loss) if sums is not None else (plan.partial, plan.partial, p_flat)
    _function("sgd_apply")(
        grid, (BLOCK,),
        (p_flat, g_flat, plan.seg, plan.decayed, reg, plan.partial, np.int32(plan.parts),
         np.float32(lr), np.float32(clip), plan.wsq, dl, np.float32(batch), ce_sum, l2_sum,
         np.int32(sums is not None)),
    )  # fmt: skip


# --------------------------------------------------------------------------- #
# Batch norm + ReLU + max pooling

CT = 32  # channels per tile of the per-channel sums (as in kernels.cu)


class FusedBnReluPoolCache(NamedTuple):
    """What the fused backward needs: the BN input (x - mean is rebuilt from it) and the maxima."""

    x: object
    mean: object
    inv_std: object
    scale: object
    out: object
    arg: object  # uint8 offset of each window's first maximum
    train: bool
    size: int
    stride: int


def _chunks(rows: int) -> tuple[int, int]:
    """(chunks, rows per chunk) for the per-channel sums: up to 128 chunks of at least 256 rows."""
    chunks = max(1, min(128, rows // 256))
    per = -(-rows // chunks)
    return -(-rows // per), per


def column_sum(x2, out=None):
    """:func:`scratchcnn.layers.column_sum` of a float32 (m, c) array in two launches: partial
    sums over up to 128 chunks of rows, added in float64, then added per column in chunk order."""
    import cupy

    x2 = cupy.ascontiguousarray(x2)
    m, c = x2.shape
    if out is None:
        out = cupy.empty(c, dtype=np.float32)
    elif not (out.flags.c_contiguous and out.dtype == np.float32 and out.shape == (c,)):
        raise ValueError(f"column_sum: out must be a contiguous float32 array of {c} values, not {out.dtype} {out.shape}")
    chunks, per = _chunks(m)
    psum = cupy.empty((chunks, c), dtype=np.float64)
    # psum stands in for the squares' sums, which want_sq = 0 leaves unwritten
    _function("bn_stats")((-(-c // CT), chunks), (BLOCK,), (x2, np.int64(m), np.int32(c), np.int64(per), psum, psum, np.int32(0)))
    _function("col_sum_finalize")((-(-c // BLOCK),), (BLOCK,), (psum, np.int32(chunks), np.int32(c), out))
    return out


def bn_relu_pool_forward(x, gamma, beta, running_mean, running_var, *, train, momentum, eps, size, stride,
                         need_cache):  # fmt: skip
    """:func:`scratchcnn.layers.bn_relu_pool_forward`: 3 launches in training, 2 in evaluation."""
    import cupy

    if size > MAX_POOL_SIZE:
        raise ValueError(f"a {size}x{size} pooling window: the kernels take at most {MAX_POOL_SIZE}x{MAX_POOL_SIZE}")
    x = cupy.ascontiguousarray(x)
    n, h, w, c = x.shape
    ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    m = n * h * w
    mean, inv_std, scale = (cupy.empty(c, dtype=np.float32) for _ in range(3))
    if train:
        chunks, per = _chunks(m)
        psum = cupy.empty((chunks, c), dtype=np.float64)
        psq = cupy.empty((chunks, c), dtype=np.float64)
        _function("bn_stats")(
            (-(-c // CT), chunks), (BLOCK,), (x, np.int64(m), np.int32(c), np.int64(per), psum, psq, np.int32(1))
        )
        rm, rv = cupy.empty(c, dtype=np.float32), cupy.empty(c, dtype=np.float32)
    else:
        unread = cupy.empty(0, dtype=np.float64)  # of the pointers' type; no memory taken
        chunks, psum, psq, rm, rv = 0, unread, unread, running_mean, running_var
    _function("bn_finalize")(
        (-(-c // BLOCK),), (BLOCK,),
        (psum, psq, np.int32(chunks), np.int64(m), np.int32(c), cupy.ascontiguousarray(gamma),
         cupy.ascontiguousarray(running_mean), cupy.ascontiguousarray(running_var), np.float32(momentum),
         np.float32(1.0 - momentum), np.float32(eps), np.int32(train), mean, inv_std, scale, rm, rv),
    )  # fmt: skip
    out = cupy.empty((n, ho, wo, c), dtype=np.float32)
    arg = cupy.empty((n, ho, wo, c) if need_cache else 0, dtype=np.uint8)  # unwritten without the cache
    _function("bn_relu_pool_fwd")(
        _per_image_grid(out), (BLOCK,),
        (x, *_i32(n, h, w, c, size, stride, ho, wo), mean, scale, cupy.ascontiguousarray(beta), out, arg,
         np.int32(need_cache)),
    )  # fmt: skip
    cache = FusedBnReluPoolCache(x, mean, inv_std, scale, out, arg, bool(train), size, stride) if need_cache else None
    return out, cache, (rm, rv)


def bn_relu_pool_backward(dout, cache: FusedBnReluPoolCache, *, dgamma=None, dbeta=None):
    """:func:`scratchcnn.layers.bn_relu_pool_backward` in 3 launches; returns ``(dx, dgamma, dbeta)``."""
    import cupy

    dout = cupy.ascontiguousarray(dout)
    x, size, stride = cache.x, cache.size, cache.stride
    n, h, w, c = x.shape
    _, ho, wo, _ = cache.out.shape
    if n * ho * wo >= 2**31:  # bn_relu_pool_bwd_stats divides pooled row numbers in 32 bits
        raise ValueError(f"{n * ho * wo} pooled rows; the CUDA kernels take under 2**31")
    chunks, per = _chunks(n * ho * wo)
    pd = cupy.empty((chunks, c), dtype=np.float64)
    pdc = cupy.empty((chunks, c), dtype=np.float64)
    dims = _i32(n, h, w, c, size, stride, ho, wo)
    _function("bn_relu_pool_bwd_stats")(
        (-(-c // CT), chunks), (BLOCK,), (dout, cache.out, cache.arg, x, cache.mean, *dims, np.int64(per), pd, pdc)
    )
    dgamma = cupy.empty(c, dtype=np.float32) if dgamma is None else dgamma
    dbeta = cupy.empty(c, dtype=np.float32) if dbeta is None else dbeta
    for a in (dgamma, dbeta):
        if not (a.flags.c_contiguous and a.dtype == np.float32 and a.shape == (c,)):
            raise ValueError("gradient outputs must be contiguous float32 arrays of one value per channel")
    k1, k2 = cupy.empty(c, dtype=np.float32), cupy.empty(c, dtype=np.float32)
    _function("bn_grad_finalize")(
        (-(-c // BLOCK),), (BLOCK,),
        (pd, pdc, np.int32(chunks), np.int64(n * h * w), np.int32(c), cache.inv_std, cache.scale,
         np.int32(cache.train), dgamma, dbeta, k1, k2),
    )  # fmt: skip
    dx = cupy.empty_like(x)
    _function("bn_relu_pool_bwd_dx")(
        _per_image_grid(dx), (BLOCK,),
        (dout, cache.out, cache.arg, x, cache.mean, cache.scale, k1, k2, *dims, dx),
    )  # fmt: skip
    return dx, dgamma, dbeta

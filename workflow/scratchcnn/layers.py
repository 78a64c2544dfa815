"""Layers as pairs of pure functions (CS231n style).

``*_forward`` returns ``(out, cache)``; ``*_backward`` takes the upstream
gradient and that cache and returns the gradients. Arrays are NHWC
(image, row, column, channel). Every function works on NumPy or CuPy arrays
and keeps the dtype of its inputs (float64 for gradient checks).

``need_cache=False`` (evaluation) returns ``None`` as the cache, so nothing
is kept for a backward pass. Gradient outputs may be given (``dW=``, ``db=``
...): they are written in place, for parameters kept in one flat buffer.
On CuPy float32 arrays some steps run as custom CUDA kernels
(:mod:`scratchcnn.kernels`); the NumPy code here is their reference.
"""

from __future__ import annotations

import numpy as np

from . import graph, kernels
from .backend import array_module


# --------------------------------------------------------------------------- #
# Sliding windows: the kernel-offset slice loop (kH*kW copies, no pixel loop).


def _window_slices(i, j, stride, out_h, out_w):
    return (
        slice(None),
        slice(i, i + stride * (out_h - 1) + 1, stride),
        slice(j, j + stride * (out_w - 1) + 1, stride),
        slice(None),
    )


def sliding_windows(x, kh, kw, stride, out_h, out_w):
    """A read-only (N, out_h, out_w, kh, kw, C) view of the windows of x (N, H, W, C)."""
    xp = array_module(x)
    sn, sh, sw, sc = x.strides
    n, c = x.shape[0], x.shape[3]
    return xp.lib.stride_tricks.as_strided(
        x, (n, out_h, out_w, kh, kw, c), (sn, sh * stride, sw * stride, sh, sw, sc)
    )


def im2col(x, kh, kw, stride, pad, out_h, out_w):
    """(N, H, W, C) -> contiguous (N, out_h, out_w, kh, kw, C) windows of x zero-padded by ``pad``."""
    if kernels.use(x):
        return kernels.im2col(x, kh, kw, stride, pad, out_h, out_w)
    xp = array_module(x)
    x_padded = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else xp.ascontiguousarray(x)
    return xp.ascontiguousarray(sliding_windows(x_padded, kh, kw, stride, out_h, out_w))


def col2im(cols, x_shape, stride, pad):
    """Adjoint of :func:`im2col`: sums each window back onto its pixels, (N, H, W, C) of ``x_shape``.

    Offsets are added one after another, so the result is deterministic
    (no scatter-add races on the GPU).
    """
    if kernels.use(cols):
        return kernels.col2im(cols, x_shape, stride, pad)
    xp = array_module(cols)
    _, out_h, out_w, kh, kw, _ = cols.shape
    n, h, w, c = x_shape
    x = xp.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            x[_window_slices(i, j, stride, out_h, out_w)] += cols[:, :, :, i, j, :]
    return x[:, pad : pad + h, pad : pad + w, :] if pad else x


def conv_output_size(size, kernel, stride, pad):
    out = (size + 2 * pad - kernel) // stride + 1
    if out < 1:
        raise ValueError(
            f"a {kernel}x{kernel} kernel with stride {stride} and padding {pad} "
            f"does not fit an input of size {size}"
        )
    return out


# --------------------------------------------------------------------------- #
# Matrix products


def matmul(a, b, out=None):
    """``a @ b`` of two matrices, into ``out`` when given. While a CUDA graph of the training
    step is being captured, through cuBLAS directly (:mod:`scratchcnn.graph`: CuPy refuses then)."""
    gemm = graph.capturing_gemm()
    if gemm is not None:
        return gemm.gemm(a, b, out=out)
    return array_module(a).matmul(a, b, out=out)


# --------------------------------------------------------------------------- #
# Convolution


def conv2d_forward(x, W, b, stride=1, pad=0, *, need_cache=True):
    """x (N, H, W, C), W (F, kH, kW, C), b (F,) -> (N, Ho, Wo, F)."""
    n, h, w, c = x.shape
    f, kh, kw, cw = W.shape
    if cw != c:
        raise ValueError(f"conv2d: input has {c} channels but the kernels expect {cw}")
    out_h = conv_output_size(h, kh, stride, pad)
    out_w = conv_output_size(w, kw, stride, pad)
    cols = im2col(x, kh, kw, stride, pad, out_h, out_w).reshape(n * out_h * out_w, -1)
    out = matmul(cols, W.reshape(f, -1).T)
    out += b
    cache = (cols, x.shape, W, stride, pad, (n, out_h, out_w)) if need_cache else None
    return out.reshape(n, out_h, out_w, f), cache


def conv2d_backward(dout, cache, need_dx=True, *, dW=None, db=None):
    """Returns ``(dx, dW, db)``; ``dx`` is None when ``need_dx`` is False (the first layer)."""
    xp = array_module(dout)
    cols, x_shape, W, stride, pad, (n, out_h, out_w) = cache
    f, kh, kw, c = W.shape
    dout2 = dout.reshape(-1, f)
    dW2 = weight_gradient(dout2, cols, out=_matrix_view(dW, f))
    dW = dW2.reshape(W.shape) if dW is None else dW
    db = column_sum(dout2, out=db)
    if not need_dx:
        return None, dW, db
    if kernels.use(dout):  # the gather kernel reads each pixel's window entries side by side
        dcols = matmul(dout2, W.reshape(f, -1)).reshape(n, out_h, out_w, kh, kw, c)
    else:  # offset-major, so that col2im adds each offset's slice as long contiguous rows
        dcols = xp.matmul(dout2, W.transpose(1, 2, 0, 3).reshape(kh * kw, f, c))
        dcols = dcols.reshape(kh, kw, n, out_h, out_w, c).transpose(2, 3, 4, 0, 1, 5)
    return col2im(dcols, x_shape, stride, pad), dW, db


def weight_gradient(dout2, cols, out=None):
    """``dout2.T @ cols``: a convolution's weight gradient, summed over every output pixel of the batch."""
    return matmul(dout2.T, cols, out=out)


def _matrix_view(a, rows):
    """``a`` as a (rows, -1) view for a matmul ``out=`` (None stays None); never a copy."""
    if a is None:
        return None
    if not a.flags.c_contiguous:
        raise ValueError("gradient outputs must be C-contiguous (views into a flat buffer)")
    return a.reshape(rows, -1)


# --------------------------------------------------------------------------- #
# Batch normalisation over (N, H, W) per channel


def column_sum(x2, out=None):
    """Sum over the rows of a 2-D array.

    NumPy: matrix-vector products with a ones vector (BLAS does this several
    times faster than ``x2.sum(axis=0)``), in blocks of rows. CuPy: with the
    kernels, a kernel pair that spreads the rows over many blocks; without,
    :func:`cupy_column_sum`.
    """
    if kernels.use(x2):
        return kernels.column_sum(x2, out)
    xp = array_module(x2)
    if xp.__name__ != "numpy":
        return cupy_column_sum(x2, out)
    return _numpy_column_reduce(lambda a: ones(xp, a.shape[-2], a.dtype) @ a, (x2,), SUM_BLOCK, out)


def cupy_column_sum(x2, out=None):
    """CuPy's own reduction over the rows, added in float64: it adds float32 in float32, each
    thread a run of thousands of rows (4,096 for conv1's batch norm at batch 64), which drifts
    further than NumPy's blocked sums. One more launch: the cast back. It gives each block 32
    columns, so few blocks share a long sum (one for conv1's 32 channels)."""
    total = array_module(x2).sum(x2, axis=0, dtype=np.float64)
    if out is None:
        return total.astype(x2.dtype)
    out[...] = total
    return out


def column_dot(a2, b2):
    """Per-column dot products ``sum_i a2[i, j] * b2[i, j]`` of two (m, c) arrays.

    NumPy's einsum reads both arrays once, without temporaries (faster than a
    product and a column sum); CuPy's einsum copies its inputs, so CuPy sums
    the product.
    """
    xp = array_module(a2)
    if xp.__name__ != "numpy":
        return column_sum(a2 * b2)
    return _numpy_column_reduce(lambda a, b: xp.einsum("...ij,...ij->...j", a, b), (a2, b2), DOT_BLOCK)


# rows per float32 partial sum on NumPy: BLAS sums (column_sum), einsum dot products (column_dot)
SUM_BLOCK, DOT_BLOCK = 2048, 512


def _numpy_column_reduce(per_block, arrays, rows, out=None):
    """``per_block`` (a sum over rows) over blocks of ``rows`` rows, the blocks added in float64.

    BLAS and einsum add a column's rows one after another in float32. Over a
    whole batch (65,536 rows) such a sum drifts by about 1e-5, and batch norm's
    backward pass turns that drift into errors of 1e-3 in the first layer's
    gradients; in blocks it stays near 1e-7, at the same speed.
    """
    m, c = arrays[0].shape
    blocks = m // rows
    if blocks < 2:
        total = per_block(*arrays)
    else:
        head = blocks * rows
        total = per_block(*(a[:head].reshape(blocks, rows, c) for a in arrays)).sum(axis=0, dtype=np.float64)
        if head < m:
            total += per_block(*(a[head:] for a in arrays))
        total = total.astype(arrays[0].dtype)
    if out is None:
        return total
    out[...] = total
    return out


_ONES: dict = {}


def ones(xp, n, dtype):
    """A cached read-only ones vector (made once per length, dtype and device): no fill per use."""
    device = xp.cuda.runtime.getDevice() if xp.__name__ == "cupy" else None
    key = (xp.__name__, device, n, np.dtype(dtype).str)
    v = _ONES.get(key)
    if v is None:
        if len(_ONES) > 64:  # lengths come from a few batch shapes; bound it anyway
            _ONES.clear()
        v = _ONES[key] = xp.ones(n, dtype=dtype)
        if xp.__name__ == "numpy":
            v.flags.writeable = False
    return v


def check_momentum(train, momentum):
    """Training updates the running statistics with the config's momentum; there is no default here."""
    if train and momentum is None:
        raise TypeError("batch norm in training mode needs momentum= (the config's model.bn_momentum)")


def _pixel_rows(x):
    """``x`` (..., C) as 2-D rows for per-channel arithmetic, and how often each row repeats C.

    NumPy runs one inner loop per row of a broadcast: rows of 32 channels cost a loop call per 32
    numbers, so on NumPy a row is a whole image row (W * C numbers, with the per-channel vectors
    tiled W times), which makes those passes about a third faster. CuPy's elementwise kernels see
    the flat array either way, so it keeps one pixel per row and untiled vectors (no extra launches).
    """
    k = x.shape[-2] if x.ndim > 2 and array_module(x).__name__ == "numpy" else 1
    return x.reshape(-1, k * x.shape[-1]), k


def _tiled(xp, v, k):
    return xp.tile(v, k) if k > 1 else v


def batchnorm_forward(x, gamma, beta, running_mean, running_var, *, train, momentum=None, eps=1e-5,
                      need_cache=True):  # fmt: skip
    """Returns ``(out, cache, (running_mean, running_var))``.

    Training normalises with the batch statistics (biased variance) and
    returns updated running statistics ``momentum * old + (1 - momentum) * batch``;
    evaluation uses the running statistics and returns them unchanged.
    ``momentum`` has no default: training needs the config's ``model.bn_momentum``.
    """
    check_momentum(train, momentum)
    xp = array_module(x)
    c = x.shape[-1]
    rows, k = _pixel_rows(x)
    if train:
        m = x.size // c
        mean = column_sum(x.reshape(-1, c)) / m
        centred = rows - _tiled(xp, mean, k)
        centred2 = centred.reshape(-1, c)
        var = column_dot(centred2, centred2) / m
        running_mean = momentum * running_mean + (1.0 - momentum) * mean
        running_var = momentum * running_var + (1.0 - momentum) * var
    else:
        centred, var = rows - _tiled(xp, running_mean, k), running_var
    inv_std = 1.0 / xp.sqrt(var + eps)
    # gamma * (x - mean) / std + beta in two passes; the backward pass rebuilds x-hat from `centred`
    scale = _tiled(xp, gamma * inv_std, k)
    out = centred * scale if need_cache else xp.multiply(centred, scale, out=centred)
    out += _tiled(xp, beta, k)
    cache = (centred, inv_std, gamma, train) if need_cache else None
    return out.reshape(x.shape), cache, (running_mean, running_var)


def batchnorm_backward(dout, cache, *, dgamma=None, dbeta=None):
    """Returns ``(dx, dgamma, dbeta)``."""
    xp = array_module(dout)
    centred, inv_std, gamma, train = cache
    c = dout.shape[-1]
    d2, centred2 = dout.reshape(-1, c), centred.reshape(-1, c)
    dbeta = column_sum(d2, out=dbeta)
    d_centred = column_dot(d2, centred2)  # sum of dout * (x - mean)
    dgamma = xp.multiply(d_centred, inv_std, out=dgamma)
    scale = gamma * inv_std
    rows, k = _pixel_rows(dout)
    dx = rows * _tiled(xp, scale, k)
    if train:
        # through the batch mean and variance: dx = scale * (dout - mean(dout) - xhat * mean(dout * xhat))
        m = d2.shape[0]
        dx += centred * _tiled(xp, -scale * inv_std * inv_std * d_centred / m, k)
        dx -= _tiled(xp, scale * dbeta / m, k)
    return dx.reshape(dout.shape), dgamma, dbeta


# --------------------------------------------------------------------------- #
# ReLU


def relu_forward(x):
    xp = array_module(x)
    out = xp.maximum(x, 0)
    return out, out


def relu_backward(dout, cache):
    return dout * (cache > 0)


# --------------------------------------------------------------------------- #
# Max pooling


def maxpool_forward(x, size=2, stride=2, *, need_cache=True):
    """x (N, H, W, C) -> (N, Ho, Wo, C); windows of ``size`` every ``stride``.

    One pass per window offset (4 for 2x2), no index arrays.
    """
    xp = array_module(x)
    n, h, w, c = x.shape
    out_h = conv_output_size(h, size, stride, 0)
    out_w = conv_output_size(w, size, stride, 0)
    out = x[_window_slices(0, 0, stride, out_h, out_w)].copy()
    for t in range(1, size * size):
        i, j = divmod(t, size)
        xp.maximum(out, x[_window_slices(i, j, stride, out_h, out_w)], out=out)
    return out, ((x, out, size, stride) if need_cache else None)


def maxpool_backward(dout, cache):
    """The gradient goes to the first maximum of each window (one position on ties)."""
    xp = array_module(dout)
    x, out, size, stride = cache
    _, out_h, out_w, _ = dout.shape
    # windows that tile the input exactly write every pixel once: no zeroing, no read-add
    tiles = stride == size and x.shape[1] == size * out_h and x.shape[2] == size * out_w
    dx = (xp.empty if tiles else xp.zeros)(x.shape, dtype=dout.dtype)
    taken = None
    for t in range(size * size):
        window = _window_slices(*divmod(t, size), stride, out_h, out_w)
        first = x[window] == out
        if taken is None:
            taken = first
        else:
            first = first > taken  # for booleans: this offset is a maximum and no earlier one was
            taken |= first
        if tiles:
            xp.multiply(dout, first, out=dx[window])
        else:
            dx[window] += dout * first  # overlapping windows (stride < size) add up
    return dx


# --------------------------------------------------------------------------- #
# Batch norm + ReLU + max pooling (a sandwich layer, as CS231n's layer_utils)


def bn_relu_pool_forward(x, gamma, beta, running_mean, running_var, *, train, momentum=None, eps=1e-5,
                         size=2, stride=2, need_cache=True):  # fmt: skip
    """:func:`batchnorm_forward`, :func:`relu_forward`, :func:`maxpool_forward` in a row.

    Returns ``(out, cache, (running_mean, running_var))``. On CuPy float32
    arrays one fused kernel chain (:mod:`scratchcnn.kernels`) does all three.
    """
    check_momentum(train, momentum)
    if kernels.use(x) and size <= kernels.MAX_POOL_SIZE:
        momentum = 0.0 if momentum is None else momentum  # evaluation: unused, but the kernel takes a number
        return kernels.bn_relu_pool_forward(
            x, gamma, beta, running_mean, running_var, train=train, momentum=momentum, eps=eps,
            size=size, stride=stride, need_cache=need_cache,
        )  # fmt: skip
    h, bn_cache, stats = batchnorm_forward(
        x, gamma, beta, running_mean, running_var, train=train, momentum=momentum, eps=eps, need_cache=need_cache
    )
    # ReLU is monotone, so it commutes with the window maximum: pooling first gives the same
    # output and gradients, with the ReLU's passes over a quarter of the pixels
    pooled, pool_cache = maxpool_forward(h, size, stride, need_cache=need_cache)
    out, relu_cache = relu_forward(pooled)
    return out, ((bn_cache, relu_cache, pool_cache) if need_cache else None), stats


def bn_relu_pool_backward(dout, cache, *, dgamma=None, dbeta=None):
    """Returns ``(dx, dgamma, dbeta)`` for :func:`bn_relu_pool_forward`."""
    if isinstance(cache, kernels.FusedBnReluPoolCache):
        return kernels.bn_relu_pool_backward(dout, cache, dgamma=dgamma, dbeta=dbeta)
    bn_cache, relu_cache, pool_cache = cache
    dh = maxpool_backward(relu_backward(dout, relu_cache), pool_cache)
    return batchnorm_backward(dh, bn_cache, dgamma=dgamma, dbeta=dbeta)


# --------------------------------------------------------------------------- #
# Fully connected


def affine_forward(x, W, b, *, need_cache=True):
    """x (N, ...) flattened in its memory order -> (N, M) with W (D, M)."""
    out = matmul(x.reshape(x.shape[0], -1), W) + b
    return out, ((x, W) if need_cache else None)


def affine_backward(dout, cache, *, dW=None, db=None):
    x, W = cache
    x2 = x.reshape(x.shape[0], -1)
    dx = matmul(dout, W.T).reshape(x.shape)
    return dx, matmul(x2.T, dout, out=dW), column_sum(dout, out=db)


# --------------------------------------------------------------------------- #
# Loss


def one_hot(y, num_classes, dtype):
    xp = array_module(y)
    return (y[:, None] == xp.arange(num_classes)[None, :]).astype(dtype)


def log_softmax(logits):
    xp = array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits, y, *, need_grad=True, correct=None):
    """Mean cross-entropy of integer labels ``y``; returns ``(loss, dlogits)``.

    Log-sum-exp with the row maximum subtracted, so huge logits stay finite.
    ``loss`` is a 0-d array (no host synchronisation on the GPU); ``dlogits``
    is None unless ``need_grad``. ``correct``, a 0-d integer array, has the
    number of rows whose (first) largest logit is the label added to it in place.
    """
    if kernels.use(logits):
        return kernels.softmax_cross_entropy(logits, y, need_grad=need_grad, correct=correct)
    xp = array_module(logits)
    n, k = logits.shape
    logp = log_softmax(logits)
    target = one_hot(y, k, logits.dtype)
    loss = -(logp * target).sum() / n
    if correct is not None:
        correct += (logits.argmax(axis=1) == y).sum()
    dlogits = (xp.exp(logp) - target) / n if need_grad else None
    return loss, dlogits


def l2_penalty(weights, reg, grads=True):
    """``reg / 2 * sum(W**2)`` over ``weights``; returns ``(loss, grads)``.

    The squared norms are dot products (no squared copy of each array).
    ``grads`` is an empty list when ``grads`` is False.
    """
    loss = 0.5 * reg * sum(squared_norm(w) for w in weights)
    return loss, [reg * w for w in weights] if grads else []


def squared_norm(a):
    """``sum(a**2)`` as one dot product (a 0-d array)."""
    flat = a.reshape(-1)
    return flat @ flat

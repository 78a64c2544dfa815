"""Layers as pairs of pure functions (CS231n style).

``*_forward`` returns ``(out, cache)``; ``*_backward`` takes the upstream
gradient and that cache and returns the gradients. Arrays are NHWC
(image, row, column, channel). Every function works on NumPy or CuPy arrays
and keeps the dtype of its inputs (float64 for gradient checks).
"""

from __future__ import annotations

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


def im2col(x_padded, kh, kw, stride, out_h, out_w):
    """(N, Hp, Wp, C) -> contiguous (N, out_h, out_w, kh, kw, C) windows (one copy)."""
    xp = array_module(x_padded)
    x_padded = xp.ascontiguousarray(x_padded)
    return xp.ascontiguousarray(sliding_windows(x_padded, kh, kw, stride, out_h, out_w))


def col2im(cols, padded_shape, stride):
    """Adjoint of :func:`im2col`: sums each window back onto its pixels.

    Offsets are added one after another, so the result is deterministic
    (no scatter-add races on the GPU).
    """
    xp = array_module(cols)
    _, out_h, out_w, kh, kw, _ = cols.shape
    x = xp.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            x[_window_slices(i, j, stride, out_h, out_w)] += cols[:, :, :, i, j, :]
    return x


def conv_output_size(size, kernel, stride, pad):
    out = (size + 2 * pad - kernel) // stride + 1
    if out < 1:
        raise ValueError(
            f"a {kernel}x{kernel} kernel with stride {stride} and padding {pad} "
            f"does not fit an input of size {size}"
        )
    return out


# --------------------------------------------------------------------------- #
# Convolution


def conv2d_forward(x, W, b, stride=1, pad=0):
    """x (N, H, W, C), W (F, kH, kW, C), b (F,) -> (N, Ho, Wo, F)."""
    xp = array_module(x)
    n, h, w, c = x.shape
    f, kh, kw, cw = W.shape
    if cw != c:
        raise ValueError(f"conv2d: input has {c} channels but the kernels expect {cw}")
    out_h = conv_output_size(h, kh, stride, pad)
    out_w = conv_output_size(w, kw, stride, pad)
    x_padded = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    cols = im2col(x_padded, kh, kw, stride, out_h, out_w).reshape(n * out_h * out_w, -1)
    out = cols @ W.reshape(f, -1).T
    out += b
    cache = (cols, x_padded.shape, W, stride, pad, (n, out_h, out_w))
    return out.reshape(n, out_h, out_w, f), cache


def conv2d_backward(dout, cache, need_dx=True):
    """Returns ``(dx, dW, db)``; ``dx`` is None when ``need_dx`` is False (the first layer)."""
    cols, padded_shape, W, stride, pad, (n, out_h, out_w) = cache
    f, kh, kw, c = W.shape
    dout2 = dout.reshape(-1, f)
    dW = (dout2.T @ cols).reshape(W.shape)
    db = column_sum(dout2)
    if not need_dx:
        return None, dW, db
    dcols = (dout2 @ W.reshape(f, -1)).reshape(n, out_h, out_w, kh, kw, c)
    dx_padded = col2im(dcols, padded_shape, stride)
    if pad:
        dx_padded = dx_padded[:, pad:-pad, pad:-pad, :]
    return dx_padded, dW, db


# --------------------------------------------------------------------------- #
# Batch normalisation over (N, H, W) per channel


def column_sum(x2):
    """Sum over the rows of a 2-D array, as a matrix-vector product.

    BLAS does this several times faster than ``x2.sum(axis=0)`` on NumPy.
    """
    xp = array_module(x2)
    return xp.ones(x2.shape[0], dtype=x2.dtype) @ x2


def batchnorm_forward(x, gamma, beta, running_mean, running_var, *, train, momentum=0.9, eps=1e-5):
    """Returns ``(out, cache, (running_mean, running_var))``.

    Training normalises with the batch statistics (biased variance) and
    returns updated running statistics ``momentum * old + (1 - momentum) * batch``;
    evaluation uses the running statistics and returns them unchanged.
    """
    xp = array_module(x)
    c = x.shape[-1]
    x2 = x.reshape(-1, c)
    if train:
        m = x2.shape[0]
        mean = column_sum(x2) / m
        centred = x2 - mean
        var = xp.einsum("ij,ij->j", centred, centred) / m
        running_mean = momentum * running_mean + (1.0 - momentum) * mean
        running_var = momentum * running_var + (1.0 - momentum) * var
    else:
        centred, var = x2 - running_mean, running_var
    inv_std = 1.0 / xp.sqrt(var + eps)
    # gamma * (x - mean) / std + beta in two passes; the backward pass rebuilds x-hat from `centred`
    out = centred * (gamma * inv_std)
    out += beta
    cache = (centred, inv_std, gamma, train)
    return out.reshape(x.shape), cache, (running_mean, running_var)


def batchnorm_backward(dout, cache):
    """Returns ``(dx, dgamma, dbeta)``."""
    xp = array_module(dout)
    centred, inv_std, gamma, train = cache
    c = dout.shape[-1]
    d2 = dout.reshape(-1, c)
    dbeta = column_sum(d2)
    d_centred = xp.einsum("ij,ij->j", d2, centred)  # sum of dout * (x - mean)
    dgamma = d_centred * inv_std
    scale = gamma * inv_std
    dx = d2 * scale
    if train:
        # through the batch mean and variance: dx = scale * (dout - mean(dout) - xhat * mean(dout * xhat))
        m = d2.shape[0]
        dx += centred * (-scale * inv_std * inv_std * d_centred / m)
        dx -= scale * dbeta / m
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


def maxpool_forward(x, size=2, stride=2):
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
    return out, (x, out, size, stride)


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
# Fully connected


def affine_forward(x, W, b):
    """x (N, ...) flattened in its memory order -> (N, M) with W (D, M)."""
    out = x.reshape(x.shape[0], -1) @ W + b
    return out, (x, W)


def affine_backward(dout, cache):
    x, W = cache
    x2 = x.reshape(x.shape[0], -1)
    dx = (dout @ W.T).reshape(x.shape)
    return dx, x2.T @ dout, dout.sum(axis=0)


# --------------------------------------------------------------------------- #
# Loss


def one_hot(y, num_classes, dtype):
    xp = array_module(y)
    return (y[:, None] == xp.arange(num_classes)[None, :]).astype(dtype)


def log_softmax(logits):
    xp = array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits, y):
    """Mean cross-entropy of integer labels ``y``; returns ``(loss, dlogits)``.

    Log-sum-exp with the row maximum subtracted, so huge logits stay finite.
    ``loss`` is a 0-d array (no host synchronisation on the GPU).
    """
    n, k = logits.shape
    logp = log_softmax(logits)
    target = one_hot(y, k, logits.dtype)
    loss = -(logp * target).sum() / n
    dlogits = (array_module(logits).exp(logp) - target) / n
    return loss, dlogits


def l2_penalty(weights, reg):
    """``reg / 2 * sum(W**2)`` over ``weights``; returns ``(loss, grads)``."""
    loss = sum(0.5 * reg * (w * w).sum() for w in weights)
    return loss, [reg * w for w in weights]

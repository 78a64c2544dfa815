"""The study's network: conv-BN-ReLU-pool, conv-BN-ReLU-pool, fully connected.

``params`` is a dict of the learnable arrays (``W1 b1 gamma1 beta1 W2 b2
gamma2 beta2 W3 b3``), ``bn_state`` a dict of the running statistics
(``running_mean1 running_var1 running_mean2 running_var2``), ``arch`` a plain
dict (see :func:`make_arch`). All three live on the backend's device.
"""

from __future__ import annotations

import numpy as np

from . import layers
from .backend import Backend, array_module, numpy_backend

PARAM_NAMES = ("W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3")
BN_STATE_NAMES = ("running_mean1", "running_var1", "running_mean2", "running_var2")
WEIGHT_NAMES = ("W1", "W2", "W3")  # the arrays the L2 term covers


def make_arch(
    filters1=32,
    filters2=None,
    kernel_size=3,
    padding1=1,
    padding2=0,
    stride=1,
    pool_size=2,
    pool_stride=2,
    input_shape=(32, 32, 3),
    num_classes=10,
    bn_eps=1e-5,
) -> dict:
    """The architecture as a JSON-able dict; ``filters2`` defaults to ``filters1``."""
    arch = {
        "input_shape": [int(s) for s in input_shape],
        "num_classes": int(num_classes),
        "filters1": int(filters1),
        "filters2": int(filters2 if filters2 is not None else filters1),
        "kernel_size": int(kernel_size),
        "padding1": int(padding1),
        "padding2": int(padding2),
        "stride": int(stride),
        "pool_size": int(pool_size),
        "pool_stride": int(pool_stride),
        "bn_eps": float(bn_eps),
    }
    layer_shapes(arch)  # fails early on a configuration that does not fit
    return arch


def layer_shapes(arch: dict) -> dict:
    """Activation shapes (without the batch axis) after each stage."""
    h, w, c = arch["input_shape"]
    k, s = arch["kernel_size"], arch["stride"]
    ps, pst = arch["pool_size"], arch["pool_stride"]
    h1 = layers.conv_output_size(h, k, s, arch["padding1"])
    w1 = layers.conv_output_size(w, k, s, arch["padding1"])
    hp1, wp1 = layers.conv_output_size(h1, ps, pst, 0), layers.conv_output_size(w1, ps, pst, 0)
    h2 = layers.conv_output_size(hp1, k, s, arch["padding2"])
    w2 = layers.conv_output_size(wp1, k, s, arch["padding2"])
    hp2, wp2 = layers.conv_output_size(h2, ps, pst, 0), layers.conv_output_size(w2, ps, pst, 0)
    f1, f2 = arch["filters1"], arch["filters2"]
    return {
        "input": (h, w, c),
        "conv1": (h1, w1, f1),
        "pool1": (hp1, wp1, f1),
        "conv2": (h2, w2, f2),
        "pool2": (hp2, wp2, f2),
        "fc": (arch["num_classes"],),
    }


def param_shapes(arch: dict) -> dict:
    k, f1, f2 = arch["kernel_size"], arch["filters1"], arch["filters2"]
    c = arch["input_shape"][2]
    d = int(np.prod(layer_shapes(arch)["pool2"]))
    shapes = {
        "W1": (f1, k, k, c), "b1": (f1,), "gamma1": (f1,), "beta1": (f1,),
        "W2": (f2, k, k, f1), "b2": (f2,), "gamma2": (f2,), "beta2": (f2,),
        "W3": (d, arch["num_classes"]), "b3": (arch["num_classes"],),
        "running_mean1": (f1,), "running_var1": (f1,),
        "running_mean2": (f2,), "running_var2": (f2,),
    }  # fmt: skip
    return shapes


def init_params(arch: dict, seed: int, backend: Backend | None = None, dtype=np.float32):
    """Seeded He initialisation: ``N(0, 2 / fan_in)`` weights, zero biases, unit BN scales.

    The random numbers are drawn on the host, so CPU and GPU start from the
    same weights for the same seed.
    """
    backend = backend or numpy_backend()
    rng = np.random.default_rng(seed)
    shapes = param_shapes(arch)
    params, bn_state = {}, {}
    for name in PARAM_NAMES:
        shape = shapes[name]
        if name.startswith("W"):
            fan_in = int(np.prod(shape[1:])) if name != "W3" else shape[0]
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif name.startswith("gamma"):
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        params[name] = backend.asarray(value.astype(dtype))
    for name in BN_STATE_NAMES:
        value = np.ones(shapes[name]) if "var" in name else np.zeros(shapes[name])
        bn_state[name] = backend.asarray(value.astype(dtype))
    return params, bn_state


def forward(params, bn_state, x, arch, *, train, momentum=None, need_cache=None):
    """Logits, the caches for :func:`backward`, and the (updated) BN state.

    ``momentum`` (the BN running statistics' update) is needed in training only.
    ``need_cache`` defaults to ``train``; without it the caches are None and
    each intermediate array is freed as soon as the next layer has used it.
    """
    need_cache = train if need_cache is None else need_cache
    s, eps = arch["stride"], arch["bn_eps"]
    ps, pst = arch["pool_size"], arch["pool_stride"]
    caches, new_state = {}, {}
    h = x
    for i in (1, 2):
        h, caches[f"conv{i}"] = layers.conv2d_forward(
            h, params[f"W{i}"], params[f"b{i}"], s, arch[f"padding{i}"], need_cache=need_cache
        )
        h, caches[f"bn_relu_pool{i}"], (rm, rv) = layers.bn_relu_pool_forward(
            h, params[f"gamma{i}"], params[f"beta{i}"],
            bn_state[f"running_mean{i}"], bn_state[f"running_var{i}"],
            train=train, momentum=momentum, eps=eps, size=ps, stride=pst, need_cache=need_cache,
        )  # fmt: skip
        new_state[f"running_mean{i}"], new_state[f"running_var{i}"] = rm, rv
    logits, caches["fc"] = layers.affine_forward(h, params["W3"], params["b3"], need_cache=need_cache)
    return logits, (caches if need_cache else None), new_state


def backward(dlogits, caches, need_dx=False, out=None):
    """Gradients of every parameter, and of the input under ``"x"`` when ``need_dx``.

    ``out`` (a dict of arrays named like the parameters) receives the
    gradients in place; otherwise they are new arrays.
    """
    out = out or {}
    grads = {}
    dh, grads["W3"], grads["b3"] = layers.affine_backward(
        dlogits, caches["fc"], dW=out.get("W3"), db=out.get("b3")
    )
    for i in (2, 1):
        dh, grads[f"gamma{i}"], grads[f"beta{i}"] = layers.bn_relu_pool_backward(
            dh, caches[f"bn_relu_pool{i}"], dgamma=out.get(f"gamma{i}"), dbeta=out.get(f"beta{i}")
        )
        dh, grads[f"W{i}"], grads[f"b{i}"] = layers.conv2d_backward(
            dh, caches[f"conv{i}"], need_dx=need_dx or i == 2, dW=out.get(f"W{i}"), db=out.get(f"b{i}")
        )
    if need_dx:
        grads["x"] = dh
    return grads


def loss_and_grads(params, bn_state, x, y, arch, reg, *, momentum, grads_out=None, correct=None):
    """Training-mode loss (cross-entropy + L2), gradients, logits and new BN state.

    ``loss`` and ``data_loss`` are 0-d arrays on the backend's device.
    ``grads_out`` receives the gradients in place (see :func:`backward`).
    ``reg=0`` leaves L2 out of both, with no work for it (the training step's
    update adds it, :class:`scratchcnn.training.FlatSGD`).
    ``correct`` (0-d integer array) has the batch's correct predictions added.
    """
    logits, caches, new_state = forward(params, bn_state, x, arch, train=True, momentum=momentum)
    data_loss, dlogits = layers.softmax_cross_entropy(logits, y, correct=correct)
    grads = backward(dlogits, caches, out=grads_out)
    if not reg:
        return data_loss, data_loss, grads, logits, new_state
    reg_loss, reg_grads = layers.l2_penalty([params[w] for w in WEIGHT_NAMES], reg)
    for name, g in zip(WEIGHT_NAMES, reg_grads):
        grads[name] += g
    return data_loss + reg_loss, data_loss, grads, logits, new_state


# Evaluation runs in slices small enough that the live activations of one
# slice stay under this many bytes, whatever the batch size asked for.
EVAL_MEMORY_BYTES = 256 * 2**20


def eval_batch_limit(arch: dict, dtype=np.float32, budget: int | None = None) -> int:
    """Images per evaluation slice: ``budget`` over an upper bound of one image's activations.

    The bound adds up every array an image passes through in evaluation mode
    (both im2col matrices; per convolution three maps of its output size, one
    more than its output and batch norm's; the pooled maps), as if all were alive at once.
    """
    budget = EVAL_MEMORY_BYTES if budget is None else budget
    shapes = layer_shapes(arch)
    k, c = arch["kernel_size"], arch["input_shape"][2]
    per_image = 0
    for conv, pool, c_in in (("conv1", "pool1", c), ("conv2", "pool2", arch["filters1"])):
        h, w, f = shapes[conv]
        per_image += h * w * k * k * c_in + 3 * h * w * f + int(np.prod(shapes[pool]))
    per_image += arch["num_classes"]
    return max(1, budget // (per_image * np.dtype(dtype).itemsize))


def predict_logits(params, arch, x, backend: Backend | None = None, batch_size=1000):
    """Evaluation-mode logits for host images ``x``, as a host float32 array.

    ``params`` holds the learnable arrays and the running statistics (a
    checkpoint's ``params``); host arrays are moved to the backend's device in
    slices of at most ``batch_size`` images (fewer where memory demands).
    """
    backend = backend or numpy_backend()
    p = {k: backend.asarray(v) for k, v in params.items()}
    step = min(batch_size, eval_batch_limit(arch, p["W1"].dtype))
    out = []
    for start in range(0, len(x), step):
        xb = backend.asarray(x[start : start + step], dtype=p["W1"].dtype)
        logits, _, _ = forward(p, p, xb, arch, train=False)
        out.append(backend.to_host(logits).astype(np.float32))
    if not out:
        return np.zeros((0, arch["num_classes"]), np.float32)
    return np.concatenate(out)


def evaluate(params, bn_state, x, y, arch, batch_size=1000):
    """Mean cross-entropy and accuracy of device arrays ``x``, ``y`` in evaluation mode.

    Runs in slices of at most ``batch_size`` images (fewer where memory
    demands) without backward caches. Returns two 0-d device arrays (no host
    synchronisation on the GPU).
    """
    xp = array_module(x)
    total_loss = xp.zeros((), dtype=x.dtype)
    correct = xp.zeros((), dtype=xp.int64)
    step = min(batch_size, eval_batch_limit(arch, x.dtype))
    for start in range(0, len(x), step):
        xb, yb = x[start : start + step], y[start : start + step]
        logits, _, _ = forward(params, bn_state, xb, arch, train=False)
        loss, _ = layers.softmax_cross_entropy(logits, yb, need_grad=False, correct=correct)
        total_loss += loss * len(xb)
    n = max(len(x), 1)
    return total_loss / n, correct / n

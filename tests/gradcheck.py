"""Centred-difference gradients in float64 (CS231n ``gradient_check`` style)."""

import numpy as np


def numerical_gradient(f, x, h=1e-5):
    """d f() / d x for a scalar-valued ``f`` that reads ``x`` (changed in place)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
        it.iternext()
    return grad


def rel_error(a, b):
    """Max elementwise relative error.

    Elements more than 1e4 times smaller than the array's largest (a gradient
    that is zero up to rounding, say) are measured against that floor instead,
    since centred differences cannot resolve them below float64 rounding noise.
    """
    mag = np.abs(a) + np.abs(b)
    floor = max(1e-4 * float(mag.max(initial=0.0)), 1e-12)
    return float(np.max(np.abs(a - b) / np.maximum(mag, floor), initial=0.0))


def check_layer(forward, backward_grads, inputs, dout, tol=1e-6):
    """Compare analytic grads of sum(forward(**inputs) * dout) with numerical ones.

    ``backward_grads`` returns a dict name -> analytic gradient.
    """
    analytic = backward_grads()
    errors = {}
    for name, g in analytic.items():
        num = numerical_gradient(lambda: float((forward() * dout).sum()), inputs[name])
        errors[name] = rel_error(g, num)
        assert errors[name] < tol, f"{name}: relative error {errors[name]:.2e}"
    return errors

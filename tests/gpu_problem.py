"""The state and batches the GPU tests compare on, shared with benchmarks/gpu_probe.py's accuracy probe."""

import contextlib
import sys

import numpy as np
from scratchcnn import kernels
from scratchcnn import model as cnn


def random_state(arch, seed):
    """He weights plus random BN scales, shifts, running statistics and small biases."""
    params, bn = cnn.init_params(arch, seed)
    rng = np.random.default_rng(seed + 100)
    for i in (1, 2):
        f = params[f"gamma{i}"].shape[0]
        params[f"gamma{i}"] = (0.5 + rng.random(f)).astype(np.float32)
        params[f"beta{i}"] = rng.normal(0, 0.3, f).astype(np.float32)
        params[f"b{i}"] = rng.normal(0, 0.1, f).astype(np.float32)
        bn[f"running_mean{i}"] = rng.normal(0, 0.5, f).astype(np.float32)
        bn[f"running_var{i}"] = (0.5 + rng.random(f)).astype(np.float32)
    params["b3"] = rng.normal(0, 0.1, params["b3"].shape).astype(np.float32)
    return params, bn


def batch(n, seed):
    rng = np.random.default_rng(seed)
    return rng.random((n, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, n)


# Max pooling sends each window's gradient to its first maximum, a choice that is not continuous: where
# two values of a window lie closer than the float32 rounding of the layers before them, two correct
# implementations can each pick another. At 256 filters, batch 64 (802,816 second-layer windows) the
# state above has one window whose two largest values differ by 4.5e-7: CuPy on an H200 and OpenBLAS on
# an AMD EPYC each put its gradient on the other pixel than NumPy on an Intel Xeon, which moves W1 and W2
# by 3.3e-4 (norm-wise) however exact the rest is (benchmarks/NOTES.md). Comparisons of gradients
# therefore route the reference's near-tied windows as the device did, and check that only near-ties
# were routed differently.

NEAR_TIE = 1e-5  # relative to the window's maximum: far above float32 rounding, far below any real gap


def to_host(a):
    """A host NumPy copy of a NumPy or CuPy array."""
    if type(a).__module__.startswith("cupy"):
        return sys.modules["cupy"].asnumpy(a)
    return np.asarray(a)


def pooling_choices(cache):
    """For one bn_relu_pool layer's cache: each pooled position's window offset (i * size + j) that its
    gradient goes to, and whether its ReLU passes it, as host arrays (the fused kernels' cache or the
    composition's, on either backend)."""
    if isinstance(cache, kernels.FusedBnReluPoolCache):
        return to_host(cache.arg).astype(np.int64), to_host(cache.out) > 0
    _, relu_out, (h, out, size, stride) = cache
    h, out = to_host(h), to_host(out)
    offsets = np.zeros(out.shape, np.int64)
    _, ho, wo, _ = out.shape
    for t in reversed(range(size * size)):  # the smallest offset equal to the maximum wins
        i, j = divmod(t, size)
        offsets[h[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride] == out] = t
    return offsets, to_host(relu_out) > 0


def route_like(ref_caches, dev_caches, near=NEAR_TIE) -> int:
    """Make the reference's caches (the NumPy composition's: batch norm, pooling, ReLU) send each
    pooled gradient where the device's did; every position where they differed must be a near-tie in
    the reference (the device's pixel within ``near`` of the window's maximum, or a maximum within
    ``near`` of zero at the ReLU). Non-overlapping windows only (the model's 2x2, stride 2). Returns
    how many positions were changed."""
    changed = 0
    for name in [k for k in ref_caches if k.startswith("bn_relu_pool")]:
        _, relu_out, (h, out, size, stride) = ref_caches[name]
        assert size == stride, "windows must not overlap: changing one would change another"
        want, want_relu = pooling_choices(dev_caches[name])
        have, have_relu = pooling_choices(ref_caches[name])
        scale = float(np.abs(out).max())
        for pos in map(tuple, np.argwhere(((want != have) & want_relu) | (want_relu != have_relu))):
            b, oh, ow, c = pos
            window = h[b, oh * stride : oh * stride + size, ow * stride : ow * stride + size, c]  # a view
            top, t = out[pos], int(want[pos])
            if want_relu[pos] != have_relu[pos]:
                assert abs(top) <= near * scale, f"{name} at {pos}: ReLU differs at {top}, not near zero"
                relu_out[pos] = np.finfo(relu_out.dtype).tiny if want_relu[pos] else 0  # only its sign is read backward
            if want_relu[pos] and want[pos] != have[pos]:
                i, j = divmod(t, size)
                assert top - window[i, j] <= near * abs(top), f"{name} at {pos}: routed to {window[i, j]}, not near its maximum {top}"
                for s in range(t):  # earlier offsets at the maximum would win the tie: just below it
                    si, sj = divmod(s, size)
                    if window[si, sj] == top:
                        window[si, sj] = np.nextafter(top, -np.inf)
                window[i, j] = top
            changed += 1
    return changed


@contextlib.contextmanager
def routed_like(dev_caches):
    """Within it, :func:`scratchcnn.model.forward` (on NumPy) routes its max pooling as
    ``dev_caches`` (another run's forward caches) do, with :func:`route_like`; it yields a list that
    gets the number of positions changed at each forward pass."""
    forward, changed = cnn.forward, []

    def routed(*args, **kw):
        logits, caches, state = forward(*args, **kw)
        changed.append(route_like(caches, dev_caches))
        return logits, caches, state

    cnn.forward = routed
    try:
        yield changed
    finally:
        cnn.forward = forward

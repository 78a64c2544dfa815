"""CuPy path against NumPy on the same weights and inputs (needs CuPy and a GPU; skipped otherwise).

Every comparison runs twice on the GPU: with the custom kernels (``kernels``)
and with them switched off (``no-kernels``, the reference code on CuPy).
benchmarks/gpu_check.sh runs this module and fails on any skip.
"""

import functools
import os

import numpy as np
import pytest

cp = pytest.importorskip("cupy")

from scratchcnn import kernels  # noqa: E402
from scratchcnn import layers as L  # noqa: E402
from scratchcnn import model as cnn  # noqa: E402
from scratchcnn import training as tr  # noqa: E402
from scratchcnn.backend import BackendError, get_backend  # noqa: E402
from gpu_problem import batch, random_state, routed_like  # noqa: E402
from recipe import train_config  # noqa: E402

try:
    GPU = get_backend("gpu")
except BackendError as exc:  # CuPy installed but no GPU answers
    pytest.skip(f"no usable GPU: {exc}", allow_module_level=True)

pytestmark = pytest.mark.gpu

TOL = 1e-4


KERNEL_ENTRIES = ("im2col", "col2im", "softmax_cross_entropy", "sgd_update", "bn_relu_pool_forward",
                  "bn_relu_pool_backward", "column_sum")  # fmt: skip


def count_kernel_calls(monkeypatch) -> dict:
    """Calls of each kernels.py entry point from here on: a kernel test must see its kernels run."""
    calls = dict.fromkeys(KERNEL_ENTRIES, 0)
    for name in KERNEL_ENTRIES:
        def counted(*args, _f=getattr(kernels, name), _name=name, **kw):
            calls[_name] += 1
            return _f(*args, **kw)

        monkeypatch.setattr(kernels, name, counted)
    return calls


class KernelMode:
    """Whether the kernels are on, and how often each kernels.py entry point has run since."""

    def __init__(self, on: bool, calls: dict):
        self.on, self.calls = on, calls

    def ran(self, *names) -> bool:
        """With the kernels on, each of ``names`` ran; with them off, no kernel ran at all."""
        if self.on:
            return all(self.calls[n] > 0 for n in names)
        return not any(self.calls.values())


@pytest.fixture(params=["kernels", "no-kernels"])
def kernel_mode(request, monkeypatch):
    monkeypatch.setenv("SCRATCHCNN_KERNELS", "1" if request.param == "kernels" else "0")
    return KernelMode(request.param == "kernels", count_kernel_calls(monkeypatch))


def rel(a, b):
    """Norm-wise relative difference of two arrays (host or device)."""
    a, b = (np.asarray(cp.asnumpy(v), np.float64) for v in (a, b))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30))


def to_gpu(d):
    return {k: cp.asarray(v) for k, v in d.items()}


@functools.lru_cache(maxsize=None)
def problem(filters, n):
    """The network, its state and a batch for one (filters, batch), on the host."""
    arch = cnn.make_arch(filters)
    params, bn = random_state(arch, filters)
    x, y = batch(n, n)
    return arch, params, bn, x, y


def assert_bias_gradients_are_noise(grads_c, grads_g):
    """Batch norm cancels the conv biases: their gradients are rounding noise on both backends,
    so they are bounded against the largest weight gradient instead of compared."""
    scale = max(float(np.abs(grads_c[w]).max()) for w in cnn.WEIGHT_NAMES)
    for b in ("b1", "b2"):
        assert float(np.abs(grads_c[b]).max()) < 1e-4 * scale, b
        assert float(cp.abs(grads_g[b]).max()) < 1e-4 * scale, b


def device_run(filters, n):
    """The device's loss_and_grads on :func:`problem`'s state and batch, and its forward caches."""
    arch, params, bn, x, y = problem(filters, n)
    args = (to_gpu(params), to_gpu(bn), cp.asarray(x))
    caches = cnn.forward(*args, arch, train=True, momentum=0.8)[1]
    return cnn.loss_and_grads(*args, cp.asarray(y), arch, 1e-3, momentum=0.8), caches


def reference_routed_like(filters, n, dev_caches, dtype=np.float32):
    """NumPy's loss_and_grads (in ``dtype``) on :func:`problem`'s state and batch, its max pooling
    routed as the device's where the two differ (gpu_problem.route_like: near-ties only, a few at most)."""
    arch, params, bn, x, y = problem(filters, n)
    cast = {k: v.astype(dtype) for k, v in params.items()}, {k: v.astype(dtype) for k, v in bn.items()}
    with routed_like(dev_caches) as changed:
        result = cnn.loss_and_grads(*cast, x.astype(dtype), y, arch, 1e-3, momentum=0.8)
    assert changed[0] <= 4, f"{changed[0]} pooled positions routed differently: more than near-ties explain"
    return result


def test_gradients_stay_near_float64_at_256_filters(kernel_mode):
    """CuPy's float32 weight gradients against NumPy float64's, pooling routed alike: within 1e-5.
    (The first GPU run saw 3.3e-4 here, from one near-tied pooling window routed the other way.)"""
    (_, _, grads, _, _), caches = device_run(256, 64)
    want = reference_routed_like(256, 64, caches, np.float64)[2]
    for k in cnn.WEIGHT_NAMES:
        assert rel(want[k], grads[k]) < 1e-5, k


def test_tf32_is_off():
    # CuPy uses TF32 for float32 products only when asked; the tolerances below assume full float32
    assert os.environ.get("CUPY_TF32", "0") == "0"


@pytest.mark.parametrize("n", [1, 7, 64], ids=lambda n: f"batch{n}")
@pytest.mark.parametrize("filters", [16, 64, 256], ids=lambda f: f"filters{f}")
def test_training_forward_loss_gradients_and_bn_stats_agree(filters, n, kernel_mode):
    (loss_g, data_g, grads_g, logits_g, bn_g), caches = device_run(filters, n)
    loss_c, data_c, grads_c, logits_c, bn_c = reference_routed_like(filters, n, caches)
    assert rel(logits_c, logits_g) < TOL
    assert abs(float(loss_c) - float(loss_g)) < TOL * abs(float(loss_c))
    assert abs(float(data_c) - float(data_g)) < TOL * abs(float(data_c))
    for k in cnn.PARAM_NAMES:
        if k not in ("b1", "b2"):
            assert rel(grads_c[k], grads_g[k]) < TOL, k
    assert_bias_gradients_are_noise(grads_c, grads_g)
    for k in cnn.BN_STATE_NAMES:
        assert rel(bn_c[k], bn_g[k]) < TOL, k
    assert kernel_mode.ran("im2col", "col2im", "softmax_cross_entropy", "bn_relu_pool_forward",
                           "bn_relu_pool_backward", "column_sum"), kernel_mode.calls  # fmt: skip


@pytest.mark.parametrize("filters", [16, 64, 256], ids=lambda f: f"filters{f}")
def test_evaluation_mode_agrees(filters, kernel_mode):
    arch = cnn.make_arch(filters)
    params, bn = random_state(arch, filters + 1)
    x, y = batch(37, filters)
    logits_c, caches, _ = cnn.forward(params, bn, x, arch, train=False)
    logits_g, caches_g, bn_g = cnn.forward(to_gpu(params), to_gpu(bn), cp.asarray(x), arch, train=False)
    assert caches is None and caches_g is None
    assert rel(logits_c, logits_g) < TOL
    for k in cnn.BN_STATE_NAMES:  # evaluation leaves the running statistics alone
        assert rel(bn[k], bn_g[k]) == 0.0
    loss_c, acc_c = cnn.evaluate(params, bn, x, y, arch, batch_size=16)
    loss_g, acc_g = cnn.evaluate(to_gpu(params), to_gpu(bn), cp.asarray(x), cp.asarray(y), arch, batch_size=16)
    assert abs(float(loss_c) - float(loss_g)) < TOL * float(loss_c)
    assert abs(float(acc_c) - float(acc_g)) <= 1 / len(x) + 1e-9  # a near-tie may fall either way
    on_gpu = cnn.predict_logits({**params, **bn}, arch, x, backend=GPU, batch_size=16)
    assert rel(logits_c, on_gpu) < TOL
    assert kernel_mode.ran("im2col", "softmax_cross_entropy", "bn_relu_pool_forward"), kernel_mode.calls


@pytest.mark.parametrize("clip", [5.0, 0.01], ids=["clip5", "clip0.01-binding"])
def test_training_steps_agree(clip, kernel_mode):
    """Two full steps (L2, per-array clip, SGD, BN running statistics) from the same state."""
    arch = cnn.make_arch(32)
    params, bn = random_state(arch, 3)
    cfg = train_config(lr=0.05, reg=1e-3, clip=clip, bn_momentum=0.8)
    results = []
    for xp in (np, cp):
        opt = tr.FlatSGD({k: xp.asarray(v) for k, v in params.items()})
        state = {k: xp.asarray(v) for k, v in bn.items()}
        sums = tr.EpochSums.zeros(xp)
        for seed in (0, 1):
            x, y = batch(64, seed)
            state = tr.train_step(opt, state, xp.asarray(x), xp.asarray(y), arch, cfg, cfg.lr, sums)
        results.append((opt.params, state, float(sums.l2), float(sums.ce), int(sums.correct)))
    (p_c, bn_c, l2_c, ce_c, correct_c), (p_g, bn_g, l2_g, ce_g, correct_g) = results
    for k in cnn.PARAM_NAMES:
        assert rel(p_c[k], p_g[k]) < TOL, k
    for k in cnn.BN_STATE_NAMES:
        assert rel(bn_c[k], bn_g[k]) < TOL, k
    # the epoch's sums (on the kernels, kept by the update's kernels)
    assert l2_c > 1e-3 * ce_c
    assert abs(l2_c - l2_g) < TOL * l2_c and abs(ce_c - ce_g) < TOL * ce_c
    assert abs(correct_c - correct_g) <= 1  # a near-tie of two logits may fall either way
    assert kernel_mode.ran("sgd_update", "softmax_cross_entropy", "bn_relu_pool_backward"), kernel_mode.calls


def test_gpu_checkpoint_loads_on_cpu_and_predicts_the_same_classes(tmp_path, kernel_mode):
    from scratchcnn.checkpoint import load_checkpoint, save_checkpoint

    arch = cnn.make_arch(32)
    params, bn = random_state(arch, 1)
    opt = tr.FlatSGD(to_gpu(params))
    state = to_gpu(bn)
    for seed in range(3):  # a trained state, not the initial one
        x, y = batch(64, seed)
        state = tr.train_step(opt, state, cp.asarray(x), cp.asarray(y), arch, train_config(lr=0.05), 0.05)
    save_checkpoint(tmp_path / "m.npz", opt.params, state, arch, {})  # its default copies device arrays to the host
    ck = load_checkpoint(tmp_path / "m.npz")
    x, _ = batch(200, 9)
    on_gpu = cnn.predict_logits(ck.params, arch, x, backend=GPU)
    on_cpu = cnn.predict_logits(ck.params, arch, x)
    assert rel(on_gpu, on_cpu) < TOL
    top2 = np.sort(on_cpu, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3  # rows without a near-tie
    assert clear.sum() > 150
    assert (on_gpu.argmax(1) == on_cpu.argmax(1))[clear].all()


def test_evaluation_memory_under_1gb_at_256_filters(kernel_mode):
    """Evaluating 1,000 images in one call at 256 filters holds under 1 GB of the memory pool."""
    arch = cnn.make_arch(256)
    params, bn = random_state(arch, 0)
    x, y = batch(1000, 0)
    p, s, xg, yg = to_gpu(params), to_gpu(bn), cp.asarray(x), cp.asarray(y)
    pool = cp.get_default_memory_pool()
    GPU.synchronize()
    pool.free_all_blocks()
    base = pool.used_bytes()
    loss, acc = cnn.evaluate(p, s, xg, yg, arch, batch_size=1000)
    float(loss)
    cnn.predict_logits({**params, **bn}, arch, x, backend=GPU, batch_size=1000)
    GPU.synchronize()
    peak = pool.total_bytes() - base  # the pool keeps what it took: its size is the peak
    assert peak < 2**30, f"{peak / 2**20:.0f} MiB"


# --------------------------------------------------------------------------- #
# Each kernel against the NumPy code it replaces, on awkward shapes


def kernels_on(monkeypatch):
    monkeypatch.setenv("SCRATCHCNN_KERNELS", "1")


CONV_CASES = [  # n, h, w, c, f, k, stride, pad
    (1, 5, 5, 3, 2, 3, 1, 1),
    (2, 7, 5, 1, 4, 3, 2, 1),
    (3, 4, 6, 5, 3, 3, 1, 2),
    (2, 6, 6, 7, 5, 2, 2, 0),
    (1, 32, 32, 3, 16, 3, 1, 1),
    (7, 16, 16, 33, 17, 3, 1, 0),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "n{}-{}x{}x{}-f{}-k{}-s{}-p{}".format(*c))
def test_im2col_and_col2im_kernels(case, monkeypatch):
    kernels_on(monkeypatch)
    n, h, w, c, _, k, stride, pad = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    oh, ow = L.conv_output_size(h, k, stride, pad), L.conv_output_size(w, k, stride, pad)
    want = L.im2col(x, k, k, stride, pad, oh, ow)
    got = kernels.im2col(cp.asarray(x), k, k, stride, pad, oh, ow)
    np.testing.assert_array_equal(cp.asnumpy(got), want)
    d = rng.standard_normal(want.shape).astype(np.float32)
    want_dx = L.col2im(d, x.shape, stride, pad)
    got_dx = kernels.col2im(cp.asarray(d), x.shape, stride, pad)
    # same additions in the same order as the reference
    np.testing.assert_allclose(cp.asnumpy(got_dx), want_dx, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "n{}-{}x{}x{}-f{}-k{}-s{}-p{}".format(*c))
def test_conv_layer_with_kernels_forward_and_backward(case, monkeypatch):
    kernels_on(monkeypatch)
    calls = count_kernel_calls(monkeypatch)
    n, h, w, c, f, k, stride, pad = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    W = rng.standard_normal((f, k, k, c)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    out, cache = L.conv2d_forward(x, W, b, stride, pad)
    out_g, cache_g = L.conv2d_forward(cp.asarray(x), cp.asarray(W), cp.asarray(b), stride, pad)
    assert rel(out, out_g) < 1e-5
    dout = rng.standard_normal(out.shape).astype(np.float32)
    for want, got in zip(L.conv2d_backward(dout, cache), L.conv2d_backward(cp.asarray(dout), cache_g)):
        assert rel(want, got) < 1e-5
    assert calls["im2col"] == calls["col2im"] == calls["column_sum"] == 1, calls  # the NumPy reference calls none


SOFTMAX_CASES = [(1, 10), (7, 3), (64, 10), (300, 10), (1000, 10), (5, 1)]


@pytest.mark.parametrize("need_grad", [True, False], ids=["grad", "no-grad"])
@pytest.mark.parametrize("n,k", SOFTMAX_CASES, ids=[f"rows{n}-classes{k}" for n, k in SOFTMAX_CASES])
def test_softmax_cross_entropy_kernel(n, k, need_grad, monkeypatch):
    kernels_on(monkeypatch)
    rng = np.random.default_rng(n * 31 + k)
    logits = (rng.standard_normal((n, k)) * 5).astype(np.float32)
    logits[0, :] = 1e4 * (np.arange(k) % 2)  # huge logits, and a tie at the maximum when k > 2
    y = rng.integers(0, k, n)
    correct_c = np.zeros((), np.int64)
    loss_c, d_c = L.softmax_cross_entropy(logits, y, need_grad=need_grad, correct=correct_c)
    correct_g = cp.full((), 5, dtype=cp.int64)  # counts are added to what is there
    loss_g, d_g = kernels.softmax_cross_entropy(cp.asarray(logits), cp.asarray(y), need_grad=need_grad,
                                                correct=correct_g)  # fmt: skip
    assert abs(float(loss_g) - float(loss_c)) <= 1e-5 * max(abs(float(loss_c)), 1.0)
    assert int(correct_g) == 5 + int(correct_c)
    if need_grad:
        assert rel(d_c, d_g) < 1e-5
    else:
        assert d_g is None
    loss_g2, _ = kernels.softmax_cross_entropy(cp.asarray(logits), cp.asarray(y), need_grad=False)
    assert float(loss_g2) == float(loss_g)


def test_softmax_cross_entropy_kernel_lets_a_nan_logit_win_as_numpy_does(monkeypatch):
    """NumPy's row maximum and argmax take the first NaN: the loss is NaN (the run is marked
    diverged) and that row counts as correct only where its label is the NaN's column."""
    kernels_on(monkeypatch)
    logits = np.array([[0.0, np.nan, 1.0], [np.nan, 0.0, 1.0], [2.0, 0.0, 1.0]], np.float32)
    y = np.array([2, 0, 0])  # the first row is wrong: its first largest "logit" is the NaN
    correct_c, correct_g = np.zeros((), np.int64), cp.zeros((), dtype=cp.int64)
    loss_c, _ = L.softmax_cross_entropy(logits, y, need_grad=False, correct=correct_c)
    loss_g, _ = kernels.softmax_cross_entropy(cp.asarray(logits), cp.asarray(y), need_grad=False, correct=correct_g)
    assert np.isnan(float(loss_c)) and np.isnan(float(loss_g))
    assert int(correct_g) == int(correct_c) == 2


@pytest.mark.parametrize("clip", [None, 5.0, 0.01], ids=["no-clip", "clip5", "clip0.01"])
@pytest.mark.parametrize("reg", [0.0, 0.3], ids=["reg0", "reg0.3"])
def test_fused_sgd_kernel(clip, reg, monkeypatch):
    """Segments of awkward sizes (1 element, odd, larger than one block's share), some decayed;
    the epoch's sums kept as FlatSGD.step keeps them on NumPy."""
    kernels_on(monkeypatch)
    rng = np.random.default_rng(7)
    shapes = {"a": (1,), "W": (7, 3, 3, 5), "b": (70001,), "c": (33,), "V": (1000, 10)}
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    grads = {k: (rng.standard_normal(s) * 3).astype(np.float32) for k, s in shapes.items()}
    results = []
    for xp in (np, cp):
        opt = tr.FlatSGD({k: xp.asarray(v) for k, v in params.items()}, decayed=("W", "V"))
        for k in grads:
            opt.grads[k][...] = xp.asarray(grads[k])
        sums = tr.EpochSums.zeros(xp)
        opt.step(0.1, clip, reg, sums, xp.asarray(np.float32(2.25)), 64)
        results.append((opt.params, float(sums.l2), float(sums.ce)))
    (ref, l2_c, ce_c), (got, l2_g, ce_g) = results
    for k in params:
        assert rel(ref[k], got[k]) < 1e-6, k
    assert l2_g == pytest.approx(l2_c, rel=1e-6) and ce_g == ce_c == 64 * 2.25


def test_fused_sgd_kernel_passes_a_nan_gradient_on_as_numpy_does(monkeypatch):
    """A NaN in a clipped array's gradient makes its norm NaN: NumPy's step (maximum(norm, clip))
    turns every entry of that array NaN; the kernel must not take an unclipped step instead."""
    kernels_on(monkeypatch)
    params = {"W": np.ones(8, np.float32), "b": np.ones(3, np.float32)}
    grads = {"W": np.array([np.nan] + [100.0] * 7, np.float32), "b": np.full(3, 100.0, np.float32)}
    results = []
    for xp in (np, cp):
        opt = tr.FlatSGD({k: xp.asarray(v) for k, v in params.items()}, decayed=("W",))
        for k in grads:
            opt.grads[k][...] = xp.asarray(grads[k])
        opt.step(0.1, 5.0, 1e-4, tr.EpochSums.zeros(xp), xp.asarray(np.float32(1.0)), 8)
        results.append({k: cp.asnumpy(v) if xp is cp else v for k, v in opt.params.items()})
    ref, got = results
    assert np.isnan(ref["W"]).all() and np.isnan(got["W"]).all(), got["W"]
    np.testing.assert_allclose(got["b"], ref["b"], rtol=1e-6)  # 1 - 0.1 * 5 / sqrt(3): clipped, finite


COLUMN_SUM_CASES = [(1, 1), (7, 33), (255, 3), (257, 40), (5000, 10), (65536, 32), (12544, 256)]


@pytest.mark.parametrize("m,c", COLUMN_SUM_CASES, ids=[f"rows{m}-columns{c}" for m, c in COLUMN_SUM_CASES])
def test_column_sum_kernel(m, c, monkeypatch):
    """One chunk, a chunk boundary, more columns than a tile, and the study's bias gradients."""
    kernels_on(monkeypatch)
    x = np.random.default_rng(m + c).standard_normal((m, c)).astype(np.float32)
    want = x.sum(axis=0, dtype=np.float64)
    out = cp.full(c, np.nan, dtype=cp.float32)
    got = L.column_sum(cp.asarray(x), out=out)
    assert got is out
    np.testing.assert_allclose(cp.asnumpy(got), want, rtol=1e-6, atol=1e-6 * np.abs(x).sum(axis=0).max())


FUSED_CASES = [  # n, h, w, c, size, stride
    (1, 32, 32, 16, 2, 2),  # batch of 1
    (7, 14, 14, 33, 2, 2),  # odd batch, more channels than one tile
    (2, 5, 7, 3, 2, 2),  # a border no window covers
    (3, 6, 6, 5, 3, 2),  # overlapping windows
    (64, 32, 32, 256, 2, 2),  # the study's largest
]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", FUSED_CASES, ids=lambda c: "n{}-{}x{}x{}-pool{}-s{}".format(*c))
def test_bn_relu_pool_kernels_forward_and_backward(case, train, monkeypatch):
    kernels_on(monkeypatch)
    n, h, w, c, size, stride = case
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((n, h, w, c)) * 2 + 1).astype(np.float32)
    gamma = (0.5 + rng.random(c)).astype(np.float32)
    beta = rng.normal(0, 0.3, c).astype(np.float32)
    rm = rng.normal(0, 0.5, c).astype(np.float32)
    rv = (0.5 + rng.random(c)).astype(np.float32)
    kw = dict(train=train, momentum=0.8, eps=1e-5, size=size, stride=stride)
    want, cache, want_stats = L.bn_relu_pool_forward(x, gamma, beta, rm, rv, **kw)
    got, gcache, got_stats = L.bn_relu_pool_forward(*(cp.asarray(a) for a in (x, gamma, beta, rm, rv)), **kw)
    assert isinstance(gcache, kernels.FusedBnReluPoolCache)
    assert rel(want, got) < 1e-5
    for a, b in zip(want_stats, got_stats):
        assert rel(a, b) < 1e-5
    dout = rng.standard_normal(want.shape).astype(np.float32)
    for name, a, b in zip(("dx", "dgamma", "dbeta"), L.bn_relu_pool_backward(dout, cache),
                          L.bn_relu_pool_backward(cp.asarray(dout), gcache)):  # fmt: skip
        assert rel(a, b) < 1e-5, name


def test_a_pooling_window_larger_than_the_kernels_take_runs_the_reference_layers(monkeypatch):
    """The fused kernel keeps each window's maximum as a uint8 offset (at most 16 x 16 windows): a
    17 x 17 window on CuPy goes through the NumPy-style layers, with NumPy's results."""
    kernels_on(monkeypatch)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 18, 18, 3)).astype(np.float32)
    x[0, 16, 16, :] = 9.0  # the maximum at offset 16 * 17 + 16 = 288 of the first window
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    kw = dict(train=True, momentum=0.9, eps=1e-5, size=17, stride=1)
    want, cache, _ = L.bn_relu_pool_forward(x, gamma, beta, rm, rv, **kw)
    got, gcache, _ = L.bn_relu_pool_forward(*(cp.asarray(a) for a in (x, gamma, beta, rm, rv)), **kw)
    assert not isinstance(gcache, kernels.FusedBnReluPoolCache)
    dout = rng.standard_normal(want.shape).astype(np.float32)
    for name, a, b in zip(("out", "dx", "dgamma", "dbeta"), (want, *L.bn_relu_pool_backward(dout, cache)),
                          (got, *L.bn_relu_pool_backward(cp.asarray(dout), gcache))):  # fmt: skip
        assert rel(a, b) < 1e-5, name
    with pytest.raises(ValueError, match="a 17x17 pooling window: the kernels take at most 16x16"):
        kernels.bn_relu_pool_forward(*(cp.asarray(a) for a in (x, gamma, beta, rm, rv)), need_cache=True, **kw)


def test_the_kernels_take_float32_cupy_arrays_alone(monkeypatch):
    """kernels.cu is written for float (float32): a float64 CuPy array (a float64 gradient check,
    say) must take the reference layers, as a NumPy array does."""
    kernels_on(monkeypatch)
    assert kernels.use(cp.zeros(3, np.float32))
    assert not kernels.use(cp.zeros(3, np.float64))
    assert not kernels.use(np.zeros(3, np.float32))


# --------------------------------------------------------------------------- #
# The CUDA graph of the training step (scratchcnn.graph). Last in the file: a cuBLAS call through
# ctypes that went wrong could leave the CUDA context unusable for every test after it.


GEMM_CASES = [  # (m, k, n), and which operands are transposed views (as the step's products are)
    ((4096, 27, 32), "b"), ((12544, 2304, 256), "b"), ((32, 4096, 27), "a"), ((576, 64, 10), ""),
    ((64, 10, 576), "b"), ((576, 64, 10), "a"), ((1, 7, 5), "ab"), ((9, 1, 3), "b"), ((3, 5, 1), ""),
]


@pytest.mark.parametrize("case", GEMM_CASES, ids=lambda c: "{}x{}x{}-T{}".format(*c[0], c[1] or "none"))
def test_graph_products_through_cublas_equal_cupys(case):
    """scratchcnn.graph's products (cuBLAS through ctypes, the route while a graph captures) against
    CuPy's matmul: row-major operands, transposed views, unit dimensions, an output given."""
    from scratchcnn import graph

    (m, k, n), transposed = case
    rng = np.random.default_rng(m + k + n)
    a = cp.asarray(rng.standard_normal((k, m) if "a" in transposed else (m, k), dtype=np.float32))
    b = cp.asarray(rng.standard_normal((n, k) if "b" in transposed else (k, n), dtype=np.float32))
    a, b = (a.T if "a" in transposed else a), (b.T if "b" in transposed else b)
    cublas = graph._Cublas()
    cublas.set_stream(cp.cuda.get_current_stream().ptr)
    want = cp.matmul(a, b)
    assert rel(cublas.gemm(a, b), want) < 1e-6
    out = cp.full((m, n), np.nan, dtype=np.float32)
    assert cublas.gemm(a, b, out=out) is out and rel(out, want) < 1e-6
    strided = cp.asarray(rng.standard_normal((m, 2 * k), dtype=np.float32))[:, ::2]  # neither layout: copied
    assert graph.matrix_layout(strided.shape, strided.strides, 4) is None or min(m, k) == 1
    assert rel(cublas.gemm(strided, b), cp.matmul(strided, b)) < 1e-6


def test_training_with_the_cuda_graph_follows_the_plain_steps(monkeypatch):
    """training.train with SCRATCHCNN_GRAPH=1 (a full batch's step captured once per learning rate,
    replayed after) against the plain steps: two epochs of two full batches and a short one, the
    rate halved after the first; the graph ran 1 + 2 times and nothing fell back."""
    from scratchcnn import graph

    monkeypatch.setenv("SCRATCHCNN_KERNELS", "1")
    arch = cnn.make_arch(16)
    params, bn = random_state(arch, 5)
    x, y = batch(136 + 40, 3)
    data = {"x_train": cp.asarray(x[:136]), "y_train": cp.asarray(y[:136]), "x_val": cp.asarray(x[136:]),
            "y_val": cp.asarray(y[136:])}  # fmt: skip
    cfg = train_config(batch_size=64, epochs=2, lr_step=1, lr=0.05, reg=1e-3)
    launched = []
    plain_launch = graph.StepGraph.launch
    monkeypatch.setattr(graph.StepGraph, "launch", lambda self: launched.append(self.key) or plain_launch(self))
    runs = {}
    for setting in ("1", "0"):
        monkeypatch.setenv("SCRATCHCNN_GRAPH", setting)
        said = []
        state = tr.TrainState(to_gpu(params), to_gpu(bn))
        runs[setting] = (tr.train(state, data, arch, cfg, GPU, log=said.append), said)
    (with_graph, said), (plain, _) = runs["1"], runs["0"]
    assert launched == [0.05, 0.025, 0.025] and not any("not captured" in line for line in said), said
    for row_g, row_p in zip(with_graph.history, plain.history):
        for key in ("train_loss", "train_ce", "val_loss"):
            assert abs(row_g[key] - row_p[key]) < TOL * abs(row_p[key]), key
        assert abs(row_g["train_acc"] - row_p["train_acc"]) <= 1 / 136 + 1e-9  # a near-tie may fall either way
    for k in cnn.PARAM_NAMES:
        if k not in ("b1", "b2"):  # rounding noise: batch norm cancels them
            assert rel(with_graph.params[k], plain.params[k]) < TOL, k
    for k in cnn.BN_STATE_NAMES:
        assert rel(with_graph.bn_state[k], plain.bn_state[k]) < TOL, k

import numpy as np
import pytest

from scratchcnn import model as cnn
from gradcheck import numerical_gradient, rel_error
from gpu_problem import routed_like


def small_arch(**kw):
    base = dict(filters1=3, filters2=2, input_shape=(12, 10, 3), num_classes=4)
    base.update(kw)
    return cnn.make_arch(**base)


def float64(d):
    return {k: v.astype(np.float64) for k, v in d.items()}


@pytest.mark.parametrize(
    "arch_kw,n",
    [
        ({}, 3),
        ({"padding1": 2, "padding2": 1}, 2),
        ({"stride": 2, "padding2": 1, "pool_size": 2, "pool_stride": 1}, 2),
        ({"filters1": 5, "filters2": 3}, 1),
    ],
)
def test_whole_model_gradients(arch_kw, n):
    """Loss (cross-entropy + L2) w.r.t. every parameter and the input, float64."""
    arch = small_arch(**arch_kw)
    params, bn_state = cnn.init_params(arch, seed=3, dtype=np.float64)
    rng = np.random.default_rng(0)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}  # non-trivial BN params
    x = rng.standard_normal((n, *arch["input_shape"]))
    y = rng.integers(0, arch["num_classes"], n)
    reg = 0.05

    def loss():
        return float(cnn.loss_and_grads(params, bn_state, x, y, arch, reg, momentum=0.9)[0])

    logits, caches, _ = cnn.forward(params, bn_state, x, arch, train=True, momentum=0.9)
    _, _, grads, _, _ = cnn.loss_and_grads(params, bn_state, x, y, arch, reg, momentum=0.9)
    from scratchcnn import layers

    _, dlogits = layers.softmax_cross_entropy(logits, y)
    grads["x"] = cnn.backward(dlogits, caches, need_dx=True)["x"]
    # h = 1e-4: the loss is O(1) while some input gradients are O(1e-5), so a
    # smaller step drowns them in float64 rounding noise
    for name in cnn.PARAM_NAMES:
        num = numerical_gradient(loss, params[name], h=1e-4)
        if name in ("b1", "b2"):
            # batch norm removes a per-channel bias: both gradients are zero up to rounding
            assert np.abs(grads[name]).max() < 1e-8 and np.abs(num).max() < 1e-8
            continue
        err = rel_error(grads[name], num)
        assert err < 1e-6, f"{name}: {err:.2e}"
    assert rel_error(grads["x"], numerical_gradient(loss, x, h=1e-4)) < 1e-6


def test_study_shapes_and_parameter_layouts():
    arch = cnn.make_arch(32)
    shapes = cnn.layer_shapes(arch)
    assert shapes["conv1"] == (32, 32, 32)
    assert shapes["pool1"] == (16, 16, 32)
    assert shapes["conv2"] == (14, 14, 32)
    assert shapes["pool2"] == (7, 7, 32)
    p = cnn.param_shapes(arch)
    assert p["W1"] == (32, 3, 3, 3) and p["W2"] == (32, 3, 3, 32) and p["W3"] == (7 * 7 * 32, 10)
    for filters in (16, 256):
        assert cnn.param_shapes(cnn.make_arch(filters))["W3"] == (7 * 7 * filters, 10)


def test_he_init_is_seeded_and_scaled_by_fan_in():
    # 64 then 16 filters: every layer's fan-in differs from its fan-out
    arch = cnn.make_arch(64, filters2=16)
    a, sa = cnn.init_params(arch, seed=0)
    b, _ = cnn.init_params(arch, seed=0)
    c, _ = cnn.init_params(arch, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W2"], c["W2"])
    assert a["W2"].dtype == np.float32
    fan_in = {"W1": 3 * 3 * 3, "W2": 3 * 3 * 64, "W3": 7 * 7 * 16}
    fan_out = {"W1": 3 * 3 * 64, "W2": 3 * 3 * 16, "W3": 10}
    for w in cnn.WEIGHT_NAMES:
        assert abs(a[w].mean()) < 0.1 * a[w].std(), w
        # at least 1728 values per array: the sample spread is within 6 % of the true one
        assert a[w].std() == pytest.approx(np.sqrt(2 / fan_in[w]), rel=0.06), w
        assert a[w].std() != pytest.approx(np.sqrt(2 / fan_out[w]), rel=0.2), w
    assert not a["b1"].any() and (a["gamma1"] == 1).all() and not a["beta2"].any()
    assert (sa["running_var1"] == 1).all() and not sa["running_mean2"].any()


def test_make_arch_rejects_an_impossible_configuration():
    with pytest.raises(ValueError, match="does not fit"):
        cnn.make_arch(8, kernel_size=13, padding1=0, padding2=0)


def test_predict_logits_matches_forward_in_eval_mode_and_batches():
    arch = small_arch()
    params, bn_state = cnn.init_params(arch, seed=0)
    bn_state = {k: v + 0.3 for k, v in bn_state.items()}
    x = np.random.default_rng(0).random((7, *arch["input_shape"]), dtype=np.float32)
    want, _, _ = cnn.forward(params, bn_state, x, arch, train=False)
    got = cnn.predict_logits({**params, **bn_state}, arch, x, batch_size=3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_evaluation_forward_keeps_no_caches():
    arch = small_arch()
    params, bn_state = cnn.init_params(arch, seed=0)
    x = np.random.default_rng(0).random((3, *arch["input_shape"]), dtype=np.float32)
    want, caches, _ = cnn.forward(params, bn_state, x, arch, train=False, need_cache=True)
    got, none, _ = cnn.forward(params, bn_state, x, arch, train=False)
    assert caches is not None and none is None
    np.testing.assert_array_equal(got, want)


def random_state(arch, seed=0):
    """Parameters with non-default BN scales, shifts and running statistics."""
    params, bn_state = cnn.init_params(arch, seed=seed)
    rng = np.random.default_rng(seed)
    for i in (1, 2):
        f = params[f"gamma{i}"].shape[0]
        params[f"gamma{i}"] = (0.5 + rng.random(f)).astype(np.float32)
        params[f"beta{i}"] = rng.normal(0, 0.3, f).astype(np.float32)
        bn_state[f"running_mean{i}"] = rng.normal(0, 0.5, f).astype(np.float32)
        bn_state[f"running_var{i}"] = (0.5 + rng.random(f)).astype(np.float32)
    return params, bn_state


@pytest.mark.parametrize("how", ["evaluate", "predict_logits"])
def test_evaluation_memory_stays_within_its_budget(how, monkeypatch):
    """At 256 filters evaluation works in slices whose activations fit the budget, whatever the batch size.

    NumPy reports its array allocations to tracemalloc. Keeping the backward
    caches of all 12 images (about 70 MB) would break a 16 MiB budget.
    """
    import tracemalloc

    arch = cnn.make_arch(256)
    params, bn_state = random_state(arch)
    rng = np.random.default_rng(1)
    x = rng.random((12, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 12)
    budget = 16 * 2**20
    monkeypatch.setattr(cnn, "EVAL_MEMORY_BYTES", budget)
    assert cnn.eval_batch_limit(arch) < len(x)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        if how == "evaluate":
            cnn.evaluate(params, bn_state, x, y, arch, batch_size=1000)
        else:
            cnn.predict_logits({**params, **bn_state}, arch, x, batch_size=1000)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < budget, f"peak {peak / 2**20:.1f} MiB"


def test_eval_batch_limit_is_the_budget_over_the_docstrings_bound():
    """The study's network, counted by hand: conv1 32x32x32 (im2col 32*32*27 = 27648, three maps
    3*32768 = 98304), pool1 16*16*32 = 8192; conv2 14x14x32 (im2col 196*288 = 56448, three maps
    3*6272 = 18816), pool2 7*7*32 = 1568; 10 logits: 210986 floats, 843944 bytes an image."""
    assert cnn.eval_batch_limit(cnn.make_arch(32)) == 268435456 // 843944 == 318
    assert cnn.eval_batch_limit(cnn.make_arch(32), np.float64) == 268435456 // (2 * 843944) == 159


def test_eval_slices_are_large_enough_and_do_not_change_results(monkeypatch):
    # the default budget leaves the GPU whole slices of images even at 256 filters
    assert cnn.eval_batch_limit(cnn.make_arch(256)) >= 32
    assert cnn.eval_batch_limit(cnn.make_arch(32)) >= 256
    arch = small_arch()
    params, bn_state = random_state(arch)
    rng = np.random.default_rng(2)
    x = rng.random((11, *arch["input_shape"]), dtype=np.float32)
    y = rng.integers(0, arch["num_classes"], 11)
    whole = cnn.evaluate(params, bn_state, x, y, arch)
    monkeypatch.setattr(cnn, "EVAL_MEMORY_BYTES", 1)  # one image per slice
    assert cnn.eval_batch_limit(arch) == 1
    sliced = cnn.evaluate(params, bn_state, x, y, arch)
    assert float(sliced[0]) == pytest.approx(float(whole[0]), rel=1e-6)
    assert float(sliced[1]) == float(whole[1])
    np.testing.assert_allclose(
        cnn.predict_logits({**params, **bn_state}, arch, x),
        cnn.forward(params, bn_state, x, arch, train=False)[0], rtol=1e-5, atol=1e-6,
    )  # fmt: skip


def test_float32_gradients_stay_close_to_float64_over_a_full_batch():
    """Batch norm's per-channel sums over 65,536 rows (64 images of 32x32) in float32 must not drift:
    added row after row they put 4e-4 of error into the first layer's gradients. The float64 run's
    pooling is routed as the float32 run's where a near-tie sends them apart (tests/gpu_problem.py)."""
    arch = cnn.make_arch(64)
    params, bn_state = random_state(arch, 64)
    rng = np.random.default_rng(64)
    x = rng.random((64, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    g32 = cnn.loss_and_grads(params, bn_state, x, y, arch, 1e-3, momentum=0.9)[2]
    caches32 = cnn.forward(params, bn_state, x, arch, train=True, momentum=0.9)[1]
    with routed_like(caches32) as changed:
        g64 = cnn.loss_and_grads(float64(params), float64(bn_state), x.astype(np.float64), y, arch, 1e-3, momentum=0.9)[2]
    assert changed[0] <= 4
    for name in ("W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W3", "b3"):
        err = np.linalg.norm(g32[name] - g64[name]) / np.linalg.norm(g64[name])
        assert err < 1e-4, f"{name}: {err:.1e}"

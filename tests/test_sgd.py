"""The update step: per-array clipping, L2, SGD, and the flat-buffer form the training loop uses."""

import numpy as np
import pytest

from scratchcnn import model as cnn
from scratchcnn import training as tr
from recipe import train_config


def problem(seed=0, n=6):
    arch = cnn.make_arch(filters1=4, filters2=3, input_shape=(10, 10, 3), num_classes=5)
    params, bn = cnn.init_params(arch, seed)
    rng = np.random.default_rng(seed)
    params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in params.items()}
    x = rng.random((n, 10, 10, 3), dtype=np.float32)
    y = rng.integers(0, 5, n)
    return arch, params, bn, x, y


def test_clip_scale_folds_the_learning_rate_into_one_scale():
    g = np.array([3.0, 4.0], np.float32)  # norm 5
    assert float(tr.clip_scale(g, 0.1, 10.0)) == pytest.approx(0.1)  # not clipped
    assert float(tr.clip_scale(g, 0.1, 2.5)) == pytest.approx(0.05)  # halved
    assert tr.clip_scale(g, 0.1, None) == 0.1


def test_sgd_step_adds_l2_only_to_the_decayed_arrays_before_clipping():
    params = {"W": np.array([1.0, 2.0]), "b": np.array([3.0])}
    grads = {"W": np.array([0.5, 0.0]), "b": np.array([0.0])}
    tr.sgd_step(params, grads, lr=0.1, clip=None, reg=0.5, decayed=("W",))
    np.testing.assert_allclose(params["W"], [1 - 0.1 * (0.5 + 0.5), 2 - 0.1 * 1.0])
    np.testing.assert_allclose(params["b"], [3.0])  # not decayed
    params = {"W": np.array([3.0, 4.0])}
    tr.sgd_step(params, {"W": np.zeros(2)}, lr=1.0, clip=1.0, reg=2.0, decayed=("W",))
    # gradient 2 * [3, 4] has norm 10, clipped to norm 1: [0.6, 0.8]
    np.testing.assert_allclose(params["W"], [2.4, 3.2])


def test_flatten_gives_views_of_one_buffer_with_copied_values():
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([7.0])}
    flat, views = tr.flatten(arrays)
    assert flat.shape == (7,) and list(views) == ["a", "b"]
    np.testing.assert_array_equal(flat, [0, 1, 2, 3, 4, 5, 7])
    views["b"][0] = -1
    assert flat[6] == -1 and arrays["b"][0] == 7.0
    zeros, zviews = tr.flatten(arrays, fill=0)
    assert not zeros.any() and zviews["a"].shape == (2, 3)
    with pytest.raises(ValueError, match="one dtype"):
        tr.flatten({"a": np.zeros(2, np.float32), "b": np.zeros(2)})


@pytest.mark.parametrize("clip", [5.0, 0.05, None], ids=["clip-5", "clip-0.05", "no-clip"])
def test_train_step_equals_loss_and_grads_then_clipped_sgd(clip):
    """The loop's step (flat buffers, L2 added in the update, the epoch's sums kept there) is the
    textbook step."""
    arch, params, bn, x, y = problem()
    cfg = train_config(lr=0.05, reg=0.01, clip=clip, bn_momentum=0.8)
    # reference: gradients with the L2 term, then per-array clipped SGD
    ref = {k: v.copy() for k, v in params.items()}
    loss, data_loss, grads, logits, ref_bn = cnn.loss_and_grads(ref, bn, x, y, arch, cfg.reg, momentum=0.8)
    for name, p in ref.items():
        p -= cfg.lr * tr.clip_by_norm(grads[name], clip)

    opt = tr.FlatSGD(params)
    sums = tr.EpochSums.zeros(np)
    sums.ce += 1.5  # the step adds to what is there
    sums.l2 += 0.25
    new_bn = tr.train_step(opt, bn, x, y, arch, cfg, cfg.lr, sums)
    assert int(sums.correct) == int((logits.argmax(1) == y).sum())
    for name in cnn.PARAM_NAMES:
        np.testing.assert_allclose(opt.params[name], ref[name], rtol=1e-5, atol=1e-7, err_msg=name)
    for name in cnn.BN_STATE_NAMES:
        np.testing.assert_array_equal(new_bn[name], ref_bn[name])
    # the step wrote every gradient, without L2, into the flat buffer (no stale values left)
    _, _, fresh, _, _ = cnn.loss_and_grads(params, bn, x, y, arch, 0.0, momentum=0.8)
    for name in cnn.PARAM_NAMES:
        np.testing.assert_allclose(opt.grads[name], fresh[name], rtol=1e-6, atol=1e-9, err_msg=name)
    # the sums: the cross-entropy and the L2 term of the weights before the step, times the batch
    assert sums.ce.dtype == sums.l2.dtype == np.float64 and sums.correct.dtype == np.int64
    assert float(sums.ce) == 1.5 + float(data_loss * len(x))
    l2 = 0.5 * cfg.reg * sum(float((params[w].astype(np.float64) ** 2).sum()) for w in cnn.WEIGHT_NAMES)
    assert float(sums.l2) == pytest.approx(0.25 + l2 * len(x), rel=1e-6)
    assert float(loss) - float(data_loss) == pytest.approx(l2, rel=1e-5)


@pytest.mark.parametrize("reg", [1e-3, 1e-4, 1e-5])
def test_an_epochs_sums_keep_the_small_l2_term(reg):
    """An epoch of 703 batches of 64 (the study's 45,000 images): the L2 term, beside a
    cross-entropy 10,000 times larger, comes out of the sums to 1e-6. Taken as (cross-entropy +
    L2) minus cross-entropy from float32 sums it was 0.55 % off at 1e-4 and 5.8 % at 1e-5."""
    rng = np.random.default_rng(0)
    params = {"W": (rng.standard_normal((32, 3, 3, 3)) * 0.05).astype(np.float32), "b": np.zeros(32, np.float32)}
    opt, sums = tr.FlatSGD(params, decayed=("W",)), tr.EpochSums.zeros(np)
    data_losses = rng.uniform(1.2, 2.3, 703).astype(np.float32)
    for data_loss in data_losses:
        opt.step(0.0, 5.0, reg, sums, np.array(data_loss), 64)  # lr 0: the same L2 term every step
    n = 64 * len(data_losses)
    assert float(sums.l2) / n == pytest.approx(0.5 * reg * float((params["W"].astype(np.float64) ** 2).sum()), rel=1e-6)
    assert float(sums.ce) / n == pytest.approx(float(data_losses.astype(np.float64).mean()), rel=1e-12)


def test_loss_and_grads_without_l2_does_no_l2_work(monkeypatch):
    arch, params, bn, x, y = problem()
    with_l2 = cnn.loss_and_grads(params, bn, x, y, arch, 0.01, momentum=0.8)
    monkeypatch.setattr(cnn.layers, "l2_penalty", None)  # not called
    loss, data_loss, grads, _, _ = cnn.loss_and_grads(params, bn, x, y, arch, 0.0, momentum=0.8)
    assert loss is data_loss and data_loss == with_l2[1]
    np.testing.assert_allclose(grads["W1"] + 0.01 * params["W1"], with_l2[2]["W1"], rtol=1e-6)


def test_flat_sgd_leaves_the_arrays_it_was_given_alone():
    arch, params, bn, x, y = problem()
    before = {k: v.copy() for k, v in params.items()}
    opt = tr.FlatSGD(params)
    tr.train_step(opt, bn, x, y, arch, train_config(lr=0.1), 0.1, tr.EpochSums.zeros(np))
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
        assert not np.array_equal(opt.params[k], before[k]) or k in ("b1", "b2")

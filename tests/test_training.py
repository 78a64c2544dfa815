import numpy as np
import pytest

from recipe import train_config
from scratchcnn import model as cnn
from scratchcnn import training as tr
from scratchcnn.backend import numpy_backend


def test_step_decay_schedule():
    lrs = [tr.step_decay(0.1, 0.5, 5, e) for e in range(12)]
    assert lrs[:5] == [0.1] * 5
    assert lrs[5:10] == [0.05] * 5
    assert lrs[10:] == [0.025] * 2


def test_clip_by_norm_scales_only_large_gradients():
    g = np.array([3.0, 4.0])  # norm 5
    np.testing.assert_allclose(tr.clip_by_norm(g, 10.0), g)
    np.testing.assert_allclose(tr.clip_by_norm(g, 2.5), [1.5, 2.0])
    np.testing.assert_allclose(tr.clip_by_norm(np.zeros(3), 5.0), np.zeros(3))
    assert tr.clip_by_norm(g, None) is g


def test_sgd_step_applies_clip_per_array():
    params = {"a": np.array([1.0, 1.0]), "b": np.array([2.0])}
    grads = {"a": np.array([30.0, 40.0]), "b": np.array([-1.0])}
    tr.sgd_step(params, grads, lr=0.1, clip=5.0)
    # a: gradient norm 50 clipped to 5 -> [3, 4]; b: norm 1, untouched
    np.testing.assert_allclose(params["a"], [1 - 0.3, 1 - 0.4])
    np.testing.assert_allclose(params["b"], [2.1])


def test_l2_weight_decay_enters_the_update():
    arch = cnn.make_arch(filters1=2, input_shape=(12, 12, 3), num_classes=3)
    params, bn = cnn.init_params(arch, 0, dtype=np.float64)
    x = np.random.default_rng(0).random((4, 12, 12, 3))
    y = np.array([0, 1, 2, 0])
    l0, d0, g0, _, _ = cnn.loss_and_grads(params, bn, x, y, arch, reg=0.0, momentum=0.9)
    l1, d1, g1, _, _ = cnn.loss_and_grads(params, bn, x, y, arch, reg=0.2, momentum=0.9)
    assert float(d0) == pytest.approx(float(d1))
    want = 0.1 * sum((params[w] ** 2).sum() for w in ("W1", "W2", "W3"))
    assert float(l1 - l0) == pytest.approx(want)
    for w in ("W1", "W2", "W3"):
        np.testing.assert_allclose(g1[w] - g0[w], 0.2 * params[w], atol=1e-12)
    for b in ("b3", "gamma1", "beta2"):
        np.testing.assert_allclose(g1[b], g0[b])


def tiny_problem(n=20, seed=0):
    arch = cnn.make_arch(filters1=8, input_shape=(12, 12, 3), num_classes=10)
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12, 12, 3), dtype=np.float32)
    y = np.arange(n) % 10
    return arch, {"x_train": x, "y_train": y, "x_val": x, "y_val": y}


def run(arch, data, cfg, epochs=None, state=None, on_epoch_end=None):
    if state is None:
        params, bn = cnn.init_params(arch, cfg.seed)
        state = tr.TrainState(params, bn)
    return tr.train(state, data, arch, cfg, numpy_backend(), on_epoch_end=on_epoch_end, log=lambda m: None)


def test_small_batch_is_driven_to_full_training_accuracy():
    arch, data = tiny_problem()
    cfg = train_config(lr=0.1, reg=0.0, batch_size=10, epochs=30, lr_step=100)
    state = run(arch, data, cfg)
    assert state.status == "ok"
    assert state.history[-1]["train_acc"] == 1.0
    assert state.best_val_acc == 1.0
    assert [r["epoch"] for r in state.history] == list(range(1, 31))


def test_history_records_decayed_lr_and_best_epoch():
    arch, data = tiny_problem()
    cfg = train_config(lr=0.05, reg=1e-3, batch_size=8, epochs=6, lr_step=2, lr_decay=0.5)
    state = run(arch, data, cfg)
    assert [r["lr"] for r in state.history] == [0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125]
    best = max(state.history, key=lambda r: r["val_acc"])
    assert state.best_val_acc == best["val_acc"]
    assert state.best_epoch == min(r["epoch"] for r in state.history if r["val_acc"] == best["val_acc"])


def test_the_first_of_tied_best_epochs_is_kept():
    """Every epoch ties: steps too small to change a prediction, and running statistics
    frozen (momentum 1), so the validation accuracy repeats; the parameters still move."""
    arch, data = tiny_problem()
    cfg = train_config(lr=1e-6, reg=0.0, batch_size=8, epochs=3, bn_momentum=1.0)
    snapshots = {}
    state = run(arch, data, cfg, on_epoch_end=lambda s: snapshots.update({s.epoch: tr.copy_arrays(s.params)}))
    accs = [r["val_acc"] for r in state.history]
    assert accs == [accs[0]] * 3, accs
    assert state.best_epoch == 1 and state.best_val_acc == accs[0]
    assert not np.array_equal(snapshots[1]["W1"], snapshots[3]["W1"])
    for k in state.best_params:
        assert np.array_equal(state.best_params[k], snapshots[1][k]), k


def test_a_validation_accuracy_of_zero_is_still_a_best_epoch():
    """A run whose every epoch predicts no validation image right keeps its first epoch as the best
    (0.0 beats "none yet"): without a best epoch its results would say best_val_acc null, and the
    selection would pass over a point that trained normally."""
    arch, data = tiny_problem()
    cfg = train_config(lr=1e-6, reg=0.0, batch_size=8, epochs=3, bn_momentum=1.0)
    params, bn = cnn.init_params(arch, cfg.seed)
    predicted = cnn.predict_logits({**params, **bn}, arch, data["x_val"]).argmax(axis=1)
    data = {**data, "y_val": (predicted + 1) % 10}
    snapshots = {}
    state = run(arch, data, cfg, on_epoch_end=lambda s: snapshots.update({s.epoch: tr.copy_arrays(s.params)}))
    assert [r["val_acc"] for r in state.history] == [0.0] * 3
    assert state.best_epoch == 1 and state.best_val_acc == 0.0
    for k in state.best_params:
        assert np.array_equal(state.best_params[k], snapshots[1][k]), k


def test_bn_momentum_of_the_config_updates_the_running_statistics():
    """One batch: running = momentum * initial + (1 - momentum) * the batch's statistics."""
    arch, data = tiny_problem()
    cfg = train_config(lr=0.05, batch_size=20, epochs=1, bn_momentum=0.3)
    params, bn = cnn.init_params(arch, cfg.seed)
    _, _, batch = cnn.forward(params, bn, data["x_train"], arch, train=True, momentum=0.0)
    state = run(arch, data, cfg)
    for name in cnn.BN_STATE_NAMES:
        np.testing.assert_allclose(state.bn_state[name], 0.3 * bn[name] + 0.7 * batch[name],
                                   rtol=1e-5, atol=1e-6, err_msg=name)  # fmt: skip


def test_same_seed_gives_bitwise_identical_runs():
    arch, data = tiny_problem()
    cfg = train_config(lr=0.05, batch_size=7, epochs=3)
    a, b = run(arch, data, cfg), run(arch, data, cfg)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(a.history) == strip(b.history)
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k])
        assert np.array_equal(a.best_params[k], b.best_params[k])
    c = run(arch, data, train_config(lr=0.05, batch_size=7, epochs=3, seed=1))
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_interrupted_and_resumed_run_equals_uninterrupted():
    arch, data = tiny_problem()
    cfg = train_config(lr=0.05, batch_size=7, epochs=4, lr_step=2)
    full = run(arch, data, cfg)
    half = run(arch, data, train_config(lr=0.05, batch_size=7, epochs=2, lr_step=2))
    resumed = run(arch, data, cfg, state=half)
    for k in full.params:
        assert np.array_equal(full.params[k], resumed.params[k])
    assert [r["val_loss"] for r in full.history] == [r["val_loss"] for r in resumed.history]


def test_each_epoch_line_says_how_long_the_rest_of_the_run_takes():
    arch, data = tiny_problem()
    cfg = train_config(lr=0.05, batch_size=7, epochs=3)
    params, bn = cnn.init_params(arch, cfg.seed)
    lines = []
    state = tr.train(tr.TrainState(params, bn), data, arch, cfg, numpy_backend(), log=lines.append)
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 3
    for done, line in enumerate(epochs, start=1):
        mean = sum(r["seconds"] for r in state.history[:done]) / done
        want = "" if done == 3 else f", about {(3 - done) * mean:.0f} s left"
        assert line.endswith(f"{state.history[done - 1]['seconds']:.1f}s{want}"), line
    # minutes from a minute up; a resumed run's earlier epochs count
    assert tr.time_left([{"seconds": 45.0}, {"seconds": 15.0}], 20) == ", about 9.0 min left"
    assert tr.time_left([{"seconds": 1.0}] * 20, 20) == ""


def test_divergence_stops_with_status():
    arch, data = tiny_problem()
    cfg = train_config(lr=1e6, reg=0.0, batch_size=10, epochs=10, clip=None)
    with np.errstate(all="ignore"):
        state = run(arch, data, cfg)
    assert state.status == "diverged"
    assert state.epoch < 10


def test_epoch_permutation_is_fresh_each_epoch_and_reproducible():
    p0, p1 = tr.epoch_permutation(0, 0, 50), tr.epoch_permutation(0, 1, 50)
    assert sorted(p0) == list(range(50)) and not np.array_equal(p0, p1)
    assert np.array_equal(p0, tr.epoch_permutation(0, 0, 50))


def test_training_loss_is_recorded_in_its_two_parts():
    """train_loss = train_ce + train_l2; one epoch with one batch and lr 0 makes both exact:
    the cross-entropy of the initial weights, and reg/2 * sum of their squares."""
    arch, data = tiny_problem()
    reg = 0.05
    cfg = train_config(lr=1e-30, reg=reg, batch_size=len(data["x_train"]), epochs=1, clip=0.0)
    params, bn = cnn.init_params(arch, cfg.seed)
    expected_l2 = sum(0.5 * reg * float((params[w].astype(np.float64) ** 2).sum()) for w in cnn.WEIGHT_NAMES)
    _, expected_ce, _, _, _ = cnn.loss_and_grads(params, bn, data["x_train"], data["y_train"], arch, reg,
                                            momentum=cfg.bn_momentum)
    row = run(arch, data, cfg).history[0]
    assert tuple(row) == tr.HISTORY_COLUMNS
    assert row["train_loss"] == pytest.approx(row["train_ce"] + row["train_l2"], rel=1e-6)
    assert row["train_ce"] == pytest.approx(float(expected_ce), rel=1e-5)
    assert row["train_l2"] == pytest.approx(expected_l2, rel=1e-4)
    no_reg = run(arch, data, train_config(lr=0.05, reg=0.0, batch_size=8, epochs=2)).history
    assert all(r["train_l2"] == 0.0 and r["train_loss"] == r["train_ce"] for r in no_reg)


def test_training_and_evaluation_stay_in_float32():
    """No float64 creeps in (a NumPy scalar or a promotion rule would double memory and, on the GPU,
    time); the epoch's 0-d loss sums alone are float64, on purpose (test_sgd.py)."""
    arch, data = tiny_problem(n=16)
    cfg = train_config(lr=0.1, reg=1e-4, batch_size=8, epochs=1)
    params, bn = cnn.init_params(arch, 0)
    opt = tr.FlatSGD(params)
    sums = tr.EpochSums.zeros(np)
    bn = tr.train_step(opt, bn, data["x_train"][:8], data["y_train"][:8], arch, cfg, np.float64(0.1), sums)
    arrays = {**opt.params, **{f"grad {k}": v for k, v in opt.grads.items()},
              **{f"bn {k}": v for k, v in bn.items()}}  # fmt: skip
    assert {k: str(v.dtype) for k, v in arrays.items() if v.dtype != np.float32} == {}
    logits = cnn.predict_logits(opt.params | bn, arch, data["x_val"], numpy_backend(), batch_size=5)
    assert logits.dtype == np.float32 and logits.shape == (16, 10)

import json

import numpy as np
import pytest

from scratchcnn import model as cnn
from scratchcnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


@pytest.fixture
def saved(tmp_path):
    arch = cnn.make_arch(filters1=4, filters2=6)
    params, bn = cnn.init_params(arch, seed=2)
    # every array distinct (init gives zero biases and unit gammas alike): a swap of two would show
    rng = np.random.default_rng(7)
    for arrays in (params, bn):
        for k, v in arrays.items():
            arrays[k] = rng.standard_normal(v.shape).astype(v.dtype) + (1.5 if k.startswith("running_var") else 0)
    path = tmp_path / "model.npz"
    save_checkpoint(path, params, bn, arch, {"epoch": 3, "val_acc": 0.5, "config": {"lr": 0.1}})
    return path, arch, params, bn


def test_round_trip_keeps_every_array_and_the_metadata(saved):
    path, arch, params, bn = saved
    ck = load_checkpoint(path)
    assert ck.arch == arch
    assert ck.meta["epoch"] == 3 and ck.meta["config"] == {"lr": 0.1}
    for k, v in {**params, **bn}.items():
        assert ck.params[k].dtype == np.float32
        assert np.array_equal(ck.params[k], v)
    # readable by plain NumPy without pickle, as documented
    with np.load(path, allow_pickle=False) as z:
        assert z["W2"].shape == (6, 3, 3, 4) and z["W3"].shape == (7 * 7 * 6, 10)
        assert json.loads(str(z["arch_json"]))["filters2"] == 6
    assert not list(path.parent.glob(".*tmp*"))  # no temporary file left


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz")


def test_truncated_file(saved):
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable .npz"):
        load_checkpoint(path)


def test_foreign_file(tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable .npz"):
        load_checkpoint(path)
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="lacks W1"):
        load_checkpoint(tmp_path / "other.npz")
    with open(tmp_path / "array.npz", "wb") as f:  # one .npy array under an .npz name
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError, match="not a readable .npz file .*holds one ndarray"):
        load_checkpoint(tmp_path / "array.npz")


def test_wrong_shape_is_named(saved, tmp_path):
    path = saved[0]
    with np.load(path) as z:
        arrays = dict(z)
    arrays["W3"] = arrays["W3"][:10]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match=r"W3 has shape \(10, 10\), the architecture needs \(294, 10\)"):
        load_checkpoint(tmp_path / "bad.npz")


@pytest.mark.parametrize("change, said", [
    ({"W1": "int8"}, r"W1 has dtype int8, expected floats"),
    ({"meta_json": np.array("[1, 2]")}, r"arch_json and meta_json must each hold a JSON object"),
    ({"arch_json": np.array("7")}, r"arch_json and meta_json must each hold a JSON object"),
    # bn_eps decides no shape, yet the model reads it: a checkpoint without it failed later, in evaluation
    ({"arch_json": np.array(json.dumps({k: v for k, v in cnn.make_arch(4, 6).items() if k != "bn_eps"}))},
     r"its architecture lacks bn_eps"),
])  # fmt: skip
def test_wrong_dtype_or_metadata_kind_is_named(saved, tmp_path, change, said):
    with np.load(saved[0]) as z:
        arrays = dict(z)
    arrays.update({k: arrays[k].astype(v) if isinstance(v, str) else v for k, v in change.items()})
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match=said):
        load_checkpoint(tmp_path / "bad.npz")


def test_architecture_mismatch_is_named(saved):
    path, arch, _, _ = saved
    with pytest.raises(CheckpointError, match="filters1: checkpoint has 4, expected 32"):
        load_checkpoint(path, expected_arch={**arch, "filters1": 32})


def test_failed_save_leaves_nothing_behind(tmp_path):
    arch = cnn.make_arch(filters1=2)
    params, bn = cnn.init_params(arch, 0)
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "m.npz", params, bn, arch, {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_a_snapshot_resumes_only_when_whole_and_of_the_same_run(tmp_path):
    from scratchcnn.backend import get_backend
    from scratchcnn.checkpoint import load_train_state, save_train_state
    from scratchcnn.training import TrainState

    backend = get_backend("cpu")
    params, bn = cnn.init_params(cnn.make_arch(filters1=4), seed=1)
    path = tmp_path / "state.npz"
    rng = np.random.default_rng(3)
    best = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}
    best_bn = {k: rng.random(v.shape).astype(v.dtype) for k, v in bn.items()}
    history = [{"epoch": 1, "val_acc": 0.4}, {"epoch": 2, "val_acc": 0.3}]
    save_train_state(path, TrainState(params, bn, epoch=2, history=history, best_params=best, best_bn_state=best_bn,
                                       best_epoch=1, best_val_acc=0.4, status="running"), "run-a")  # fmt: skip
    state = load_train_state(path, "run-a", backend)
    assert (state.epoch, state.history, state.best_epoch, state.best_val_acc, state.status) == (
        2, history, 1, 0.4, "running")
    for got, want in ((state.params, params), (state.bn_state, bn), (state.best_params, best),
                      (state.best_bn_state, best_bn)):  # fmt: skip
        assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)
    assert load_train_state(path, "run-b", backend) is None  # another run's snapshot
    whole = path.read_bytes()
    for bad in (whole[: len(whole) // 2], b"", b"not a zip file"):  # a write cut short, an empty or foreign file
        path.write_bytes(bad)
        assert load_train_state(path, "run-a", backend) is None
    with open(path, "wb") as f:  # one .npy array
        np.save(f, np.zeros(3))
    assert load_train_state(path, "run-a", backend) is None
    assert load_train_state(tmp_path / "none.npz", "run-a", backend) is None


def test_a_snapshot_without_a_fingerprint_does_not_resume(tmp_path):
    """A snapshot that does not say which run wrote it may be any run's: start afresh."""
    from scratchcnn.backend import get_backend
    from scratchcnn.checkpoint import load_train_state, save_train_state
    from scratchcnn.training import TrainState

    params, bn = cnn.init_params(cnn.make_arch(filters1=2), seed=1)
    path = tmp_path / "state.npz"
    save_train_state(path, TrainState(params, bn, epoch=1), "run-a")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    info = json.loads(str(arrays["info_json"]))
    del info["fingerprint"]
    arrays["info_json"] = np.array(json.dumps(info))
    np.savez(path, **arrays)
    assert load_train_state(path, "run-a", get_backend("cpu")) is None


def test_a_diverged_snapshot_loads_as_diverged(tmp_path):
    """The status is part of the snapshot: a diverged run must not resume as a running one."""
    from scratchcnn.backend import get_backend
    from scratchcnn.checkpoint import load_train_state, save_train_state
    from scratchcnn.training import TrainState

    params, bn = cnn.init_params(cnn.make_arch(filters1=2), seed=1)
    path = tmp_path / "state.npz"
    save_train_state(path, TrainState(params, bn, epoch=3, status="diverged"), "run-a")
    assert load_train_state(path, "run-a", get_backend("cpu")).status == "diverged"

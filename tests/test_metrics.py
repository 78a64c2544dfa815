"""Metrics by hand, their internal consistency, and evaluate.py on a checkpoint with known predictions."""

from __future__ import annotations

import csv
import json
import re
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from cifar_fixtures import write_prepared  # noqa: E402
from scratchcnn import metrics  # noqa: E402
from scratchcnn.metrics import (  # noqa: E402
    classification_report,
    confusion_matrix,
    cross_entropy_from_logits,
)
from step_scripts import load_script  # noqa: E402

NAMES = ["a", "b", "c"]


def test_confusion_matrix_by_hand():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 3)


def test_precision_recall_by_hand():
    # true:  a a a a b b c c c c
    # pred:  a a b c b a a a c c
    r = classification_report([0, 0, 0, 0, 1, 1, 2, 2, 2, 2], [0, 0, 1, 2, 1, 0, 0, 0, 2, 2], NAMES)
    pc = {row["name"]: row for row in r["per_class"]}
    # a: 2 of 4 a's right; predicted a 5 times (2 right)
    assert pc["a"]["recall"] == pytest.approx(2 / 4) and pc["a"]["precision"] == pytest.approx(2 / 5)
    assert pc["b"]["recall"] == pytest.approx(1 / 2) and pc["b"]["precision"] == pytest.approx(1 / 2)
    assert pc["c"]["recall"] == pytest.approx(2 / 4) and pc["c"]["precision"] == pytest.approx(2 / 3)
    assert pc["a"]["accuracy"] == pc["a"]["recall"]
    # F1, the harmonic mean of the two (the report's per-class table prints it)
    assert pc["a"]["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert pc["b"]["f1"] == pytest.approx(0.5) and pc["c"]["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert r["test_accuracy"] == pytest.approx(5 / 10)
    assert r["n_test"] == 10


def test_never_predicted_class_has_zero_precision():
    r = classification_report([0, 1, 2], [0, 0, 0], NAMES)
    assert r["per_class"][1]["precision"] == 0.0
    assert r["per_class"][2]["precision"] == 0.0
    assert not any(math.isnan(row["precision"]) for row in r["per_class"])
    empty = classification_report([0, 0], [0, 1], NAMES)  # class c has no images
    assert empty["per_class"][2]["recall"] == 0.0 and empty["per_class"][2]["total"] == 0


def test_report_fields_and_consistency():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 10, 500))
    names = [f"class{i}" for i in range(10)]
    r = classification_report(y, p, names)
    assert list(r) == ["test_accuracy", "n_test", "class_names", "per_class", "confusion", "most_confused"]
    json.dumps(r)  # plain Python types only
    cm = np.array(r["confusion"])
    assert sum(row["total"] for row in r["per_class"]) == r["n_test"] == 500 == cm.sum()
    assert [row["correct"] for row in r["per_class"]] == np.diag(cm).tolist()
    assert [row["total"] for row in r["per_class"]] == cm.sum(axis=1).tolist()
    assert r["test_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert r["test_accuracy"] == pytest.approx(np.mean(y == p))
    assert [row["class"] for row in r["per_class"]] == list(range(10))
    assert all(isinstance(v, int) for row in r["confusion"] for v in row)


def test_most_confused_order_and_ties():
    cm = np.array([[9, 3, 1], [3, 9, 0], [2, 5, 9]])
    mc = metrics.most_confused(cm, NAMES)
    got = [(m["true"], m["pred"], m["count"]) for m in mc]
    # 5 first, then the two 3s by (true, pred) ascending, then 2, then 1; zeros never
    assert got == [(2, 1, 5), (0, 1, 3), (1, 0, 3), (2, 0, 2), (0, 2, 1)]
    assert mc[0]["true_name"] == "c" and mc[0]["pred_name"] == "b"
    assert all(m["true"] != m["pred"] for m in mc)
    assert len(metrics.most_confused(np.eye(3, dtype=int) * 4, NAMES)) == 0


def test_cross_entropy_is_stable_and_correct():
    logits = np.array([[0.0, 0.0], [1000.0, 0.0], [0.0, 1000.0]])
    ce = cross_entropy_from_logits(logits, [0, 0, 0])
    assert math.isfinite(ce)
    assert ce == pytest.approx((math.log(2) + 0.0 + 1000.0) / 3)
    p = metrics.softmax(np.array([[1e4, 1e4 - math.log(3)]]))
    np.testing.assert_allclose(p, [[0.75, 0.25]], rtol=1e-6)
    assert p.dtype == np.float32


# --------------------------------------------------------------------------- evaluate.py


def known_checkpoint(path: Path):
    """A checkpoint whose prediction for an image of constant red value r is round(9 r).

    conv1/conv2 pass channel 0 (red) through their centre taps, BN is the identity in
    evaluation mode, so every channel-0 feature equals r and the rest are 0. The logit of
    class c is then 9 c r - c^2 / 2, which is largest for the c nearest to 9 r.
    """
    from scratchcnn.checkpoint import save_checkpoint
    from scratchcnn.model import layer_shapes, make_arch, param_shapes

    arch = make_arch(filters1=2, filters2=2, kernel_size=3, padding1=1, padding2=0)
    shapes = param_shapes(arch)
    p = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    for i in (1, 2):
        p[f"gamma{i}"][:] = 1
        p[f"running_var{i}"][:] = 1 - arch["bn_eps"]
    p["W1"][0, 1, 1, 0] = 1  # red, centre tap
    p["W2"][0, 1, 1, 0] = 1  # conv1 channel 0, centre tap
    h2, w2, f2 = layer_shapes(arch)["pool2"]
    c = np.arange(10, dtype=np.float32)
    p["W3"][0::f2, :] = 9 * c / (h2 * w2)  # the (row, col, channel 0) features
    p["b3"][:] = -(c**2) / 2
    learn = {k: v for k, v in p.items() if not k.startswith("running")}
    state = {k: v for k, v in p.items() if k.startswith("running")}
    config = {"train": {"lr": 0.05, "reg": 0.001, "batch_size": 64, "epochs": 3, "lr_decay": 0.5,
                        "lr_step": 2, "clip": None, "seed": 7, "bn_momentum": 0.8}}  # fmt: skip
    meta = {"epoch": 3, "val_acc": 0.625, "config": config, "backend": "numpy", "device": "cpu",
            "versions": {}, "git_commit": None}  # fmt: skip
    save_checkpoint(path, learn, state, arch, meta)
    return arch


def test_evaluate_known_checkpoint(tmp_path, monkeypatch):
    ev = load_script("evaluate")
    ticks = iter(range(100))  # a clock for evaluate.py alone: each reading 0.5 s after the last
    monkeypatch.setattr(ev, "time", types.SimpleNamespace(perf_counter=lambda: 0.5 * next(ticks)))
    known_checkpoint(tmp_path / "model.npz")
    names = [f"k{i}" for i in range(10)]
    pred = np.array([0, 1, 2, 3, 9, 9, 5, 5, 7, 4, 0, 8])  # what the model will predict
    y = np.array([0, 1, 2, 3, 9, 8, 5, 6, 7, 4, 1, 8])  # true labels: 3 wrong
    x = np.zeros((len(pred), 32, 32, 3), np.float32)
    x[..., 0] = (pred / 9.0)[:, None, None]
    x[..., 1] = 0.3  # green and blue do not matter
    write_prepared(tmp_path / "cifar10.npz", class_names=names, x_test=x, y_test=y, x_train=x[:1], y_train=y[:1])
    out = tmp_path / "final"
    m = ev.run_evaluation(tmp_path / "model.npz", tmp_path / "cifar10.npz", out, device="cpu", batch_size=5)

    assert m["n_test"] == 12
    assert m["test_accuracy"] == pytest.approx(9 / 12)
    expected = np.zeros((10, 10), int)
    np.add.at(expected, (y, pred), 1)
    assert m["confusion"] == expected.tolist()
    assert [(d["true"], d["pred"], d["count"]) for d in m["most_confused"]] == [(1, 0, 1), (6, 5, 1), (8, 9, 1)]
    assert m["checkpoint"] == {"path": str(tmp_path / "model.npz"), "epoch": 3, "val_acc": 0.625}
    assert m["hyperparameters"] == {"lr": 0.05, "reg": 0.001, "filters": 2, "batch_size": 64, "epochs": 3,
                                    "lr_decay": 0.5, "lr_step": 2, "clip": None, "seed": 7,
                                    "bn_momentum": 0.8}  # fmt: skip
    # the timed pass over all 12 images spans one tick (the warm-up batch is not timed)
    assert m["throughput"]["backend"] == "numpy" and m["throughput"]["images_per_second"] == 12 / 0.5
    assert {"config", "backend", "device", "versions", "git_commit", "created"} <= set(m["provenance"])

    on_disk = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    assert on_disk["confusion"] == m["confusion"] and on_disk["test_loss"] == pytest.approx(m["test_loss"])
    keys = {"test_accuracy", "test_loss", "n_test", "class_names", "per_class", "confusion", "most_confused",
            "throughput", "checkpoint", "hyperparameters", "provenance"}  # fmt: skip
    assert set(on_disk) == keys
    with np.load(out / "predictions.npz") as z:
        assert z["y_true"].dtype == np.int64 and z["y_pred"].dtype == np.int64
        assert z["y_pred"].tolist() == pred.tolist() and z["y_true"].tolist() == y.tolist()
        assert z["probs"].dtype == np.float32 and z["probs"].shape == (12, 10)
        np.testing.assert_allclose(z["probs"].sum(axis=1), 1, rtol=1e-5)
        nll = -np.mean(np.log(z["probs"][np.arange(12), y].astype(np.float64)))
        assert nll == pytest.approx(on_disk["test_loss"], rel=1e-4)
    with open(out / "per_class.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["class", "name", "correct", "total", "accuracy", "precision", "recall"]
    assert [int(r["correct"]) for r in rows] == np.diag(expected).tolist()
    with open(out / "confusion.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0][1:] == names and [r[0] for r in table[1:]] == names
    assert [[int(v) for v in r[1:]] for r in table[1:]] == expected.tolist()
    assert not list(out.glob(".*tmp*"))


def test_evaluate_cli_reports_a_bad_checkpoint(tmp_path, capsys):
    ev = load_script("evaluate")
    (tmp_path / "model.npz").write_bytes(b"not a zip")
    write_prepared(tmp_path / "cifar10.npz", class_names=[f"k{i}" for i in range(10)])
    rc = ev.main(["--model", str(tmp_path / "model.npz"), "--data", str(tmp_path / "cifar10.npz"),
                  "--out-dir", str(tmp_path / "out"), "--device", "cpu", "--batch-size", "10"])  # fmt: skip
    assert rc == 1
    assert "model.npz" in capsys.readouterr().err
    assert not (tmp_path / "out" / "test_metrics.json").exists()


def test_evaluate_cli_records_its_settings_and_the_checkpoints_config(tmp_path, monkeypatch):
    """Device and batch size say where and how, not what: the workflow passes them outside its
    rerun triggers, and the provenance records them beside the run config of the checkpoint."""
    ev = load_script("evaluate")
    known_checkpoint(tmp_path / "model.npz")
    x = np.zeros((3, 32, 32, 3), np.float32)
    meta = {"archive": "t.tgz", "archive_md5": "f" * 32, "split_seed": 1, "n_train": 5, "n_val": 2, "n_test": 3,
            "standardize": {"mean": [0.5] * 3, "std": [0.25] * 3}, "layout": "NHWC"}  # fmt: skip
    write_prepared(tmp_path / "cifar10.npz", class_names=[f"k{i}" for i in range(10)], meta=meta, x_test=x,
                   y_test=np.zeros(3))  # fmt: skip
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    out = tmp_path / "out"
    rc = ev.main(["--model", str(tmp_path / "model.npz"), "--data", str(tmp_path / "cifar10.npz"),
                  "--out-dir", str(out), "--device", "cpu", "--batch-size", "2"])  # fmt: skip
    assert rc == 0
    m = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    assert m["provenance"]["settings"] == {"device": "cpu", "batch_size": 2, "threads": 3}
    assert m["provenance"]["config"]["train"]["seed"] == 7  # known_checkpoint's training config
    assert m["provenance"]["data"] == {k: v for k, v in meta.items() if k != "layout"}  # the data it was tested on
    assert m["test_accuracy"] == 1.0  # r = 0 -> class 0


def test_evaluate_refuses_an_empty_test_set(tmp_path, capsys):
    ev = load_script("evaluate")
    known_checkpoint(tmp_path / "model.npz")
    write_prepared(tmp_path / "cifar10.npz", class_names=[f"k{i}" for i in range(10)],
                   x_test=np.zeros((0, 32, 32, 3), np.float32), y_test=np.zeros(0))  # fmt: skip
    rc = ev.main(["--model", str(tmp_path / "model.npz"), "--data", str(tmp_path / "cifar10.npz"),
                  "--out-dir", str(tmp_path / "out"), "--device", "cpu", "--batch-size", "2"])  # fmt: skip
    assert rc == 1 and f"error: {tmp_path / 'cifar10.npz'}: x_test holds no images" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluate_writes_all_four_outputs_or_none(tmp_path, capsys):
    """The last file's name taken by a folder: the error names the folder, the first three go again."""
    ev = load_script("evaluate")
    known_checkpoint(tmp_path / "model.npz")
    write_prepared(tmp_path / "cifar10.npz", class_names=[f"k{i}" for i in range(10)],
                   x_test=np.zeros((3, 32, 32, 3), np.float32), y_test=np.zeros(3))  # fmt: skip
    out = tmp_path / "out"
    (out / "test_metrics.json").mkdir(parents=True)
    rc = ev.main(["--model", str(tmp_path / "model.npz"), "--data", str(tmp_path / "cifar10.npz"),
                  "--out-dir", str(out), "--device", "cpu", "--batch-size", "2"])  # fmt: skip
    assert rc == 1 and f"error: cannot write the evaluation into {out}" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["test_metrics.json"]  # the folder, nothing else


def test_evaluate_interrupted_while_writing_leaves_no_mix_of_new_and_old(tmp_path, capsys, monkeypatch):
    ev = load_script("evaluate")
    known_checkpoint(tmp_path / "model.npz")
    write_prepared(tmp_path / "cifar10.npz", class_names=[f"k{i}" for i in range(10)],
                   x_test=np.zeros((3, 32, 32, 3), np.float32), y_test=np.zeros(3))  # fmt: skip
    out = tmp_path / "out"
    argv = ["--model", str(tmp_path / "model.npz"), "--data", str(tmp_path / "cifar10.npz"),
            "--out-dir", str(out), "--device", "cpu", "--batch-size", "2"]  # fmt: skip
    assert ev.main(argv) == 0  # an earlier evaluation's four files
    real = ev.write_text_atomic

    def ctrl_c_at_the_confusion(path, text):
        if Path(path).name == "confusion.csv":
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(ev, "write_text_atomic", ctrl_c_at_the_confusion)
    assert ev.main(argv) == 130
    assert "interrupted; no evaluation written" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # none of the new, none of the old


def test_evaluate_on_a_gpu_it_cannot_use_says_why_in_one_line(tmp_path, capsys, monkeypatch):
    from scratchcnn.backend import BackendError

    ev = load_script("evaluate")
    known_checkpoint(tmp_path / "model.npz")
    write_prepared(tmp_path / "cifar10.npz", class_names=[f"k{i}" for i in range(10)])

    def no_gpu(device):
        raise BackendError("device 'gpu' asked for, but CuPy is not installed")

    monkeypatch.setattr(ev, "get_backend", no_gpu)
    rc = ev.main(["--model", str(tmp_path / "model.npz"), "--data", str(tmp_path / "cifar10.npz"),
                  "--out-dir", str(tmp_path / "out"), "--device", "gpu", "--batch-size", "2"])  # fmt: skip
    assert rc == 1 and capsys.readouterr().err == "error: device 'gpu' asked for, but CuPy is not installed\n"


def test_seed_summary_mean_and_sample_std():
    from scratchcnn.metrics import seed_summary

    s = seed_summary([{"seed": 0, "test_accuracy": 0.60}, {"seed": 1, "test_accuracy": 0.62},
                      {"seed": 2, "test_accuracy": 0.64}])  # fmt: skip
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.62) and s["std"] == pytest.approx(0.02)
    assert (s["min"], s["max"]) == (0.60, 0.64)
    assert seed_summary([{"seed": 5, "test_accuracy": 0.5}])["std"] is None  # one run has no spread
    with pytest.raises(ValueError, match="seeds must differ"):
        seed_summary([{"seed": 1, "test_accuracy": 0.5}, {"seed": 1, "test_accuracy": 0.6}])


def test_summarize_seeds_script(tmp_path):
    """The combined file is the shown seed's metrics plus every seed's numbers; a missing seed is named."""
    mod = load_script("summarize_seeds")
    runs = []
    for seed, acc in ((3, 0.7), (8, 0.5)):
        d = tmp_path / str(seed)
        d.mkdir()
        (d / "test_metrics.json").write_text(json.dumps({"test_accuracy": acc, "n_test": 10}))
        reused = {"reused_from": "results/sweep/points/p"} if seed == 3 else {}
        (d / "metrics.json").write_text(json.dumps({"hyperparameters": {"seed": seed}, "best_val_acc": acc + 0.01,
                                                    "best_epoch": 4, "status": "ok", **reused}))  # fmt: skip
        runs.append(str(d))
    out = tmp_path / "test_metrics.json"
    assert mod.main(["--runs", *runs, "--shown-seed", "8", "--out", str(out)]) == 0
    combined = json.loads(out.read_text())
    assert combined["test_accuracy"] == 0.5 and combined["n_test"] == 10  # the shown seed's own metrics
    assert combined["seeds"]["shown"] == 8 and combined["seeds"]["mean"] == pytest.approx(0.6)
    assert [r["seed"] for r in combined["seeds"]["runs"]] == [3, 8]
    assert combined["seeds"]["runs"][0]["best_val_acc"] == pytest.approx(0.71)
    assert [r["reused_from"] for r in combined["seeds"]["runs"]] == ["results/sweep/points/p", None]
    with pytest.raises(SystemExit, match="--shown-seed 1 is not among"):
        mod.main(["--runs", *runs, "--shown-seed", "1", "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="does not exist"):
        mod.main(["--runs", str(tmp_path / "none"), "--shown-seed", "1", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_summarize_seeds_takes_a_diverged_seed_and_names_the_file_and_key_of_a_bad_value(tmp_path):
    mod = load_script("summarize_seeds")

    def seed_dir(name, train, test=None):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps(train))
        (d / "test_metrics.json").write_text(json.dumps(test or {"test_accuracy": 0.1}))
        return str(d)

    ok = seed_dir("ok", {"hyperparameters": {"seed": 0}, "best_val_acc": 0.6, "best_epoch": 3, "status": "ok"},
                  {"test_accuracy": 0.58})  # fmt: skip
    # train.py's record of a seed that diverged in its first epoch: no best epoch, no best accuracy
    gone = seed_dir("gone", {"hyperparameters": {"seed": 1}, "best_val_acc": None, "best_epoch": 0, "status": "diverged"})
    out = tmp_path / "out.json"
    assert mod.main(["--runs", ok, gone, "--shown-seed", "0", "--out", str(out)]) == 0
    runs = json.loads(out.read_text())["seeds"]["runs"]
    assert runs[1] == {"seed": 1, "test_accuracy": 0.1, "best_val_acc": None, "best_epoch": 0, "status": "diverged",
                       "path": gone, "reused_from": None}  # fmt: skip
    bad = [("no-seed", {"best_val_acc": 0.5, "best_epoch": 1}, None, "metrics.json: hyperparameters.seed is None, expected a number (an integer)"),
           ("epoch-text", {"hyperparameters": {"seed": 2}, "best_val_acc": 0.5, "best_epoch": "3"}, None,
            "metrics.json: best_epoch is '3', expected a number (an integer)"),
           ("no-test", {"hyperparameters": {"seed": 3}, "best_val_acc": 0.5, "best_epoch": 1}, {"n_test": 10},
            "test_metrics.json: test_accuracy is None, expected a number"),
           # Python's json reads Infinity and NaN: int() of them would raise a bare OverflowError
           ("epoch-infinite", {"hyperparameters": {"seed": 4}, "best_val_acc": 0.5, "best_epoch": float("inf")}, None,
            "metrics.json: best_epoch is inf, expected a number (an integer)"),
           ("acc-nan", {"hyperparameters": {"seed": 5}, "best_val_acc": 0.5, "best_epoch": 1}, {"test_accuracy": float("nan")},
            "test_metrics.json: test_accuracy is nan, expected a number")]  # fmt: skip
    for name, train, test, said in bad:
        folder = seed_dir(name, train, test)
        with pytest.raises(SystemExit, match=re.escape(f"error: {folder}/{said}")):
            mod.main(["--runs", ok, folder, "--shown-seed", "0", "--out", str(tmp_path / "x.json")])
    (tmp_path / "ok" / "metrics.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="holds a JSON list, expected an object"):
        mod.main(["--runs", ok, "--shown-seed", "0", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("train, said", [
    # a seed of 1.5 is no seed train.py wrote: reading it as 1 would credit seed 1 with another run
    ({"hyperparameters": {"seed": 1.5}, "best_val_acc": 0.5, "best_epoch": 2}, "hyperparameters.seed is 1.5"),
    # train.py writes best_epoch 0, never null, for a diverged seed: a null one would break the report (int(None))
    ({"hyperparameters": {"seed": 1}, "best_val_acc": None, "best_epoch": None}, "best_epoch is None"),
], ids=["half-seed", "null-best-epoch"])  # fmt: skip
def test_summarize_seeds_refuses_a_value_that_is_not_a_whole_number(tmp_path, train, said):
    mod = load_script("summarize_seeds")
    d = tmp_path / "run"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps(train))
    (d / "test_metrics.json").write_text(json.dumps({"test_accuracy": 0.4}))
    with pytest.raises(SystemExit, match=re.escape(f"error: {d}/metrics.json: {said}, expected a number (an integer)")):
        mod.main(["--runs", str(d), "--shown-seed", "1", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def _clocked_predict(monkeypatch, seconds):
    """evaluate.py with a fake model whose passes take ``seconds`` (one per call) on a fake clock."""
    ev = load_script("evaluate")
    now, calls = [0.0], []

    def predict_logits(params, arch, x, backend, batch_size):
        now[0] += seconds[len(calls)]
        calls.append(len(x))
        return np.zeros((len(x), 10), np.float32)

    monkeypatch.setattr(ev, "predict_logits", predict_logits)
    monkeypatch.setattr(ev, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    return ev, calls


def test_evaluate_throughput_leaves_out_the_warm_up_batch(monkeypatch):
    """The first batch compiles the GPU kernels: 10 s of warm-up, then 12 images in 1 s is 12
    images/s, not 12 / 11."""
    ev, calls = _clocked_predict(monkeypatch, [10.0, 1.0])
    backend = types.SimpleNamespace(synchronize=lambda: None)
    logits, ips = ev.predict(None, None, np.zeros((12, 32, 32, 3), np.float32), backend, batch_size=5)
    assert calls == [5, 12]  # the warm-up batch, then every image
    assert ips == 12.0 and logits.shape == (12, 10)


def test_evaluate_throughput_is_unknown_when_the_clock_does_not_move(tmp_path, monkeypatch):
    """A clock too coarse to see the pass gives no throughput (null in the file), not 0 images/s."""
    ev, _ = _clocked_predict(monkeypatch, [0.0, 0.0])
    known_checkpoint(tmp_path / "model.npz")
    write_prepared(tmp_path / "cifar10.npz", class_names=[f"k{i}" for i in range(10)],
                   x_test=np.zeros((3, 32, 32, 3), np.float32), y_test=np.zeros(3))  # fmt: skip
    m = ev.run_evaluation(tmp_path / "model.npz", tmp_path / "cifar10.npz", tmp_path / "out", "cpu", batch_size=2)
    assert math.isnan(m["throughput"]["images_per_second"])
    on_disk = json.loads((tmp_path / "out" / "test_metrics.json").read_text(encoding="utf-8"))
    assert on_disk["throughput"]["images_per_second"] is None


def test_evaluate_refuses_data_with_another_number_of_classes(tmp_path, capsys):
    """A model of 10 classes on a test set of 12 would misname every class past the tenth."""
    ev = load_script("evaluate")
    known_checkpoint(tmp_path / "model.npz")
    write_prepared(tmp_path / "cifar10.npz", class_names=[f"k{i}" for i in range(12)])
    rc = ev.main(["--model", str(tmp_path / "model.npz"), "--data", str(tmp_path / "cifar10.npz"),
                  "--out-dir", str(tmp_path / "out"), "--device", "cpu", "--batch-size", "2"])  # fmt: skip
    assert rc == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'cifar10.npz'} has 12 classes, the model 10\n"
    assert not (tmp_path / "out").exists()

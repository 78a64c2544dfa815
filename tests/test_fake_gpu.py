"""The step scripts on the CuPy path, end to end, without a GPU: train.py and evaluate.py with
``--device gpu`` on tests/fake_cupy (NumPy arrays behind CuPy's module name, the CUDA kernels
emulated on the CPU, host arrays refused in device arithmetic as CuPy refuses them), against the
same scripts on NumPy. It checks the scripts' CuPy-path plumbing (device claim, transfers,
checkpoints written from the device, provenance), not CuPy's numerics; tests/test_cupy.py does
that on a real GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cifar_fixtures import write_prepared
from recipe import train_argv

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"
FAKE = ROOT / "tests" / "fake_cupy"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    rng = np.random.default_rng(0)
    y = np.arange(120) % 10
    x = rng.random((120, 32, 32, 3), dtype=np.float32) * 0.5
    x[..., 1] += (y / 10)[:, None, None]  # a learnable signal in the green channel
    base = tmp_path_factory.mktemp("fake_gpu")
    data = write_prepared(base / "cifar10.npz", x_train=x[:80], y_train=y[:80], x_val=x[80:100], y_val=y[80:100],
                          x_test=x[100:], y_test=y[100:])  # fmt: skip
    env = {**{k: v for k, v in os.environ.items() if k not in ("SCRATCHCNN_KERNELS", "CUPY_TF32")},
           "PYTHONPATH": f"{FAKE}{os.pathsep}{ROOT / 'workflow'}",
           "TMPDIR": str(base)}  # fmt: skip  (the device claim's lock files)
    out = {}
    for device in ("cpu", "gpu"):
        d = base / device
        prefix = [sys.executable] if device == "cpu" else [sys.executable, str(FAKE / "run_script.py")]
        train = train_argv(data, d, filters=4, batch_size=20, epochs=3, lr_step=2, device=device)
        for argv in ([str(SCRIPTS / "train.py"), *train],
                     [str(SCRIPTS / "evaluate.py"), "--model", str(d / "model.npz"), "--data", str(data),
                      "--out-dir", str(d), "--device", device, "--batch-size", "7"]):  # fmt: skip
            done = subprocess.run(prefix + argv, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
        out[device] = d
    return out


def test_training_on_the_cupy_path_follows_the_numpy_path(runs):
    cpu, gpu = (json.loads((runs[d] / "metrics.json").read_text()) for d in ("cpu", "gpu"))
    assert cpu["backend"] == "numpy" and gpu["backend"] == "cupy" and gpu["device"] == "fake GPU (NumPy)"
    assert gpu["provenance"]["settings"]["device"] == "gpu" and gpu["best_epoch"] == cpu["best_epoch"]
    # what changes a CuPy run's rounding is recorded beside its recipe (the env has neither switch set)
    assert gpu["provenance"]["gpu_numerics"] == {"custom_kernels": True, "tf32": False}
    assert "gpu_numerics" not in cpu["provenance"]
    h_cpu, h_gpu = (pd.read_csv(runs[d] / "history.csv") for d in ("cpu", "gpu"))
    numbers = ["train_loss", "train_ce", "train_l2", "train_acc", "val_loss", "val_acc"]
    np.testing.assert_allclose(h_gpu[numbers], h_cpu[numbers], rtol=1e-4, atol=1e-6)
    a, b = np.load(runs["gpu"] / "model.npz"), np.load(runs["cpu"] / "model.npz")  # written from device arrays
    for key in b.files:
        if b[key].dtype.kind == "f":  # b1, b2: batch norm cancels them, rounding noise, compared absolutely
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_evaluation_on_the_cupy_path_predicts_what_numpy_predicts(runs):
    p_cpu, p_gpu = (np.load(runs[d] / "predictions.npz") for d in ("cpu", "gpu"))
    np.testing.assert_array_equal(p_gpu["y_pred"], p_cpu["y_pred"])
    np.testing.assert_allclose(p_gpu["probs"], p_cpu["probs"], rtol=1e-4, atol=1e-6)
    m_cpu, m_gpu = (json.loads((runs[d] / "test_metrics.json").read_text()) for d in ("cpu", "gpu"))
    assert m_gpu["test_accuracy"] == m_cpu["test_accuracy"] and m_gpu["n_test"] == 20
    assert m_gpu["provenance"]["gpu_numerics"] == {"custom_kernels": True, "tf32": False}

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
    # the GPU path twice: its plain steps, and each step replayed as a CUDA graph (the stand-in's)
    for run, device, graph in (("cpu", "cpu", "0"), ("gpu", "gpu", "0"), ("gpu-graph", "gpu", "1")):
        d = base / run
        prefix = [sys.executable] if device == "cpu" else [sys.executable, str(FAKE / "run_script.py")]
        train = train_argv(data, d, filters=4, batch_size=20, epochs=3, lr_step=2, device=device)
        for argv in ([str(SCRIPTS / "train.py"), *train],
                     [str(SCRIPTS / "evaluate.py"), "--model", str(d / "model.npz"), "--data", str(data),
                      "--out-dir", str(d), "--device", device, "--batch-size", "7"]):  # fmt: skip
            done = subprocess.run(prefix + argv, env={**env, "SCRATCHCNN_GRAPH": graph}, capture_output=True,
                                  text=True, timeout=600)  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            (d / f"{Path(argv[0]).stem}.stderr").write_text(done.stderr)
        out[run] = d
    return out


def test_training_on_the_cupy_path_follows_the_numpy_path(runs):
    cpu, gpu = (json.loads((runs[d] / "metrics.json").read_text()) for d in ("cpu", "gpu"))
    assert cpu["backend"] == "numpy" and gpu["backend"] == "cupy" and gpu["device"] == "fake GPU (NumPy)"
    assert gpu["provenance"]["settings"]["device"] == "gpu" and gpu["best_epoch"] == cpu["best_epoch"]
    # the claim named the card by its bus id, as the stand-in driver gives it (docs/clusters.md)
    assert "claimed GPU 0 (physical pci-0000:01:00.0, slot 1 of 1)" in (runs["gpu"] / "train.stderr").read_text()
    # what changes a CuPy run's rounding is recorded beside its recipe (the env has neither switch set)
    assert gpu["provenance"]["gpu_numerics"] == {"custom_kernels": True, "tf32": False, "cuda_graph": False}
    assert "gpu_numerics" not in cpu["provenance"]
    h_cpu, h_gpu = (pd.read_csv(runs[d] / "history.csv") for d in ("cpu", "gpu"))
    numbers = ["train_loss", "train_ce", "train_l2", "train_acc", "val_loss", "val_acc"]
    np.testing.assert_allclose(h_gpu[numbers], h_cpu[numbers], rtol=1e-4, atol=1e-6)
    a, b = np.load(runs["gpu"] / "model.npz"), np.load(runs["cpu"] / "model.npz")  # written from device arrays
    for key in b.files:
        if b[key].dtype.kind == "f":  # b1, b2: batch norm cancels them, rounding noise, compared absolutely
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_train_py_with_the_cuda_graph_trains_as_without_and_says_so(runs):
    plain, graph = (json.loads((runs[d] / "metrics.json").read_text()) for d in ("gpu", "gpu-graph"))
    assert graph["provenance"]["gpu_numerics"] == {"custom_kernels": True, "tf32": False, "cuda_graph": True}
    said = (runs["gpu-graph"] / "train.stderr").read_text()
    assert "not captured" not in said and "CUDA graph" not in (runs["gpu"] / "train.stderr").read_text()
    # captured in the first epoch, and again when the rate halves after the second
    assert said.count("training steps of 20 images replay a CUDA graph from here") == 2, said
    h_plain, h_graph = (pd.read_csv(runs[d] / "history.csv") for d in ("gpu", "gpu-graph"))
    numbers = ["train_loss", "train_ce", "train_acc", "val_loss", "val_acc"]
    np.testing.assert_allclose(h_graph[numbers], h_plain[numbers], rtol=1e-5, atol=1e-6)
    assert graph["best_epoch"] == plain["best_epoch"]


def test_evaluation_on_the_cupy_path_predicts_what_numpy_predicts(runs):
    p_cpu, p_gpu = (np.load(runs[d] / "predictions.npz") for d in ("cpu", "gpu"))
    np.testing.assert_array_equal(p_gpu["y_pred"], p_cpu["y_pred"])
    np.testing.assert_allclose(p_gpu["probs"], p_cpu["probs"], rtol=1e-4, atol=1e-6)
    m_cpu, m_gpu = (json.loads((runs[d] / "test_metrics.json").read_text()) for d in ("cpu", "gpu"))
    assert m_gpu["test_accuracy"] == m_cpu["test_accuracy"] and m_gpu["n_test"] == 20
    assert m_gpu["provenance"]["gpu_numerics"] == {"custom_kernels": True, "tf32": False, "cuda_graph": False}


COUNT_STEP = """
import json, os, sys
import numpy as np
import fake_cupy_grids  # noqa: F401 - small grids
import cupy
from scratchcnn import model as cnn, training
from scratchcnn.backend import get_backend
from recipe import train_config

backend = get_backend("gpu")
arch = cnn.make_arch(8)
params, bn = cnn.init_params(arch, 0, backend)
opt, sums, cfg = training.FlatSGD(params), training.EpochSums.zeros(cupy), train_config()
rng = np.random.default_rng(0)
x_train = cupy.asarray(rng.random((32, 32, 32, 3), dtype=np.float32))
y_train = cupy.asarray(rng.integers(0, 10, 32))
order = cupy.asarray(rng.permutation(32))
for b in range(2):  # the training loop's step; the second one counted
    cupy.launches.clear()
    idx = order[b * 8 : (b + 1) * 8]
    bn = training.train_step(opt, bn, x_train[idx], y_train[idx], arch, cfg, cfg.lr, sums)
print(json.dumps(cupy.launches))
"""


def test_the_training_step_on_the_kernels_launches_what_the_code_says():
    """The device operations of one step of training.train's loop on the kernels, counted on the
    stand-in by kind: the number the GPU work drives down (a GPU's profiler counts more: cuBLAS may
    run several kernels for one product). The loss, L2 and the epoch's sums add none: the update's
    kernels keep them."""
    env = {**{k: v for k, v in os.environ.items() if k not in ("SCRATCHCNN_KERNELS", "CUPY_TF32")},
           "PYTHONPATH": os.pathsep.join(str(p) for p in (FAKE, ROOT / "workflow", ROOT / "tests"))}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", COUNT_STEP], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    counted = json.loads(done.stdout.splitlines()[-1])
    assert counted == {
        "copy (fancy indexing)": 2,  # the batch's images and labels
        "ufunc matmul": 8,  # 3 forward (2 convolutions, FC), 5 backward (3 weight gradients, FC and conv2 inputs)
        "ufunc add": 3,  # the biases, forward
        "raw im2col_pad": 2,
        "raw bn_stats": 2 + 3,  # batch norm's statistics, and the three bias gradients' column sums
        "raw bn_finalize": 2,
        "raw bn_relu_pool_fwd": 2,
        "raw softmax_xent": 1,
        "raw bn_relu_pool_bwd_stats": 2,
        "raw bn_grad_finalize": 2,
        "raw bn_relu_pool_bwd_dx": 2,
        "raw col2im_gather": 1,
        "raw col_sum_finalize": 3,
        "raw sgd_sumsq": 1,
        "raw sgd_apply": 1,
    }, counted
    assert sum(counted.values()) == 37


GRAPH_RUN = """
import json, os, sys
import numpy as np
import fake_cupy_grids  # noqa: F401 - small grids, and the stand-in's cuBLAS for scratchcnn.graph
import cupy
from scratchcnn import graph, model as cnn, training
from scratchcnn.backend import get_backend
from recipe import train_config

backend = get_backend("gpu")
arch = cnn.make_arch(8)
rng = np.random.default_rng(0)
x, y = rng.random((44, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, 44)
data = {"x_train": cupy.asarray(x[:36]), "y_train": cupy.asarray(y[:36]),
        "x_val": cupy.asarray(x[36:]), "y_val": cupy.asarray(y[36:])}
cfg = train_config(batch_size=8, epochs=3, lr_step=1)  # 4 full batches and one of 4; the rate halves each epoch
# steps no capture can hold: one reads a device value, one calls CuPy's own matmul (cuBLAS)
stray = {"host-read": lambda sums: float(sums.ce),
         "cupy-matmul": lambda sums: cupy.matmul(sums.ce.reshape(1, 1), sums.ce.reshape(1, 1))}
if sys.argv[1] in stray:
    plain_step = training.train_step
    def train_step(opt, bn, x, y, arch, cfg, lr, sums):
        stray[sys.argv[1]](sums)
        return plain_step(opt, bn, x, y, arch, cfg, lr, sums)
    training.train_step = train_step
out = {}
for setting in ("1", "0"):
    os.environ["SCRATCHCNN_GRAPH"] = setting
    params, bn = cnn.init_params(arch, 0, backend)
    said = []
    cupy.launches.clear()
    state = training.train(training.TrainState(params, bn), data, arch, cfg, backend, log=said.append)
    out[setting] = {"launches": dict(cupy.launches), "history": state.history, "log": said,
                    "capturing after": graph.capturing_gemm() is not None,
                    "params": {k: cupy.asnumpy(v).tolist() for k, v in {**state.params, **state.bn_state}.items()}}
print(json.dumps(out))
"""


def graph_runs(case):
    env = {**{k: v for k, v in os.environ.items() if k not in ("SCRATCHCNN_KERNELS", "CUPY_TF32")},
           "PYTHONPATH": os.pathsep.join(str(p) for p in (FAKE, ROOT / "workflow", ROOT / "tests"))}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", GRAPH_RUN, case], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def assert_same_training(a, b):
    numbers = ["train_loss", "train_ce", "train_l2", "train_acc", "val_loss", "val_acc"]
    h_a, h_b = pd.DataFrame(a["history"]), pd.DataFrame(b["history"])
    # train_l2 is train_loss - train_ce: its rounding is theirs, hence the absolute bound
    np.testing.assert_allclose(h_a[numbers], h_b[numbers], rtol=1e-5, atol=1e-6)
    for k, v in b["params"].items():
        np.testing.assert_allclose(a["params"][k], v, rtol=1e-5, atol=1e-7, err_msg=k)


def test_the_cuda_graph_of_the_step_trains_as_the_plain_steps():
    """SCRATCHCNN_GRAPH=1 on the stand-in, whose capture records the device operations and whose
    graph replays them on the same arrays, as CUDA does: the same training as the plain steps.
    The first full batch runs plainly (to make every kernel and cached array), and each epoch's
    short one; the step is captured at the second batch and again at each later epoch's first,
    since the rate halves; each capture's 8 products go through the ctypes cuBLAS call."""
    runs = graph_runs("plain")
    graph, plain = runs["1"], runs["0"]
    assert_same_training(graph, plain)
    assert graph["launches"]["graph launch"] == 3 + 4 + 4
    assert graph["launches"]["cublasSgemm"] == 3 * 8
    assert "graph launch" not in plain["launches"] and "cublasSgemm" not in plain["launches"]
    assert not any("not captured" in line for line in graph["log"])
    assert sum("replay a CUDA graph from here" in line for line in graph["log"]) == 3


@pytest.mark.parametrize("case, why", [("host-read", "reads a device value while a stream captures"),
                                       ("cupy-matmul", "calling cuBLAS API during stream capture")])  # fmt: skip
def test_a_step_that_cannot_be_captured_falls_back_to_the_plain_steps(case, why):
    """The failed capture leaves no cuBLAS route of its own behind: the plain steps' products
    are CuPy's again, none through the graph's ctypes cuBLAS (its stream's capture is void)."""
    runs = graph_runs(case)
    graph, plain = runs["1"], runs["0"]
    assert_same_training(graph, plain)
    assert "graph launch" not in graph["launches"]
    assert "cublasSgemm" not in graph["launches"] and not graph["capturing after"]
    said = [line for line in graph["log"] if "not captured" in line]
    assert len(said) == 1 and why in said[0], graph["log"]


@pytest.mark.parametrize("smi_works", [True, False])
def test_the_gpu_preflight_records_the_lock_names_beside_the_drivers_list(tmp_path, smi_works):
    """On a GPU machine the preflight shows which name each visible card's locks get (its PCI bus
    id, from CuPy) beside nvidia-smi's list, so a session with a GPU checks the two agree. It is
    informative: an nvidia-smi that fails is recorded, and the preflight passes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    card = "0, 00000000:01:00.0, GPU-8f6c2a1e-1b2c-4d5e-9f00-123456789abc"
    smi.write_text(f'#!/bin/sh\necho "{card}"\n' if smi_works else "#!/bin/sh\necho 'driver gone' >&2; exit 9\n")
    smi.chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if k not in ("SCRATCHCNN_KERNELS", "CUDA_VISIBLE_DEVICES")},
           "PYTHONPATH": os.pathsep.join(str(p) for p in (FAKE, ROOT / "workflow", ROOT / "benchmarks")),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    out = tmp_path / "preflight.json"
    done = subprocess.run([sys.executable, str(FAKE / "run_script.py"), str(ROOT / "benchmarks" / "gpu_probe.py"),
                           "preflight", "--device", "gpu", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(out.read_text())
    assert info["lock_card_names"] == {"0": "pci-0000:01:00.0"}  # the stand-in driver's bus id for device 0
    if smi_works:
        assert info["nvidia_smi_cards"] == [card] and "lock_cards_error" not in info
    else:
        assert "nvidia_smi_cards" not in info and "exit status 9" in info["lock_cards_error"]

"""Checks and measurements for benchmarks/gpu_check.sh, each printed and written as JSON.

    python3 benchmarks/gpu_probe.py preflight --json pre.json   # the GPU answers, or exit 1
    python3 benchmarks/gpu_probe.py launches --json launches.json  # kernel launches per training step
    python3 benchmarks/gpu_probe.py memory --json memory.json    # peak training and evaluation memory
    python3 benchmarks/gpu_probe.py accuracy --json accuracy.json  # gradients against float64, layer by layer
    python3 benchmarks/gpu_probe.py stages --json stages.json    # where a training step's time goes

``--device cpu`` runs the same code on NumPy with small sizes (a dry run of
the script's plumbing); memory is then NumPy's allocations seen by tracemalloc.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from scratchcnn import devices
from scratchcnn import kernels
from scratchcnn import layers
from scratchcnn import model as cnn
from scratchcnn import training
from scratchcnn.backend import BackendError, get_backend

from epoch_speed import RECIPE, random_problem  # noqa: E402  (the config's recipe and the random data, once there)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gpu_problem import batch as make_batch  # noqa: E402  (the GPU tests' state and batch, and their routing)
from gpu_problem import random_state, routed_like  # noqa: E402

# Where neither a CUDA graph nor a profiler can count: one training step at 64 filters, batch 64,
# with the epoch's sums. PyTorch's profiler counted 56 and 282 on an H200 (2026-11-28, commit
# 5a115e5) for the step without the sums. Since then the update's kernels keep the loss and the sums:
# read from the code, 11 launches fewer (the L2 loss's three dot products, two kernels each in
# cuBLAS, and five 0-d operations); the reference path adds the sums' four operations. Since
# 2026-12-07 the probe's step also gathers its batch through a device permutation, as the training
# loop does: two launches more on both paths.
LAUNCH_ESTIMATE = {"kernels": 47, "no_kernels": 288}


def lock_cards() -> dict:
    """The GPU locks' card names beside the driver's own list (docs/clusters.md). Informative:
    whatever goes wrong here is recorded, and the preflight goes on."""
    info = {}
    try:
        import cupy

        visible = devices.physical_ids(os.environ.get("CUDA_VISIBLE_DEVICES"), devices.count_gpus(cupy))
        info["lock_card_names"] = dict(zip(visible, devices.card_names(visible, cupy)))
        smi = shutil.which("nvidia-smi")
        info["nvidia_smi_cards"] = subprocess.run(
            [smi, "--query-gpu=index,pci.bus_id,uuid", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip().splitlines() if smi else "no nvidia-smi"  # fmt: skip
    except Exception as exc:
        info["lock_cards_error"] = f"{type(exc).__name__}: {exc}"
    return info


def preflight(backend) -> dict:
    """An elementwise op, a reduction, a matrix product and one custom kernel, checked against NumPy."""
    info = {"device_name": backend.device_name, "backend": backend.name, "python": platform.python_version(),
            "numpy": np.__version__}  # fmt: skip
    rng = np.random.default_rng(0)
    a = rng.standard_normal((257, 129)).astype(np.float32)
    b = rng.standard_normal((129, 65)).astype(np.float32)
    da, db = backend.asarray(a), backend.asarray(b)
    checks = {
        "elementwise": (backend.to_host(da * 2.0 + 1.0), a * 2.0 + 1.0),
        "reduction": (backend.to_host(da.sum(axis=0)), a.astype(np.float64).sum(axis=0)),
        "matmul": (backend.to_host(da @ db), a.astype(np.float64) @ b),
    }
    if backend.name == "cupy":
        import cupy

        info.update(cupy=cupy.__version__, cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                    cuda_driver=cupy.cuda.runtime.driverGetVersion(), kernels=kernels.enabled())  # fmt: skip
        info.update(lock_cards())
        from scratchcnn import layers

        logits = rng.standard_normal((9, 10)).astype(np.float32)
        y = rng.integers(0, 10, 9)
        want = layers.softmax_cross_entropy(logits, y)[1]
        checks["custom kernel"] = (backend.to_host(kernels.softmax_cross_entropy(
            cupy.asarray(logits), cupy.asarray(y))[1]), want)  # fmt: skip
    backend.synchronize()
    for name, (got, want) in checks.items():
        err = float(np.linalg.norm(got - want) / np.linalg.norm(want))
        info[f"{name} rel error"] = err
        if not err < 1e-5:
            raise RuntimeError(f"preflight: {name} on {backend.device_name} is off by {err:.2e}")
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = bool(torch.cuda.is_available())
    except Exception as exc:
        info["torch"] = f"unavailable ({type(exc).__name__}: {exc})"
    return info


def training_setup(backend, filters, batch, images):
    """A training step on random data as a function of nothing, keeping the epoch's sums as
    training.train does."""
    arch, opt, bn, x, y = random_problem(backend, filters, images)
    state = {"bn": bn, "b": 0, "sums": training.EpochSums.zeros(backend.xp)}
    # the batch gathered through a device permutation, as training.train does (two launches a step)
    order = backend.asarray(np.random.default_rng(0).permutation(images))

    def step():
        lo = state["b"] * batch % images
        idx = order[lo : lo + batch]
        state["bn"] = training.train_step(opt, state["bn"], x[idx], y[idx], arch, RECIPE, RECIPE.lr, state["sums"])
        state["b"] += 1

    return arch, opt, state, x, y, step


# --------------------------------------------------------------------------- #
# Kernel launches per step


def node_type_name(kind) -> str:
    """``kernel`` for ``CU_GRAPH_NODE_TYPE_KERNEL``. By the member's name: its ``str()`` is ``'0'``
    for cuda-bindings 12's IntEnum on Python 3.11+ and ``'<CUgraphNodeType....: 0>'`` for 13's."""
    return getattr(kind, "name", str(kind)).removeprefix("CU_GRAPH_NODE_TYPE_").lower()


def count_graph_nodes(graph_handle) -> dict:
    """Node counts by type of a captured CUDA graph (driver API through cuda-bindings)."""
    from cuda.bindings import driver

    g = driver.CUgraph(graph_handle)
    err, _, n = driver.cuGraphGetNodes(g, 0)
    if err != driver.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"cuGraphGetNodes: {err}")
    err, nodes, n = driver.cuGraphGetNodes(g, n)
    if err != driver.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"cuGraphGetNodes: {err}")
    counts: dict = {}
    for node in nodes:
        err, kind = driver.cuGraphNodeGetType(node)
        if err != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"cuGraphNodeGetType: {err}")
        name = node_type_name(kind)
        counts[name] = counts.get(name, 0) + 1
    return counts


def count_dot_nodes(graph_handle) -> dict:
    """Node count of a captured CUDA graph read from its DOT dump (when cuda-bindings is missing)."""
    import cupy

    path = Path(tempfile.mkdtemp()) / "step.dot"
    cupy.cuda.runtime.graphDebugDotPrint(graph_handle, str(path), 0)
    text = path.read_text()
    nodes = [line for line in text.splitlines() if re.match(r'^\s*"?\w+"?\s*\[', line) and "->" not in line]
    return {"nodes": len(nodes)}


def launches_by_graph(step) -> tuple[int, dict, str]:
    """Capture one step on a fresh stream as a CUDA graph and count its nodes (nothing runs)."""
    import cupy

    # the step's inputs were made on the legacy default stream, which a non-blocking stream does not wait for
    cupy.cuda.Device().synchronize()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        for _ in range(3):  # the pool holds this stream's blocks; no cudaMalloc during capture
            step()
        stream.synchronize()
        cupy.cuda.runtime.streamBeginCapture(stream.ptr, cupy.cuda.runtime.streamCaptureModeRelaxed)
        try:
            step()
        finally:
            handle = cupy.cuda.runtime.streamEndCapture(stream.ptr)
    try:
        try:
            counts, method = count_graph_nodes(handle), "CUDA graph of one step (cuGraphGetNodes)"
        except ImportError:
            counts, method = count_dot_nodes(handle), "CUDA graph of one step (DOT dump)"
    finally:
        cupy.cuda.runtime.graphDestroy(handle)
    launches = sum(v for k, v in counts.items() if k in ("kernel", "memset", "memcpy", "nodes"))
    if not launches:  # a step launches something: the node types were misread; let the profiler count
        raise RuntimeError(f"no kernel, memset or memcpy node among {counts}")
    return launches, counts, method


def profile_step(step) -> tuple[list, str]:
    """One step's CUDA kernels, memsets and copies as PyTorch's profiler (CUPTI) sees them:
    ``[(name, microseconds on the device)]`` and the event attribute the durations came from."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.init()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    events = [e for e in prof.events() if str(e.device_type).endswith("CUDA")]
    # the attribute's name changed across PyTorch versions (cuda_time, then device_time)
    attr = next((a for a in ("device_time", "cuda_time", "device_time_total", "cuda_time_total")
                 if events and isinstance(getattr(events[0], a, None), (int, float))), None)  # fmt: skip
    return [(e.name, float(getattr(e, attr)) if attr else None) for e in events], attr or "none"


def launches_by_profiler(step) -> tuple[int, dict, str]:
    """CUDA kernels, memsets and copies of one step as PyTorch's profiler (CUPTI) sees them."""
    events, _ = profile_step(step)
    return len(events), {"events": len(events)}, "PyTorch profiler (CUPTI) over one step"


def run_steps(backend, step, steps, warmup=5) -> tuple[float, float]:
    """Seconds for ``steps`` steps back to back after ``warmup``: until the device finished them,
    and until the host had queued them."""
    for _ in range(warmup):
        step()
    backend.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    queued = time.perf_counter() - t0
    backend.synchronize()
    return time.perf_counter() - t0, queued


def step_timing(backend, step, steps=200) -> dict:
    """Wall time per step over ``steps`` steps, and the device time of one step's kernels (profiler):
    a device busy for most of the wall time is the limit; a device mostly idle waits for the launches."""
    wall, queued = run_steps(backend, step, steps)
    out = {"wall_ms_per_step": round(1e3 * wall / steps, 3), "queued_ms_per_step": round(1e3 * queued / steps, 3)}
    try:
        events, attr = profile_step(step)
    except Exception as exc:  # noqa: BLE001 - the wall time stands without it
        out["profiler_error"] = f"{type(exc).__name__}: {exc}"
        return out
    busy: dict = {}
    for name, us in events:
        busy[name] = busy.get(name, 0.0) + (us or 0.0)
    if attr != "none" and sum(busy.values()) > 0:  # all zeros: the attribute exists but was not filled
        out["device_ms_per_step"] = round(sum(busy.values()) / 1e3, 3)
        out["busiest_kernels_us"] = {k[:80]: round(v, 1) for k, v in sorted(busy.items(), key=lambda kv: -kv[1])[:12]}
        # in launch order, so that each product's kernel can be told from the others of its name
        out["kernels_in_order_us"] = [[name[:60], round(us or 0.0, 1)] for name, us in events]
        out["duration_attribute"] = attr
    else:
        out["device_ms_per_step"] = None
        out["duration_attribute"] = f"{attr} (no durations recorded)"
    return out


def count_launches(backend, filters=64, batch=64) -> dict:
    if backend.name != "cupy":
        return {"method": "not applicable on the CPU"}
    out = {}
    for mode in ("kernels", "no_kernels"):
        os.environ["SCRATCHCNN_KERNELS"] = "1" if mode == "kernels" else "0"
        _, _, _, _, _, step = training_setup(backend, filters, batch, batch * 4)
        errors = []
        for how in (launches_by_graph, launches_by_profiler):
            try:
                n, detail, method = how(step)
                out[mode] = n
                out[f"{mode}_detail"] = detail
                out["method"] = method
                break
            except Exception as exc:  # noqa: PERF203 - report each method's failure
                errors.append(f"{how.__name__}: {type(exc).__name__}: {exc}")
        else:
            out[mode] = LAUNCH_ESTIMATE[mode]
            out["method"] = "estimate read from the code (no graph capture or profiler worked)"
        if errors:
            out[f"{mode}_errors"] = errors
        out[f"{mode}_timing"] = step_timing(backend, step)
    os.environ["SCRATCHCNN_KERNELS"] = "1"
    # 256 filters stayed furthest from half of PyTorch's time (0.78 on an H200): where its step goes
    if filters != 256:
        out["kernels_timing_256_filters"] = step_timing(backend, training_setup(backend, 256, batch, batch * 4)[-1])
    out.update(filters=filters, batch_size=batch)
    return out


# --------------------------------------------------------------------------- #
# Gradients against float64, layer by layer (issue 10's W1 and W2 at 256 filters, batch 64)


def rel(a, b) -> float:
    a, b = (np.asarray(v, np.float64) for v in (a, b))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30))


class Recorder:
    """Each convolution's backward inputs and weight gradient (layer 2 first, the order backward runs),
    and the forward caches."""

    def __init__(self):
        self.convs, self.caches = [], None

    def __enter__(self):
        self.originals = layers.conv2d_backward, cnn.forward
        backward, forward = self.originals

        def recorded(dout, cache, *args, **kw):
            dx, dW, db = backward(dout, cache, *args, **kw)
            # a copy: the L2 term is added to the gradient in place afterwards
            self.convs.append({"dout": dout, "cols": cache[0], "dW": dW.copy()})
            return dx, dW, db

        def kept(*args, **kw):
            logits, self.caches, state = forward(*args, **kw)
            return logits, self.caches, state

        layers.conv2d_backward, cnn.forward = recorded, kept
        return self

    def __exit__(self, *exc):
        layers.conv2d_backward, cnn.forward = self.originals


def gradients(params, bn, x, y, arch, to_device=None, routing=None):
    """Loss gradients and a :class:`Recorder` of the run, on NumPy or (with ``to_device``) CuPy;
    ``routing``: another run's forward caches, whose max-pooling choices this (NumPy) run takes
    where the two differ, near-ties only (gpu_problem.routed_like); the Recorder's ``moved`` counts them."""
    if to_device is not None:
        params, bn = ({k: to_device(v) for k, v in d.items()} for d in (params, bn))
        x, y = to_device(x), to_device(y)
    with routed_like(routing) if routing is not None else contextlib.nullcontext([0]) as moved, Recorder() as rec:
        grads = cnn.loss_and_grads(params, bn, x, y, arch, 1e-3, momentum=0.8)[2]
    rec.convs = {f"conv{2 - i}": c for i, c in enumerate(rec.convs)}
    rec.moved = moved[0]
    return grads, rec


def errors(host, grads, rec, ref_grads, ref) -> dict:
    """Every weight gradient and each convolution's incoming gradient against the float64 run, and
    each weight-gradient product alone (this run's float32 operands multiplied in float64 on the host)."""
    out = {k: rel(ref_grads[k], host(grads[k])) for k in (*cnn.WEIGHT_NAMES, "gamma1", "gamma2", "beta1", "beta2")}
    for name, c in rec.convs.items():
        out[f"{name}.dout"] = rel(host(ref.convs[name]["dout"]), host(c["dout"]))
        f = c["dout"].shape[-1]
        d32 = host(c["dout"]).reshape(-1, f)
        want = d32.astype(np.float64).T @ host(c["cols"]).reshape(d32.shape[0], -1).astype(np.float64)
        out[f"{name}.product_alone"] = rel(want, host(c["dW"]).reshape(f, -1))
    out = {k: float(f"{v:.3g}") for k, v in out.items()}
    out["pooling_routed_differently"] = ref.moved  # near-ties the float64 reference was routed alike at
    return out


def ms_per_call(backend, fn, repeats=20) -> float:
    """Milliseconds per call of ``fn`` over ``repeats`` calls back to back, after one to warm up."""
    fn()
    backend.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    backend.synchronize()
    return 1e3 * (time.perf_counter() - t0) / repeats


def accuracy(backend, filters=256, batch=64) -> dict:
    """NumPy float32 and CuPy (kernels on and off) against NumPy float64 on the GPU tests' state, layer
    by layer, the float64 run's max pooling routed as each one's where they differ (near-ties only:
    there a correct float32 run may pick the other pixel, tests/gpu_problem.py)."""
    arch = cnn.make_arch(filters)
    params, bn = random_state(arch, filters)
    x, y = make_batch(batch, batch)
    as64 = ({k: v.astype(np.float64) for k, v in params.items()}, {k: v.astype(np.float64) for k, v in bn.items()})

    def row(host, to_device=None):
        grads, rec = gradients(params, bn, x, y, arch, to_device)
        ref_grads, ref = gradients(*as64, x.astype(np.float64), y, arch, routing=rec.caches)
        return errors(host, grads, rec, ref_grads, ref)

    result = {"filters": filters, "batch": batch, "reference": "NumPy float64, same state and batch, pooling routed alike"}
    result["numpy_float32"] = row(np.asarray)
    if backend.name != "cupy":
        return result
    import cupy

    saved = os.environ.get("SCRATCHCNN_KERNELS")
    try:
        for kern in ("1", "0"):
            os.environ["SCRATCHCNN_KERNELS"] = kern
            result[f"cupy_kernels_{'on' if kern == '1' else 'off'}"] = row(cupy.asnumpy, cupy.asarray)
    finally:
        if saved is None:
            os.environ.pop("SCRATCHCNN_KERNELS")
        else:
            os.environ["SCRATCHCNN_KERNELS"] = saved
    return result


# --------------------------------------------------------------------------- #
# Where a training step's time goes, stage by stage

# The functions timed, at two depths, each in runs of its own (one depth's synchronisations would
# blur the other's host times): the layers as the model calls them, and the parts of a layer
# where the choices lie (the window copies, the weight-gradient product, the column sums).
STAGES = {
    "layers": ((layers, ("conv2d_forward", "bn_relu_pool_forward", "affine_forward", "softmax_cross_entropy",
                         "affine_backward", "bn_relu_pool_backward", "conv2d_backward")),
               (training.FlatSGD, ("step",))),
    "parts": ((layers, ("im2col", "col2im", "weight_gradient", "column_sum")),),
}  # fmt: skip


class StageClock:
    """Times every call of ``targets`` ((owner, names) pairs) on its own, the device synchronised
    before and after it. ``records`` gets ``(name, host_s, total_s)`` per call in call order: host
    until the call returned (Python and launching), total until its device work was done as well."""

    def __init__(self, backend, targets):
        self.backend, self.targets, self.records, self._saved = backend, targets, [], []

    def _timed(self, name, original):
        def timed(*args, **kwargs):
            self.backend.synchronize()
            t0 = time.perf_counter()
            result = original(*args, **kwargs)
            t1 = time.perf_counter()
            self.backend.synchronize()
            self.records.append((name, t1 - t0, time.perf_counter() - t0))
            return result

        return timed

    def __enter__(self):
        for owner, names in self.targets:
            for name in names:
                original = owner.__dict__[name]
                self._saved.append((owner, name, original))
                setattr(owner, name, self._timed(name, original))
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()


def median_ms(values) -> float:
    return round(1e3 * float(np.median(values)), 4)


def timed_steps(backend, step, targets, steps) -> dict:
    """Medians over ``steps`` steps: each timed call, labelled by its place among the step's timed
    calls and its name (the model runs layer 1 then 2 forward, 2 then 1 backward), the step with
    its calls timed, and what lies outside them."""
    with StageClock(backend, targets) as clock:
        for _ in range(2):  # warm: a new setting's first calls compile or allocate
            step()
        totals, calls = [], {}
        for _ in range(steps):
            clock.records.clear()
            backend.synchronize()
            t0 = time.perf_counter()
            step()
            backend.synchronize()
            totals.append(time.perf_counter() - t0)
            for i, (name, host, total) in enumerate(clock.records, 1):
                calls.setdefault(f"{i:02d} {name}", []).append((host, total))
    stages = {label: {"host_ms": median_ms([h for h, _ in v]), "total_ms": median_ms([t for _, t in v])}
              for label, v in calls.items()}  # fmt: skip
    step_ms = median_ms(totals)
    return {"step_ms": step_ms, "outside_ms": round(step_ms - sum(v["total_ms"] for v in stages.values()), 4),
            "stages": stages}  # fmt: skip


def products(backend, arch, batch) -> dict:
    """The step's matrix products on random operands, each as the code writes it and transposed
    (the same product with the operands swapped, so cuBLAS picks another kernel), the weight
    gradients also per image, with the flops and the best time's TFLOPS."""
    rng = np.random.default_rng(0)

    def r(*shape):
        return backend.asarray(rng.standard_normal(shape, dtype=np.float32))

    shapes = cnn.layer_shapes(arch)
    k, c = arch["kernel_size"], arch["input_shape"][2]
    (h1, w1, f1), (h2, w2, f2) = shapes["conv1"], shapes["conv2"]
    m1, m2, k1, k2, d = batch * h1 * w1, batch * h2 * w2, k * k * c, k * k * f1, int(np.prod(shapes["pool2"]))
    cols1, w1m, d1, cols2, w2m, d2 = r(m1, k1), r(f1, k1), r(m1, f1), r(m2, k2), r(f2, k2), r(m2, f2)
    x3, w3, d3 = r(batch, d), r(d, arch["num_classes"]), r(batch, arch["num_classes"])
    pad = -k1 % 32  # conv1's 27 columns padded to a multiple of 32, as an im2col could write them
    cols1p, w1p = r(m1, k1 + pad), r(f1, k1 + pad)
    cases = {  # name: (as the code writes it, the same product transposed, flops)
        "conv1.forward": (lambda: cols1 @ w1m.T, lambda: (w1m @ cols1.T).T, m1 * k1 * f1),
        "conv1.forward_k_padded": (lambda: cols1p @ w1p.T, lambda: (w1p @ cols1p.T).T, m1 * (k1 + pad) * f1),
        "conv1.weights": (lambda: d1.T @ cols1, lambda: (cols1.T @ d1).T, m1 * k1 * f1),
        "conv2.forward": (lambda: cols2 @ w2m.T, lambda: (w2m @ cols2.T).T, m2 * k2 * f2),
        "conv2.weights": (lambda: d2.T @ cols2, lambda: (cols2.T @ d2).T, m2 * k2 * f2),
        "conv2.input": (lambda: d2 @ w2m, lambda: (w2m.T @ d2.T).T, m2 * k2 * f2),
        "fc.forward": (lambda: x3 @ w3, lambda: (w3.T @ x3.T).T, batch * d * arch["num_classes"]),
        "fc.weights": (lambda: x3.T @ d3, lambda: (d3.T @ x3).T, batch * d * arch["num_classes"]),
        "fc.input": (lambda: d3 @ w3.T, lambda: (w3 @ d3.T).T, batch * d * arch["num_classes"]),
    }
    # the weight gradients sum over every output pixel of the batch (65,536 rows in the first layer
    # at batch 64): also as one product per image in a batched call, the images' products then added,
    # in case cuBLAS runs the long sum on too few blocks
    per_image = {
        "conv1.weights": lambda: backend.xp.matmul(d1.reshape(batch, -1, f1).transpose(0, 2, 1),
                                                   cols1.reshape(batch, -1, k1)).sum(axis=0),
        "conv2.weights": lambda: backend.xp.matmul(d2.reshape(batch, -1, f2).transpose(0, 2, 1),
                                                   cols2.reshape(batch, -1, k2)).sum(axis=0),
    }  # fmt: skip
    out = {}
    for name, (as_written, transposed, flops) in cases.items():
        row = {"flops": 2 * flops, "ms": round(ms_per_call(backend, as_written), 4),
               "transposed_ms": round(ms_per_call(backend, transposed), 4)}  # fmt: skip
        if name in per_image:
            row["per_image_ms"] = round(ms_per_call(backend, per_image[name]), 4)
        row["tflops"] = round(2 * flops / (1e-3 * min(v for k, v in row.items() if k.endswith("ms"))) / 1e12, 2)
        out[name] = row
    return out


def column_sums(backend, arch, batch) -> dict:
    """The step's column sums (the bias gradients) on random operands: ``ms`` as the step runs them
    (layers.column_sum: the kernel pair where the kernels run), and on CuPy ``cupy_ms`` with CuPy's
    own reduction over the rows (added in float64, cast back), which the kernels replaced: by a
    reading of CuPy's block sizes it sums the first layer's 65,536 rows of 32 columns in one block."""
    rng = np.random.default_rng(0)
    shapes = cnn.layer_shapes(arch)
    (h1, w1, f1), (h2, w2, f2) = shapes["conv1"], shapes["conv2"]
    out = {}
    for name, (m, c) in {"conv1.bias": (batch * h1 * w1, f1), "conv2.bias": (batch * h2 * w2, f2),
                         "fc.bias": (batch, arch["num_classes"])}.items():  # fmt: skip
        a = backend.asarray(rng.standard_normal((m, c), dtype=np.float32))
        row = {"rows": m, "columns": c, "ms": round(ms_per_call(backend, lambda a=a: layers.column_sum(a)), 4)}
        if backend.name == "cupy":
            row["cupy_ms"] = round(ms_per_call(backend, lambda a=a: layers.cupy_column_sum(a)), 4)
        out[name] = row
    return out


def stage_times(backend, filters_list, batch=64, steps=20, save=lambda partial: None) -> dict:
    """Where a training step goes at each filter count (with the loss sums training.train keeps):
    the layers and their parts, timed one call at a time; the step untimed, and on the kernels also
    with CuPy's column sums; the matrix products and the column sums alone. ``save`` gets the
    results after each filter count: a timeout at the last keeps the others."""
    out = {"batch": batch, "steps": steps, "kernels": backend.name == "cupy" and kernels.enabled()}
    for filters in filters_list:
        arch, _, _, _, _, step = training_setup(backend, filters, batch, batch * 4)
        row = {"step_ms_untimed": round(1e3 * run_steps(backend, step, steps, warmup=3)[0] / steps, 4)}
        if out["kernels"]:  # the same step with the bias gradients summed by CuPy's reduction, as before 2026-11-29
            with contextlib.ExitStack() as undo:
                undo.callback(setattr, kernels, "column_sum", kernels.column_sum)
                kernels.column_sum = layers.cupy_column_sum
                row["step_ms_untimed_cupy_column_sums"] = round(1e3 * run_steps(backend, step, steps, warmup=3)[0] / steps, 4)
        for depth, targets in STAGES.items():
            row[depth] = timed_steps(backend, step, targets, steps)
        row["products"] = products(backend, arch, batch)
        row["column_sums"] = column_sums(backend, arch, batch)
        out[str(filters)] = row
        save(out)
    return out


# --------------------------------------------------------------------------- #
# Peak memory


class Peak:
    """Peak memory of a block: CuPy's pool growth on the GPU, NumPy's allocations on the CPU."""

    def __init__(self, backend):
        self.backend = backend

    def __enter__(self):
        if self.backend.name == "cupy":
            self.pool = self.backend.xp.get_default_memory_pool()
            self.backend.synchronize()
            self.pool.free_all_blocks()
            self.base = self.pool.used_bytes()
        else:
            tracemalloc.start()
            self.base = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc):
        if self.backend.name == "cupy":
            self.backend.synchronize()
            self.bytes = self.pool.total_bytes() - self.base  # the pool keeps what it took
        else:
            self.bytes = tracemalloc.get_traced_memory()[1] - self.base
            tracemalloc.stop()
        self.mb = round(self.bytes / 2**20, 1)


def peak_memory(backend, filters, train_batch, eval_images, steps=5) -> dict:
    """Peak memory of training steps and of evaluation, besides the data and the parameters."""
    arch, opt, state, x, y, step = training_setup(backend, filters, train_batch, train_batch * 2)
    step()
    with Peak(backend) as train_peak:
        for _ in range(steps):
            step()
    rng = np.random.default_rng(1)
    xv = backend.asarray(rng.random((eval_images, 32, 32, 3), dtype=np.float32))
    yv = backend.asarray(rng.integers(0, 10, eval_images))
    with Peak(backend) as eval_peak:
        loss, acc = cnn.evaluate(opt.params, state["bn"], xv, yv, arch, batch_size=1000)
        float(loss)
    host = backend.to_host(xv)
    with Peak(backend) as predict_peak:
        cnn.predict_logits({**opt.params, **state["bn"]}, arch, host, backend=backend, batch_size=1000)
    # evaluation asks for slices of 1000 and gets what cnn.EVAL_MEMORY_BYTES allows (44 at 256 filters)
    return {"filters": filters, "train_batch": train_batch, "eval_images": eval_images, "eval_batch_asked": 1000,
            "eval_batch": min(1000, cnn.eval_batch_limit(arch)),
            "peak_train_mb": train_peak.mb, "peak_eval_mb": max(eval_peak.mb, predict_peak.mb),
            "peak_evaluate_mb": eval_peak.mb, "peak_predict_logits_mb": predict_peak.mb,
            "measured_as": "CuPy pool growth" if backend.name == "cupy" else "tracemalloc peak"}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["preflight", "launches", "memory", "accuracy", "stages"])
    p.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    p.add_argument("--filters", type=int, nargs="+", default=None,
                   help="default: 64 (launches), 256 (memory, accuracy), 32 and 256 (stages, which takes several)")
    p.add_argument("--eval-images", type=int, default=5000)
    p.add_argument("--steps", type=int, default=20, help="stages: training steps per median (default 20)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.filters and len(args.filters) > 1 and args.what != "stages":
        p.error(f"{args.what} takes one filter count, not {len(args.filters)}")
    t0 = time.perf_counter()
    try:
        backend = get_backend(args.device)
    except BackendError as exc:
        print(f"gpu_probe {args.what}: FAILED: {exc}", file=sys.stderr)
        return 1
    try:
        if args.what == "preflight":
            result = preflight(backend)
        elif args.what == "stages":
            result = stage_times(backend, args.filters or [32, 256], steps=args.steps,
                                 save=lambda partial: args.json and args.json.write_text(json.dumps(partial, indent=1)))
        elif args.what == "accuracy":
            result = accuracy(backend, (args.filters or [256])[0])
        elif args.what == "launches":
            result = count_launches(backend, (args.filters or [64])[0])
        else:
            result = peak_memory(backend, (args.filters or [256])[0], 64, args.eval_images)
    except Exception as exc:
        print(f"gpu_probe {args.what}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Seconds per training epoch: scratchcnn on the backend at hand vs PyTorch (when installed).

Random CIFAR-shaped data (speed does not depend on content), the study's
network and recipe (SGD, L2 on weights, clip 5.0 per array) through the
training loop's own steps (``training.BatchSteps``), side by side in one
process. Our time is printed before PyTorch runs, so a PyTorch failure loses
no row. Both run in full float32 (TF32 off on both sides).

    python benchmarks/epoch_speed.py --filters 32 64 128 256 --batch-size 64
    python benchmarks/epoch_speed.py --images 4500   # a tenth of an epoch, scaled up
    SCRATCHCNN_KERNELS=0 python benchmarks/epoch_speed.py --device gpu --no-torch  # without custom kernels
    SCRATCHCNN_GRAPH=1 python benchmarks/epoch_speed.py --device gpu --no-torch    # the step as a CUDA graph
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from scratchcnn import graph, kernels
from scratchcnn import model as cnn
from scratchcnn import training
from scratchcnn.backend import get_backend

EPOCH = 45000


def config_recipe(epochs=1) -> training.TrainConfig:
    """The training recipe of config/config.yaml (its one home), for ``epochs`` epochs."""
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    t, m = config["train"], config["model"]
    return training.TrainConfig(lr=t["lr"], reg=t["reg"], batch_size=t["batch_size"], epochs=epochs,
                                lr_decay=t["lr_decay"], lr_step=t["lr_step"], clip=t["clip"] or None,
                                bn_momentum=m["bn_momentum"], seed=config["seed"])  # fmt: skip


RECIPE = config_recipe()


def random_problem(backend, filters, images):
    """The network at ``filters``, its optimiser and BN state, and ``images`` random CIFAR-shaped
    images with labels on the backend (speed does not depend on content)."""
    arch = cnn.make_arch(filters)
    params, bn = cnn.init_params(arch, 0, backend)
    opt = training.FlatSGD(params)
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.random((images, 32, 32, 3), dtype=np.float32))
    y = backend.asarray(rng.integers(0, 10, images))
    return arch, opt, bn, x, y


def time_scratchcnn(backend, filters, batch, images, warmup=3):
    """Seconds for ``images`` images of training steps, the peak memory-pool growth on the GPU
    (the CUDA graph's own pool included), and why the graph was not used where it was asked for."""
    arch, opt, bn, x, y = random_problem(backend, filters, images)
    order = backend.asarray(np.random.default_rng(0).permutation(images))
    sums = training.EpochSums.zeros(backend.xp)  # kept as training.train keeps them
    steps = training.BatchSteps(opt, bn, x, y, arch, RECIPE, sums, log=print)  # the loop's own steps

    def step(idx):
        steps(idx, RECIPE.lr)

    for _ in range(warmup):  # with the graph: a plain step, then the capture and a replay
        step(order[:batch])
    peak = None
    if backend.name == "cupy":
        pool = backend.xp.get_default_memory_pool()
        backend.synchronize()
        pool.free_all_blocks()
        base = pool.used_bytes()  # the data, parameters and buffers: what stays between steps
        step(order[:batch])  # the step's blocks taken again here, not by the first timed step (cudaMalloc)
    backend.synchronize()
    start = time.perf_counter()
    for b in range(0, images, batch):
        step(order[b : b + batch])
    backend.synchronize()
    seconds = time.perf_counter() - start
    if backend.name == "cupy":
        peak = pool.total_bytes() - base  # the pool keeps what it took: its growth is the peak
        peak += steps.graph.memory_bytes() if steps.graph else 0
    graph_failed = steps.graph.failed if steps.graph else None
    return seconds, peak, graph_failed


def time_torch(filters, batch, images, device, warmup=3):
    import torch
    from torch import nn

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    dev = torch.device(device)
    net = nn.Sequential(
        nn.Conv2d(3, filters, 3, padding=1), nn.BatchNorm2d(filters), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(filters, filters, 3), nn.BatchNorm2d(filters), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(7 * 7 * filters, 10),
    ).to(dev)  # fmt: skip
    opt = torch.optim.SGD(net.parameters(), lr=RECIPE.lr)
    x = torch.rand(images, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (images,), device=dev)
    order = torch.randperm(images, device=dev)
    weights = [m.weight for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    params = list(net.parameters())

    def step(idx):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        loss = loss + 0.5 * RECIPE.reg * sum((w * w).sum() for w in weights)
        loss.backward()
        # each array clipped on its own, as clip_grad_norm_([p], clip) would (max_norm / (norm + 1e-6),
        # at most 1), but with the foreach calls clip_grad_norm_ itself uses: a call per array cost
        # the baseline about 0.5 ms of host time a step, which would flatter our ratio
        grads = [p.grad for p in params]
        scale = torch.stack(torch._foreach_norm(grads)).add_(1e-6).reciprocal_().mul_(RECIPE.clip).clamp_(max=1.0)
        torch._foreach_mul_(grads, list(scale.unbind()))
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step(order[:batch])
    sync()
    start = time.perf_counter()
    for b in range(0, images, batch):
        step(order[b : b + batch])
    sync()
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--filters", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--images", type=int, default=EPOCH, help=f"images timed; the epoch time is scaled to {EPOCH:,}")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json", type=Path, help="also write the rows here (rewritten after each row)")
    args = p.parse_args()
    backend = get_backend(args.device)
    torch, torch_error = None, None
    if not args.no_torch:
        try:
            import torch

            if backend.name == "numpy":
                torch.set_num_threads(max(1, torch.get_num_threads()))
        except Exception as exc:  # not installed, or broken: our rows still count
            torch, torch_error = None, f"{type(exc).__name__}: {exc}"
    torch_device = "cuda" if backend.name == "cupy" else "cpu"
    scale = EPOCH / args.images
    result = {
        "backend": backend.name, "device": backend.device_name, "batch_size": args.batch_size,
        "images_timed": args.images, "kernels": backend.name == "cupy" and kernels.enabled(),
        "cuda_graph": backend.name == "cupy" and kernels.enabled() and graph.enabled(),
        "torch": (torch.__version__ if torch else None), "torch_error": torch_error, "rows": [],
    }  # fmt: skip
    print(f"backend {backend.name} on {backend.device_name}; batch {args.batch_size}; custom kernels "
          f"{'on' if result['kernels'] else 'off'}; CUDA graph of the step {'on' if result['cuda_graph'] else 'off'}; "
          f"{args.images} images timed, seconds scaled to a {EPOCH:,}-image epoch")  # fmt: skip
    if torch_error:
        print(f"PyTorch unavailable: {torch_error}")
    print(f"{'filters':>7} {'scratchcnn s':>12} {'peak GPU MB':>11} {'torch s':>8} {'ratio':>6}")
    for f in args.filters:
        ours, peak, graph_failed = time_scratchcnn(backend, f, args.batch_size, args.images)
        ours *= scale
        row = {"filters": f, "scratchcnn": round(ours, 3), "peak_mb": None if peak is None else round(peak / 2**20, 1),
               "torch": None, "ratio": None}  # fmt: skip
        if graph_failed:  # the plain steps were timed instead
            row["graph_failed"] = graph_failed
        result["rows"].append(row)
        peak_mb = f"{peak / 2**20:11.0f}" if peak is not None else "          -"
        print(f"{f:7d} {ours:12.2f} {peak_mb}", end="", flush=True)  # ours first: it survives a PyTorch crash
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        if torch is not None:
            try:
                ref = time_torch(f, args.batch_size, args.images, torch_device) * scale
                row.update(torch=round(ref, 3), ratio=round(ours / ref, 3))
                print(f" {ref:8.2f} {ours / ref:6.2f}", flush=True)
            except Exception as exc:
                row["torch_error"] = f"{type(exc).__name__}: {exc}"
                print(f"  PyTorch failed: {row['torch_error']}", flush=True)
        else:
            print(flush=True)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    if torch is not None:
        print(f"torch {torch.__version__} on {torch_device}; ratio = scratchcnn / torch (below 1: we are faster)")


if __name__ == "__main__":
    main()

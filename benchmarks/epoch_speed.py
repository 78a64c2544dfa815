"""Seconds per training epoch: scratchcnn on the backend at hand vs PyTorch (when installed).

Random CIFAR-shaped data (speed does not depend on content), the study's
network and recipe (SGD, L2 on weights, clip 5.0 per array), side by side in
one process. Prints both times and their ratio.

    python benchmarks/epoch_speed.py --filters 32 64 128 256 --batch-size 64
    python benchmarks/epoch_speed.py --images 4500   # a tenth of an epoch, scaled up
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scratchcnn import model as cnn
from scratchcnn import training
from scratchcnn.backend import get_backend


def time_scratchcnn(backend, filters, batch, images, warmup=3):
    arch = cnn.make_arch(filters)
    params, bn = cnn.init_params(arch, 0, backend)
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.random((images, 32, 32, 3), dtype=np.float32))
    y = backend.asarray(rng.integers(0, 10, images))
    order = backend.asarray(rng.permutation(images))

    def step(idx):
        nonlocal bn
        _, _, grads, _, bn = cnn.loss_and_grads(params, bn, x[idx], y[idx], arch, 1e-3)
        training.sgd_step(params, grads, 0.01, 5.0)

    for b in range(warmup):
        step(order[b * batch : (b + 1) * batch])
    peak = None
    if backend.name == "cupy":
        pool = backend.xp.get_default_memory_pool()
        backend.synchronize()
        pool.free_all_blocks()
        base = pool.used_bytes()
    backend.synchronize()
    start = time.perf_counter()
    for b in range(0, images, batch):
        step(order[b : b + batch])
    backend.synchronize()
    seconds = time.perf_counter() - start
    if backend.name == "cupy":
        peak = pool.total_bytes() - base
    return seconds, peak


def time_torch(filters, batch, images, device, warmup=3):
    import torch
    from torch import nn

    torch.manual_seed(0)
    dev = torch.device(device)
    net = nn.Sequential(
        nn.Conv2d(3, filters, 3, padding=1), nn.BatchNorm2d(filters), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(filters, filters, 3), nn.BatchNorm2d(filters), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(7 * 7 * filters, 10),
    ).to(dev)  # fmt: skip
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.rand(images, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (images,), device=dev)
    order = torch.randperm(images, device=dev)
    weights = [m.weight for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]

    def step(idx):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        loss = loss + 0.5e-3 * sum((w * w).sum() for w in weights)
        loss.backward()
        for p in net.parameters():
            torch.nn.utils.clip_grad_norm_([p], 5.0)
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for b in range(warmup):
        step(order[b * batch : (b + 1) * batch])
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
    p.add_argument("--images", type=int, default=45000, help="images timed; the epoch time is scaled to 45,000")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args()
    backend = get_backend(args.device)
    try:
        import torch

        torch_device = "cuda" if backend.name == "cupy" else "cpu"
        torch_version = torch.__version__
        if torch_device == "cpu":
            torch.set_num_threads(max(1, torch.get_num_threads()))
    except ImportError:
        torch = None
    scale = 45000 / args.images
    print(f"backend {backend.name} on {backend.device_name}; batch {args.batch_size}; "
          f"{args.images} images timed, seconds scaled to a 45,000-image epoch")  # fmt: skip
    print(f"{'filters':>7} {'scratchcnn s':>12} {'torch s':>8} {'ratio':>6} {'peak GPU MB':>11}")
    for f in args.filters:
        ours, peak = time_scratchcnn(backend, f, args.batch_size, args.images)
        ours *= scale
        ref = None
        if torch is not None and not args.no_torch:
            ref = time_torch(f, args.batch_size, args.images, torch_device) * scale
        ratio = f"{ours / ref:6.2f}" if ref else "     -"
        peak_mb = f"{peak / 2**20:11.0f}" if peak is not None else "          -"
        print(f"{f:7d} {ours:12.1f} {ref if ref else float('nan'):8.1f} {ratio} {peak_mb}", flush=True)
    if torch is not None and not args.no_torch:
        print(f"torch {torch_version} on {torch_device}; ratio = scratchcnn / torch (below 1: we are faster)")


if __name__ == "__main__":
    main()

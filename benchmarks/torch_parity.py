"""The study's network and recipe in PyTorch, as an accuracy peer for scratchcnn.

Trains on a prepared dataset (results/data/cifar10.npz), keeps the
best-validation weights and prints their test accuracy. PyTorch is used here
only as a reference; the project itself never imports it.

    python benchmarks/torch_parity.py --data results/data/cifar10.npz \
        --lr 0.1 --reg 1e-4 --filters 32 --epochs 20
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

from scratchcnn.data import load_prepared


def build(filters):
    net = nn.Sequential(
        nn.Conv2d(3, filters, 3, padding=1), nn.BatchNorm2d(filters, momentum=0.1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(filters, filters, 3), nn.BatchNorm2d(filters, momentum=0.1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(7 * 7 * filters, 10),
    )  # fmt: skip
    for m in net:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # He: N(0, 2 / fan_in)
            nn.init.zeros_(m.bias)
    return net


def accuracy(net, x, y, batch=1000):
    net.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = net(x[i : i + batch])
            loss += nn.functional.cross_entropy(out, y[i : i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x), loss / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--reg", type=float, default=1e-4)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-subset", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    z = load_prepared(args.data).arrays
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
    x_train, x_val, x_test = t(z["x_train"]), t(z["x_val"]), t(z["x_test"])
    y_train, y_val, y_test = (torch.from_numpy(z[k].astype(np.int64)) for k in ("y_train", "y_val", "y_test"))
    if args.train_subset:
        x_train, y_train = x_train[: args.train_subset], y_train[: args.train_subset]
    net = build(args.filters)
    weights = [m.weight for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    best, best_acc = None, -1.0
    for epoch in range(args.epochs):
        net.train()
        start = time.perf_counter()
        order = torch.randperm(len(x_train))
        for i in range(0, len(x_train), args.batch_size):
            idx = order[i : i + args.batch_size]
            loss = nn.functional.cross_entropy(net(x_train[idx]), y_train[idx])
            loss = loss + 0.5 * args.reg * sum((w * w).sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            for prm in net.parameters():
                nn.utils.clip_grad_norm_([prm], 5.0)
            opt.step()
        sched.step()
        val_acc, val_loss = accuracy(net, x_val, y_val)
        if val_acc > best_acc:
            best_acc, best = val_acc, copy.deepcopy(net.state_dict())
        print(f"epoch {epoch + 1}: val acc {val_acc:.4f} loss {val_loss:.4f} ({time.perf_counter() - start:.1f}s)", flush=True)
    net.load_state_dict(best)
    test_acc, test_loss = accuracy(net, x_test, y_test)
    print(f"torch {torch.__version__}: best val acc {best_acc:.4f}; test acc {test_acc:.4f} loss {test_loss:.4f}")


if __name__ == "__main__":
    main()

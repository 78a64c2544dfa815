"""The study's network and recipe in PyTorch, as an accuracy peer for scratchcnn.

Trains on a prepared dataset (results/data/cifar10.npz), keeps the
best-validation weights and prints their test accuracy. PyTorch is used here
only as a reference; the project itself never imports it.

    python benchmarks/torch_parity.py --data results/data/cifar10.npz \
        --lr 0.1 --reg 1e-4 --filters 32 --epochs 20

The rest of the recipe (batch size, step decay, clipping, batch norm's momentum, the layers'
kernel, padding and pooling) is config/config.yaml's, as the pipeline passes it.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from epoch_speed import config_recipe
from scratchcnn import model as cnn
from scratchcnn.data import load_prepared

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())


def build(filters, bn_momentum):
    m = CONFIG["model"]
    arch = cnn.make_arch(filters, kernel_size=m["kernel_size"], padding1=m["padding1"], padding2=m["padding2"],
                         pool_size=m["pool_size"], pool_stride=m["pool_stride"])  # fmt: skip
    k, pool = arch["kernel_size"], nn.MaxPool2d(arch["pool_size"], arch["pool_stride"])
    mom = 1.0 - bn_momentum  # PyTorch weighs the new batch by its momentum, ours the running value
    net = nn.Sequential(
        nn.Conv2d(3, filters, k, padding=arch["padding1"]), nn.BatchNorm2d(filters, momentum=mom), nn.ReLU(), pool,
        nn.Conv2d(filters, filters, k, padding=arch["padding2"]), nn.BatchNorm2d(filters, momentum=mom), nn.ReLU(), pool,
        nn.Flatten(), nn.Linear(int(np.prod(cnn.layer_shapes(arch)["pool2"])), arch["num_classes"]),
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
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--reg", type=float, required=True)
    p.add_argument("--filters", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--seed", type=int, default=0, help="PyTorch's own seed (its initialisation and order)")
    p.add_argument("--train-subset", type=int, default=0)
    args = p.parse_args()
    recipe = config_recipe(args.epochs)
    torch.manual_seed(args.seed)
    z = load_prepared(args.data).arrays
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
    x_train, x_val, x_test = t(z["x_train"]), t(z["x_val"]), t(z["x_test"])
    y_train, y_val, y_test = (torch.from_numpy(z[k].astype(np.int64)) for k in ("y_train", "y_val", "y_test"))
    if args.train_subset:
        x_train, y_train = x_train[: args.train_subset], y_train[: args.train_subset]
    net = build(args.filters, recipe.bn_momentum)
    weights = [m.weight for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=recipe.lr_step, gamma=recipe.lr_decay)
    best, best_acc = None, -1.0
    for epoch in range(args.epochs):
        net.train()
        start = time.perf_counter()
        order = torch.randperm(len(x_train))
        for i in range(0, len(x_train), recipe.batch_size):
            idx = order[i : i + recipe.batch_size]
            loss = nn.functional.cross_entropy(net(x_train[idx]), y_train[idx])
            loss = loss + 0.5 * args.reg * sum((w * w).sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            for prm in net.parameters() if recipe.clip else ():
                nn.utils.clip_grad_norm_([prm], recipe.clip)
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

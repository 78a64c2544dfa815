"""Mini-batch SGD with L2, step decay, per-array gradient clipping and the best checkpoint."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import model as cnn
from .backend import Backend


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe. No defaults here: they live in workflow/schemas/config.schema.yaml."""

    lr: float
    reg: float
    batch_size: int
    epochs: int
    lr_decay: float
    lr_step: int
    clip: float | None  # None: no clipping
    bn_momentum: float
    seed: int


@dataclass
class TrainState:
    """Everything needed to continue training after ``epoch`` completed epochs."""

    params: dict
    bn_state: dict
    epoch: int = 0
    history: list = field(default_factory=list)
    best_params: dict | None = None
    best_bn_state: dict | None = None
    best_epoch: int = 0
    best_val_acc: float = -1.0
    status: str = "running"  # running | ok | diverged


def step_decay(lr0: float, gamma: float, step: int, epoch: int) -> float:
    """``lr0 * gamma ** (epoch // step)`` for a 0-based epoch."""
    return lr0 * gamma ** (epoch // step)


def clip_by_norm(grad, max_norm):
    """Scale ``grad`` so its L2 norm is at most ``max_norm`` (no-op when ``None``)."""
    if max_norm is None:
        return grad
    xp = cnn.array_module(grad)
    norm = xp.sqrt((grad * grad).sum())
    return grad * (max_norm / xp.maximum(norm, max_norm))


def sgd_step(params: dict, grads: dict, lr: float, clip=None) -> None:
    """In place: ``p -= lr * clip(g)`` for every parameter."""
    for name, p in params.items():
        p -= lr * clip_by_norm(grads[name], clip)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """A fresh order per epoch, a pure function of (seed, epoch) so a resumed run matches."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def copy_arrays(arrays: dict) -> dict:
    return {k: v.copy() for k, v in arrays.items()}


def train(state: TrainState, data: dict, arch: dict, cfg: TrainConfig, backend: Backend,
          on_epoch_end=None, log=print, progress_every=0) -> TrainState:  # fmt: skip
    """Train from ``state.epoch`` to ``cfg.epochs``; ``data`` holds device arrays.

    ``data`` has ``x_train y_train x_val y_val``. ``on_epoch_end(state)`` runs
    after each epoch (the step script saves a resumable state there). The
    run stops early with ``status = "diverged"`` once the loss is not finite.
    ``progress_every`` > 0 logs a progress line every that many batches.
    """
    xp = backend.xp
    x_train, y_train = data["x_train"], data["y_train"]
    n = len(x_train)
    n_batches = math.ceil(n / cfg.batch_size)
    while state.epoch < cfg.epochs:
        epoch = state.epoch
        lr = step_decay(cfg.lr, cfg.lr_decay, cfg.lr_step, epoch)
        start = time.perf_counter()
        order = backend.asarray(epoch_permutation(cfg.seed, epoch, n))
        total_loss = xp.zeros((), dtype=x_train.dtype)
        correct = xp.zeros((), dtype=xp.int64)
        for b in range(n_batches):
            if progress_every and b and b % progress_every == 0:
                # no device values here: progress must not force a GPU synchronisation
                spent = time.perf_counter() - start
                log(f"epoch {epoch + 1}/{cfg.epochs}: batch {b}/{n_batches}, "
                    f"{spent:.0f}s, about {spent * (n_batches - b) / b:.0f}s left in this epoch")  # fmt: skip
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            loss, _, grads, logits, state.bn_state = cnn.loss_and_grads(
                state.params, state.bn_state, xb, yb, arch, cfg.reg, momentum=cfg.bn_momentum
            )
            sgd_step(state.params, grads, lr, cfg.clip)
            total_loss += loss * len(idx)
            correct += (logits.argmax(axis=1) == yb).sum()
        val_loss, val_acc = cnn.evaluate(state.params, state.bn_state, data["x_val"], data["y_val"], arch)
        # one host synchronisation per epoch
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": float(total_loss) / n,
            "train_acc": float(correct) / n,
            "val_loss": float(val_loss),
            "val_acc": float(val_acc),
            "seconds": time.perf_counter() - start,
        }
        state.history.append(row)
        state.epoch = epoch + 1
        if not all(math.isfinite(row[k]) for k in ("train_loss", "val_loss")):
            state.status = "diverged"
            log(f"epoch {epoch + 1}/{cfg.epochs}: loss is not finite; stopping (diverged)")
            if on_epoch_end:
                on_epoch_end(state)
            return state
        if row["val_acc"] > state.best_val_acc:
            state.best_val_acc, state.best_epoch = row["val_acc"], epoch + 1
            state.best_params, state.best_bn_state = copy_arrays(state.params), copy_arrays(state.bn_state)
        log(
            f"epoch {epoch + 1}/{cfg.epochs} lr {lr:.3g}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f}  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  "
            f"{row['seconds']:.1f}s"
        )
        if on_epoch_end:
            on_epoch_end(state)
    state.status = "ok"
    return state


#!/usr/bin/env python
"""Evaluate the final checkpoint on the test set.

Writes ``test_metrics.json``, ``per_class.csv``, ``confusion.csv`` and
``predictions.npz`` into ``--out-dir`` (layout: docs/outputs.md), each atomically::

    python workflow/scripts/evaluate.py --model results/final/seeds/0/model.npz \\
        --data results/data/cifar10.npz --out-dir results/final/seeds/0 --device auto --batch-size 1000
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
import time
from pathlib import Path

import numpy as np

from scratchcnn import sweeps
from scratchcnn.backend import BackendError, get_backend
from scratchcnn.checkpoint import load_checkpoint
from scratchcnn.cli import integer
from scratchcnn.data import DataError, load_prepared
from scratchcnn.io import all_or_none, save_npz_atomic, write_json_atomic, write_text_atomic
from scratchcnn.logs import exit_on_sigterm, setup_logging
from scratchcnn.metrics import classification_report, cross_entropy_from_logits, softmax
from scratchcnn.model import predict_logits
from scratchcnn.provenance import provenance

log = logging.getLogger("evaluate")

#: The training settings test_metrics.json records: the swept hyperparameters, then the rest.
RECORDED_SETTINGS = (*sweeps.HYPERPARAMETERS, "batch_size", "epochs", "lr_decay", "lr_step", "clip", "seed", "bn_momentum")


def hyperparameters(meta: dict, arch: dict) -> dict:
    """The run's settings: the checkpoint's training config and its filter count."""
    train = (meta.get("config") or {}).get("train") or {}
    return {k: arch["filters1"] if k == "filters" else train.get(k) for k in RECORDED_SETTINGS}


def load_test_data(path) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """``x_test``, ``y_test``, the class names and the file's meta (the training arrays stay on disk)."""
    data = load_prepared(path, arrays=("x_test", "y_test"))
    if not len(data.arrays["y_test"]):  # an accuracy of nothing would read as 0 %
        raise DataError(f"{path}: x_test holds no images")
    return data.arrays["x_test"], data.arrays["y_test"].astype(np.int64), data.class_names, data.meta


def predict(params, arch, x, backend, batch_size: int) -> tuple[np.ndarray, float]:
    """Evaluation-mode logits of ``x`` in batches, and the throughput in images/s.

    One batch is run first as a warm-up (kernel compilation on the GPU) and not timed.
    """
    if len(x):
        predict_logits(params, arch, x[:batch_size], backend, batch_size)
    backend.synchronize()
    t0 = time.perf_counter()
    logits = predict_logits(params, arch, x, backend, batch_size)
    backend.synchronize()
    elapsed = time.perf_counter() - t0
    return logits, (len(x) / elapsed if elapsed > 0 else float("nan"))


def evaluate_arrays(params, arch, x, y, class_names, backend, batch_size) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics dict (test_metrics.json's metric and throughput fields), ``y_pred``, ``probs``."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    logits, ips = predict(params, arch, x, backend, batch_size)
    y_pred = logits.argmax(axis=1).astype(np.int64)
    report = classification_report(y, y_pred, class_names)
    out = {
        "test_accuracy": report["test_accuracy"],
        "test_loss": cross_entropy_from_logits(logits, y),
        **{k: v for k, v in report.items() if k != "test_accuracy"},
        "throughput": {"images_per_second": ips, "backend": backend.name, "device": backend.device_name},
    }
    return out, y_pred, softmax(logits)


def per_class_csv(metrics: dict) -> str:
    buf = io.StringIO()
    cols = ["class", "name", "correct", "total", "accuracy", "precision", "recall"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for row in metrics["per_class"]:
        w.writerow({k: row[k] for k in cols})
    return buf.getvalue()


def confusion_csv(metrics: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true/pred", *metrics["class_names"]])
    for name, row in zip(metrics["class_names"], metrics["confusion"]):
        w.writerow([name, *row])
    return buf.getvalue()


#: What an evaluation writes into --out-dir, in this order (the rule's outputs name the same files)
OUTPUTS = ("predictions.npz", "per_class.csv", "confusion.csv", "test_metrics.json")


def run_evaluation(model, data, out_dir, device, batch_size) -> dict:
    """Evaluate checkpoint ``model`` on ``data``'s test set; write the four outputs; return the metrics.

    The provenance holds the checkpoint's run config (what decides the numbers) and, as
    settings, ``device`` and ``batch_size`` (which do not)."""
    out_dir = Path(out_dir)
    ckpt = load_checkpoint(model)
    x, y, class_names, data_meta = load_test_data(data)
    if len(class_names) != ckpt.arch["num_classes"]:
        raise ValueError(f"{data} has {len(class_names)} classes, the model {ckpt.arch['num_classes']}")
    backend = get_backend(device)
    log.info("evaluating %s on %d test images with %s (%s)", model, len(x), backend.name, backend.device_name)
    metrics, y_pred, probs = evaluate_arrays(ckpt.params, ckpt.arch, x, y, class_names, backend, batch_size)
    metrics["checkpoint"] = {
        "path": str(model),
        "epoch": ckpt.meta.get("epoch"),
        "val_acc": ckpt.meta.get("val_acc"),
    }
    metrics["hyperparameters"] = hyperparameters(ckpt.meta, ckpt.arch)
    metrics["provenance"] = provenance(
        ckpt.meta.get("config") or {}, backend, {"device": device, "batch_size": batch_size}, data_meta
    )

    outputs = [out_dir / name for name in OUTPUTS]
    try:
        with all_or_none(outputs):
            save_npz_atomic(outputs[0], {"y_true": y.astype(np.int64), "y_pred": y_pred, "probs": probs})
            write_text_atomic(outputs[1], per_class_csv(metrics))
            write_text_atomic(outputs[2], confusion_csv(metrics))
            write_json_atomic(outputs[3], metrics)  # last: its presence means all are done
    except OSError as exc:
        raise OSError(f"cannot write the evaluation into {out_dir} ({exc})") from exc
    log.info(
        "test accuracy %.4f, loss %.4f, %.0f images/s",
        metrics["test_accuracy"], metrics["test_loss"], metrics["throughput"]["images_per_second"],
    )  # fmt: skip
    return metrics


def main(argv=None) -> int:
    setup_logging()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a checkpoint, e.g. results/final/seeds/0/model.npz")
    p.add_argument("--data", type=Path, required=True, help="results/data/cifar10.npz")
    p.add_argument("--out-dir", type=Path, required=True, help="e.g. results/final/seeds/0")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], required=True)
    p.add_argument("--batch-size", type=integer(1), required=True, help="images per forward pass")
    args = p.parse_args(argv)
    try:
        run_evaluation(args.model, args.data, args.out_dir, args.device, args.batch_size)
    except (OSError, ValueError, BackendError) as exc:  # CheckpointError and DataError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; no evaluation written (run the same command again)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())

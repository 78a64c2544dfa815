"""Classification metrics on host NumPy arrays (no device code, no I/O).

:func:`classification_report` returns exactly the metric fields of
``results/final/test_metrics.json`` (see ``docs/outputs.md``) as plain Python
types, ready for ``json.dump``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import layers

TOP_CONFUSED = 5


def _labels(y, name: str) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError(f"{name} must hold integer class labels")
    return a.astype(np.int64, copy=False)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts; rows = true class, columns = predicted."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    for a, name in ((t, "y_true"), (p, "y_pred")):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def most_confused(confusion, class_names: Sequence[str], top: int = TOP_CONFUSED) -> list[dict]:
    """The ``top`` largest off-diagonal cells with a nonzero count.

    Sorted by count descending, ties broken by (true, pred) ascending.
    """
    cm = np.asarray(confusion)
    cells = [
        (-int(cm[i, j]), i, j)
        for i in range(cm.shape[0])
        for j in range(cm.shape[1])
        if i != j and cm[i, j] > 0
    ]
    cells.sort()
    return [
        {
            "true": i,
            "pred": j,
            "true_name": str(class_names[i]),
            "pred_name": str(class_names[j]),
            "count": -neg,
        }
        for neg, i, j in cells[:top]
    ]


def classification_report(y_true, y_pred, class_names: Sequence[str]) -> dict:
    """``test_accuracy, n_test, class_names, per_class, confusion, most_confused``.

    ``per_class[i]`` holds ``class, name, correct, total, accuracy, precision,
    recall, f1``; ``accuracy`` and ``recall`` are both the fraction of class-``i``
    images predicted as ``i``. A class with no images has accuracy/recall 0.0;
    a class that is never predicted has precision 0.0 (not NaN).
    """
    names = [str(n) for n in class_names]
    k = len(names)
    cm = confusion_matrix(y_true, y_pred, k)
    n = int(cm.sum())
    correct = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    per_class = []
    for i in range(k):
        recall = float(correct[i] / support[i]) if support[i] else 0.0
        precision = float(correct[i] / predicted[i]) if predicted[i] else 0.0
        per_class.append(
            {
                "class": i,
                "name": names[i],
                "correct": int(correct[i]),
                "total": int(support[i]),
                "accuracy": recall,
                "precision": precision,
                "recall": recall,
                "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            }
        )
    return {
        "test_accuracy": float(correct.sum() / n) if n else 0.0,
        "n_test": n,
        "class_names": names,
        "per_class": per_class,
        "confusion": cm.tolist(),
        "most_confused": most_confused(cm, names),
    }


def log_softmax(logits) -> np.ndarray:
    """Row-wise log-softmax, stable for large logits (float64 on the host)."""
    return layers.log_softmax(np.asarray(logits, dtype=np.float64))


def softmax(logits) -> np.ndarray:
    """Row-wise softmax probabilities, float32."""
    return np.exp(log_softmax(logits)).astype(np.float32)


def cross_entropy_from_logits(logits, y) -> float:
    """Mean cross-entropy ``-log softmax(logits)[i, y_i]`` via log-sum-exp."""
    z = np.asarray(logits)
    t = _labels(y, "y")
    if z.ndim != 2 or z.shape[0] != t.shape[0]:
        raise ValueError(f"logits {z.shape} do not match labels {t.shape}")
    if t.size == 0:
        return float("nan")
    if t.min() < 0 or t.max() >= z.shape[1]:
        raise ValueError(f"y has labels outside 0..{z.shape[1] - 1}")
    lp = log_softmax(z)
    return float(-lp[np.arange(t.size), t].mean())


def seed_summary(runs: Sequence[dict]) -> dict:
    """Mean and sample standard deviation of the test accuracy over runs that differ only in seed.

    ``runs``: one dict per seed with ``seed`` and ``test_accuracy`` (and any other
    numbers to carry along). The standard deviation uses ``n - 1`` and is None
    for a single run: one number is not a spread.
    """
    if not runs:
        raise ValueError("seed_summary needs at least one run")
    seeds = [int(r["seed"]) for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must differ, got {seeds}")
    acc = np.array([float(r["test_accuracy"]) for r in runs])
    return {
        "n": len(runs),
        "mean": float(acc.mean()),
        "std": float(acc.std(ddof=1)) if len(runs) > 1 else None,
        "min": float(acc.min()),
        "max": float(acc.max()),
        "runs": [dict(r) for r in runs],
    }

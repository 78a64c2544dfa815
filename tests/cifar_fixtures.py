"""Builders of small CIFAR-10-format archives with known pixel values (for tests/test_data.py),
and of small prepared ``cifar10.npz`` files (for the tests of the steps that read one).

Pixel value of training image ``i`` (archive order), channel ``c``, row ``r``, column ``k`` is
``known_pixel(i, c, r, k)``; test images use ``i + TEST_OFFSET``. The rows are built directly in
the official layout (R, G, B planes, each row-major) so the reshape is checked independently of
``scratchcnn.data.to_images``.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np

from scratchcnn import data as cifar_data

N_PER_BATCH = 12
N_TRAIN = 5 * N_PER_BATCH
N_TEST = 20
TEST_OFFSET = 1000


def known_pixel(i, c, r, k):
    return (np.asarray(i) * 37 + np.asarray(c) * 101 + np.asarray(r) * 7 + np.asarray(k) * 3) % 256


def known_rows(first: int, n: int) -> np.ndarray:
    """uint8 (n, 3072): row j holds image ``first + j`` in the official plane layout."""
    i = np.arange(first, first + n)[:, None]
    pos = np.arange(3072)[None, :]
    c, rest = divmod(pos, 1024)
    r, k = divmod(rest, 32)
    return known_pixel(i, c, r, k).astype(np.uint8)


def train_labels(n: int = N_TRAIN) -> np.ndarray:
    return np.arange(n) % 10


def test_labels(n: int = N_TEST) -> np.ndarray:
    return (np.arange(n) * 3 + 1) % 10


def batch_dict(rows, labels, label="batch", keys_as_bytes=True):
    d = {"batch_label": label, "labels": [int(v) for v in labels], "data": rows,
         "filenames": [f"img_{j}.png" for j in range(len(labels))]}
    if keys_as_bytes:
        d = {k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in d.items()}
        d[b"filenames"] = [f.encode() for f in d[b"filenames"]]
    return d


def official_members(n_per_batch: int = N_PER_BATCH, n_test: int = N_TEST) -> dict:
    """Member name (without the directory) -> Python object, as in the official archive."""
    members = {"batches.meta": {b"label_names": [n.encode() for n in cifar_data.CLASS_NAMES],
                                b"num_cases_per_batch": n_per_batch, b"num_vis": 3072}}
    y = train_labels(5 * n_per_batch)
    for b in range(5):
        a = b * n_per_batch
        members[f"data_batch_{b + 1}"] = batch_dict(
            known_rows(a, n_per_batch), y[a:a + n_per_batch], f"training batch {b + 1} of 5")
    members["test_batch"] = batch_dict(known_rows(TEST_OFFSET, n_test), test_labels(n_test),
                                       "testing batch 1 of 1")
    return members


def write_tar(path: Path, members: dict, pickler=None, compress: bool = True) -> Path:
    """Write ``members`` (name -> object or raw bytes) under cifar-10-batches-py/.

    Objects are pickled with ``pickler`` (default: plain ``pickle.dumps(protocol=2)``)."""
    pickler = pickler or (lambda o: pickle.dumps(o, protocol=2))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, obj in members.items():
            payload = obj if isinstance(obj, bytes) else pickler(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    data = gzip.compress(buf.getvalue()) if compress else buf.getvalue()
    Path(path).write_bytes(data)
    return Path(path)


def write_known_archive(path: Path) -> Path:
    """The fixture archive: official format (via ``write_archive``), known pixels."""
    x_train = cifar_data.to_images(known_rows(0, N_TRAIN))
    x_test = cifar_data.to_images(known_rows(TEST_OFFSET, N_TEST))
    return cifar_data.write_archive(path, x_train, train_labels(), x_test, test_labels(),
                               cifar_data.CLASS_NAMES)


def write_prepared(path: Path, *, class_names=cifar_data.CLASS_NAMES, meta: dict | None = None, **arrays) -> Path:
    """A prepared ``cifar10.npz`` with every array of the contract (``PREPARED_KEYS``).

    ``arrays`` gives some of ``x_train y_train x_val y_val x_test y_test``; a split not given
    holds one black image of class 0. ``train_idx``/``val_idx`` number the images in order;
    ``meta`` is stored as ``meta_json`` (default: ``{"standardize": null}``).
    """
    out = {}
    for split in ("train", "val", "test"):
        x = arrays.pop(f"x_{split}", None)
        y = arrays.pop(f"y_{split}", None)
        if (x is None) != (y is None):
            raise ValueError(f"give both x_{split} and y_{split}, or neither")
        if x is None:
            x, y = np.zeros((1, 32, 32, 3), np.float32), np.zeros(1, np.int64)
        out[f"x_{split}"], out[f"y_{split}"] = np.asarray(x, np.float32), np.asarray(y, np.int64)
    if arrays:
        raise ValueError(f"unknown arrays {sorted(arrays)}")
    n_train = len(out["x_train"])
    out["train_idx"] = np.arange(n_train, dtype=np.int64)
    out["val_idx"] = np.arange(n_train, n_train + len(out["x_val"]), dtype=np.int64)
    out["class_names"] = np.array([str(c) for c in class_names])
    out["meta_json"] = np.array(json.dumps({"standardize": None} if meta is None else meta))
    np.savez(path, **out)
    return Path(path)

"""Writing archives in the official CIFAR-10 format (the demo data set and the tests)."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from ..io import atomic_path
from .archive import ARCHIVE_DIR, IMAGE_SHAPE, META_MEMBER, ROW_LEN, TEST_MEMBER, to_rows


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us override dispatch
    """Protocol-2 pickler that writes ``bytes`` as Python-2 ``str`` (SHORT_BINSTRING/BINSTRING)
    and numpy globals under ``numpy.core``, as the official CIFAR-10 pickles do. Loading then
    gives ``b"data"`` keys with ``encoding="bytes"`` and ``"data"`` keys with ``"latin1"``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2str(self, obj: bytes):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2str

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None)
        name = name or getattr(obj, "__qualname__", None) or obj.__name__
        if module and module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core") :]
            self.write(pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)



def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_archive(
    path,
    x_train_all: np.ndarray,
    y_train_all,
    x_test: np.ndarray,
    y_test,
    class_names,
    n_batches: int = 5,
) -> Path:
    """Write a .tar.gz in the official CIFAR-10 python layout (atomically, deterministically).

    Images are uint8 ``(n, 32, 32, 3)``; the training set is cut into ``n_batches`` consecutive
    batches ``data_batch_1..n``. Member metadata and gzip timestamps are fixed, so the same
    arrays always give the same bytes (and md5).
    """
    path = Path(path)
    x_train_all = np.asarray(x_train_all)
    x_test = np.asarray(x_test)
    for name, x in (("x_train_all", x_train_all), ("x_test", x_test)):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"{name} must be uint8 (n, 32, 32, 3), got {x.dtype} {x.shape}")
    y_train_all = np.asarray(y_train_all).astype(np.int64)
    y_test = np.asarray(y_test).astype(np.int64)
    if len(y_train_all) != len(x_train_all) or len(y_test) != len(x_test):
        raise ValueError("labels and images differ in length")
    names = [str(c) for c in class_names]

    def batch(label: str, x, y, offset: int) -> bytes:
        return _py2_pickle(
            {
                b"batch_label": label.encode(),
                b"labels": [int(v) for v in y],
                b"data": to_rows(x),
                b"filenames": [
                    f"{names[int(v)]}_s_{offset + i:06d}.png".encode() for i, v in enumerate(y)
                ],
            }
        )

    members: list[tuple[str, bytes]] = [
        (
            META_MEMBER,
            _py2_pickle(
                {
                    b"num_cases_per_batch": int(-(-len(x_train_all) // n_batches)),
                    b"label_names": [n.encode() for n in names],
                    b"num_vis": ROW_LEN,
                }
            ),
        )
    ]
    bounds = np.linspace(0, len(x_train_all), n_batches + 1).round().astype(int)
    for i in range(n_batches):
        a, b = bounds[i], bounds[i + 1]
        members.append(
            (
                f"data_batch_{i + 1}",
                batch(
                    f"training batch {i + 1} of {n_batches}",
                    x_train_all[a:b],
                    y_train_all[a:b],
                    a,
                ),
            )
        )
    members.append((TEST_MEMBER, batch("testing batch 1 of 1", x_test, y_test, 0)))
    # the old module name stays in this text: it is part of the archive's bytes (and the demo's md5)
    members.append(
        (
            "readme.html",
            b"<html><body>CIFAR-10 python layout written by scratchcnn.cifar.write_archive."
            b"</body></html>\n",
        )
    )

    with atomic_path(path) as tmp, open(tmp, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=0
    ) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, payload in members:
            info = tarfile.TarInfo(f"{ARCHIVE_DIR}/{name}")
            info.size = len(payload)
            info.mode = 0o644
            info.mtime = 1262304000
            tf.addfile(info, io.BytesIO(payload))
    return path

"""Reading the official CIFAR-10 archive safely, straight from the .tar.gz.

Archive format (the official "python version"): a gzip tar holding
``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta, readme.html}``. Each batch is a
Python-2 pickle of a dict with ``data`` (uint8, ``(n, 3072)``: the R, G and B planes of a 32x32
image, each plane row-major), ``labels`` (ints 0..9), ``batch_label`` and ``filenames``;
``batches.meta`` holds ``label_names``. The pickles are read by an unpickler that resolves only
the few NumPy globals a batch needs.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from .classes import NUM_CLASSES
from .errors import DataError

ARCHIVE_DIR = "cifar-10-batches-py"
TRAIN_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_MEMBER = "test_batch"
META_MEMBER = "batches.meta"
IMAGE_SHAPE = (32, 32, 3)
ROW_LEN = 3072


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the few globals a CIFAR batch needs (numpy arrays)."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"disallowed global {module}.{name} in pickle")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)


def _unpickle(data: bytes):
    return _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()


def _s(x) -> str:
    return x.decode("latin1") if isinstance(x, bytes) else str(x)


def _norm_keys(d) -> dict:
    return {_s(k): v for k, v in d.items()}


def _check_batch(obj, archive, member) -> tuple[np.ndarray, np.ndarray]:
    where = f"{archive}: member {member}"
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a dict, found {type(obj).__name__}")
    d = _norm_keys(obj)
    for key in ("data", "labels"):
        if key not in d:
            raise DataError(f"{where}: key {key!r} missing (keys: {sorted(d)})")
    data = d["data"]
    if not isinstance(data, np.ndarray):
        raise DataError(f"{where}: 'data' is a {type(data).__name__}, expected a numpy array")
    if data.dtype != np.uint8:
        raise DataError(f"{where}: 'data' has dtype {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != ROW_LEN:
        raise DataError(f"{where}: 'data' has shape {data.shape}, expected (n, {ROW_LEN})")
    try:
        labels = np.asarray(d["labels"])
    except Exception as e:  # pragma: no cover - exotic label containers
        raise DataError(f"{where}: 'labels' cannot be read as an array: {e}") from e
    if labels.ndim != 1 or len(labels) != data.shape[0]:
        raise DataError(
            f"{where}: 'labels' has shape {labels.shape}, expected ({data.shape[0]},) "
            f"to match 'data'"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: 'labels' are {labels.dtype}, expected integers")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)]
        raise DataError(
            f"{where}: labels out of range 0..{NUM_CLASSES - 1} "
            f"({bad.size} bad, e.g. {int(bad[0])})"
        )
    return np.ascontiguousarray(data), labels


def _check_meta(obj, archive, member) -> list[str]:
    where = f"{archive}: member {member}"
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a dict, found {type(obj).__name__}")
    d = _norm_keys(obj)
    if "label_names" not in d:
        raise DataError(f"{where}: key 'label_names' missing (keys: {sorted(d)})")
    names = d["label_names"]
    expected = f"expected a list of {NUM_CLASSES} strings"
    if not isinstance(names, (list, tuple)):
        raise DataError(f"{where}: 'label_names' is a {type(names).__name__}, {expected}")
    odd = [n for n in names if not isinstance(n, (bytes, str))]
    if odd:
        raise DataError(f"{where}: 'label_names' holds a {type(odd[0]).__name__} ({odd[0]!r}), {expected}")
    names = [_s(n) for n in names]
    if len(names) != NUM_CLASSES:
        raise DataError(f"{where}: {len(names)} label names, expected {NUM_CLASSES}")
    return names


def read_archive(path, expected_train: int, expected_test: int) -> dict:
    """Read and validate a CIFAR-10 python-version archive straight from the .tar.gz.

    ``expected_train`` and ``expected_test`` are the image counts the archive must hold
    (50,000 and 10,000 for the official one).

    Returns ``{"x_train_all": uint8 (N, 32, 32, 3) in archive order, "y_train_all": int64 (N,),
    "x_test", "y_test", "class_names": list of 10 str}``. The archive is read in one pass.
    """
    path = Path(path)
    wanted = {f"{ARCHIVE_DIR}/{m}": m for m in (*TRAIN_MEMBERS, TEST_MEMBER, META_MEMBER)}
    raw: dict[str, bytes] = {}
    if not path.is_file():
        raise DataError(f"{path}: archive not found")
    try:
        tf = tarfile.open(path, "r:*")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        with open(path, "rb") as f:
            head = f.read(16)
        if not head:
            problem = "the file is empty"
        elif head[:2] == b"\x1f\x8b":
            problem = "gzip data that does not hold a tar archive (or is damaged)"
        else:
            problem = f"neither gzip nor tar (it starts with {head!r})"
        if not isinstance(e, tarfile.ReadError):
            problem += f" ({type(e).__name__}: {e})"
        raise DataError(f"{path}: not a CIFAR-10 .tar.gz archive: {problem}") from e
    current = "(first member)"
    try:
        with tf:
            last = None
            for info in tf:
                name = info.name[2:] if info.name.startswith("./") else info.name
                last = name
                if name not in wanted:
                    current = f"(after {last})"
                    continue
                current = wanted[name]
                if not info.isfile():
                    raise DataError(f"{path}: member {current} is not a regular file")
                f = tf.extractfile(info)
                raw[current] = f.read()
                if len(raw[current]) != info.size:
                    raise DataError(
                        f"{path}: member {current} is truncated "
                        f"({len(raw[current])} of {info.size} bytes)"
                    )
                current = f"(after {last})"
            # tarfile stops at the end-of-archive block and never reads the gzip trailer, so a
            # bit flip would pass unseen: read to the end to check the CRC and length.
            current = f"(end of archive, after {last})"
            while tf.fileobj.read(1 << 20):
                pass
    except DataError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:
        kind = "truncated" if isinstance(e, EOFError) or "end" in str(e).lower() else "unreadable"
        raise DataError(
            f"{path}: {kind} or corrupt archive while reading member {current}: "
            f"{type(e).__name__}: {e}"
        ) from e

    missing = [m for m in wanted.values() if m not in raw]
    if missing:
        raise DataError(
            f"{path}: member(s) {', '.join(f'{ARCHIVE_DIR}/{m}' for m in missing)} missing "
            f"from the archive"
        )

    def load(member):
        try:
            return _unpickle(raw.pop(member))
        except Exception as e:
            raise DataError(
                f"{path}: member {member} is not a readable pickle: {type(e).__name__}: {e}"
            ) from e

    class_names = _check_meta(load(META_MEMBER), path, META_MEMBER)
    xs, ys = [], []
    for m in TRAIN_MEMBERS:
        x, y = _check_batch(load(m), path, m)
        xs.append(x)
        ys.append(y)
    x_test_rows, y_test = _check_batch(load(TEST_MEMBER), path, TEST_MEMBER)
    n_train = sum(len(y) for y in ys)
    if n_train != expected_train:
        raise DataError(
            f"{path}: members data_batch_1..5 hold {n_train} training images, "
            f"expected {expected_train}"
        )
    if len(y_test) != expected_test:
        raise DataError(
            f"{path}: member {TEST_MEMBER} holds {len(y_test)} test images, "
            f"expected {expected_test}"
        )
    x_train_all = to_images(np.concatenate(xs))
    del xs
    return {
        "x_train_all": x_train_all,
        "y_train_all": np.concatenate(ys).astype(np.int64),
        "x_test": to_images(x_test_rows),
        "y_test": y_test.astype(np.int64),
        "class_names": class_names,
    }


def to_images(rows: np.ndarray) -> np.ndarray:
    """``uint8 (n, 3072)`` rows (R, G, B planes, each 32x32 row-major) -> ``(n, 32, 32, 3)``."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != ROW_LEN:
        raise ValueError(f"expected rows of shape (n, {ROW_LEN}), got {rows.shape}")
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def to_rows(images: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_images`: ``(n, 32, 32, 3)`` -> ``(n, 3072)`` R, G, B planes."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images of shape (n, 32, 32, 3), got {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(-1, ROW_LEN))

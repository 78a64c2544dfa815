"""CIFAR-10 data stage: fetch, verify, read, reshape, normalise and split.

Everything the ``download``, ``make_demo_archive`` and ``prepare`` steps do lives here; the step
scripts in ``workflow/scripts/`` only parse arguments and call these functions.

Archive format (the official "python version"): a gzip tar holding
``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta, readme.html}``. Each batch is a
Python-2 pickle of a dict with ``data`` (uint8, ``(n, 3072)``: the R, G and B planes of a 32x32
image, each plane row-major), ``labels`` (ints 0..9), ``batch_label`` and ``filenames``;
``batches.meta`` holds ``label_names``.

Every data problem (bad download, checksum mismatch, damaged or malformed archive) raises
:class:`DataError`, whose message names the file, the member and the problem.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import logging
import os
import pickle
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from .io import atomic_path

log = logging.getLogger(__name__)

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
ARCHIVE_DIR = "cifar-10-batches-py"
TRAIN_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_MEMBER = "test_batch"
META_MEMBER = "batches.meta"
IMAGE_SHAPE = (32, 32, 3)
ROW_LEN = 3072
NUM_CLASSES = 10

_CHUNK = 1 << 20
_HINT = (
    "If this machine cannot download it, place the archive by hand: either set `data.url` in "
    "config/config.yaml to a local path (or file:// URL) of a copy of the archive, or copy the "
    "file to {dest}."
)


class DataError(Exception):
    """Any problem with the data: download, checksum, or archive content."""


# --------------------------------------------------------------------------------------------
# checksums and fetching
# --------------------------------------------------------------------------------------------


def md5sum(path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class _Progress:
    """Byte counter that draws a bar on a TTY, or logs a plain line now and then."""

    def __init__(self, total: int | None, label: str, bar: bool, stream=None):
        self.total = total if total and total > 0 else None
        self.label = label
        self.bar = bar
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_log = self.start
        self._next_pct = 10

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            pct = 100.0 * self.done / self.total
            return (
                f"{self.label}: {_fmt_bytes(self.done)} / {_fmt_bytes(self.total)} "
                f"({pct:5.1f}%) {_fmt_bytes(rate)}/s"
            )
        return f"{self.label}: {_fmt_bytes(self.done)} {_fmt_bytes(rate)}/s"

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.bar:
            if now - self._last_draw >= 0.1:
                self._draw()
                self._last_draw = now
            return
        pct = 100.0 * self.done / self.total if self.total else None
        if (pct is not None and pct >= self._next_pct) or now - self._last_log >= 15.0:
            log.info("%s", self._line())
            self._last_log = now
            if pct is not None:
                while self._next_pct <= pct:
                    self._next_pct += 10

    def _draw(self) -> None:
        width = 30
        if self.total:
            filled = int(width * min(self.done / self.total, 1.0))
            bar = "[" + "#" * filled + "." * (width - filled) + "] "
        else:
            bar = ""
        self.stream.write("\r" + bar + self._line() + "   ")
        self.stream.flush()

    def close(self) -> None:
        if self.bar:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


class _Transient(Exception):
    """A failure worth retrying (connection cut, timeout, HTTP 5xx)."""


def _source_kind(source: str) -> tuple[str, str]:
    """Return ``("http", url)`` or ``("file", local_path)``."""
    parsed = urllib.parse.urlparse(source)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return "http", source
    if scheme == "file":
        return "file", urllib.request.url2pathname(parsed.path)
    if len(scheme) > 1:
        raise DataError(f"unsupported data source scheme {scheme!r} in {source!r}")
    return "file", source  # plain path (a one-letter "scheme" is a Windows drive)


def _copy_stream(src, dst, progress: _Progress, expected: int | None, hasher) -> int:
    got = 0
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            break
        dst.write(chunk)
        hasher.update(chunk)
        got += len(chunk)
        progress.update(len(chunk))
    if expected is not None and got != expected:
        raise _Transient(f"transfer cut short: got {got} of {expected} bytes")
    return got


def _http_attempt(url: str, part: Path, timeout: float, bar: bool, hasher) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "scratchcnn-data/1"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            progress = _Progress(expected, "download", bar)
            try:
                with open(part, "wb") as out:
                    _copy_stream(resp, out, progress, expected, hasher)
            finally:
                progress.close()
    except urllib.error.HTTPError as e:
        if e.code >= 500 or e.code in (408, 429):
            raise _Transient(f"HTTP {e.code} {e.reason}") from e
        raise DataError(f"HTTP {e.code} {e.reason} for {url}") from e
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, socket.gaierror):
            raise DataError(f"cannot resolve host of {url}: {reason}") from e
        raise _Transient(f"cannot connect to {url}: {reason}") from e
    except (http.client.HTTPException, ConnectionError, TimeoutError, socket.timeout) as e:
        raise _Transient(f"{type(e).__name__}: {e}") from e
    except OSError as e:
        if isinstance(e, (PermissionError, IsADirectoryError, FileNotFoundError)):
            raise DataError(f"cannot write {part}: {e}") from e
        raise _Transient(f"{type(e).__name__}: {e}") from e


def fetch_archive(
    source: str,
    dest,
    md5: str,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60,
    progress: bool | None = None,
) -> Path:
    """Make sure ``dest`` holds the archive from ``source`` with the given md5.

    ``source`` is an http(s) URL, a ``file://`` URL or a plain local path. If ``dest`` already
    exists with the right md5 nothing is fetched. Otherwise the data goes to ``dest.name +
    ".part"`` in dest's directory, is checked, and is renamed onto ``dest`` atomically; on any
    failure the ``.part`` file is removed.

    HTTP transfers are retried ``retries`` times (so ``retries + 1`` attempts) with exponential
    backoff ``backoff * 2**k`` seconds on transient errors: connection refused/reset/cut before
    Content-Length bytes arrived, timeouts, HTTP 5xx/408/429. Other HTTP 4xx errors and DNS
    failures fail at once. ``progress``: ``None`` draws a bar on stderr when it is a TTY and logs
    a line every 10% otherwise; ``True``/``False`` force the bar or the log lines.

    Raises :class:`DataError` on every failure; the message names the source and, where the data
    could not be obtained, explains how to place the archive by hand.
    """
    dest = Path(dest)
    md5 = md5.strip().lower()
    hint = _HINT.format(dest=dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        found = md5sum(dest)
        if found == md5:
            log.info("%s already present with md5 %s; nothing to fetch", dest, md5)
            return dest
        log.warning("%s exists but has md5 %s (expected %s); fetching again", dest, found, md5)

    bar = sys.stderr.isatty() if progress is None else bool(progress)
    kind, where = _source_kind(source)
    part = dest.with_name(dest.name + ".part")
    t0 = time.monotonic()
    hasher = hashlib.md5()
    try:
        if kind == "file":
            src = Path(where)
            if not src.is_file():
                raise DataError(f"data source {source!r} is not an existing file. {hint}")
            log.info("copying %s -> %s", src, dest)
            size = src.stat().st_size
            prog = _Progress(size, "copy", bar)
            try:
                with open(src, "rb") as fi, open(part, "wb") as fo:
                    _copy_stream(fi, fo, prog, None, hasher)
            except OSError as e:
                raise DataError(f"cannot copy {src} to {part}: {e}") from e
            finally:
                prog.close()
        else:
            attempts = max(int(retries), 0) + 1
            for attempt in range(1, attempts + 1):
                log.info("downloading %s (attempt %d/%d)", where, attempt, attempts)
                hasher = hashlib.md5()
                try:
                    _http_attempt(where, part, timeout, bar, hasher)
                    break
                except _Transient as e:
                    if attempt == attempts:
                        raise DataError(
                            f"could not download {source} after {attempts} attempt(s): {e}. {hint}"
                        ) from e
                    wait = backoff * 2 ** (attempt - 1)
                    log.warning("attempt %d failed (%s); retrying in %.2f s", attempt, e, wait)
                    time.sleep(wait)
                except DataError as e:
                    raise DataError(f"{e}. {hint}") from e
        found = hasher.hexdigest()  # computed while writing .part
        if found != md5:
            raise DataError(
                f"md5 mismatch for {source}: expected {md5}, found {found}; "
                f"the file was not kept. Check `data.md5` or the source. {hint}"
            )
        os.replace(part, dest)
    finally:
        if part.exists():
            part.unlink()
    log.info(
        "fetched %s (%s, md5 %s) in %.1f s",
        dest,
        _fmt_bytes(dest.stat().st_size),
        md5,
        time.monotonic() - t0,
    )
    return dest


# --------------------------------------------------------------------------------------------
# reading the archive
# --------------------------------------------------------------------------------------------

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
    names = [_s(n) for n in d["label_names"]]
    if len(names) != NUM_CLASSES:
        raise DataError(f"{where}: {len(names)} label names, expected {NUM_CLASSES}")
    return names


def read_archive(path, expected_train: int = 50000, expected_test: int = 10000) -> dict:
    """Read and validate a CIFAR-10 python-version archive straight from the .tar.gz.

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


# --------------------------------------------------------------------------------------------
# preparing the arrays
# --------------------------------------------------------------------------------------------


def _channel_stats(x_uint8: np.ndarray, idx: np.ndarray) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and std of ``x_uint8[idx] / 255`` via 256-bin histograms."""
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(3):
        hist = np.zeros(256, dtype=np.int64)
        for start in range(0, len(idx), 8192):
            sel = x_uint8[idx[start : start + 8192], :, :, c]
            hist += np.bincount(sel.ravel(), minlength=256)
        n = hist.sum()
        mean = float((hist * values).sum() / n)
        var = float((hist * (values - mean) ** 2).sum() / n)
        means.append(mean)
        stds.append(var**0.5)
    return means, stds


def _scaled(x_uint8: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    x = (x_uint8 if idx is None else x_uint8[idx]).astype(np.float32)
    np.divide(x, np.float32(255.0), out=x)
    return x


def prepare_dataset(
    archive,
    n_val: int = 5000,
    split_seed: int = 0,
    standardize: bool = False,
    expected_train: int = 50000,
    expected_test: int = 10000,
) -> dict:
    """Arrays of ``cifar10.npz`` (see docs/outputs.md) from a verified archive.

    Pixels become float32 ``pixel / 255`` in (image, row, column, channel) order, RGB.
    Split: ``perm = numpy.random.default_rng(split_seed).permutation(n_train_total)``;
    ``val_idx = perm[:n_val]`` and ``train_idx = perm[n_val:]``, both kept in permutation order
    (not sorted), so ``x_train[k] == x_train_all[train_idx[k]]`` and the split is exactly
    reproducible from the seed. The test set keeps archive order. With ``standardize`` each
    channel is shifted and scaled by the mean and std of the *training split only* (the values
    are recorded in ``meta_json``).
    """
    archive = Path(archive)
    data = read_archive(archive, expected_train=expected_train, expected_test=expected_test)
    x_all = data["x_train_all"]
    n_total = len(x_all)
    n_val = int(n_val)
    if not 0 <= n_val < n_total:
        raise DataError(f"n_val={n_val} must be in [0, {n_total - 1}] for {n_total} images")
    perm = np.random.default_rng(split_seed).permutation(n_total).astype(np.int64)
    val_idx = perm[:n_val].copy()
    train_idx = perm[n_val:].copy()

    mean, std = _channel_stats(x_all, train_idx)
    x_train = _scaled(x_all, train_idx)
    x_val = _scaled(x_all, val_idx)
    x_test = _scaled(data["x_test"], None)
    std_meta = None
    if standardize:
        if min(std) <= 0:
            raise DataError(f"{archive}: a channel has zero variance; cannot standardise")
        m32 = np.asarray(mean, dtype=np.float32)
        s32 = np.asarray(std, dtype=np.float32)
        for x in (x_train, x_val, x_test):
            x -= m32
            x /= s32
        std_meta = {"mean": mean, "std": std}

    meta = {
        "archive": archive.name,
        "archive_md5": md5sum(archive),
        "split_seed": int(split_seed),
        "n_train": int(len(train_idx)),
        "n_val": int(n_val),
        "n_test": int(len(x_test)),
        "n_train_total": int(n_total),
        "split": (
            "perm = numpy.random.default_rng(split_seed).permutation(n_train_total); "
            "val_idx = perm[:n_val]; train_idx = perm[n_val:] (permutation order kept)"
        ),
        "scale": "pixel / 255",
        "layout": "(image, row, column, channel), channels R, G, B",
        "train_channel_mean": mean,
        "train_channel_std": std,
        "standardize": std_meta,
    }
    return {
        "x_train": x_train,
        "y_train": data["y_train_all"][train_idx],
        "x_val": x_val,
        "y_val": data["y_train_all"][val_idx],
        "x_test": x_test,
        "y_test": data["y_test"],
        "class_names": np.array(data["class_names"], dtype=str),
        "train_idx": train_idx,
        "val_idx": val_idx,
        "meta_json": np.array(json.dumps(meta, indent=1)),
    }


# --------------------------------------------------------------------------------------------
# writing archives in the official format (tests, demo)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# synthetic CIFAR-shaped data
# --------------------------------------------------------------------------------------------


def _shape_masks() -> np.ndarray:
    """Ten 36x36 float masks (one simple shape per class), cropped to 32x32 with jitter."""
    s = 36
    r, c = np.mgrid[0:s, 0:s].astype(np.float64)
    cr = cc = (s - 1) / 2
    d = np.hypot(r - cr, c - cc)
    m = np.zeros((10, s, s))
    m[0, 6:12, 6:30] = 1  # bar across the top
    m[1, 24:30, 6:30] = 1  # bar across the bottom
    m[2, 6:30, 6:12] = 1  # bar down the left
    m[3, 6:30, 24:30] = 1  # bar down the right
    m[4, 11:25, 11:25] = 1  # filled square
    m[5] = d <= 8  # filled disc
    m[6] = np.abs(r - c) <= 2.5  # diagonal
    m[7] = np.abs(r + c - (s - 1)) <= 2.5  # anti-diagonal
    m[8] = (np.abs(r - cr) <= 2.5) | (np.abs(c - cc) <= 2.5)  # cross
    m[9] = (d >= 9) & (d <= 13)  # ring
    return m


_CLASS_COLOURS = np.array(
    [
        [90, 120, 170],  # airplane: sky blue
        [160, 60, 60],  # automobile: red
        [120, 140, 80],  # bird: olive
        [150, 110, 90],  # cat: brown
        [110, 150, 100],  # deer: green
        [140, 120, 150],  # dog: mauve
        [70, 130, 70],  # frog: dark green
        [130, 90, 60],  # horse: dark brown
        [60, 100, 150],  # ship: sea blue
        [170, 150, 80],  # truck: mustard
    ],
    dtype=np.float64,
)


def make_synthetic_images(n_per_class_train: int, n_per_class_test: int, seed: int = 0):
    """A small CIFAR-shaped uint8 dataset with a learnable signal.

    Each class has a mean background colour (jittered per image) and a bright class-specific
    shape (bars in four positions, square, disc, two diagonals, cross, ring) shifted by up to
    +-2 pixels, all under Gaussian noise (sigma 25). Classes are balanced; images are shuffled.
    Returns ``(x_train, y_train, x_test, y_test, class_names)`` with uint8 ``(n, 32, 32, 3)``
    images, int64 labels and the official CIFAR-10 class names.
    """
    rng = np.random.default_rng(seed)
    masks = _shape_masks()

    def make(n_per_class: int):
        y = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), n_per_class)
        y = y[rng.permutation(len(y))]
        n = len(y)
        r0 = rng.integers(0, 5, size=n)
        c0 = rng.integers(0, 5, size=n)
        ar = np.arange(32)
        rows = r0[:, None, None] + ar[None, :, None]
        cols = c0[:, None, None] + ar[None, None, :]
        shape = masks[y[:, None, None], rows, cols]
        colour = _CLASS_COLOURS[y] + rng.normal(0, 20, size=(n, 3))
        strength = rng.uniform(50, 90, size=(n, 1, 1, 1))
        img = colour[:, None, None, :] + strength * shape[..., None]
        img += rng.normal(0, 25, size=img.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8), y

    x_train, y_train = make(int(n_per_class_train))
    x_test, y_test = make(int(n_per_class_test))
    return x_train, y_train, x_test, y_test, list(CLASS_NAMES)

"""The prepared dataset (``cifar10.npz``): split, scale and standardise; read it back checked."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .archive import IMAGE_SHAPE, read_archive
from .download import md5sum
from .errors import DataError


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
    *,
    n_val: int,
    split_seed: int,
    standardize: bool,
    expected_train: int,
    expected_test: int,
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
# reading cifar10.npz back
# --------------------------------------------------------------------------------------------

SPLITS = ("train", "val", "test")
#: Every array of ``cifar10.npz`` (docs/outputs.md).
PREPARED_KEYS = (
    *(f"{xy}_{split}" for split in SPLITS for xy in ("x", "y")),
    "class_names",
    "train_idx",
    "val_idx",
    "meta_json",
)


@dataclass(frozen=True)
class Prepared:
    """A checked ``cifar10.npz``: the arrays asked for, and the small parts of the rest."""

    path: Path
    arrays: dict  # name -> array, only the names asked for
    class_names: list  # str, in label order
    meta: dict  # the decoded meta_json
    shapes: dict  # name -> shape of every array in the file, in file order


def _npy_headers(path: Path) -> dict:
    """``{array name: (shape, dtype)}`` of every array of an .npz, from the headers only."""
    headers = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    continue
                with zf.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                headers[name[: -len(".npy")]] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz file (truncated or foreign?): {exc}") from exc
    return headers


def _check_prepared(path: Path, headers: dict) -> None:
    """Every array of the contract is there, with consistent shapes and the right kinds."""
    missing = [k for k in PREPARED_KEYS if k not in headers]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)}: not a prepared cifar10.npz (run the prepare step)"
        )
    shape = {k: headers[k][0] for k in PREPARED_KEYS}
    kind = {k: headers[k][1].kind for k in PREPARED_KEYS}
    problems = []
    for split in SPLITS:
        x, y = f"x_{split}", f"y_{split}"
        if len(shape[x]) != 4 or shape[x][1:] != IMAGE_SHAPE:
            problems.append(f"{x} has shape {shape[x]}, expected (n, 32, 32, 3)")
        elif shape[y] != shape[x][:1]:
            problems.append(f"{y} has shape {shape[y]}, expected ({shape[x][0]},) to match {x}")
        if kind[x] != "f":
            problems.append(f"{x} has dtype {headers[x][1]}, expected floats")
    for key in ("y_train", "y_val", "y_test", "train_idx", "val_idx"):
        if kind[key] not in "iu":
            problems.append(f"{key} has dtype {headers[key][1]}, expected integers")
    for idx, x in (("train_idx", "x_train"), ("val_idx", "x_val")):
        if len(shape[x]) == 4 and shape[idx] != shape[x][:1]:
            problems.append(f"{idx} has shape {shape[idx]}, expected ({shape[x][0]},) to match {x}")
    if len(shape["class_names"]) != 1:
        problems.append(f"class_names has shape {shape['class_names']}, expected (n_classes,)")
    if kind["class_names"] != "U":
        problems.append(f"class_names has dtype {headers['class_names'][1]}, expected text")
    if shape["meta_json"] != ():
        problems.append(f"meta_json has shape {shape['meta_json']}, expected () (one JSON text)")
    if kind["meta_json"] != "U":
        problems.append(f"meta_json has dtype {headers['meta_json'][1]}, expected text")
    if problems:
        raise DataError(f"{path}: " + "; ".join(problems))


def load_prepared(path, arrays=PREPARED_KEYS) -> Prepared:
    """Read the prepared dataset at ``path`` (written by :func:`prepare_dataset`), checked.

    Every array of the contract must be present with consistent shapes; only the ``arrays``
    named are loaded (``()`` reads just the headers, the class names and ``meta_json``).
    Raises :class:`DataError` naming the file and the missing key or the wrong shape.
    """
    path = Path(path)
    unknown = [k for k in arrays if k not in PREPARED_KEYS]
    if unknown:
        raise ValueError(f"load_prepared: unknown arrays {unknown}; a prepared file has {PREPARED_KEYS}")
    if not path.is_file():
        raise DataError(f"prepared data {path} does not exist (run the prepare step first)")
    headers = _npy_headers(path)
    _check_prepared(path, headers)
    try:  # the headers were sound; an array's bytes may not be (a bad CRC, a cut-off member)
        with np.load(path, allow_pickle=False) as z:
            loaded = {k: z[k] for k in arrays}
            class_names = [str(c) for c in z["class_names"]]
            meta_text = str(z["meta_json"])
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise DataError(
            f"{path}: an array cannot be read ({type(exc).__name__}: {exc}); the file is damaged: "
            "delete it and run the prepare step again"
        ) from exc
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: meta_json is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path}: meta_json holds {meta_text[:40]!r}, expected a JSON object {{...}}")
    # a label outside the classes would train against an all-zero target without a word
    wrong = [f"{k} has labels {int(v.min())}..{int(v.max())}, expected 0..{len(class_names) - 1} (one per class name)"
             for k, v in loaded.items() if k.startswith("y_") and v.size and (v.min() < 0 or v.max() >= len(class_names))]  # fmt: skip
    if wrong:
        raise DataError(f"{path}: " + "; ".join(wrong))
    shapes = {k: shape for k, (shape, _) in headers.items()}
    return Prepared(path=path, arrays=loaded, class_names=class_names, meta=meta, shapes=shapes)

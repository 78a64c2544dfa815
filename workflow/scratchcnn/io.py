"""Atomic file writes: a temporary name in the same folder, then a rename.

A crash or a bad input never leaves a half-written output behind.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import zipfile
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np


# What reading a results file (json, pandas, np.load, our DataError and CheckpointError) raises when
# the file is missing, cut short, foreign or lacks a key: a step script says it in one line naming the file.
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)


class InputError(Exception):
    """An input file a step cannot use; the message names its flag and path."""


def read_input(flag: str, path, reader):
    """``reader(path)``, any of READ_ERRORS turned into an InputError naming ``flag`` and ``path``."""
    try:
        return reader(path)
    except READ_ERRORS as exc:
        raise InputError(f"{flag} {path} cannot be read ({type(exc).__name__}: {exc})") from exc


@contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The file gets the mode of any new file under the user's umask (0644 under 022), not
    mkstemp's private 0600: colleagues on a shared machine read the results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# atomic_path's temporary files: a process killed outright (SIGKILL) leaves its one behind
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.tmp.*")


def leftover_temporaries(folder) -> list:
    """The temporary files of :func:`atomic_path` in ``folder``: a writer's in progress, or one
    left by a writer that was killed. Only the folder's sole writer may remove them."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and _TEMPORARY.fullmatch(p.name))


@contextmanager
def all_or_none(paths):
    """A step's results that belong together: where the block fails in any way (a full disk,
    Ctrl-C, SIGTERM), every one of ``paths`` is removed, so that none is left beside another
    run's. The failure itself is re-raised; a path that cannot be removed is left to it."""
    try:
        yield
    except BaseException:
        for path in paths:
            with suppress(OSError):
                Path(path).unlink(missing_ok=True)
        raise


def save_npz_atomic(path, arrays: dict, compressed=False) -> None:
    # the temporary name ends in .npz so NumPy does not append the suffix itself
    with atomic_path(path, suffix=".npz") as tmp:
        (np.savez_compressed if compressed else np.savez)(tmp, **arrays)


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path, obj) -> None:
    """``obj`` as indented UTF-8 JSON, atomically; a value that is not finite (a diverged run's
    loss) is written as null, since JSON has no NaN and strict readers refuse Python's."""
    text = json.dumps(_plain(obj), indent=2, ensure_ascii=False, allow_nan=False)
    write_text_atomic(path, text + "\n")


def _plain(obj):
    """``obj`` in JSON's types: NumPy scalars and arrays (``Paramspace`` hands out NumPy scalars)
    as Python's, paths as text, and every NaN or infinity as None."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_json_object(path) -> dict:
    """The JSON object in ``path`` (every results file's top level is one); anything else is a ValueError."""
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a JSON {type(obj).__name__}, expected an object")
    return obj

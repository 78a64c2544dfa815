"""Checkpoints and training snapshots, each one ``.npz`` file.

A checkpoint (``model.npz``) holds every array, the architecture and metadata;
see the package docstring for the layout. Saving is atomic; loading checks the
architecture and every shape and says exactly what does not match.

A snapshot (``state.npz``) holds a :class:`~scratchcnn.training.TrainState`
after a completed epoch, so a killed run continues where it stopped.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backend import Backend, host_array
from .io import save_npz_atomic
from .model import BN_STATE_NAMES, PARAM_NAMES, make_arch, param_shapes
from .training import TrainState

ARRAY_NAMES = PARAM_NAMES + BN_STATE_NAMES


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, foreign or does not match."""


@dataclass
class Checkpoint:
    params: dict  # host arrays: the learnable parameters and the BN running statistics
    arch: dict
    meta: dict


def save_checkpoint(path, params: dict, bn_state: dict, arch: dict, meta: dict):
    arrays = {name: host_array(params[name]) for name in PARAM_NAMES}
    arrays.update({name: host_array(bn_state[name]) for name in BN_STATE_NAMES})
    arrays["arch_json"] = np.array(json.dumps(arch))
    arrays["meta_json"] = np.array(json.dumps(meta, default=_json_default))
    save_npz_atomic(path, arrays)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def read_npz(path, what="checkpoint") -> dict:
    """All arrays of an ``.npz`` as a dict, with clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a single .npy array under this name
            raise ValueError(f"it holds one {type(z).__name__}, not named arrays")
        with z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{what} {path} is not a readable .npz file (truncated or foreign?): {exc}"
        ) from exc


def load_checkpoint(path, expected_arch: dict | None = None) -> Checkpoint:
    arrays = read_npz(path)
    missing = [k for k in ARRAY_NAMES + ("arch_json", "meta_json") if k not in arrays]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: not a scratchcnn model")
    try:
        arch = json.loads(str(arrays["arch_json"]))
        meta = json.loads(str(arrays["meta_json"]))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path}: arch_json/meta_json is not valid JSON ({exc})") from exc
    if not isinstance(arch, dict) or not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: arch_json and meta_json must each hold a JSON object")
    missing = sorted(set(make_arch()) - set(arch))  # every key the model reads, not only the shapes'
    if missing:
        raise CheckpointError(f"checkpoint {path}: its architecture lacks {', '.join(missing)}")
    if expected_arch is not None:
        diff = [
            f"{k}: checkpoint has {arch.get(k)!r}, expected {v!r}"
            for k, v in expected_arch.items()
            if arch.get(k) != v
        ]
        if diff:
            raise CheckpointError(f"checkpoint {path} has another architecture: " + "; ".join(diff))
    try:
        shapes = param_shapes(arch)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: its architecture is incomplete or invalid ({exc})") from exc
    wrong = [
        f"{k} has shape {arrays[k].shape}, the architecture needs {tuple(shapes[k])}"
        for k in ARRAY_NAMES
        if arrays[k].shape != tuple(shapes[k])
    ] + [
        f"{k} has dtype {arrays[k].dtype}, expected floats"
        for k in ARRAY_NAMES
        if arrays[k].dtype.kind != "f"
    ]
    if wrong:
        raise CheckpointError(f"checkpoint {path}: " + "; ".join(wrong))
    params = {k: arrays[k] for k in ARRAY_NAMES}
    return Checkpoint(params=params, arch=arch, meta=meta)


def save_train_state(path, state: TrainState, fingerprint: str) -> None:
    """A resumable snapshot after ``state.epoch`` completed epochs (atomic)."""
    arrays = {f"params/{k}": host_array(v) for k, v in state.params.items()}
    arrays.update({f"bn/{k}": host_array(v) for k, v in state.bn_state.items()})
    if state.best_params is not None:
        arrays.update({f"best_params/{k}": host_array(v) for k, v in state.best_params.items()})
        arrays.update({f"best_bn/{k}": host_array(v) for k, v in state.best_bn_state.items()})
    info = {k: getattr(state, k) for k in ("epoch", "history", "best_epoch", "best_val_acc", "status")}
    arrays["info_json"] = np.array(json.dumps({**info, "fingerprint": fingerprint}))
    save_npz_atomic(path, arrays)


def load_train_state(path, fingerprint: str, backend: Backend) -> TrainState | None:
    """The snapshot at ``path``, or None when it is absent, unreadable or from another run."""
    try:
        arrays = read_npz(path, "snapshot")
        info = json.loads(str(arrays.pop("info_json")))
    except (ValueError, KeyError):  # absent, cut short, or not ours (CheckpointError is a ValueError)
        return None
    if not isinstance(info, dict) or info.pop("fingerprint", None) != fingerprint:
        return None

    def group(prefix):
        out = {k.split("/", 1)[1]: backend.asarray(v) for k, v in arrays.items() if k.startswith(prefix + "/")}
        return out or None

    return TrainState(params=group("params"), bn_state=group("bn"), best_params=group("best_params"),
                      best_bn_state=group("best_bn"), **info)  # fmt: skip

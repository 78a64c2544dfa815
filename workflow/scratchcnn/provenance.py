"""What made a result: config, backend, device, package versions, code version."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from . import __version__


def blas_library() -> str | None:
    """The BLAS NumPy was built with, as "name version" (its products' rounding is the library's)."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas['version']}"
    except Exception:  # informative only: a NumPy that does not say
        return None


def package_versions(backend=None) -> dict:
    versions = {"python": platform.python_version(), "numpy": np.__version__, "scratchcnn": __version__}
    if blas := blas_library():
        versions["blas"] = blas
    if backend is not None and backend.name == "cupy":
        versions["cupy"] = backend.xp.__version__
        try:
            versions["cuda_runtime"] = backend.xp.cuda.runtime.runtimeGetVersion()
        except Exception:  # informative only
            pass
    try:
        from importlib.metadata import version

        versions["snakemake"] = version("snakemake")
    except Exception:
        pass
    return versions


#: The code that makes results: a change here (an untracked file too) marks the commit ``-dirty``;
#: an edited config does not (every result records its config).
CODE_PATHS = ("Snakefile", "workflow", "report")


def git_commit(root=None) -> str | None:
    """The project's commit (with ``-dirty`` when its code differs from it), or None. ``root``:
    the repository (default: this package's)."""
    if os.environ.get("SCRATCHCNN_GIT_COMMIT"):
        return os.environ["SCRATCHCNN_GIT_COMMIT"]
    root = Path(__file__).resolve().parents[2] if root is None else root
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def blas_threads() -> int | None:
    """The host threads the run's BLAS may use (Snakemake sets OMP_NUM_THREADS to the job's
    threads), or None where the library chose for itself."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else None


def gpu_numerics() -> dict:
    """The environment's choices that change a CuPy run's rounding, not its recipe: our CUDA
    kernels on or off (``SCRATCHCNN_KERNELS``), TF32 products (``CUPY_TF32``) and the training
    step replayed from a CUDA graph (``SCRATCHCNN_GRAPH``: its products use a cuBLAS handle of
    their own, which may pick other algorithms)."""
    from . import graph, kernels

    return {"custom_kernels": kernels.enabled(), "tf32": os.environ.get("CUPY_TF32", "0") not in ("", "0"),
            "cuda_graph": graph.enabled()}  # fmt: skip


def shared_gpu_jobs(metrics: dict) -> int | None:
    """How many training jobs could share the GPU a run's ``metrics.json`` says it trained on
    (its ``jobs_per_gpu`` setting); None on the CPU or where the file does not say. Above 1,
    the run's seconds per epoch may include waiting for the other jobs' kernels."""
    if metrics.get("backend") != "cupy":
        return None
    jobs = ((metrics.get("provenance") or {}).get("settings") or {}).get("jobs_per_gpu")
    return int(jobs) if isinstance(jobs, (int, float)) and jobs >= 1 else None


#: What a prepared data file's meta says of where its images came from and how they were split.
DATA_RECORD_KEYS = ("archive", "archive_md5", "split_seed", "n_train", "n_val", "n_test", "standardize")


def data_record(meta: dict) -> dict:
    """The data a result was made from, out of the prepared file's meta (``cifar10.npz``): the
    archive and its md5 tell the real CIFAR-10, a stand-in and the synthetic demo apart."""
    return {k: meta.get(k) for k in DATA_RECORD_KEYS}


def provenance(config: dict, backend, settings: dict | None = None, data: dict | None = None) -> dict:
    """What made a result. ``config`` is the recipe; ``data`` the prepared data's meta (recorded
    as :func:`data_record`); ``settings`` are the run's choices of where
    and how it ran (the device asked for, evaluation batch size, jobs per GPU, BLAS threads), which
    can move the float32 rounding but not the recipe. The workflow passes those outside its rerun
    triggers, so they are recorded here instead.
    A CuPy run also records ``gpu_numerics``."""
    prov = {
        "config": config,
        "data": data_record(data or {}),
        "settings": {**(settings or {}), "threads": blas_threads()},
        "backend": backend.name,
        "device": backend.device_name,
        "versions": package_versions(backend),
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if backend.name == "cupy":
        prov["gpu_numerics"] = gpu_numerics()
    return prov

"""Choose NumPy or CuPy at run time: ``device: auto | cpu | gpu``."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import os
import platform
import shutil
from dataclasses import dataclass
from types import ModuleType

import numpy as np


_log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """The requested device cannot be used."""


class NoGpuError(BackendError):
    """No GPU to try: CuPy is not installed, or it sees no CUDA device or driver."""


#: How the report writes each backend's name (results files record the module name).
DISPLAY_NAMES = {"numpy": "NumPy", "cupy": "CuPy"}


def display_name(name: str) -> str:
    """``"NumPy"`` for ``"numpy"``, ``"CuPy"`` for ``"cupy"``; anything else as it is."""
    return DISPLAY_NAMES.get(name, name)


@dataclass(frozen=True)
class Backend:
    xp: ModuleType
    name: str  # "numpy" or "cupy"
    device_name: str
    device_id: int | None = None

    def asarray(self, a, dtype=None):
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a) -> np.ndarray:
        """A host NumPy copy of ``a`` (a no-op for NumPy arrays)."""
        return host_array(a)

    def synchronize(self) -> None:
        if self.name == "cupy":
            self.xp.cuda.Device().synchronize()  # the current device


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    return f"{name} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def keep_freed_memory() -> bool:
    """Let glibc reuse freed blocks for NumPy's large temporaries.

    By default every array over 128 KiB is a fresh ``mmap``, and its pages
    fault in again on each training step; serving them from the heap makes a
    CPU training step about a third faster. Returns False where this is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        big = 1 << 30
        return bool(libc.mallopt(m_mmap_threshold, big)) and bool(libc.mallopt(m_trim_threshold, big))
    except (OSError, AttributeError):
        return False


def numpy_backend() -> Backend:
    keep_freed_memory()
    return Backend(np, "numpy", cpu_name())


def _cupy_backend(device_id: int | None = None) -> Backend:
    """CuPy on ``device_id`` (default: the current device); raises if unusable."""
    try:
        import cupy as cp
    except Exception as exc:  # not installed (NoGpuError), or installed but broken
        missing = isinstance(exc, ImportError) and exc.name == "cupy"
        raise (NoGpuError if missing else BackendError)(
            f"CuPy cannot be imported ({exc}); ./setup.sh --gpu installs it (README.md, GPU)"
        ) from exc
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver
        raise NoGpuError(f"CuPy imports but finds no CUDA driver or device ({exc})") from exc
    if count < 1:
        raise NoGpuError("CuPy imports but sees no CUDA device")
    try:
        dev = cp.cuda.Device(device_id if device_id is not None else 0)
        dev.use()
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        # the GPU answers, through the libraries a training step loads: cuBLAS (the product), NVRTC
        # (the elementwise kernel, compiled at first use) and a reduction. CuPy imports without them
        # and loads them lazily, so a plain allocation would pass where training then fails.
        a = cp.arange(4, dtype=cp.float32).reshape(2, 2)
        answer = float(((a @ a) * 2).sum())
        if answer != 44.0:
            raise BackendError(f"a 2x2 product summed to {answer}, not 44")
    except Exception as exc:
        raise BackendError(f"CuPy sees {count} CUDA device(s) but the GPU does not answer ({exc})") from exc
    return Backend(cp, "cupy", name, dev.id)


def may_use_gpu(device: str) -> bool:
    """Whether a job with this ``device`` setting can run on a GPU at all, decided without touching
    one (the pipeline asks it on the machine that schedules the jobs): False for ``cpu``, and for
    ``auto`` where CuPy is not installed (the job runs on NumPy then); True for ``gpu``, and for
    ``auto`` with CuPy installed, since whether a GPU answers is for the job to find out where it runs."""
    if device == "cpu":
        return False
    if device == "auto":
        return importlib.util.find_spec("cupy") is not None
    return True


def nvidia_gpu_sign() -> str | None:
    """What shows that this machine has an NVIDIA GPU: its driver's ``/proc`` file, or ``nvidia-smi``
    on PATH; None where neither is there."""
    if os.path.exists("/proc/driver/nvidia/version"):
        return "/proc/driver/nvidia/version"
    return shutil.which("nvidia-smi")


def unused_gpu_warning(device: str) -> str | None:
    """For ``device: auto`` where CuPy is not installed but the machine has an NVIDIA GPU: a line
    saying that training runs on the CPU (hours instead of minutes) and how to use the GPU; else None."""
    if device != "auto" or may_use_gpu(device):
        return None
    sign = nvidia_gpu_sign()
    if sign is None:
        return None
    return (
        f"device: auto trains on the CPU here: CuPy is not installed, although this machine has an "
        f"NVIDIA GPU ({sign}). ./setup.sh --gpu installs CuPy (README, GPU); device: cpu says the CPU is meant."
    )


def get_backend(device: str = "auto", device_id: int | None = None) -> Backend:
    """``auto``: CuPy when it imports and a GPU answers, else NumPy. Where CuPy is installed and
    sees a GPU that then fails, ``auto`` still falls back, but with a warning: such a run would
    otherwise take the CPU's hours without a word."""
    if device == "cpu":
        return numpy_backend()
    if device == "gpu":
        try:
            return _cupy_backend(device_id)
        except BackendError as exc:
            raise BackendError(f"device: gpu was requested, but {exc}") from exc
    if device == "auto":
        try:
            return _cupy_backend(device_id)
        except NoGpuError:
            return numpy_backend()
        except BackendError as exc:
            _log.warning("device: auto runs on the CPU (NumPy): %s; device: gpu makes this an error", exc)
            return numpy_backend()
    raise BackendError(f"device must be one of auto, cpu, gpu; got {device!r}")


def array_module(a) -> ModuleType:
    """NumPy or CuPy, whichever owns ``a``."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def host_array(a) -> np.ndarray:
    """``a`` as a host NumPy array, whichever library owns it (``np.asarray`` refuses CuPy's)."""
    xp = array_module(a)
    return np.asarray(a) if xp is np else xp.asnumpy(a)

"""Share the GPUs of one machine between concurrent jobs that Snakemake starts.

Snakemake's ``--resources gpu=N`` caps how many training jobs run at once, but
gives no job a device id. Each job therefore claims a free (device, slot) pair
itself with :func:`claim_gpu`: one lock file per pair, held with ``flock`` for
the job's lifetime. The kernel drops an ``flock`` when the process ends for any
reason (normal exit, exception, crash, SIGKILL), so a dead job never leaves a
device claimed. Lock files are never deleted: unlinking a locked file would
let a newcomer lock a fresh inode of the same name while the old one is held.

    with claim_gpu(count_gpus(), jobs_per_gpu=2) as device_id:
        backend = get_backend("gpu", device_id=device_id)
        ...
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import stat
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

_log = logging.getLogger(__name__)

# The default of ``visible``: read CUDA_VISIBLE_DEVICES when claim_gpu is called, not at import.
FROM_ENVIRONMENT = object()

_UUID_TOKEN = re.compile(r"^(GPU|MIG)-[0-9A-Za-z-]+$|^MIG-GPU-[0-9A-Za-z-]+(/\d+)+$")


class GpuClaimError(RuntimeError):
    """No GPU slot can be claimed (none exists, or none came free in time)."""


def count_gpus(cupy_module: ModuleType | None = None) -> int:
    """CUDA devices CuPy sees (already limited by CUDA_VISIBLE_DEVICES); 0 without CuPy or a driver.

    Only asks the driver for the count: no context is made on any device.
    """
    try:
        if cupy_module is None:
            import cupy as cupy_module
        return int(cupy_module.cuda.runtime.getDeviceCount())
    except Exception:  # ImportError, no driver, no device: all mean "no GPU to claim"
        return 0


def physical_ids(visible: str | None, n_devices: int) -> list[str]:
    """The physical name of each visible device, in CUDA's order.

    ``visible`` is CUDA_VISIBLE_DEVICES: None means every device (0..n-1). CUDA reads the
    list up to the first entry that is neither a non-negative integer nor a GPU/MIG UUID,
    and the devices that exist bound it too.
    """
    if visible is None:
        return [str(i) for i in range(n_devices)]
    ids = []
    for token in visible.split(","):
        token = token.strip()
        if token.isdigit():
            ids.append(str(int(token)))
        elif _UUID_TOKEN.match(token):
            ids.append(token)
        else:
            break
    return ids[:n_devices]


def card_names(ids: list[str], cupy_module: ModuleType | None = None) -> list[str]:
    """One lock name per visible device, whatever way CUDA_VISIBLE_DEVICES spelt the card.

    ``ids`` are :func:`physical_ids`. A whole card is named by its PCI bus id, asked of the
    driver (``pci-0000:3B:00.0``), so an index, a UUID and another ``CUDA_DEVICE_ORDER`` all
    give one name. A MIG instance keeps its UUID: the instances of a card share its bus id.
    Where the driver cannot say (no CuPy, an old one) or two devices answer alike, the names
    stay as given. A device query (CUDA's cudaDeviceGetPCIBusId), like the count's.
    """
    try:
        if cupy_module is None:
            import cupy as cupy_module
        names = [
            token if token.startswith("MIG-") else f"pci-{cupy_module.cuda.runtime.deviceGetPCIBusId(i)}"
            for i, token in enumerate(ids)
        ]
    except Exception:  # ImportError, no driver, a CuPy without the call: keep the given names
        return list(ids)
    return names if len(set(names)) == len(names) else list(ids)


def default_lock_dir() -> Path:
    """``$TMPDIR/scratchcnn-gpu-locks-<uid>`` (inside a SLURM job: one folder per allocation).

    SLURM gives each job its own GPUs and, with device cgroups, numbers them from 0 in every
    job: jobs of different allocations on one node must not wait on each other's locks.
    """
    name = f"scratchcnn-gpu-locks-{os.getuid()}"
    if os.environ.get("SLURM_JOB_ID"):
        name += f"-slurm{os.environ['SLURM_JOB_ID']}"
    return Path(tempfile.gettempdir()) / name


def _own_folder(path: Path) -> None:
    """Make the default lock folder (a name anyone can guess, in a shared /tmp) private, and
    refuse one that another user made first or that is a link or a file: its locks could be
    held forever or point at our files."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:  # a file or a link to nowhere in its place: named below
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        problem = "a symbolic link, not a folder"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "a file, not a folder"
    elif st.st_uid != os.getuid():
        problem = f"another user's folder (owner uid {st.st_uid}, you are {os.getuid()})"
    else:
        if stat.S_IMODE(st.st_mode) & 0o077:  # made by hand or by an older version: ours alone from now on
            os.chmod(path, 0o700)
        return
    raise GpuClaimError(
        f"GPU lock folder {path} is {problem}: remove it, or run with another TMPDIR "
        f"(its parent folder: {path.parent})"
    )


def lock_path(lock_dir: Path, physical_id: str, slot: int) -> Path:
    safe = re.sub(r"[^0-9A-Za-z_.-]", "_", physical_id)
    return Path(lock_dir) / f"gpu{safe}.slot{slot}.lock"


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on ``path``, or None if another holds it.

    Never through a symbolic link (it could point at any file of ours). Another user's lock file,
    in a folder shared on purpose, opens read-only: flock needs no more.
    """
    flags = os.O_CREAT | os.O_NOFOLLOW  # not inherited by child processes
    try:
        try:
            fd = os.open(path, os.O_RDWR | flags, 0o666)
        except PermissionError:
            fd = os.open(path, os.O_RDONLY | flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise GpuClaimError(f"GPU lock {path} is a symbolic link; remove it (a lock is a plain file)") from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
            return None
        raise
    return fd


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "?"
    except OSError:
        return "?"


def _grab_least_loaded(lock_dir: Path, ids: list[str], jobs_per_gpu: int) -> tuple[int, int, int] | None:
    """(index, slot, descriptor) of the lowest free slot on the device with the most free
    slots (the lowest index among equals), or None when every slot is held.

    The free slots are counted by locking each for a moment, then all but the chosen one are let
    go: trying slots in a fixed order would put the next job beside a running one on device 0
    once device 0's first job has finished, while device 1 sits idle.
    """
    free: dict[tuple[int, int], int] = {}
    try:
        for index, name in enumerate(ids):
            for slot in range(jobs_per_gpu):
                if (fd := _try_lock(lock_path(lock_dir, name, slot))) is not None:
                    free[index, slot] = fd
        if not free:
            return None
        n_free = Counter(index for index, _ in free)
        index, slot = min(free, key=lambda key: (-n_free[key[0]], key))
        return index, slot, free.pop((index, slot))
    finally:
        for fd in free.values():
            os.close(fd)


@contextmanager
def claim_gpu(
    n_devices: int,
    jobs_per_gpu: int = 1,
    lock_dir: str | Path | None = None,
    visible: str | None | object = FROM_ENVIRONMENT,
    cupy_module: ModuleType | None = None,
    poll: float = 1.0,
    timeout: float | None = None,
    log: Callable[[str], None] = _log.info,
) -> Iterator[int]:
    """Claim one of ``jobs_per_gpu`` slots on one of the visible GPUs; yield its index.

    The index counts within the visible devices (what ``cupy.cuda.Device(i)`` takes); the
    lock files are named by card (:func:`card_names`, asking ``cupy_module`` or CuPy), so jobs
    with different CUDA_VISIBLE_DEVICES never double up. The job goes to the device with the
    fewest slots held (:func:`_grab_least_loaded`), so no device is shared while another is
    idle, also after earlier jobs have finished. When every slot is held the call waits,
    polling every ``poll`` seconds, and raises GpuClaimError after ``timeout`` seconds (None:
    wait for ever). The claim lasts until the block exits, or the process ends.
    """
    if jobs_per_gpu < 1:
        raise ValueError(f"jobs_per_gpu must be at least 1, got {jobs_per_gpu}")
    if visible is FROM_ENVIRONMENT:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = card_names(physical_ids(visible, n_devices), cupy_module)
    if not ids:
        raise GpuClaimError(
            f"no GPU to claim: {n_devices} device(s) seen, CUDA_VISIBLE_DEVICES={visible!r}"
        )
    if lock_dir is None:
        lock_dir = default_lock_dir()
        _own_folder(lock_dir)
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    slots = [(index, slot) for slot in range(jobs_per_gpu) for index in range(len(ids))]
    started = time.monotonic()
    waiting_said = False
    while True:
        if (grabbed := _grab_least_loaded(lock_dir, ids, jobs_per_gpu)) is not None:
            index, slot, fd = grabbed
            try:
                try:  # the note only tells a waiting job who holds the slot: a full /tmp must not stop this one
                    os.ftruncate(fd, 0)
                    os.write(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode())
                except OSError:
                    pass
                log(
                    f"claimed GPU {index} (physical {ids[index]}, slot {slot + 1} of {jobs_per_gpu})"
                    + (f" after waiting {time.monotonic() - started:.0f}s" if waiting_said else "")
                )
                yield index
            finally:
                os.close(fd)  # releases the flock; the file stays for the next claimer
            return
        waited = time.monotonic() - started
        holders = "; ".join(
            f"{p.name}: {_holder(p)}" for p in (lock_path(lock_dir, ids[i], s) for i, s in slots)
        )
        if timeout is not None and waited >= timeout:
            raise GpuClaimError(
                f"no free GPU slot after {waited:.0f}s: all {len(ids)} visible device(s) "
                f"(physical {', '.join(ids)}) x {jobs_per_gpu} job(s) per GPU are held "
                f"(locks in {lock_dir}: {holders}). Lower Snakemake's --resources gpu=... to "
                f"at most GPUs x jobs per GPU (train.jobs_per_gpu; under profiles/gpu the "
                f"number after &jobs), or raise the jobs per GPU."
            )
        if not waiting_said:
            log(
                f"all {len(ids) * jobs_per_gpu} GPU slot(s) are held ({holders}); "
                f"waiting for one to come free (locks in {lock_dir})"
            )
            waiting_said = True
        time.sleep(poll if timeout is None else max(0.0, min(poll, timeout - waited)))

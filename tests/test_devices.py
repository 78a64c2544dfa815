"""GPU claims between concurrent jobs (scratchcnn.devices), on the CPU with fake device counts.

The claimers are separate processes, as Snakemake's jobs are: an flock belongs to an open
file description, and the kernel drops it when its process dies.
"""

import json
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest

from cifar_fixtures import write_prepared
from recipe import train_argv
from step_scripts import load_script
from scratchcnn import backend as backend_lib
from scratchcnn import devices
from scratchcnn.devices import GpuClaimError, claim_gpu

CTX = mp.get_context("fork")
WAIT = 20  # seconds: a bound on any one wait below, never reached when things work
NO_DRIVER = type("cupy", (), {})  # a CuPy that cannot name a card: the names stay as given


@pytest.fixture(autouse=True)
def no_real_driver(monkeypatch):
    """The cards keep the names the tests give them unless a test brings a stand-in driver: a
    real GPU on the machine running these tests must not change the lock names they expect."""
    real = devices.card_names
    monkeypatch.setattr(devices, "card_names", lambda ids, cupy_module=None: real(ids, cupy_module or NO_DRIVER))


def _claim_and_meet(lock_dir, n_devices, jobs_per_gpu, results, barrier):
    """Claim, report the index, and hold it until every claimer holds one."""
    with claim_gpu(n_devices, jobs_per_gpu, lock_dir, visible=None, poll=0.02, log=lambda m: None) as i:
        results.put(i)
        barrier.wait(WAIT)


def _claim_and_hold(lock_dir, n_devices, hold, running, peak, results, said):
    """Claim, count how many hold a claim at once, hold ``hold`` seconds, report."""
    with claim_gpu(n_devices, 1, lock_dir, visible=None, poll=0.02, log=said.put) as i:
        with running.get_lock():
            running.value += 1
            peak.value = max(peak.value, running.value)
        time.sleep(hold)
        with running.get_lock():
            running.value -= 1
        results.put(i)


def _claim_forever(lock_dir, claimed):
    with claim_gpu(1, 1, lock_dir, visible=None, log=lambda m: None):
        claimed.set()
        time.sleep(3600)


def _start(target, *args):
    p = CTX.Process(target=target, args=args)
    p.start()
    return p


def _join_all(procs):
    for p in procs:
        p.join(WAIT)
        assert p.exitcode == 0, f"claimer exited with {p.exitcode}"


def test_concurrent_claimers_get_distinct_devices(tmp_path):
    n = 4
    results, barrier = CTX.Queue(), CTX.Barrier(n)
    procs = [_start(_claim_and_meet, tmp_path, n, 1, results, barrier) for _ in range(n)]
    _join_all(procs)  # the barrier is passed only if all four held a claim at once
    assert sorted(results.get(timeout=1) for _ in range(n)) == list(range(n))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"gpu{i}.slot0.lock" for i in range(n)]


def test_a_killed_holder_frees_its_device(tmp_path):
    claimed = CTX.Event()
    holder = _start(_claim_forever, tmp_path, claimed)
    try:
        assert claimed.wait(WAIT)
        with pytest.raises(GpuClaimError):
            with claim_gpu(1, lock_dir=tmp_path, visible=None, poll=0.02, timeout=0.1, log=lambda m: None):
                pass
        os.kill(holder.pid, signal.SIGKILL)  # no cleanup code of the holder runs
        holder.join(WAIT)
        assert holder.exitcode == -signal.SIGKILL
        with claim_gpu(1, lock_dir=tmp_path, visible=None, poll=0.02, timeout=WAIT, log=lambda m: None) as i:
            assert i == 0
    finally:
        if holder.is_alive():
            holder.kill()


def test_more_claimers_than_devices_wait_instead_of_doubling_up(tmp_path):
    running, peak = CTX.Value("i", 0), CTX.Value("i", 0)
    results, said = CTX.Queue(), CTX.Queue()
    started = time.monotonic()
    procs = [_start(_claim_and_hold, tmp_path, 2, 0.5, running, peak, results, said) for _ in range(3)]
    _join_all(procs)
    assert peak.value == 2  # two at once, never three
    assert sorted(results.get(timeout=1) for _ in range(3)) in ([0, 0, 1], [0, 1, 1])
    assert time.monotonic() - started >= 1.0  # the third waited for a 0.5 s holder
    messages = []
    while not said.empty():
        messages.append(said.get(timeout=1))
    waits = [m for m in messages if m.startswith("all 2 GPU slot(s) are held")]
    assert len(waits) == 1, messages  # the waiter says so once, not at every poll
    assert any("after waiting" in m for m in messages)


def test_jobs_per_gpu_lets_jobs_share_one_device(tmp_path):
    results, barrier = CTX.Queue(), CTX.Barrier(2)
    procs = [_start(_claim_and_meet, tmp_path, 1, 2, results, barrier) for _ in range(2)]
    _join_all(procs)
    assert [results.get(timeout=1) for _ in range(2)] == [0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu0.slot0.lock", "gpu0.slot1.lock"]


def test_slots_fill_every_device_before_any_is_shared(tmp_path):
    quiet = dict(lock_dir=tmp_path, visible=None, timeout=0, log=lambda m: None)
    with claim_gpu(2, 2, **quiet) as a, claim_gpu(2, 2, **quiet) as b, claim_gpu(2, 2, **quiet) as c:
        assert (a, b, c) == (0, 1, 0)


def test_a_device_whose_jobs_ended_gets_the_next_job_before_a_busy_one_gets_a_second(tmp_path):
    quiet = dict(lock_dir=tmp_path, visible=None, timeout=0, log=lambda m: None)
    claims = [claim_gpu(2, 2, **quiet) for _ in range(3)]
    assert [c.__enter__() for c in claims] == [0, 1, 0]
    for c in claims[:2]:  # the first jobs on GPU 0 and GPU 1 end; the third goes on, on GPU 0
        c.__exit__(None, None, None)
    with claim_gpu(2, 2, **quiet) as d, claim_gpu(2, 2, **quiet) as e:
        assert (d, e) == (1, 0)  # idle GPU 1 first (fixed slot order gave 0 here); then GPU 0's free slot
    claims[2].__exit__(None, None, None)


def test_visible_devices_give_indices_and_physical_lock_names(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # read at call time, not at import
    quiet = dict(lock_dir=tmp_path, poll=0.02, log=lambda m: None)
    with claim_gpu(2, **quiet) as first, claim_gpu(2, **quiet) as second:
        assert (first, second) == (0, 1)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu3.slot0.lock", "gpu5.slot0.lock"]
        # a job that sees only physical 5 (as its device 0) must not double up on it
        with pytest.raises(GpuClaimError):
            with claim_gpu(1, visible="5", timeout=0.1, **quiet):
                pass
    with claim_gpu(1, visible="5", timeout=0, **quiet) as i:
        assert i == 0


def test_timeout_raises_a_clear_error(tmp_path):
    quiet = dict(lock_dir=tmp_path, visible=None, poll=0.05, log=lambda m: None)
    with claim_gpu(1, **quiet):
        started = time.monotonic()
        with pytest.raises(GpuClaimError, match=r"no free GPU slot after 0s: all 1 visible device\(s\)") as err:
            with claim_gpu(1, timeout=0.3, **quiet):
                pass
        assert 0.3 <= time.monotonic() - started < 5
        assert "train.jobs_per_gpu" in str(err.value) and f"pid {os.getpid()}" in str(err.value)


def test_nothing_to_claim_and_bad_slots_are_refused(tmp_path):
    with pytest.raises(GpuClaimError, match="no GPU to claim"):
        with claim_gpu(2, lock_dir=tmp_path, visible=""):
            pass
    with pytest.raises(ValueError, match="jobs_per_gpu must be at least 1"):
        with claim_gpu(2, 0, lock_dir=tmp_path, visible=None):
            pass


def test_physical_ids_follow_cuda_visible_devices():
    assert devices.physical_ids(None, 3) == ["0", "1", "2"]
    assert devices.physical_ids(" 2, 03 ", 2) == ["2", "3"]
    assert devices.physical_ids("1,-1,2", 4) == ["1"]  # CUDA stops at an invalid entry
    assert devices.physical_ids("0,1,2,3", 2) == ["0", "1"]  # what the driver can see bounds it
    uuid = "GPU-8f6c2a1e-1b2c-4d5e-9f00-123456789abc"
    assert devices.physical_ids(f"{uuid},MIG-{uuid[4:]}", 2) == [uuid, f"MIG-{uuid[4:]}"]


def _driver(bus_ids):
    """A stand-in CuPy whose driver gives visible device i the PCI bus id bus_ids[i]."""
    runtime = type("runtime", (), {"deviceGetPCIBusId": staticmethod(lambda i: bus_ids[i])})
    return type("cupy", (), {"cuda": type("cuda", (), {"runtime": runtime})})


def test_card_names_are_the_cards_bus_ids_however_the_run_names_them():
    uuid = "GPU-8f6c2a1e-1b2c-4d5e-9f00-123456789abc"
    assert devices.card_names(["1", "0"], _driver(["0000:3B:00.0", "0000:1A:00.0"])) == [
        "pci-0000:3B:00.0", "pci-0000:1A:00.0"]  # fmt: skip
    assert devices.card_names([uuid], _driver(["0000:3B:00.0"])) == ["pci-0000:3B:00.0"]
    # a MIG instance shares its card's bus id with the card's other instances: its UUID names it
    mig = f"MIG-{uuid[4:]}"
    assert devices.card_names([mig], _driver(["0000:3B:00.0"])) == [mig]
    # where the driver cannot tell the devices apart, or cannot answer, the names stay as given
    assert devices.card_names(["0", "1"], _driver(["0000:3B:00.0", "0000:3B:00.0"])) == ["0", "1"]
    assert devices.card_names(["0"], _driver([])) == ["0"]
    no_call = type("cupy", (), {"cuda": type("cuda", (), {"runtime": object()})})
    assert devices.card_names(["2"], no_call) == ["2"]


def test_a_card_named_by_index_in_one_run_and_by_uuid_in_another_is_one_card(tmp_path):
    """Two runs sharing a lock folder, one with CUDA_VISIBLE_DEVICES=0 and one with the card's
    UUID, must count their jobs against the same slots: it is the same card."""
    uuid = "GPU-8f6c2a1e-1b2c-4d5e-9f00-123456789abc"
    card = _driver(["0000:3B:00.0"])
    quiet = dict(lock_dir=tmp_path, cupy_module=card, timeout=0, log=lambda m: None)
    with claim_gpu(1, visible="0", **quiet) as i:
        assert i == 0
        assert [p.name for p in tmp_path.iterdir()] == ["gpupci-0000_3B_00.0.slot0.lock"]
        with pytest.raises(GpuClaimError, match=r"physical pci-0000:3B:00\.0"):
            with claim_gpu(1, visible=uuid, **quiet):
                pass
        other = _driver(["0000:5E:00.0"])  # another card, by UUID: free
        with claim_gpu(1, visible="GPU-0c1d2e3f-aaaa-bbbb-cccc-123456789abc", **{**quiet, "cupy_module": other}) as j:
            assert j == 0


def test_count_gpus_asks_cupy_and_says_zero_when_it_cannot():
    class Runtime:
        def getDeviceCount(self):
            return 4

    class Broken:
        def getDeviceCount(self):
            raise RuntimeError("cudaErrorNoDevice")

    fake = type("cupy", (), {"cuda": type("cuda", (), {"runtime": Runtime()})})
    assert devices.count_gpus(fake) == 4
    fake.cuda.runtime = Broken()
    assert devices.count_gpus(fake) == 0


def test_default_lock_dir_is_per_user_and_per_slurm_job(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(devices.tempfile, "tempdir", None)  # gettempdir() caches its answer
    assert devices.default_lock_dir() == tmp_path / f"scratchcnn-gpu-locks-{os.getuid()}"
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert devices.default_lock_dir() == tmp_path / f"scratchcnn-gpu-locks-{os.getuid()}-slurm42"


def _tiny_dataset(path):
    rng = np.random.default_rng(0)
    x = rng.random((24, 32, 32, 3), dtype=np.float32)
    y = np.arange(24) % 10
    return write_prepared(path, x_train=x[:16], y_train=y[:16], x_val=x[16:], y_val=y[16:])


@pytest.mark.parametrize("device, gpus, expected", [("gpu", 2, 0), ("cpu", 2, None), ("auto", 0, None)])
def test_train_script_claims_a_gpu_only_on_a_gpu_run(tmp_path, monkeypatch, device, gpus, expected):
    train = load_script("train")
    asked = []
    monkeypatch.setattr(train, "count_gpus", lambda: gpus)
    # a stand-in GPU: NumPy, told which device it was given
    monkeypatch.setattr(
        train, "get_backend", lambda device, device_id=None: asked.append(device_id) or backend_lib.numpy_backend()
    )
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    locks, out = tmp_path / "locks", tmp_path / "out"
    argv = train_argv(_tiny_dataset(tmp_path / "data.npz"), out, filters=2, epochs=1, batch_size=8, device=device)
    argv += ["--gpu-lock-dir", str(locks)]
    assert train.main(argv) == 0
    assert asked == [expected]
    assert json.loads((out / "metrics.json").read_text())["device_id"] == expected
    assert locks.exists() == (expected is not None)  # no claim at all on the CPU
    if expected is not None:  # the claim ended with the run
        with claim_gpu(gpus, lock_dir=locks, visible=None, timeout=0, log=lambda m: None) as i:
            assert i == 0


def test_a_full_disk_for_the_holders_note_does_not_stop_the_claim(tmp_path, monkeypatch):
    """The pid note only tells a waiting job who holds the slot: a full /tmp once failed the job
    that had its slot, blaming its results folder."""
    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(devices.os, "write", full)
    with claim_gpu(1, lock_dir=tmp_path, visible=None, timeout=0, log=lambda m: None) as i:
        assert i == 0
        with pytest.raises(GpuClaimError):  # and the slot is held all the same
            with claim_gpu(1, lock_dir=tmp_path, visible=None, timeout=0, log=lambda m: None):
                pass


def test_the_default_lock_folder_is_private_and_another_users_is_refused(tmp_path, monkeypatch):
    """Its name is easy to guess in a shared /tmp: a folder another user made first could hold
    our slots for ever, or link a lock to one of our files."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(devices.tempfile, "tempdir", None)
    folder = devices.default_lock_dir()
    with claim_gpu(1, visible=None, timeout=0, log=lambda m: None) as i:
        assert i == 0
    assert os.stat(folder).st_mode & 0o777 == 0o700
    os.chmod(folder, 0o777)  # opened up by hand: private again at the next claim
    with claim_gpu(1, visible=None, timeout=0, log=lambda m: None):
        assert os.stat(folder).st_mode & 0o777 == 0o700
    monkeypatch.setattr(devices.os, "getuid", lambda: os.stat(folder).st_uid + 1)  # now it is someone else's
    monkeypatch.setattr(devices, "default_lock_dir", lambda: folder)
    with pytest.raises(GpuClaimError, match=f"GPU lock folder {folder} is another user's folder \\(owner uid .*another TMPDIR"):
        with claim_gpu(1, visible=None, timeout=0, log=lambda m: None):
            pass


def test_a_lock_folder_open_to_its_group_is_made_private(tmp_path, monkeypatch):
    """Group members are other users too: a folder at 0o750 (made by hand or by an older
    version) is ours alone after a claim, as one open to all is."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(devices.tempfile, "tempdir", None)
    folder = devices.default_lock_dir()
    folder.mkdir()
    os.chmod(folder, 0o750)
    with claim_gpu(1, visible=None, timeout=0, log=lambda m: None):
        assert os.stat(folder).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("kind", ["file", "dangling link", "link to a folder of mine"])
def test_a_default_lock_folder_that_is_a_file_or_a_link_is_refused_by_name(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(devices.tempfile, "tempdir", None)
    folder = devices.default_lock_dir()
    if kind == "file":
        folder.write_text("not a folder")
    else:
        (tmp_path / "mine").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / ("nowhere" if kind == "dangling link" else "mine"))
    expected = "a file, not a folder" if kind == "file" else "a symbolic link, not a folder"
    with pytest.raises(GpuClaimError, match=f"GPU lock folder {folder} is {expected}: remove it, or run with another TMPDIR"):
        with claim_gpu(1, visible=None, timeout=0, log=lambda m: None):
            pass
    if kind != "file":
        assert list((tmp_path / "mine").iterdir()) == []  # nothing written through the link


def test_a_lock_that_is_a_symbolic_link_is_refused_and_its_target_untouched(tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("three weeks of results")
    locks = tmp_path / "locks"
    locks.mkdir()
    devices.lock_path(locks, "0", 0).symlink_to(mine)
    with pytest.raises(GpuClaimError, match="is a symbolic link"):
        with claim_gpu(1, lock_dir=locks, visible=None, timeout=0, log=lambda m: None):
            pass
    assert mine.read_text() == "three weeks of results"


def test_auto_that_falls_back_to_the_cpu_gives_its_gpu_slot_back(tmp_path, monkeypatch):
    """CuPy saw a GPU, so the job claimed a slot, but the GPU failed (full, say) and device: auto
    went on with NumPy: the slot is another job's for the hours the CPU run takes."""
    train = load_script("train")
    monkeypatch.setattr(train, "count_gpus", lambda: 1)
    monkeypatch.setattr(train, "get_backend", lambda device, device_id=None: backend_lib.numpy_backend())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    locks, out = tmp_path / "locks", tmp_path / "out"
    free = []
    real_load = train.load_data

    def load_and_probe(*a, **k):  # while the run goes on: is the slot free?
        with claim_gpu(1, lock_dir=locks, visible=None, timeout=0, log=lambda m: None) as i:
            free.append(i)
        return real_load(*a, **k)

    monkeypatch.setattr(train, "load_data", load_and_probe)
    argv = train_argv(_tiny_dataset(tmp_path / "data.npz"), out, filters=2, epochs=1, batch_size=8, device="auto")
    assert train.main(argv + ["--gpu-lock-dir", str(locks)]) == 0
    assert free == [0]
    assert json.loads((out / "metrics.json").read_text())["device_id"] is None

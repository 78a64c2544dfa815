"""workflow/scripts/train.py end to end: outputs, resume after a kill, divergence."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cifar_fixtures import write_prepared
from recipe import train_argv
from scratchcnn.checkpoint import load_checkpoint
from step_scripts import stop_after_snapshot, load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "workflow" / "scripts" / "train.py"


def test_results_that_cannot_all_be_written_leave_none_beside_an_earlier_runs(data, tmp_path, capsys, monkeypatch):
    """ENOSPC at metrics.json, after model.npz and history.csv: none of the three stays (an earlier
    run's metrics.json would have described the new model); the last snapshot stays to resume from."""
    import errno

    script = load_script("train")
    assert script.main(command(data, tmp_path)[2:]) == 0  # an earlier run's three results
    real = script.write_json_atomic

    def disk_full(path, data):
        if Path(path).name == "metrics.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(script, "write_json_atomic", disk_full)
    assert script.main(command(data, tmp_path)[2:]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"cannot write {tmp_path / 'metrics.json'} (No space left on device)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "cifar10.npz"
    y = np.arange(600) % 10
    x = rng.random((600, 32, 32, 3), dtype=np.float32) * 0.5
    x[..., 0] += (y / 10)[:, None, None]  # a learnable signal in the red channel
    return write_prepared(path, meta=DATA_META, x_train=x[:500], y_train=y[:500], x_val=x[500:], y_val=y[500:])


DATA_META = {"archive": "mine.tar.gz", "archive_md5": "0123456789abcdef0123456789abcdef", "split_seed": 3,
             "n_train": 500, "n_val": 100, "n_test": 0, "standardize": None, "scale": "pixel / 255"}  # fmt: skip


def command(data, out, *extra):
    """The schema's recipe, small; ``extra`` flags come last and so win."""
    small = train_argv(data, out, filters=4, batch_size=50, epochs=4, lr_step=2, device="cpu")
    return [sys.executable, str(SCRIPT), *small, *extra]


def run(data, out, *extra):
    subprocess.run(command(data, out, *extra), check=True, capture_output=True)


def test_outputs_follow_the_contract(data, tmp_path):
    run(data, tmp_path, "--bn-momentum", "0.7")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.columns) == ["epoch", "lr", "train_loss", "train_ce", "train_l2", "train_acc", "val_loss", "val_acc", "seconds"]
    assert list(history["epoch"]) == [1, 2, 3, 4] and list(history["lr"]) == [0.01, 0.01, 0.005, 0.005]
    assert metrics["status"] == "ok" and metrics["epochs_run"] == 4
    assert metrics["best_val_acc"] == history["val_acc"].max()
    assert metrics["hyperparameters"]["filters"] == 4 and metrics["backend"] == "numpy"
    assert metrics["hyperparameters"]["bn_momentum"] == 0.7  # every recipe value is recorded (the report prints it)
    prov = metrics["provenance"]
    assert {"config", "versions", "git_commit", "device"} <= set(prov) and prov["versions"]["numpy"] == np.__version__
    assert prov["settings"]["device"] == "cpu" and prov["settings"]["jobs_per_gpu"] == 1  # not in config
    # which data: the prepared file's record of its archive and split, not just its path
    assert prov["data"] == {k: v for k, v in DATA_META.items() if k != "scale"}
    ck = load_checkpoint(tmp_path / "model.npz")
    assert ck.meta["epoch"] == metrics["best_epoch"] and ck.meta["val_acc"] == metrics["best_val_acc"]
    assert ck.meta["data"] == prov["data"]
    assert not (tmp_path / "state.npz").exists()


def kill_after_first_snapshot(data, out):
    proc = subprocess.Popen(command(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop_after_snapshot(proc, out / "state.npz", proc.kill)  # SIGKILL: no chance to clean up
    assert not (out / "metrics.json").exists()


def test_killed_run_resumes_to_the_uninterrupted_result(data, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run(data, whole)
    kill_after_first_snapshot(data, killed)
    result = subprocess.run(command(data, killed), check=True, capture_output=True, text=True)
    assert "resuming after epoch" in result.stderr
    a, b = np.load(whole / "model.npz"), np.load(killed / "model.npz")
    for k in ("W1", "W2", "W3", "gamma1", "running_var2"):
        assert np.array_equal(a[k], b[k]), k
    ha, hb = pd.read_csv(whole / "history.csv"), pd.read_csv(killed / "history.csv")
    cols = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    pd.testing.assert_frame_equal(ha[cols], hb[cols])


def test_a_snapshot_of_another_run_is_not_resumed(data, tmp_path):
    kill_after_first_snapshot(data, tmp_path)
    out = subprocess.run(command(data, tmp_path, "--lr", "0.02"), check=True, capture_output=True, text=True)
    assert "resuming" not in out.stderr
    assert f"{tmp_path / 'state.npz'} is not a snapshot of this run (unreadable, or made with other settings or data): " \
           "training from epoch 1" in out.stderr


def test_an_unreadable_snapshot_is_said_and_the_run_starts_again(data, tmp_path):
    (tmp_path / "state.npz").write_bytes(os.urandom(4096))
    out = subprocess.run(command(data, tmp_path), check=True, capture_output=True, text=True)
    assert "is not a snapshot of this run" in out.stderr and "resuming" not in out.stderr
    assert (tmp_path / "metrics.json").is_file() and not (tmp_path / "state.npz").exists()
    fresh = subprocess.run(command(data, tmp_path / "fresh"), check=True, capture_output=True, text=True)
    assert "snapshot" not in fresh.stderr  # no snapshot, nothing to say


def test_a_snapshot_taken_on_other_data_at_the_same_path_is_not_resumed(data, tmp_path):
    """`prepare` may rewrite the data file (another split seed) after a run was killed: the
    snapshot names the data it was trained on, not only their path."""
    own = tmp_path / "cifar10.npz"
    shutil.copyfile(data, own)
    out = tmp_path / "run"
    proc = subprocess.Popen(command(own, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop_after_snapshot(proc, out / "state.npz", proc.kill)
    with np.load(data) as z:
        arrays = {k: z[k] for k in ("x_train", "y_train", "x_val", "y_val")}
    write_prepared(own, meta={"standardize": None, "split_seed": 1}, **arrays)  # the same arrays, made otherwise
    result = subprocess.run(command(own, out), check=True, capture_output=True, text=True)
    assert "resuming" not in result.stderr and (out / "metrics.json").is_file()


def test_divergence_is_a_status_not_a_crash(data, tmp_path):
    run(data, tmp_path, "--lr", "1e9", "--clip", "0")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    assert metrics["epochs_run"] < 4
    load_checkpoint(tmp_path / "model.npz")  # still a valid file
    if metrics["best_epoch"] == 0:  # diverged in its first epoch: no best accuracy, not -1 (docs/outputs.md)
        assert metrics["best_val_acc"] is None
    else:
        assert metrics["best_val_acc"] == pd.read_csv(tmp_path / "history.csv")["val_acc"].max()


def test_ctrl_c_says_how_to_go_on_and_the_same_command_resumes(data, tmp_path):
    proc = subprocess.Popen(command(data, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = stop_after_snapshot(proc, tmp_path / "state.npz", lambda: os.kill(proc.pid, signal.SIGINT))[1]
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert "interrupted; the same command" in err and f"from {tmp_path / 'state.npz'}" in err
    assert not (tmp_path / "metrics.json").exists()
    resumed = subprocess.run(command(data, tmp_path), check=True, capture_output=True, text=True)
    assert "resuming after epoch" in resumed.stderr and (tmp_path / "metrics.json").is_file()


def test_sigterm_ends_the_run_through_its_clean_up_and_the_same_command_resumes(data, tmp_path):
    """A SLURM time limit or scancel: exit 143 after the clean-up, no temporary file, the snapshot kept."""
    proc = subprocess.Popen(command(data, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = stop_after_snapshot(proc, tmp_path / "state.npz", lambda: os.kill(proc.pid, signal.SIGTERM))[1]
    assert proc.returncode == 143, err[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]
    resumed = subprocess.run(command(data, tmp_path), check=True, capture_output=True, text=True)
    assert "resuming after epoch" in resumed.stderr and (tmp_path / "metrics.json").is_file()


def test_out_of_memory_says_what_to_change_and_writes_no_results(data, tmp_path, capsys, monkeypatch):
    """A GPU (or host) too small for the run: one error naming the run's size and what to lower,
    no traceback, and no half-written results."""
    script = load_script("train")

    class OutOfMemoryError(MemoryError):  # as CuPy names and places its own
        __module__ = "cupy.cuda.memory"

    def no_room(*args, **kw):
        raise OutOfMemoryError("Out of memory allocating 1,073,741,824 bytes")

    monkeypatch.setattr(script.training, "train", no_room)
    rc = script.main(command(data, tmp_path, "--jobs-per-gpu", "3")[2:])
    assert rc == 1
    err = capsys.readouterr().err  # the script's logging replaces pytest's handlers: read stderr
    assert "Traceback" not in err
    [error] = [line.split(" ERROR train: ", 1)[1] for line in err.splitlines() if " ERROR " in line]
    assert "out of memory on the GPU (OutOfMemoryError: Out of memory allocating 1,073,741,824 bytes)" in error
    assert "training 4 filters at batch 50 with 3 job(s) per GPU" in error and "train.jobs_per_gpu" in error
    assert error.endswith("then the same command starts again")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A finished run of the small recipe (``command``'s flags), as a grid point leaves it."""
    out = tmp_path_factory.mktemp("finished")
    run(data, out)
    return out


def test_a_finished_run_of_the_same_config_is_copied_not_trained(data, finished, tmp_path, capsys, monkeypatch):
    script = load_script("train")

    def no_training(*args, **kw):
        raise AssertionError("trained although the finished run has the same config")

    monkeypatch.setattr(script.training, "train", no_training)
    assert script.main(command(data, tmp_path, "--reuse-from", str(finished))[2:]) == 0
    assert f"{finished} ran this very config" in capsys.readouterr().err
    for name in ("model.npz", "history.csv"):
        assert (tmp_path / name).read_bytes() == (finished / name).read_bytes(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {**json.loads((finished / "metrics.json").read_text()), "reused_from": str(finished)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "metrics.json", "model.npz"]


def test_the_copy_is_what_training_again_gives(data, finished, tmp_path):
    """The reason a copy may stand for a run: the same config trains to the same bits."""
    run(data, tmp_path)
    a, b = np.load(finished / "model.npz"), np.load(tmp_path / "model.npz")
    assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    cols = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    pd.testing.assert_frame_equal(pd.read_csv(finished / "history.csv")[cols], pd.read_csv(tmp_path / "history.csv")[cols])


def cut_short(path):
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize("breakage,said", [
    (None, "it ran another config (train differ)"),  # this run has another seed
    (lambda d: (d / "model.npz").unlink(), "model.npz does not exist"),
    (lambda d: cut_short(d / "model.npz"), "model.npz is not a readable .npz file"),
    (lambda d: (d / "history.csv").write_text((d / "history.csv").read_text().rsplit("\n", 2)[0] + "\n"),
     "history.csv is not the 4 epochs its metrics.json records"),
    (lambda d: (d / "metrics.json").write_text(json.dumps({**json.loads((d / "metrics.json").read_text()), "status": None})),
     "metrics.json is unreadable or incomplete (ValueError"),
    (lambda d: (d / "metrics.json").write_text("{"), "metrics.json is unreadable or incomplete (JSONDecodeError"),
], ids=["another-config", "no-model", "model-cut-short", "history-short", "metrics-status", "metrics-cut-short"])  # fmt: skip
def test_a_finished_run_that_cannot_stand_for_this_one_is_not_reused(data, finished, tmp_path, breakage, said):
    source = tmp_path / "source"
    shutil.copytree(finished, source)
    seed = ["--seed", "1"] if breakage is None else []
    if breakage is not None:
        breakage(source)
    result = subprocess.run(command(data, tmp_path / "out", *seed, "--reuse-from", str(source)),
                            check=True, capture_output=True, text=True)  # fmt: skip
    [warning] = [line for line in result.stderr.splitlines() if "not reusing" in line]
    assert said in warning and warning.endswith("; training"), warning
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "reused_from" not in metrics and metrics["epochs_run"] == 4


@pytest.mark.parametrize("flags, said", [
    (("--batch-size", "0"), "argument --batch-size: 0 is below 1"),
    (("--filters", "two"), "argument --filters: 'two' is not an integer"),
    (("--train-subset", "-300"), "argument --train-subset: -300 is below 0"),
])  # fmt: skip
def test_a_flag_the_code_cannot_run_with_is_a_usage_error(data, tmp_path, flags, said):
    result = subprocess.run(command(data, tmp_path, *flags), capture_output=True, text=True)
    assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not tmp_path.joinpath("metrics.json").exists()


def test_layers_that_do_not_fit_the_image_are_one_error(data, tmp_path):
    result = subprocess.run(command(data, tmp_path, "--kernel-size", "40"), capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "the network's layers do not fit together: a 40x40 kernel with stride 1 and padding 1 does not fit an input of size 32" in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_full_disk_says_what_failed_and_that_the_run_resumes(data, tmp_path, capsys, monkeypatch):
    """A snapshot that cannot be written (ENOSPC on the second epoch's) ends the run with one line,
    and the first epoch's snapshot stays for the same command to resume from."""
    import errno

    script = load_script("train")
    real, calls = script.save_train_state, []

    def disk_full(path, *args):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, *args)

    monkeypatch.setattr(script, "save_train_state", disk_full)
    assert script.main(command(data, tmp_path)[2:]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"cannot write {tmp_path / 'state.npz'} (No space left on device); once it can be, the same command " \
           f"resumes after the last completed epoch from {tmp_path / 'state.npz'}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]


def test_a_second_run_on_the_same_folder_waits_for_the_first(data, tmp_path):
    """A train.py left running by a killed Snakemake holds its folder: the rerun's train.py waits
    for it, says so, and then goes on, instead of both writing the same snapshot and results."""
    import fcntl
    import time

    fd = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as that other train.py holds it
    proc = subprocess.Popen(command(data, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None and not any(tmp_path.iterdir())  # waiting: nothing trained, nothing written
    finally:
        os.close(fd)  # the other one ends
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 0, err
    assert f"another train.py is training {tmp_path} (one left running by a Snakemake that was killed?): " \
           "waiting for it to end" in err and f"{tmp_path} is free: going on" in err
    assert (tmp_path / "metrics.json").is_file()
    alone = subprocess.run(command(data, tmp_path / "alone"), check=True, capture_output=True, text=True)
    assert "another train.py" not in alone.stderr


def test_what_a_killed_run_left_half_written_is_removed(data, tmp_path):
    """A SIGKILL in the middle of writing a snapshot leaves atomic_path's temporary file (never the
    snapshot itself): the next run in that folder, its only writer, removes it."""
    left = [tmp_path / ".state.npz.9877d2e8.tmp.npz", tmp_path / ".metrics.json.0a1b2c3d.tmp"]
    for path in left:
        path.write_bytes(b"")
    keep = [tmp_path / ".hidden", tmp_path / "notes.state.npz.12345678.tmp"]  # not atomic_path's names
    for path in keep:
        path.write_text("mine")
    err = subprocess.run(command(data, tmp_path), check=True, capture_output=True, text=True).stderr
    assert not any(p.exists() for p in left) and all(p.exists() for p in keep)
    assert f"removed {left[0]}, left half-written by a run that was killed" in err

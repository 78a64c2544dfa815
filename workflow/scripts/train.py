"""Train the study's CNN on a prepared dataset and keep the best-validation checkpoint.

Writes into --out-dir: history.csv (one row per epoch), model.npz (best
validation accuracy), metrics.json (status, best accuracy, timing, provenance).
A snapshot (state.npz) is saved after every epoch, so a killed run started
again with the same arguments continues from its last completed epoch. With
--reuse-from DIR, a finished run of the very same config in DIR is copied
instead (the pipeline's final training of the chosen grid point's own seed).

Every setting of the recipe is a required flag: the pipeline passes the values of
config/config.yaml (defaults: workflow/schemas/config.schema.yaml) in full, e.g.

    python workflow/scripts/train.py --data results/data/cifar10.npz --out-dir results/manual \\
        --lr 0.01 --reg 0.001 --filters 32 --epochs 20 --batch-size 64 --lr-decay 0.5 \\
        --lr-step 5 --clip 5.0 --bn-momentum 0.9 --seed 0 --kernel-size 3 --padding1 1 \\
        --padding2 0 --pool-size 2 --pool-stride 2 --device auto --train-subset 0 --jobs-per-gpu 1
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scratchcnn import model as cnn
from scratchcnn import sweeps, training
from scratchcnn.backend import BackendError, get_backend
from scratchcnn.cli import integer
from scratchcnn.checkpoint import load_checkpoint, load_train_state, save_checkpoint, save_train_state
from scratchcnn.data import DataError, load_prepared
from scratchcnn.devices import GpuClaimError, claim_gpu, count_gpus
from scratchcnn.io import READ_ERRORS, all_or_none, atomic_path, leftover_temporaries, read_json_object, write_json_atomic
from scratchcnn.logs import exit_on_sigterm, setup_logging
from scratchcnn.provenance import provenance

log = logging.getLogger("train")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared dataset (cifar10.npz)")
    p.add_argument("--out-dir", required=True, type=Path)
    recipe = p.add_argument_group("the recipe (config/config.yaml; all required)")
    recipe.add_argument("--lr", type=float, required=True)
    recipe.add_argument("--reg", type=float, required=True, help="L2 strength")
    recipe.add_argument("--filters", type=integer(1), required=True, help="filters of both convolutions")
    recipe.add_argument("--batch-size", type=integer(1), required=True)
    recipe.add_argument("--epochs", type=integer(1), required=True)
    recipe.add_argument("--lr-decay", type=float, required=True)
    recipe.add_argument("--lr-step", type=integer(1), required=True)
    recipe.add_argument("--clip", type=float, required=True, help="max L2 norm per gradient array (0: off)")
    recipe.add_argument("--bn-momentum", type=float, required=True)
    recipe.add_argument("--kernel-size", type=integer(1), required=True)
    recipe.add_argument("--padding1", type=integer(0), required=True)
    recipe.add_argument("--padding2", type=integer(0), required=True)
    recipe.add_argument("--pool-size", type=integer(1), required=True)
    recipe.add_argument("--pool-stride", type=integer(1), required=True)
    recipe.add_argument("--seed", type=integer(0), required=True)
    recipe.add_argument("--train-subset", type=integer(0), required=True,
                        help="use only the first N training images (0: all)")  # fmt: skip
    where = p.add_argument_group("where it runs (the pipeline reruns nothing when these change)")
    where.add_argument("--device", required=True, choices=["auto", "cpu", "gpu"])
    where.add_argument("--jobs-per-gpu", type=integer(1), required=True,
                       help="concurrent jobs that may share one GPU (on a GPU only)")  # fmt: skip
    where.add_argument("--gpu-lock-dir", type=Path, default=None, help="GPU claim locks (default: $TMPDIR/scratchcnn-gpu-locks-<uid>)")
    where.add_argument("--reuse-from", type=Path, default=None, metavar="DIR",
                       help="a finished run of this same recipe (the chosen grid point): where its metrics.json records "
                            "the same run config, its results are copied instead of training again")  # fmt: skip
    return p.parse_args(argv)


def load_data(path, backend, subset=0):
    """The training and validation arrays on the device, and the data file's meta (what it was made from)."""
    prepared = load_prepared(path, arrays=("x_train", "y_train", "x_val", "y_val"))
    data = prepared.arrays
    if subset:
        data["x_train"], data["y_train"] = data["x_train"][:subset], data["y_train"][:subset]
    # the whole split lives on the device for the run: no per-batch host copies
    return {k: backend.asarray(v, dtype=np.float32 if k[0] == "x" else np.int64) for k, v in data.items()}, prepared.meta


def claim_device(args, held: contextlib.ExitStack) -> int | None:
    """On a GPU run (gpu, or auto with CuPy seeing a device) claim a free GPU until the run ends."""
    n_devices = 0 if args.device == "cpu" else count_gpus()
    if n_devices == 0:
        return None  # the CPU, or no GPU: get_backend says what is missing
    return held.enter_context(claim_gpu(n_devices, args.jobs_per_gpu, args.gpu_lock_dir, log=log.info))


@contextlib.contextmanager
def training_folder(out: Path):
    """``out``, made if need be and held by this run until it ends: a second train.py on the same
    folder (one left running by a Snakemake that was killed, say) waits for the first and then
    resumes from its snapshot, rather than both writing the same snapshot and results. A lock on
    the folder itself (nothing is written), gone with the process that held it; where the file
    system cannot lock a folder (some network file systems), the run goes on without it."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_RDONLY)
    try:
        held = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another train.py is training %s (one left running by a Snakemake that was killed?): "
                        "waiting for it to end; stop it to go on at once from its last snapshot", out)  # fmt: skip
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.info("%s is free: going on", out)
        except OSError:
            held = False  # no locks on this file system
        if held:  # the folder's sole writer: what a killed writer left half-written goes
            for tmp in leftover_temporaries(out):
                tmp.unlink(missing_ok=True)
                log.info("removed %s, left half-written by a run that was killed", tmp)
        yield
    finally:
        os.close(fd)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        # the folder, and the claimed GPU, stay ours until the run ends
        with training_folder(args.out_dir), contextlib.ExitStack() as held:
            return run(args, held)
    except KeyboardInterrupt:  # Ctrl-C: say how to go on instead of a traceback
        log.error("interrupted; the same command (in the pipeline: snakemake --rerun-incomplete, the default) %s",
                  resumes(args))  # fmt: skip
        return 130
    except MemoryError as exc:  # NumPy's, or CuPy's OutOfMemoryError (a MemoryError too): say what to change
        where = "the GPU" if type(exc).__module__.startswith("cupy") else "this machine"
        log.error("out of memory on %s (%s: %s) training %d filters at batch %d with %d job(s) per GPU; "
                  "fewer jobs side by side (train.jobs_per_gpu, or under profiles/gpu its &jobs, with --resources gpu=N; --cores on a CPU) "
                  "or fewer filters need less; then the same command %s",
                  where, type(exc).__name__, exc, args.filters, args.batch_size, args.jobs_per_gpu, resumes(args))  # fmt: skip
        return 1
    except OSError as exc:  # the data were read before training: a snapshot or a result that cannot be written
        log.error("cannot write %s (%s); once it can be, the same command %s",
                  exc.filename or args.out_dir, exc.strerror or exc, resumes(args))  # fmt: skip
        return 1


def resumes(args) -> str:
    """What the same command does next: resume from the snapshot, or start again."""
    state = args.out_dir / "state.npz"
    return f"resumes after the last completed epoch from {state}" if state.is_file() else "starts again"


def run(args, held: contextlib.ExitStack) -> int:
    try:
        arch = cnn.make_arch(
            filters1=args.filters, kernel_size=args.kernel_size,
            padding1=args.padding1, padding2=args.padding2, pool_size=args.pool_size, pool_stride=args.pool_stride,
        )  # fmt: skip
    except ValueError as exc:  # layers that do not fit a 32x32 image
        log.error("the network's layers do not fit together: %s", exc)
        return 1
    cfg = training.TrainConfig(
        lr=args.lr, reg=args.reg, batch_size=args.batch_size, epochs=args.epochs, lr_decay=args.lr_decay,
        lr_step=args.lr_step, clip=args.clip or None, bn_momentum=args.bn_momentum, seed=args.seed,
    )  # fmt: skip
    run_config = {"arch": arch, "train": cfg.__dict__, "data": str(args.data), "train_subset": args.train_subset}
    out = args.out_dir  # made by training_folder
    if args.reuse_from is not None and reuse(args.reuse_from, run_config, out):
        return 0
    try:
        device_id = claim_device(args, held)
        backend = get_backend(args.device, device_id=device_id)
    except (BackendError, GpuClaimError) as exc:
        log.error("%s", exc)
        return 1
    if args.device == "auto" and backend.name == "numpy" and device_id is not None:
        held.close()  # auto fell back to the CPU (get_backend said why): the GPU slot is another job's
        device_id = None
    log.info("backend %s on %s; arch %s; %s", backend.name, backend.device_name, arch, cfg)

    try:
        data, data_meta = load_data(args.data, backend, args.train_subset)
    except DataError as exc:
        log.error("%s", exc)
        return 1
    log.info("data: %d training and %d validation images", len(data["x_train"]), len(data["x_val"]))

    # a snapshot is reused only by the same run on the same data and backend: the data file's path
    # alone would let a run killed before `prepare` rewrote it go on with other data (its meta names
    # the archive's md5, the split seed and the standardisation)
    fingerprint = hashlib.sha256(
        json.dumps([run_config, backend.name, data_meta], sort_keys=True).encode()
    ).hexdigest()
    state_path = out / "state.npz"
    state = load_train_state(state_path, fingerprint, backend)
    if state is None:
        if state_path.exists():  # said, so that a run that starts again is not taken for a resumed one
            log.warning("%s is not a snapshot of this run (unreadable, or made with other settings or data): "
                        "training from epoch 1", state_path)  # fmt: skip
        params, bn_state = cnn.init_params(arch, cfg.seed, backend)
        state = training.TrainState(params, bn_state)
    else:
        log.info("resuming after epoch %d (%s) from %s", state.epoch, state.status, state_path)

    def snapshot(s):
        save_train_state(state_path, s, fingerprint)

    started = time.perf_counter()
    n_batches = -(-len(data["x_train"]) // cfg.batch_size)
    if state.status != "diverged":  # a diverged snapshot only needs its outputs written
        state = training.train(state, data, arch, cfg, backend, on_epoch_end=snapshot, log=log.info,
                               progress_every=max(n_batches // 5, 1) if n_batches >= 100 else 0)  # fmt: skip
    log.info("finished: status %s, best val acc %.4f at epoch %d (%.0fs)",
             state.status, state.best_val_acc, state.best_epoch, time.perf_counter() - started)  # fmt: skip

    history = pd.DataFrame(state.history, columns=list(training.HISTORY_COLUMNS))
    seconds = float(history["seconds"].sum())
    prov = provenance(run_config, backend, {"device": args.device, "jobs_per_gpu": args.jobs_per_gpu}, data_meta)
    best_params = state.best_params or state.params  # a run that diverged in epoch 1 has no best
    best_bn = state.best_bn_state or state.bn_state
    meta = {"epoch": state.best_epoch, "val_acc": state.best_val_acc if state.best_epoch else None,
            "config": run_config, "backend": backend.name, "device": backend.device_name,
            "data": prov["data"], "versions": prov["versions"], "git_commit": prov["git_commit"]}  # fmt: skip
    with all_or_none([out / name for name in RESULTS]):
        save_checkpoint(out / "model.npz", best_params, best_bn, arch, meta)
        with atomic_path(out / "history.csv") as tmp:
            history.to_csv(tmp, index=False)
        write_json_atomic(out / "metrics.json", {
            "status": state.status,
            "best_val_acc": state.best_val_acc if state.best_epoch else None,
            "best_epoch": state.best_epoch,
            "epochs_run": state.epoch,
            "epochs_planned": cfg.epochs,
            "seconds": seconds,
            "seconds_per_epoch": seconds / max(len(history), 1),
            "hyperparameters": {**sweeps.plain_point({**cfg.__dict__, "filters": arch["filters1"]}),
                                "filters2": arch["filters2"], "batch_size": cfg.batch_size, "epochs": cfg.epochs,
                                "lr_decay": cfg.lr_decay, "lr_step": cfg.lr_step, "clip": cfg.clip, "seed": cfg.seed,
                                "bn_momentum": cfg.bn_momentum},
            "arch": arch,
            "backend": backend.name,
            "device": backend.device_name,
            "device_id": device_id,
            "provenance": prov,
        })  # fmt: skip
    state_path.unlink(missing_ok=True)
    return 0


# all or none; the snapshot stays to resume from (the rules' outputs name the same files)
RESULTS = ("model.npz", "history.csv", "metrics.json")


def reuse(source: Path, run_config: dict, out: Path) -> bool:
    """Copy the results of ``source``, a finished run, into ``out`` where its metrics.json
    records exactly ``run_config``: the same recipe, seed and data give the same training, so
    it need not run twice (the final training's first seed is the chosen grid point's own run
    when sweep.epochs equals train.epochs). Anything else, and it says why and trains.
    """
    metrics, why = finished_run(source, run_config)
    if why:
        log.warning("not reusing %s: %s; training", source, why)
        return False
    with all_or_none([out / name for name in RESULTS]):
        for name in REUSED:
            with atomic_path(out / name) as tmp:
                shutil.copyfile(source / name, tmp)
        write_json_atomic(out / "metrics.json", {**metrics, "reused_from": str(source)})
    (out / "state.npz").unlink(missing_ok=True)  # an interrupted training of the same run, now moot
    log.info("%s ran this very config (status %s, best epoch %d of %d): its results are reused, not trained again",
             source, metrics["status"], metrics["best_epoch"], metrics["epochs_run"])  # fmt: skip
    return True


REUSED = ("model.npz", "history.csv")  # and metrics.json, which says where they came from


def finished_run(source: Path, run_config: dict) -> tuple[dict, str | None]:
    """The metrics.json of the finished run in ``source``, and why it cannot stand for a run
    of ``run_config`` (None: it can), its files checked as evaluate.py and the figures read them."""
    path = source / "metrics.json"
    try:
        metrics = read_json_object(path)
        recorded = metrics["provenance"]["config"]
        if metrics["status"] not in ("ok", "diverged") or not all(
                isinstance(metrics[k], int) for k in ("best_epoch", "epochs_run")):  # fmt: skip
            raise ValueError("status, best_epoch or epochs_run is not what train.py writes")
    except READ_ERRORS as exc:
        return {}, f"{path} is unreadable or incomplete ({type(exc).__name__}: {exc})"
    wanted = json.loads(json.dumps(run_config))  # as JSON reads it back: tuples as lists
    if recorded != wanted:
        differ = sorted(k for k in set(wanted) | set(recorded) if wanted.get(k) != recorded.get(k))
        return metrics, f"it ran another config ({', '.join(differ)} differ)"
    try:
        load_checkpoint(source / "model.npz", expected_arch=run_config["arch"])
        history = pd.read_csv(source / "history.csv")
    except READ_ERRORS as exc:
        return metrics, f"{type(exc).__name__}: {exc}"
    if list(history.columns) != list(training.HISTORY_COLUMNS) or len(history) != metrics["epochs_run"]:
        return metrics, f"{source / 'history.csv'} is not the {metrics['epochs_run']} epochs its metrics.json records"
    return metrics, None


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())

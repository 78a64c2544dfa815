"""Every training and evaluation setting travels: config -> rule command -> step script -> computation.

A config moves every such setting away from its default. Snakemake's dry run prints the
commands it would run (``--printshellcmds``); the flags must carry the config's values.
The printed training commands are then run on a tiny dataset, and what they compute is
checked against the same step done here by hand with those values.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cifar_fixtures import write_prepared
from recipe import ROOT, TRAIN_FLAGS, schema_defaults
from scratchcnn import model as cnn
from scratchcnn.checkpoint import load_checkpoint
from step_scripts import load_script

# Every value differs from its default (checked below), so a dropped flag shows.
SETTINGS = {
    "device": "cpu",
    "seed": 7,
    "data": {"n_val": 11, "split_seed": 3, "standardize": True, "expected_train": 81, "expected_test": 12},
    "model": {"filters": 3, "kernel_size": 5, "padding1": 2, "padding2": 1, "pool_size": 3, "pool_stride": 3,
              "bn_momentum": 0.3},
    "train": {"batch_size": 70, "lr": 0.07, "reg": 0.01, "lr_decay": 0.25, "lr_step": 2, "clip": 0.05,
              "epochs": 3, "seeds": [4, 9], "jobs_per_gpu": 2, "train_subset": 70},
    "sweep": {"epochs": 1},
    "evaluate": {"batch_size": 13},
}  # fmt: skip
# two one-point sweeps: what a sweep does not vary comes from the config
GRID = {"sweeps": {"lrs": {"lr": [0.2]}, "regs": {"reg": [0.03]}}}
POINTS = {(0.2, 0.01, 3), (0.07, 0.03, 3)}  # (lr, reg, filters)
LR = 0.2  # the point whose training is run and checked by hand
CHOSEN = {"lr": 0.5, "reg": 0.02, "filters": 5}  # what the (faked) selection chose for the final run
CHOSEN_DIR = "results/sweep/points/lr~0.5/reg~0.02/filters~5"  # its run (faked too)
N_TRAIN, N_VAL = 80, 10  # train_subset keeps the first 70: one batch of 70 per epoch

# (rule, config key, flag of the rule's command): the flag carries the config's value
FLAGS = [
    ("prepare", "data.n_val", "--n-val"),
    ("prepare", "data.split_seed", "--split-seed"),
    ("prepare", "data.standardize", "--standardize"),
    ("prepare", "data.expected_train", "--expected-train"),
    ("prepare", "data.expected_test", "--expected-test"),
    ("train_point", "sweep.epochs", "--epochs"),
    ("train_final", "train.epochs", "--epochs"),
    ("train_final", "train.seeds", "--seed"),  # one job per seed
    ("evaluate", "evaluate.batch_size", "--batch-size"),
    ("evaluate", "device", "--device"),
] + [(rule, f"{section}.{key}" if section else key, "--" + flag.replace("_", "-"))
     for rule in ("train_point", "train_final")
     for flag, (section, key) in TRAIN_FLAGS.items()
     if flag not in ("lr", "reg", "filters", "epochs") and (rule, flag) != ("train_final", "seed")]  # fmt: skip
# keys that reach the command as the grid point's lr, reg and filters (see POINTS)
POINT_KEYS = {"train.lr", "train.reg", "model.filters"}
# not a flag: Snakemake's threads of a training job (BLAS threads), which change no result
NOT_FLAGS = {"train.threads"}


def setting(key):
    section, _, name = key.partition(".")
    return SETTINGS[section][name] if name else SETTINGS[section]


def default_keys() -> dict:
    """``section.key`` -> the schema's default (what config/config.yaml shows)."""
    out = {}
    for section, value in schema_defaults().items():
        if isinstance(value, dict):
            out.update({f"{section}.{k}": v for k, v in value.items()})
        else:
            out[section] = value
    return out


def dry_run(workdir: Path, config: Path, target: str) -> dict:
    """Rule name -> list of jobs ``{"output": [...], "command": str}`` of a dry run in ``workdir``."""
    if shutil.which("snakemake") is None:
        pytest.skip("snakemake is not installed")
    r = subprocess.run(["snakemake", target, "-s", str(ROOT / "Snakefile"), "-n", "--nolock", "--cores", "1",
                        "--printshellcmds", "--configfile", str(config)],
                       cwd=workdir, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    jobs: dict = {}
    for block in re.split(r"^(?=(?:local)?(?:rule|checkpoint) \w+:$)", r.stdout, flags=re.M)[1:]:
        rule = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)[1]
        output = re.search(r"^\s+output: (.*)$", block, re.M)
        command = re.search(r"^Shell command: (.*)$", block, re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        jobs.setdefault(rule, []).append({"output": output[1].split(", ") if output else [],
                                          "command": command[1] if command else None, "cwd": workdir,
                                          "resources": dict(r.split("=", 1) for r in resources[1].split(", ")) if resources else {}})  # fmt: skip
    return jobs


def flags(command: str) -> dict:
    """``--flag value`` pairs of a printed command (a flag without a value maps to True)."""
    words = shlex.split(command.split(" 2> ")[0])
    out = {}
    for i, w in enumerate(words):
        if w.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else "--"
            out[w] = True if nxt.startswith("--") else nxt
    return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return planned(tmp_path_factory.mktemp("settings"), SETTINGS)


def planned(tmp: Path, settings: dict) -> dict:
    """Rule name -> the jobs Snakemake would run: the grid search's and, once it is done, the final run's."""
    (tmp / "grid.yaml").write_text(yaml.safe_dump(GRID))
    config = tmp / "settings.yaml"
    config.write_text(yaml.safe_dump({**settings, "sweep": {**settings["sweep"], "grid": str(tmp / "grid.yaml")}}))
    workdir = tmp / "work"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    plan = dry_run(workdir, config, "results/final/test_metrics.json")
    # fake a finished grid search (outputs upstream first, each newer than its inputs) so the
    # final training's command, which waits for the selection, is printed too
    stamp = 1_000_000_000
    rules = ("download", "prepare", "train_point", "select_sweep", "select")
    done = {rule: [out for job in plan[rule] for out in job["output"]] for rule in rules}
    done["train_point"] += [f"{CHOSEN_DIR}/{name}" for name in ("metrics.json", "history.csv", "model.npz")]
    for rule in rules:
        for out in done[rule]:
            path = workdir / out
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(CHOSEN) if out.endswith("best.json") else "")
            os.utime(path, (stamp, stamp))
        stamp += 10
    final = dry_run(workdir, config, "results/final/test_metrics.json")
    assert "train_point" not in final and final.get("train_final"), final
    return {**plan, **final}


def test_every_training_and_evaluation_setting_is_checked():
    keys = {k for k in default_keys() if k.split(".")[0] in ("seed", "device", "model", "train", "evaluate")}
    assert keys - NOT_FLAGS == {key for _, key, _ in FLAGS if not key.startswith(("data.", "sweep."))} | POINT_KEYS


def test_the_settings_differ_from_the_defaults():
    defaults = default_keys()
    for key, default in defaults.items():
        section, _, name = key.partition(".")
        if section in SETTINGS and (not name or name in SETTINGS[section]):
            assert setting(key) != default, key
    for point in POINTS:
        assert point != (defaults["train.lr"], defaults["train.reg"], defaults["model.filters"])


@pytest.mark.parametrize("rule,key,flag", FLAGS, ids=[f"{rule}:{key}" for rule, key, _ in FLAGS])
def test_config_values_reach_the_command_line(pipeline, rule, key, flag):
    want = setting(key)
    assert pipeline[rule], f"no {rule} job planned"
    got = []
    for job in pipeline[rule]:
        value = flags(job["command"]).get(flag)
        assert value is not None, f"{rule}: {flag} missing from {job['command']}"
        got.append(value)
    if isinstance(want, list):  # a value per job
        assert sorted(float(v) for v in got) == sorted(want), f"{rule}: {flag} {got}, config {key} {want}"
    elif isinstance(want, bool):
        assert all(v is want for v in got)
    elif isinstance(want, (int, float)):
        assert all(float(v) == want for v in got), f"{rule}: {flag} {got}, config {key} {want}"
    else:
        assert all(v == want for v in got)


def point_of(job):
    f = flags(job["command"])
    return float(f["--lr"]), float(f["--reg"]), int(f["--filters"])


def test_the_grid_points_and_the_chosen_point_reach_the_command_line(pipeline):
    assert {point_of(job) for job in pipeline["train_point"]} == POINTS
    for job in pipeline["train_final"]:
        assert dict(zip(("lr", "reg", "filters"), point_of(job))) == CHOSEN
        assert "--reuse-from" not in job["command"]  # no seed of train.seeds is the point's seed


def test_the_rules_outputs_are_the_files_the_steps_write(pipeline):
    """The file names live in the step scripts and in the rules: they must stay the same."""
    written = {"train_point": load_script("train").RESULTS, "train_final": load_script("train").RESULTS,
               "evaluate": load_script("evaluate").OUTPUTS}  # fmt: skip
    for rule, names in written.items():
        for job in pipeline[rule]:
            assert sorted(os.path.basename(o) for o in job["output"]) == sorted(names), (rule, job["output"])


def test_the_final_seed_that_repeats_the_chosen_points_run_reuses_it(tmp_path):
    """With sweep.epochs = train.epochs, the final training's seed equal to ``seed`` has the
    chosen point's own flags: that job gets the point's run (and no GPU to copy it), the others train."""
    same = {**SETTINGS, "device": "gpu", "train": {**SETTINGS["train"], "seeds": [4, SETTINGS["seed"]]},
            "sweep": {"epochs": SETTINGS["train"]["epochs"]}}  # fmt: skip
    final = {flags(job["command"])["--seed"]: job for job in planned(tmp_path, same)["train_final"]}
    reused = final[str(SETTINGS["seed"])]
    assert flags(reused["command"])["--reuse-from"] == CHOSEN_DIR and reused["resources"]["gpu"] == "0"
    assert "--reuse-from" not in final["4"]["command"] and final["4"]["resources"]["gpu"] == "1"
    # with other epochs the same seed is another run: it trains, and holds its GPU slot
    longer = {**same, "sweep": {"epochs": SETTINGS["train"]["epochs"] - 1}}
    (tmp_path / "longer").mkdir()
    for job in planned(tmp_path / "longer", longer)["train_final"]:
        assert "--reuse-from" not in job["command"] and job["resources"]["gpu"] == "1", job


# --------------------------------------------------------------------------- the commands, run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.random((N_TRAIN + N_VAL, 32, 32, 3), dtype=np.float32)
    y = np.arange(N_TRAIN + N_VAL) % 10
    path = write_prepared(tmp_path_factory.mktemp("data") / "cifar10.npz",
                          x_train=x[:N_TRAIN], y_train=y[:N_TRAIN], x_val=x[N_TRAIN:], y_val=y[N_TRAIN:])  # fmt: skip
    return {"path": path, "x": x[:N_TRAIN], "y": y[:N_TRAIN]}


def run_printed(job: dict, data: Path, out_dir: Path) -> Path:
    """Run a dry run's printed train.py command as it is, where Snakemake would, on ``data`` and
    into ``out_dir``. The dry run's working directory is a run directory of its own, so the
    command names this repository's script by a path relative to it."""
    words = shlex.split(job["command"].split(" 2> ")[0])
    assert words[0] == "python" and (job["cwd"] / words[1]).resolve() == ROOT / "workflow" / "scripts" / "train.py", words[:2]
    args = words[2:]
    for flag, value in (("--data", data), ("--out-dir", out_dir)):
        args[args.index(flag) + 1] = str(value)
    r = subprocess.run([sys.executable, words[1], *args], cwd=job["cwd"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out_dir


@pytest.fixture(scope="module")
def point_run(pipeline, data, tmp_path_factory):
    """The grid point with lr 0.2 (sweep.epochs = 1: one epoch of one batch)."""
    [job] = [j for j in pipeline["train_point"] if point_of(j)[0] == LR]
    return run_printed(job, data["path"], tmp_path_factory.mktemp("point"))


def configured_arch(filters):
    m = SETTINGS["model"]
    return cnn.make_arch(filters1=filters, kernel_size=m["kernel_size"], padding1=m["padding1"],
                         padding2=m["padding2"], pool_size=m["pool_size"], pool_stride=m["pool_stride"])  # fmt: skip


def test_layer_settings_reach_the_architecture(point_run):
    ck = load_checkpoint(point_run / "model.npz")
    assert ck.arch == configured_arch(3)
    assert ck.params["W1"].shape == (3, 5, 5, 3)
    # kernel 5 with padding 2 keeps 32 -> 32, pool 3/3 -> 10, kernel 5 with padding 1 -> 8, pool 3/3 -> 2
    assert ck.params["W3"].shape == (2 * 2 * 3, 10)


def first_batch(data):
    n = SETTINGS["train"]["train_subset"]
    return data["x"][:n], data["y"][:n]


def test_seed_batch_size_subset_lr_reg_and_clip_reach_the_update(point_run, data):
    """One epoch is one SGD step on the first ``train_subset`` images, from the seed's
    initialisation, at the grid point's lr (0.2) and the config's L2 strength, each gradient
    array clipped to ``clip``; the whole batch (``batch_size`` = ``train_subset``) enters it."""
    arch, t = configured_arch(3), SETTINGS["train"]
    params, bn = cnn.init_params(arch, SETTINGS["seed"], dtype=np.float64)
    x, y = first_batch(data)
    _, _, grads, _, _ = cnn.loss_and_grads(params, bn, x.astype(np.float64), y, arch, t["reg"],
                                          momentum=SETTINGS["model"]["bn_momentum"])
    clipped = 0
    want = {}
    for name, g in grads.items():
        norm = np.sqrt((g * g).sum())
        clipped += norm > t["clip"]
        want[name] = params[name] - LR * g * min(1.0, t["clip"] / max(norm, 1e-30))
    assert clipped >= 3, "the clip must bite for this test to see it"
    got = load_checkpoint(point_run / "model.npz").params
    for name in cnn.PARAM_NAMES:
        np.testing.assert_allclose(got[name], want[name], rtol=2e-4, atol=2e-6, err_msg=name)


def test_bn_momentum_reaches_the_running_statistics(point_run, data):
    """After one batch: running = momentum * initial + (1 - momentum) * batch statistics."""
    arch, m = configured_arch(3), SETTINGS["model"]["bn_momentum"]
    params, bn = cnn.init_params(arch, SETTINGS["seed"], dtype=np.float64)
    x, _ = first_batch(data)
    # momentum 0 gives the batch statistics themselves
    _, _, batch = cnn.forward(params, bn, x.astype(np.float64), arch, train=True, momentum=0.0)
    got = load_checkpoint(point_run / "model.npz").params
    for name in cnn.BN_STATE_NAMES:
        want = m * bn[name] + (1 - m) * batch[name]
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-6, err_msg=name)
        assert not np.allclose(got[name], 0.9 * bn[name] + 0.1 * batch[name], rtol=1e-2), name


def test_final_run_follows_train_epochs_and_the_lr_schedule(pipeline, data, tmp_path):
    out = run_printed(pipeline["train_final"][-1], data["path"], tmp_path)
    history = pd.read_csv(out / "history.csv")
    t = SETTINGS["train"]
    assert len(history) == t["epochs"]
    # lr0 * lr_decay ** (epoch // lr_step) at the chosen point's lr: 0.5, 0.5, 0.125
    assert list(history["lr"]) == [CHOSEN["lr"] * t["lr_decay"] ** (e // t["lr_step"]) for e in range(t["epochs"])]
    assert load_checkpoint(out / "model.npz").arch == configured_arch(CHOSEN["filters"])

"""The Snakemake workflow itself: config checks and the shape of the DAG (dry runs only)."""

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(subprocess.run(["which", "snakemake"], capture_output=True).returncode,
                                reason="snakemake is not installed")  # fmt: skip


def dry_run(*args, target=(), env=None):
    return subprocess.run(["snakemake", *target, "-n", "--nolock", "--cores", "1", *args],
                          cwd=ROOT, capture_output=True, text=True, env=env)  # fmt: skip


def jobs(out):
    """Job counts of the dry run's summary table."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_one_target_builds_only_what_it_needs():
    # -F: every job the target needs, whatever results/ already holds here
    r = dry_run("--configfile", "config/demo.yaml", "-F", target=["results/data/cifar10.npz"])
    assert r.returncode == 0, r.stderr
    assert jobs(r.stdout) == {"make_demo_archive": 1, "prepare": 1, "total": 2}


def test_a_float_written_without_a_dot_is_used_and_explained(tmp_path):
    cfg = write(tmp_path, "c.yaml", "train:\n  reg: 1e-4\n")
    r = dry_run("--configfile", "config/demo.yaml", cfg)
    assert r.returncode == 0, r.stderr
    assert f"{cfg}: train.reg: YAML read '1e-4' as a string; using 0.0001" in r.stdout + r.stderr
    grid = write(tmp_path, "g.yaml", "sweeps:\n  a:\n    reg: [1e-4, 5.0e-4]\n")
    r = dry_run("--configfile", "config/demo.yaml", write(tmp_path, "d.yaml", f"sweep:\n  grid: {grid}\n"))
    assert r.returncode == 0, r.stderr
    assert f"{grid}: sweeps.a.reg[0]: YAML read '1e-4' as a string; using 0.0001" in r.stdout + r.stderr


def test_whole_numbers_reach_the_steps_in_the_form_their_flags_take(tmp_path):
    """train_subset: 2e2 (read as 200.0) and batch_size: 32.0 pass the check as integers; the steps'
    integer flags would refuse '200.0'. clip: 5 and the default 5.0 are the same setting, and give
    the same command (a changed command retrains every point)."""
    cfg = write(tmp_path, "c.yaml", "train:\n  train_subset: 2e2\n  batch_size: 32.0\n  clip: 5\ndata:\n  n_val: 1.0e+2\n")
    r = dry_run("--configfile", "config/demo.yaml", cfg, "-p", "-F")
    assert r.returncode == 0, r.stderr[-2000:]
    train = [line for line in r.stdout.splitlines() if "scripts/train.py" in line and "results/sweep/points/" in line]
    assert train and all(" --train-subset 200 " in c and " --batch-size 32 " in c and " --clip 5.0 " in c
                         for c in train), train  # fmt: skip
    assert re.search(r"scripts/prepare\.py .*--n-val 100 ", r.stdout), r.stdout[-3000:]


def test_the_figure_of_a_random_sample_of_test_images_takes_the_configs_seed():
    """Every random choice comes from a seed in the config: test_samples' images too, and only it."""
    r = dry_run("--configfile", "config/demo.yaml", "--config", "seed=3", "-p", "-F",
                target=["results/figures/test_samples.pdf", "results/figures/loss_curve.pdf"])  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    drawn = {m[1]: m[0] for m in re.finditer(r"plot_figures\.py --which (\w+) .*", r.stdout)}
    assert set(drawn) == {"test_samples", "loss_curve"}, r.stdout[-3000:]
    assert " --seed 3 " in drawn["test_samples"] and "--seed" not in drawn["loss_curve"]


def test_a_bad_value_is_refused_naming_the_key_and_its_file(tmp_path):
    cfg = write(tmp_path, "c.yaml", "train:\n  lr: fast\n")
    r = dry_run("--configfile", "config/demo.yaml", cfg, "--config", "device=tpu")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert f"train.lr (in {cfg}): 'fast' is not of type 'number'" in out, out[-2000:]
    assert "device (in --config): 'tpu' is not one of" in out
    assert "properties:" not in out  # Snakemake's dump of the schema is left out


def test_layers_that_do_not_fit_or_no_training_images_are_refused_before_anything_runs(tmp_path):
    """A kernel too large for the second convolution's input, or a validation split as large as
    the training archive: refused when the workflow loads, naming the keys, not after the download
    (and the data preparation)."""
    cfg = write(tmp_path, "c.yaml", "model:\n  kernel_size: 15\n")
    r = dry_run("--configfile", "config/demo.yaml", cfg)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "config: the network's layers do not fit a 32x32 image (model.kernel_size, padding1, padding2" in out, out
    assert "a 15x15 kernel with stride 1 and padding 0 does not fit an input of size 10" in out
    fits = dry_run("--configfile", "config/demo.yaml", write(tmp_path, "d.yaml", "model:\n  kernel_size: 5\n"))
    assert fits.returncode == 0, fits.stderr[-2000:]
    r = dry_run("--configfile", "config/demo.yaml", "--config", "data={n_val: 400}")
    assert r.returncode != 0 and "config: data.n_val (400) leaves no training images: the archive holds " \
        "data.expected_train = 400; keep n_val below that" in r.stdout + r.stderr, r.stderr[-2000:]
    r = dry_run("--configfile", "config/demo.yaml", "--config", "train={train_subset: 301}")
    assert r.returncode != 0 and "config: train.train_subset (301) asks for more than the 300 training images " \
        "(data.expected_train - data.n_val); 0 uses them all" in r.stdout + r.stderr, r.stderr[-2000:]
    assert dry_run("--configfile", "config/demo.yaml", "--config", "train={train_subset: 300}").returncode == 0


def test_a_key_given_twice_in_a_config_file_is_refused_with_its_lines(tmp_path):
    """YAML keeps the last of two train: blocks, silently dropping the first (its seeds, say)."""
    cfg = write(tmp_path, "c.yaml", "train:\n  seeds: [0]\n  lr: 0.1\nmodel:\n  filters: 8\ntrain:\n  epochs: 2\n")
    r = dry_run("--configfile", "config/demo.yaml", cfg)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and f"config file {cfg}: line 6: train is given again (first on line 1)" in out, out[-2000:]


def test_a_yaml_mistake_in_the_config_file_is_told_with_its_line(tmp_path):
    """Snakemake's own message ("Config file is not valid JSON or YAML") says neither where nor what."""
    (tmp_path / "config").mkdir()
    text = (ROOT / "config" / "config.yaml").read_text(encoding="utf-8").replace("\ntrain:\n", "\ntrain:\n\t\n", 1)
    (tmp_path / "config" / "config.yaml").write_text(text)
    line = text[: text.index("\t")].count("\n") + 1
    r = subprocess.run(["snakemake", "-n", "--nolock", "-s", str(ROOT / "Snakefile")],
                       cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode != 0 and f"config file config/config.yaml: line {line}, column 1: found character '\\t' " \
        "that cannot start any token" in out, out[-2000:]


@pytest.mark.parametrize("archive", ["''", "results/data/", "results/data/cifar10.npz"])
def test_an_archive_path_that_is_no_archive_file_is_refused_by_its_key(archive):
    r = dry_run("--configfile", "config/demo.yaml", "--config", f"data={{archive: {archive}}}")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "data.archive (in --config): " in out and "a file ending in .tar.gz" in out, out[-2000:]


def test_an_archive_kept_where_the_download_writes_it_is_refused_before_a_rerun_deletes_it(tmp_path):
    for url in ("results/data/mine.tar.gz", f"file://{Path.cwd() / 'results/data/mine.tar.gz'}"):
        r = dry_run("--configfile", "config/demo.yaml", "--config",
                    f"data={{synthetic: false, url: '{url}', archive: results/data/mine.tar.gz}}")  # fmt: skip
        out = r.stdout + r.stderr
        assert r.returncode != 0, out[-2000:]
        assert "config: data.url and data.archive name the same file (results/data/mine.tar.gz)" in out, out[-2000:]
    other = dry_run("--configfile", "config/demo.yaml", "--config",
                    f"data={{synthetic: false, url: {tmp_path}/mine.tar.gz, archive: results/data/mine.tar.gz}}")  # fmt: skip
    assert other.returncode == 0, (other.stdout + other.stderr)[-2000:]


def test_a_demo_archive_that_would_not_hold_the_expected_images_is_refused():
    r = dry_run("--configfile", "config/demo.yaml", "--config", "data={synthetic_train_per_class: 30}")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "config: data.synthetic_train_per_class = 30 makes 300 train images (10 classes), but " \
        "data.expected_train = 400: make the two agree" in out, out[-2000:]


def test_an_md5_in_capitals_is_taken_and_reaches_the_download_in_small_letters():
    md5 = "C58F30108F718F92721AF3B95E74349A"
    r = dry_run("--configfile", "config/demo.yaml", "-p", "-F", "--config", f"data={{synthetic: false, md5: {md5}}}",
                target=["results/data/cifar10.npz"])  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    assert f"--md5 {md5.lower()}" in r.stdout, r.stdout[-3000:]


def test_nested_command_line_values_are_used_as_numbers_and_checked():
    # Snakemake reads train='{...}' with every value a string; the workflow types them by the schema
    r = dry_run("--configfile", "config/demo.yaml", "-p", "--config", "sweep={epochs: 2}",
                "train={seeds: [3], lr_step: 4}", "data={synthetic: true}")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    commands = [line for line in r.stdout.splitlines() if "scripts/train.py" in line]
    sweep = [c for c in commands if "results/sweep/points/" in c]
    final = [c for c in commands if "results/final/seeds/" in c]
    assert sweep and all(" --epochs 2 " in c and " --lr-step 4 " in c for c in sweep), sweep
    assert len(final) == 1 and "results/final/seeds/3 " in final[0], final
    r = dry_run("--configfile", "config/demo.yaml", "--config", "train={lr: abc, epochs: 0.5}")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "train.lr (in --config): 'abc' is not of type 'number'" in out, out[-2000:]
    assert "train.epochs (in --config): 0.5 is not of type 'integer'" in out


def test_an_archive_path_with_a_space_reaches_the_steps_as_one_argument():
    for data in ("{archive: 'results/data/my demo.tar.gz'}",  # the demo's archive is made
                 "{archive: 'results/data/my copy.tar.gz', synthetic: false}"):  # the real one is fetched
        r = dry_run("--configfile", "config/demo.yaml", "-p", "-F", "--config", f"data={data}",
                    target=["results/data/cifar10.npz"])  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        name = data.split("'")[1]
        assert f"--out '{name}'" in r.stdout and f"--archive '{name}'" in r.stdout, r.stdout[-3000:]


def test_an_unknown_key_is_refused_with_the_keys_it_could_be(tmp_path):
    cfg = write(tmp_path, "c.yaml", "trian:\n  lr: 0.1\n")
    r = dry_run("--configfile", "config/demo.yaml", cfg)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and f"trian (in {cfg}): unknown key (did you mean train?)" in out, out[-2000:]


def test_a_sweep_based_on_a_later_sweep_is_refused(tmp_path):
    grid = write(tmp_path, "g.yaml", "sweeps:\n  a:\n    base: b\n    lr: [0.1]\n  b:\n    reg: [0.1]\n")
    cfg = write(tmp_path, "c.yaml", f"sweep:\n  grid: {grid}\n")
    r = dry_run("--configfile", "config/demo.yaml", cfg)
    assert r.returncode != 0
    assert "sweep 'a': base 'b' is not an earlier sweep" in r.stdout + r.stderr


@pytest.mark.parametrize(
    "text,problem",
    [
        (None, "No such file or directory"),
        ("sweeps:\n  a:\n    lr: [0.1\n", "line 4, column 1: expected ',' or ']', but got '<stream end>' "
         "(while parsing a flow sequence from line 3, column 9)"),
        ("sweeps:\n  a:\n    lr: [0.1, fast]\n", "'fast' is not of type 'number'"),
        ("- lr: [0.1]\n", "it holds a list; expected a mapping with the key sweeps"),
        ("sweeps:\n  a:\n    lr: [0.1]\n    lr: [0.2]\n", "line 4: sweeps.a.lr is given again (first on line 3)"),
    ],
    ids=["missing", "not-yaml", "bad-value", "a-list", "a-key-twice"],
)
def test_a_bad_grid_file_is_refused_naming_the_file(tmp_path, text, problem):
    grid = tmp_path / "g.yaml" if text is None else write(tmp_path, "g.yaml", text)
    cfg = write(tmp_path, "c.yaml", f"sweep:\n  grid: {grid}\n")
    r = dry_run("--configfile", "config/demo.yaml", cfg)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and f"the grid file (sweep.grid) {grid}:" in out and problem in out, out[-2000:]


def test_the_points_folder_is_not_a_sweep_name(tmp_path):
    grid = write(tmp_path, "g.yaml", "sweeps:\n  points:\n    lr: [0.1]\n")
    cfg = write(tmp_path, "c.yaml", f"sweep:\n  grid: {grid}\n")
    r = dry_run("--configfile", "config/demo.yaml", cfg)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "sweeps: 'points' is not allowed here (a sweep's name is its folder" in out, out[-2000:]
    write(tmp_path, "g.yaml", "sweeps:\n  pointz:\n    lr: [0.1]\n")  # any other name is a sweep
    r = dry_run("--configfile", "config/demo.yaml", cfg)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]


def test_a_machine_with_an_nvidia_gpu_but_no_cupy_is_told_training_runs_on_the_cpu(tmp_path):
    """device: auto, CuPy not installed (as in this environment), nvidia-smi on PATH: the plan warns."""
    if importlib.util.find_spec("cupy") is not None or os.path.exists("/proc/driver/nvidia/version"):
        pytest.skip("needs a Python without CuPy on a machine without an NVIDIA driver")
    demo = ("--configfile", "config/demo.yaml", "--config")
    target = ["results/data/cifar10.npz"]
    plain = dry_run(*demo, "device=auto", target=target)
    assert plain.returncode == 0 and "trains on the CPU here" not in plain.stdout + plain.stderr
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    r = dry_run(*demo, "device=auto", target=target, env=env)
    said = r.stdout + r.stderr
    assert r.returncode == 0, said
    assert f"device: auto trains on the CPU here: CuPy is not installed, although this machine has an NVIDIA GPU ({fake / 'nvidia-smi'})" in said
    r = dry_run(*demo, "device=cpu", target=target, env=env)  # device: cpu is a choice: nothing to say
    assert r.returncode == 0 and "trains on the CPU here" not in r.stdout + r.stderr

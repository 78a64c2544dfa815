"""The README's four commands exactly as a user types them, in a fresh copy of the repository.

Each runs as a dry run (``-n`` added, nothing else); the demo runs for real through
``snakemake report/report.pdf`` in tests/check.sh.
"""

import ast
import os
import re
import shutil
import signal
import site
import subprocess
import sys
from pathlib import Path

import numpy as np

import pytest
import yaml

from scratchcnn.figures import FIGURES
from step_scripts import stop_after_snapshot

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None or shutil.which("git") is None
                                or not (ROOT / ".git").exists(), reason="needs snakemake and a git checkout")  # fmt: skip


def fresh_copy(dest: Path) -> Path:
    """The files a clone would have (plus new ones not yet committed), nothing built."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():  # listed but deleted in the working tree: skip
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return fresh_copy(tmp_path_factory.mktemp("clone"))


def snakemake(repo, *args, launcher=("snakemake",), env=None):
    return subprocess.run([*launcher, *args], cwd=repo, capture_output=True, text=True, env=env)


def planned(r):
    """Job counts of a dry run's summary table, after checking that it ran with the profile."""
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Using workflow specific profile profiles/default" in r.stderr
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", r.stdout, re.M)}


def first_sweep_points(repo) -> int:
    """Training jobs a plan shows: the lr_reg sweep's; the filter sweep is known once it is chosen."""
    lr_reg = yaml.safe_load((repo / "config" / "grid.yaml").read_text())["sweeps"]["lr_reg"]
    return len(lr_reg["lr"]) * len(lr_reg["reg"])


def test_everything(repo):
    jobs = planned(snakemake(repo, "--cores", "1", "--resources", "gpu=1", "-n"))
    assert jobs["train_point"] == first_sweep_points(repo) and jobs["download"] == 1 and jobs["compile_report"] == 1


def test_one_target_and_only_what_it_needs(repo):
    jobs = planned(snakemake(repo, "results/final/test_metrics.json", "-n"))
    seeds = yaml.safe_load((repo / "config" / "config.yaml").read_text())["train"]["seeds"]
    assert jobs["evaluate"] == len(seeds) and jobs["train_final"] == len(seeds) and jobs["summarize_seeds"] == 1
    assert jobs["train_point"] == first_sweep_points(repo)
    assert "figure" not in jobs and "compile_report" not in jobs


def test_editing_the_grid_changes_the_plan(repo):
    grid = repo / "config" / "grid.yaml"
    text = grid.read_text()
    before = first_sweep_points(repo)
    edited = re.sub(r"(\n +reg: \[)", r"\g<1>2.0e-2, ", text, count=1)  # one more L2 strength
    assert edited != text, "config/grid.yaml has no 'reg: [' line for this test to edit"
    grid.write_text(edited)
    try:
        after = first_sweep_points(repo)
        jobs = planned(snakemake(repo, "-n"))
    finally:
        grid.write_text(text)
    assert after > before and jobs["train_point"] == after


def test_the_report(repo):
    jobs = planned(snakemake(repo, "report/report.pdf", "-n"))
    assert jobs["compile_report"] == 1 and jobs["render_report"] == 1 and jobs["figure"] == len(FIGURES)


def test_the_profile_gives_the_cores_a_real_run_needs(tmp_path):
    """A run that executes jobs needs cores: the default profile gives them, without it Snakemake stops."""
    repo = fresh_copy(tmp_path)
    target = ["results/data/demo-cifar-10-python.tar.gz", "--configfile", "config/demo.yaml"]  # one quick job
    without = snakemake(repo, *target, "--workflow-profile", "none")
    assert without.returncode != 0 and "cores have to be specified" in without.stderr
    r = snakemake(repo, *target)
    assert r.returncode == 0, r.stderr
    assert "Provided cores" in r.stderr and (repo / target[0]).is_file()


def test_the_workflow_finds_its_package_without_pip_install(repo):
    """Python without site's .pth files: Snakemake still imports, a pip-installed scratchcnn does not."""
    # the site-packages folders as this interpreter sees them (a venv's too; -S would hide it)
    bare = f"import sys; sys.path[1:1] = {site.getsitepackages()!r}; "
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run([sys.executable, "-S", "-c", bare + "import scratchcnn"], cwd=repo,
                           capture_output=True, text=True, env=env)  # fmt: skip
    assert "No module named 'scratchcnn'" in probe.stderr, "scratchcnn imports even so: this test would prove nothing"
    launcher = [sys.executable, "-S", "-c", bare + "sys.argv[0] = 'snakemake'; from snakemake.cli import main; main()"]
    jobs = planned(snakemake(repo, "-n", launcher=launcher, env=env))
    assert jobs["train_point"] == first_sweep_points(repo)


def test_training_on_the_cpu_runs_side_by_side(tmp_path):
    """A training job on the CPU holds no share of --resources gpu, so the default profile's gpu=1
    does not hold CPU jobs to one at a time: on two cores, one thread each, two sweep points train
    at once. A job that may use a GPU still holds one."""
    repo = fresh_copy(tmp_path)
    (repo / "one_thread.yaml").write_text("train:\n  threads: 1\n")
    args = ["results/sweep/lr_reg/summary.csv", "--configfile", "config/demo.yaml", "one_thread.yaml"]
    gpu = snakemake(repo, *args, "-n", "--config", "device=gpu")
    assert gpu.returncode == 0, gpu.stderr
    held = re.findall(r"resources: .*\bgpu=(\d+), device=(\w+)", gpu.stdout + gpu.stderr)
    assert held and set(held) == {("1", "gpu")}, held
    r = snakemake(repo, *args, "--cores", "2")
    assert r.returncode == 0, r.stderr
    said = r.stdout + r.stderr
    assert re.findall(r"resources: .*\bgpu=(\d+), device=(\w+)", said) == [("0", "cpu")] * 2
    events = re.findall(r"^(?:local)?rule (train_point):|^Finished jobid: \d+ \(Rule: (train_point)\)", said, re.M)
    assert [("start" if started else "end") for started, _ in events] == ["start", "start", "end", "end"], said


def test_ctrl_c_in_a_run_then_the_same_command_resumes_the_killed_point(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while a grid point trains:
    Snakemake stops and marks the job incomplete, the point keeps its snapshot, and the same command
    again (the default profile's --rerun-incomplete) resumes it after its last completed epoch and
    ends with the results an uninterrupted run gives."""
    repo = fresh_copy(tmp_path)
    point = "results/sweep/points/lr~0.05/reg~0.001/filters~32"
    run = [f"{point}/metrics.json", "--configfile", "config/demo.yaml", "--config", "sweep={epochs: 30}",
           "model={filters: 32}", "--cores", "1"]  # fmt: skip
    log = repo / "logs" / "sweep" / "points" / "lr~0.05" / "reg~0.001" / "filters~32.log"
    proc = subprocess.Popen(["snakemake", *run], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    said = stop_after_snapshot(proc, repo / point / "state.npz", lambda: os.killpg(proc.pid, signal.SIGINT))[0]
    assert "interrupted; the same command" in log.read_text(), said
    assert (repo / point / "state.npz").is_file() and not (repo / point / "metrics.json").exists()

    again = snakemake(repo, *run)
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = re.search(r"resuming after epoch (\d+)", log.read_text())
    assert resumed and 1 <= int(resumed[1]) < 30, log.read_text()
    history = (repo / point / "history.csv").read_text()
    with np.load(repo / point / "model.npz") as z:
        model = {k: z[k] for k in z.files if k != "meta_json"}  # meta records the run's time

    whole = snakemake(repo, *run, "--forcerun", "train_point")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert "resuming" not in log.read_text()
    assert (repo / point / "history.csv").read_text().count("\n") == history.count("\n") == 31
    with np.load(repo / point / "model.npz") as z:
        assert sorted(model) == sorted(k for k in z.files if k != "meta_json")
        for name, array in model.items():
            np.testing.assert_array_equal(z[name], array, err_msg=name)


def test_a_run_directory_of_its_own_runs_the_demo_and_leaves_the_repository_as_it_was(tmp_path):
    """``snakemake -s REPO/Snakefile`` in a run directory holding a copy of config/ (as
    ``--directory`` would set it): the steps run the repository's scripts and template, and every
    result lands in the run directory. Both paths have a space."""
    repo = fresh_copy(tmp_path / "the clone")
    run = tmp_path / "runs" / "the demo"
    shutil.copytree(repo / "config", run / "config")
    files = lambda root: {p.relative_to(root) for p in root.rglob("*") if "__pycache__" not in p.parts}
    before = files(repo)
    target = "report/report.pdf" if shutil.which("latexmk") else "report/report.tex"
    r = snakemake(run, "-s", str(repo / "Snakefile"), target, "--configfile", "config/demo.yaml", "--cores", "2")
    said = r.stdout + r.stderr
    assert r.returncode == 0, said
    assert f"Using workflow specific profile {repo / 'profiles' / 'default'}" in said
    assert "python '../../the clone/workflow/scripts/train.py' --data results/data/cifar10.npz" in said
    assert (run / target).is_file() and (run / "results" / "final" / "test_metrics.json").is_file()
    assert files(repo) == before, sorted(map(str, files(repo) - before))
    # a profile given as the README says for a run directory, by the clone's path
    gpu = snakemake(run, "-s", str(repo / "Snakefile"), "-n", "--workflow-profile", str(repo / "profiles" / "gpu"))
    assert f"Using workflow specific profile {repo / 'profiles' / 'gpu'}" in gpu.stdout + gpu.stderr
    # a relative path that exists only in the clone: refused (by Snakemake 9.16; 9.27 would leave
    # it out silently, and the workflow refuses it)
    lost = snakemake(run, "-s", str(repo / "Snakefile"), "-n", "--workflow-profile", "profiles/gpu")
    said = lost.stdout + lost.stderr
    assert lost.returncode != 0, said
    if "Error: profile given but no config.yaml found" not in said:  # Snakemake's own refusal (9.16)
        assert "--workflow-profile profiles/gpu: no such profile, and Snakemake would go on without one" in said, said
        assert f"beside the Snakefile in {repo}" in said
        assert "This workflow's profiles: default, gpu, slurm; give one by its path" in said
    # a damaged selection is named, with the way out, which the next lines take
    best = run / "results" / "sweep" / "best.json"
    good, stamp = best.read_text(), best.stat().st_mtime_ns
    best.write_text("{\n bad")
    os.utime(best, ns=(stamp, stamp))  # as old as before: only its content is wrong
    bad = snakemake(run, "-s", str(repo / "Snakefile"), "-n", target, "--configfile", "config/demo.yaml")
    said = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "results/sweep/best.json cannot be read (JSONDecodeError: " in said, said
    assert "delete it, then `snakemake results/sweep/best.json` with the same --configfile writes it again" in said
    best.unlink()
    again = snakemake(run, "-s", str(repo / "Snakefile"), "results/sweep/best.json", "--configfile", "config/demo.yaml")
    assert again.returncode == 0 and best.read_text() == good, again.stdout + again.stderr


def test_the_gpu_profile_shares_one_gpu_between_its_jobs(repo):
    """profiles/gpu: as many training jobs at once as may share the GPU, and each told that number."""
    profile = yaml.safe_load((repo / "profiles" / "gpu" / "config.yaml").read_text())
    n = profile["resources"]["gpu"]
    assert {rule: v["jobs_per_gpu"] for rule, v in profile["set-resources"].items()} == {
        "train_point": n, "train_final": n}  # fmt: skip
    default = yaml.safe_load((repo / "profiles" / "default" / "config.yaml").read_text())
    assert set(default) - {"resources"} <= set(profile), "it replaces profiles/default: it must repeat its keys"
    r = snakemake(repo, "results/sweep/lr_reg/summary.csv", "-n", "-p", "--workflow-profile", "profiles/gpu")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Using workflow specific profile profiles/gpu" in r.stderr
    commands = [line for line in r.stdout.splitlines() if "workflow/scripts/train.py" in line]
    assert len(commands) == first_sweep_points(repo)
    assert all(f"--jobs-per-gpu {n} " in c for c in commands)
    # a GPU profile's training runs on the GPU or stops with the reason, never quietly on the CPU,
    # and holds its share of the GPU, even where the config file says cpu (the demo's does)
    assert profile["config"] == ["device=gpu"]
    assert all("--device gpu " in c for c in commands)
    r = snakemake(repo, "results/sweep/lr_reg/summary.csv", "-n", "--workflow-profile", "profiles/gpu",
                  "--configfile", "config/demo.yaml")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    shares = [line.strip() for line in r.stdout.splitlines() if "jobs_per_gpu=" in line]
    assert shares and all(f"gpu=1, device=gpu, jobs_per_gpu={n}" in line for line in shares), shares
    # one core per GPU job (Snakemake prints threads only above 1), so the cores never cap the jobs
    assert profile["set-threads"] == {"train_point": 1, "train_final": 1} and "threads:" not in r.stdout


def test_the_gpu_profiles_number_changed_on_the_command_line_as_docs_clusters_says(repo):
    """--set-resources on the command line replaces the profile's whole list (so the docs name
    both training rules); the device stays the profile's, a config entry."""
    command = next(line for line in (repo / "docs" / "clusters.md").read_text().splitlines()
                   if line.startswith("snakemake --workflow-profile profiles/gpu --resources gpu=2"))  # fmt: skip
    r = snakemake(repo, "results/sweep/lr_reg/summary.csv", "-n", "-p", *command.split()[1:])
    assert r.returncode == 0, r.stdout + r.stderr
    commands = [line for line in r.stdout.splitlines() if "workflow/scripts/train.py" in line]
    assert commands and all("--device gpu --jobs-per-gpu 2 " in c for c in commands)


def test_the_quick_run_plans_the_cut_down_study(repo):
    """config/quick.yaml, as the README gives it: the same pipeline, fewer points and epochs."""
    assert "snakemake --configfile config/quick.yaml" in (repo / "README.md").read_text()
    quick = yaml.safe_load((repo / "config" / "quick.yaml").read_text())
    lr_reg = yaml.safe_load((repo / quick["sweep"]["grid"]).read_text())["sweeps"]["lr_reg"]
    r = snakemake(repo, "--configfile", "config/quick.yaml", "-n", "-p")
    jobs = planned(r)
    assert jobs["train_point"] == len(lr_reg["lr"]) * len(lr_reg["reg"]) == 6 and jobs["train_final"] == 1
    points = [line for line in r.stdout.splitlines() if "train.py" in line and "results/sweep/points/" in line]
    assert len(points) == 6 and all(f"--epochs {quick['sweep']['epochs']} " in c for c in points)
    assert all(" --filters 32 " in c for c in points)  # the lr x L2 sweep at the default filters


def test_the_step_scripts_help_names_files_the_pipeline_makes(repo):
    """Each results/ file a step script's --help shows as an example is one a rule writes."""
    by_hand = {"results/demo/cifar-10-python.tar.gz"}  # make_demo_archive's own example, other sizes
    shown = set()
    for script in sorted((ROOT / "workflow" / "scripts").glob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text())) or ""
        shown |= set(re.findall(r"results/[^\s\\`'\"]+\.[a-z]+", doc))
    concrete = {p.replace("lr~*", "lr~0.1").replace("reg~*", "reg~0.0001").replace("*", "lr_reg")
                 .replace("NAME", next(iter(FIGURES))) for p in shown - by_hand}  # fmt: skip
    assert len(concrete) >= 10, sorted(shown)  # the examples were found
    r = snakemake(repo, "-n", *sorted(concrete))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

"""setup.sh on machines it cannot see here: no apt-get, no TeX (simulated by a PATH without
them), and the files that must agree with it: .ci/run, the README, the conda environments."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEX_AND_APT = {"apt-get", "sudo", "xelatex", "latexmk", "pdftotext", "kpsewhich", "fc-list", "nvidia-smi"}


def bin_without(tmp_path, hidden, extra=()):
    """A PATH of one folder: every command of this PATH except ``hidden``, plus ``extra``
    (name -> script text); python and python3 are this interpreter."""
    path = tmp_path / "bin"
    path.mkdir()
    for folder in reversed(os.environ["PATH"].split(os.pathsep)):  # the first on PATH wins
        if os.path.isdir(folder):
            for entry in os.scandir(folder):
                if entry.name not in hidden and os.access(entry.path, os.X_OK):
                    (path / entry.name).unlink(missing_ok=True)
                    (path / entry.name).symlink_to(entry.path)
    for name in ("python", "python3"):
        (path / name).unlink(missing_ok=True)
        (path / name).symlink_to(sys.executable)
    for name, text in dict(extra).items():
        (path / name).write_text(text)
        (path / name).chmod(0o755)
    return str(path)


def setup_check(path, *args):
    """``./setup.sh --check`` with an active environment (so it makes none), on ``path``."""
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "VIRTUAL_ENV": sys.prefix}
    return subprocess.run(["bash", str(ROOT / "setup.sh"), "--check", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env)  # fmt: skip


def test_without_apt_it_says_exactly_what_to_install(tmp_path):
    r = setup_check(bin_without(tmp_path, TEX_AND_APT))
    assert r.returncode == 1
    assert "needs xelatex latexmk pdftotext, missing here, and there is no apt-get" in r.stderr
    for name in ("collection-xetex", "collection-langchinese", "latexmk", "Noto Serif CJK SC", "poppler-utils"):
        assert name in r.stderr, name
    assert "--no-tex" in r.stderr


def test_with_apt_it_would_install_the_tex_packages(tmp_path):
    fake_apt = {"apt-get": "#!/bin/sh\necho 'apt-get must not run under --check' >&2\nexit 99\n"}
    r = setup_check(bin_without(tmp_path, TEX_AND_APT, fake_apt))
    assert r.returncode == 1, r.stderr
    assert "would run apt-get install texlive-xetex texlive-lang-chinese" in r.stderr
    assert "must not run" not in r.stderr


def test_no_tex_goes_on_without_it(tmp_path):
    r = setup_check(bin_without(tmp_path, TEX_AND_APT), "--no-tex")
    assert "--no-tex: xelatex latexmk pdftotext missing" in r.stderr and "no apt-get" not in r.stderr


def test_ci_runs_the_readmes_test_command_and_nothing_of_its_own():
    command = "./setup.sh bash tests/check.sh"
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', command]
    assert f"{command}    # set up, then every check" in (ROOT / "README.md").read_text()


def test_the_gpu_environment_is_the_cpu_one_plus_cupy():
    cpu = yaml.safe_load((ROOT / "environment.yml").read_text())
    gpu = yaml.safe_load((ROOT / "environment-gpu.yml").read_text())
    assert gpu["channels"] == cpu["channels"] == ["conda-forge", "nodefaults"]
    assert gpu["dependencies"] == cpu["dependencies"] + ["cupy"]


@pytest.mark.parametrize("args", [["--bogus"], ["--check", "snakemake"]])
def test_bad_arguments_are_refused(args):
    r = subprocess.run(["bash", str(ROOT / "setup.sh"), *args], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("setup.sh: ")

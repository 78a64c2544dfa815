"""setup.sh on machines it cannot see here: no apt-get, no TeX (simulated by a PATH without
them), and the files that must agree with it: .ci/run, the README, the conda environments."""

import os
import subprocess
import sys
import tomllib
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
        (path / name).unlink(missing_ok=True)  # a link: writing through it would change its target
        (path / name).write_text(text)
        (path / name).chmod(0o755)
    return str(path)


def setup_check(path, *args, pythonpath=None, where=None):
    """``./setup.sh --check`` on ``path``: here with an active environment (so it makes none), or
    in the copy ``where`` (``setup_copy``) with none, so that it picks a Python for .venv."""
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp")}
    if where is None:
        env["VIRTUAL_ENV"] = sys.prefix
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    where = where or ROOT
    return subprocess.run(["bash", str(where / "setup.sh"), "--check", *args], cwd=where,
                          capture_output=True, text=True, env=env)  # fmt: skip


def setup_copy(tmp_path):
    """setup.sh and the pyproject.toml it reads, alone in a folder: a checkout without a .venv."""
    here = tmp_path / "checkout"
    here.mkdir()
    for name in ("setup.sh", "pyproject.toml"):
        (here / name).write_text((ROOT / name).read_text())
    return here


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


def test_without_g_plus_plus_it_would_install_it_for_the_kernel_emulator(tmp_path):
    """The CUDA kernels' tests build their CPU emulator with g++ (tests/kernel_emulator.h)."""
    fake_apt = {"apt-get": "#!/bin/sh\necho 'apt-get must not run under --check' >&2\nexit 99\n"}
    r = setup_check(bin_without(tmp_path, {"g++"}, fake_apt))
    assert r.returncode == 1, r.stderr
    assert "missing g++ (the CUDA kernels' tests build their CPU emulator with it): would run apt-get install g++" in r.stderr
    assert "must not run" not in r.stderr
    (tmp_path / "all").mkdir()
    assert "g++" not in setup_check(bin_without(tmp_path / "all", set())).stderr  # here it is


OLD_PYTHON = f"""#!/bin/sh
# a Python 3.10 as setup.sh sees it: too old for the version check, else the real interpreter
case "$*" in *version_info*) exit 1 ;; -V | --version) echo "Python 3.10.12"; exit 0 ;; esac
exec {sys.executable} "$@"
"""


def python_names():
    """Every python* command on PATH, so that a test's PATH holds only the ones it makes."""
    return {e.name for d in os.environ["PATH"].split(os.pathsep) if os.path.isdir(d)
            for e in os.scandir(d) if e.name.startswith("python")}  # fmt: skip


def test_the_versions_it_needs_have_one_home():
    """pyproject.toml's bounds (tests/oldest_versions.sh tests them), which the conda environments
    repeat, as conda cannot read them. Python: Snakemake needs 3.11, so 3.10 got a venv and then pip's refusal."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    conda_name = {"matplotlib": "matplotlib-base", "snakemake": "snakemake-minimal"}  # conda-forge's, bioconda's
    wanted = ["python" + project["requires-python"]]
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, sep, bound = req.partition(">=")
        if sep:  # the CUDA compiler's wheels are pip's alone (setup.sh adds them)
            wanted.append(conda_name.get(name, name) + sep + bound)
    for env in ("environment.yml", "environment-gpu.yml"):
        deps = yaml.safe_load((ROOT / env).read_text())["dependencies"]
        assert [d for d in deps if d != "cupy"] == wanted, env
    assert "Python 3.11 or later (Snakemake needs it)" in (ROOT / "README.md").read_text()
    # the Snakefile refuses an older Snakemake than the one the tests ran with, naming the version
    snakemake_bound = next(r.partition(">=")[2] for r in project["dependencies"] if r.startswith("snakemake>="))
    assert f'min_version("{snakemake_bound}")' in (ROOT / "Snakefile").read_text()


def test_the_oldest_versions_check_installs_every_lower_bound_exactly():
    pins = subprocess.run(["bash", str(ROOT / "tests" / "oldest_versions.sh"), "--pins"], capture_output=True,
                          text=True, check=True).stdout.split()  # fmt: skip
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [r.replace(">=", "==") for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    assert pins == wanted and "numpy==2.0" in pins and "cuda-bindings<13" in pins  # other bounds as written


def test_an_active_environment_with_an_older_python_is_refused(tmp_path):
    path = bin_without(tmp_path, TEX_AND_APT | python_names(), {"python": OLD_PYTHON, "python3": OLD_PYTHON})
    r = setup_check(path, "--no-tex")
    assert r.returncode == 1
    assert "the active environment has Python 3.10.12; this project needs Python 3.11 or later" in r.stderr, r.stderr
    assert "would install" not in r.stderr


@pytest.mark.parametrize("old_venv", [False, True])
def test_an_older_python3_gives_way_to_the_newest_python3_n(tmp_path, old_venv):
    """Ubuntu 22.04: python3 is 3.10, python3.11 installable beside it. A .venv made with an older
    Python is made again."""
    here = setup_copy(tmp_path)
    if old_venv:
        (here / ".venv" / "bin").mkdir(parents=True)
        (here / ".venv" / "bin" / "python").write_text(OLD_PYTHON)
        (here / ".venv" / "bin" / "python").chmod(0o755)
    newer = {"python3.11": f"#!/bin/sh\nexec {sys.executable} \"$@\"\n", "python3.12": f"#!/bin/sh\nexec {sys.executable} \"$@\"\n"}
    path = bin_without(tmp_path, TEX_AND_APT | python_names(), {"python3": OLD_PYTHON, **newer})
    r = setup_check(path, "--no-tex", where=here)
    version = "Python {}.{}.{}".format(*sys.version_info[:3])
    assert f"would create the virtual environment .venv with {version} (python3.12)" in r.stderr, r.stderr
    assert "Python: .venv" not in r.stderr and r.returncode == 1


def test_without_a_new_enough_python_it_says_what_to_install(tmp_path):
    here = setup_copy(tmp_path)
    r = setup_check(bin_without(tmp_path, TEX_AND_APT | python_names(), {"python3": OLD_PYTHON}), where=here)
    assert r.returncode == 1 and not (here / ".venv").exists()
    assert "needs Python 3.11 or later (Snakemake does); PATH has Python 3.10.12 and no newer python3.N" in r.stderr
    assert "apt-get install python3.11 python3.11-venv" in r.stderr, r.stderr


def test_ci_runs_the_readmes_test_command_and_nothing_of_its_own():
    command = "./setup.sh bash tests/check.sh"
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', command]
    assert f"{command}    # set up, then every check" in (ROOT / "README.md").read_text()


def test_the_gpu_environment_is_the_cpu_one_plus_cupy():
    cpu = yaml.safe_load((ROOT / "environment.yml").read_text())
    gpu = yaml.safe_load((ROOT / "environment-gpu.yml").read_text())
    assert gpu["channels"] == cpu["channels"] == ["conda-forge", "bioconda", "nodefaults"]  # snakemake: bioconda
    assert gpu["dependencies"] == cpu["dependencies"] + ["cupy"]


NVIDIA_SMI = """#!/bin/sh
echo '| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: {cuda}     |'
"""


@pytest.mark.parametrize("cuda, extras", [("12.9", "test,gpu"), ("13.0", "test,gpu13")])
def test_gpu_picks_cupy_with_its_cuda_libraries_for_the_driver(tmp_path, cuda, extras):
    r = setup_check(bin_without(tmp_path, TEX_AND_APT, {"nvidia-smi": NVIDIA_SMI.format(cuda=cuda)}), "--gpu", "--no-tex")
    assert f'would install the project: pip install -e ".[{extras}]"' in r.stderr, r.stderr
    assert r.stderr.rstrip().endswith("run ./setup.sh --gpu --no-tex to do the above"), r.stderr
    pyproject = (ROOT / "pyproject.toml").read_text()
    package = "cupy-cuda12x" if extras.endswith("gpu") else "cupy-cuda13x"
    assert f'{extras.split(",")[1]} = ["{package}[ctk]>=14"]' in pyproject  # CUDA's libraries as wheels


def test_gpu_refuses_a_driver_older_than_cuda_12(tmp_path):
    r = setup_check(bin_without(tmp_path, TEX_AND_APT, {"nvidia-smi": NVIDIA_SMI.format(cuda="11.8")}), "--gpu", "--no-tex")
    assert r.returncode == 1 and "no CUDA 12 or later driver (CUDA 11)" in r.stderr, r.stderr


def test_gpu_without_a_driver_says_so(tmp_path):
    r = setup_check(bin_without(tmp_path, TEX_AND_APT), "--gpu", "--no-tex")
    assert r.returncode == 1 and "--gpu: no NVIDIA driver answers here" in r.stderr, r.stderr


def test_gpu_leaves_an_installed_cupy_alone(tmp_path):
    """conda-forge's cupy (environment-gpu.yml): a pip CuPy on top of it would conflict."""
    (tmp_path / "site" / "cupy").mkdir(parents=True)
    (tmp_path / "site" / "cupy" / "__init__.py").write_text('__version__ = "14.1.1"\n')
    path = bin_without(tmp_path, TEX_AND_APT, {"nvidia-smi": NVIDIA_SMI.format(cuda="13.0")})
    r = setup_check(path, "--gpu", "--no-tex", pythonpath=tmp_path / "site")
    assert "--gpu: CuPy 14.1.1 is already installed here; left as it is" in r.stderr, r.stderr
    assert "gpu13" not in r.stderr


@pytest.mark.parametrize("args", [["--bogus"], ["--check", "snakemake"]])
def test_bad_arguments_are_refused(args):
    r = subprocess.run(["bash", str(ROOT / "setup.sh"), *args], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("setup.sh: ")

"""What a result records about its making: the code version (scratchcnn.provenance)."""

import subprocess

import pytest

from scratchcnn import provenance


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("SCRATCHCNN_GIT_COMMIT", raising=False)
    for name, text in {"Snakefile": "rule all:\n", "workflow/scratchcnn/model.py": "x = 1\n",
                       "report/report.tex.j2": "\\begin{document}\n", "config/config.yaml": "seed: 0\n",
                       ".gitignore": "/results/\n"}.items():  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return tmp_path


def test_the_commit_is_dirty_where_the_code_differs_not_the_config(repo):
    sha = git(repo, "rev-parse", "HEAD")
    assert provenance.git_commit(repo) == sha
    (repo / "config" / "config.yaml").write_text("seed: 1\n")  # recorded in every result's config
    (repo / "config" / "mine.yaml").write_text("seed: 2\n")
    (repo / "results").mkdir()
    (repo / "results" / "metrics.json").write_text("{}")
    assert provenance.git_commit(repo) == sha
    (repo / "workflow" / "scratchcnn" / "new.py").write_text("y = 2\n")  # untracked code runs too
    assert provenance.git_commit(repo) == sha + "-dirty"
    (repo / "workflow" / "scratchcnn" / "new.py").unlink()
    (repo / "report" / "report.tex.j2").write_text("\\begin{document} changed\n")
    assert provenance.git_commit(repo) == sha + "-dirty"


def test_outside_git_there_is_no_commit_unless_one_is_given(tmp_path, monkeypatch):
    monkeypatch.delenv("SCRATCHCNN_GIT_COMMIT", raising=False)
    assert provenance.git_commit(tmp_path) is None
    monkeypatch.setenv("SCRATCHCNN_GIT_COMMIT", "abc123")
    assert provenance.git_commit(tmp_path) == "abc123"


def test_the_versions_name_numpys_blas():
    """BLAS sets the products' rounding on the CPU: the library and its version are recorded."""
    import numpy as np

    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    versions = provenance.package_versions()
    assert versions["blas"] == f"{blas['name']} {blas['version']}" and versions["numpy"] == np.__version__

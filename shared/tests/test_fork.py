"""`capstones fork`: one project plus shared/ become a standalone uv project that locks, installs and passes."""

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from dlshared import fork as fork_module
from dlshared.cli import UserError
from dlshared.fork import fork, fork_pyproject, main
from dlshared.testing import OFFLINE_ENV

ROOT = Path(__file__).resolve().parents[2]
needs_classifier = pytest.mark.skipif(
    not (ROOT / "projects" / "classifier" / "tests").is_dir(),
    reason="no projects/classifier/tests (inside a fork?)",
)
needs_uv = pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")


def uv_env() -> dict[str, str]:
    """Offline (the uv cache holds every locked package) and free of the outer run's virtual environment."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return env | OFFLINE_ENV | {"UV_OFFLINE": "1"}


@pytest.fixture
def workspace(tmp_path):
    """A minimal workspace: a root, a `toy` project with outputs that must not be copied, a shared/ folder."""
    root = tmp_path / "ws"
    toy = root / "projects" / "toy"
    for folder in ("src/toy/__pycache__", "tests", "runs/toy/1", ".venv"):
        (toy / folder).mkdir(parents=True)
    (root / "shared" / "src" / "dlshared").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[tool.uv]\npackage = false\n\n[tool.uv.workspace]\nmembers = ["shared"]\n', encoding="utf-8"
    )
    (root / "uv.lock").write_text("version = 1\n", encoding="utf-8")
    (root / "conftest.py").write_text('pytest_plugins = ("dlshared.testing",)\n', encoding="utf-8")
    (root / ".gitignore").write_text("# exports\n*.onnx\n/src/anchored\n", encoding="utf-8")
    (toy / "model.onnx").write_text("", encoding="utf-8")
    (root / "shared" / "pyproject.toml").write_text('[project]\nname = "dlshared"\n', encoding="utf-8")
    (toy / "pyproject.toml").write_text('[project]\nname = "toy"\ndependencies = ["dlshared"]\n', encoding="utf-8")
    (toy / "src" / "toy" / "__init__.py").write_text("", encoding="utf-8")
    (toy / "src" / "toy" / "__pycache__" / "x.pyc").write_text("", encoding="utf-8")
    (toy / "runs" / "toy" / "1" / "model.safetensors").write_text("", encoding="utf-8")
    return root


@pytest.fixture
def fake_uv(monkeypatch):
    """Record the uv commands instead of running them."""
    calls = []
    monkeypatch.setenv("UV", "uv")
    monkeypatch.setattr(
        fork_module.subprocess,
        "run",
        lambda cmd, cwd: calls.append((cmd, cwd)) or subprocess.CompletedProcess(cmd, 0),
    )
    return calls


def test_fork_layout_skips_outputs(workspace, tmp_path, fake_uv):
    dest = fork("toy", tmp_path / "out", workspace, offline=True)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    # no runs/, .venv, __pycache__, nor the *.onnx that .gitignore names
    assert files == [
        ".gitignore",
        "conftest.py",
        "pyproject.toml",
        "shared",
        "shared/pyproject.toml",
        "shared/src",
        "shared/src/dlshared",
        "src",
        "src/toy",
        "src/toy/__init__.py",
        "tests",
        "uv.lock",
    ]
    assert fake_uv == [(["uv", "lock", "--offline"], dest)]


def test_fork_errors(workspace, tmp_path, fake_uv, monkeypatch):
    with pytest.raises(UserError, match="unknown project 'nope'.*choose one of: toy"):
        fork("nope", tmp_path / "out", workspace)
    for path_like in ("../shared", str(workspace / "shared"), "toy/../../shared", ""):
        with pytest.raises(UserError, match="unknown project"):
            fork(path_like, tmp_path / "out", workspace)
    with pytest.raises(UserError, match="inside a folder being copied"):
        fork("toy", tmp_path, workspace)  # the workspace itself is inside tmp_path
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(UserError, match="not empty"):
        fork("toy", tmp_path / "full", workspace)
    with pytest.raises(UserError, match="inside a folder being copied"):
        fork("toy", workspace / "projects" / "toy" / "fork", workspace)
    monkeypatch.delenv("UV")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="uv is not installed"):
        fork("toy", tmp_path / "out", workspace)
    assert not (tmp_path / "out").exists()  # every check happens before anything is written
    assert fake_uv == []


def test_fork_reports_failed_lock(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("UV", "uv")
    monkeypatch.setattr(fork_module.subprocess, "run", lambda cmd, cwd: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(UserError, match="`uv lock` failed"):
        fork("toy", tmp_path / "out", workspace)


def test_cli_error_is_one_line(workspace, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(workspace / "projects")  # the workspace is found by walking up
    with pytest.raises(SystemExit) as info:
        main(["fork", "nope", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("capstones fork: error: unknown project 'nope'") and err.count("\n") == 1


def test_fork_pyproject():
    root = """
[tool.uv]
package = false
required-environments = ["sys_platform == 'linux'"]

[tool.uv.sources]
other = { workspace = true }

[tool.uv.workspace]
members = ["shared", "projects/*"]

[dependency-groups]
dev = ["pytest>=8", "ruff"]

[tool.ruff]
line-length = 110
src = ["shared/src", "projects/*/src"]

[tool.pytest.ini_options]
testpaths = ["shared/tests", "projects"]
addopts = "-ra"
"""
    project = """# the toy project
[project]
name = "toy"
dependencies = ["dlshared", "numpy"]  # numbers

[dependency-groups]
dev = ["ruff", "hypothesis"]

[tool.uv.sources]
dlshared = { workspace = true }

[build-system]
requires = ["hatchling"]
"""
    text = fork_pyproject(root, project)
    assert "# the toy project" in text and "# numbers" in text
    config = tomllib.loads(text)
    assert config["project"] == {"name": "toy", "dependencies": ["dlshared", "numpy"]}
    assert config["tool"]["uv"] == {
        "required-environments": ["sys_platform == 'linux'"],
        "sources": {"dlshared": {"workspace": True}},
        "workspace": {"members": ["shared"]},
    }
    assert config["dependency-groups"] == {"dev": ["pytest>=8", "ruff", "hypothesis"]}
    assert config["tool"]["ruff"] == {"line-length": 110, "src": ["src", "shared/src"]}
    assert config["tool"]["pytest"]["ini_options"] == {
        "testpaths": ["tests", "shared/tests"],
        "addopts": "-ra",
    }
    assert config["build-system"] == {"requires": ["hatchling"]}


def _versions(lock: Path) -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for package in tomllib.loads(lock.read_text(encoding="utf-8"))["package"]:
        versions.setdefault(package["name"], set()).add(package.get("version"))
    return versions


@needs_uv
@needs_classifier
def test_fork_classifier_locks(tmp_path):
    dest = fork("classifier", tmp_path / "my-classifier", ROOT, offline=True)
    for path in (
        "src/classifier/__init__.py",
        "tests",
        "README.md",
        "conftest.py",
        "uv.lock",
        "shared/src/dlshared/__init__.py",
        "shared/tests",
        "shared/pyproject.toml",
    ):
        assert (dest / path).exists(), path
    assert not list(dest.rglob("__pycache__")) and not (dest / "runs").exists()
    config = tomllib.loads((dest / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["project"]["name"] == "classifier"
    assert config["tool"]["uv"]["workspace"] == {"members": ["shared"]}
    subprocess.run(["uv", "lock", "--check"], cwd=dest, env=uv_env(), check=True)
    # Same versions as the workspace was tested with: the fork's lock is the root's minus what it does not need.
    forked, root = _versions(dest / "uv.lock"), _versions(ROOT / "uv.lock")
    assert all(forked[name] <= root[name] for name in forked if name not in ("classifier", "dlshared"))
    assert "pytorch-capstones" not in forked


@pytest.mark.slow
@pytest.mark.timeout(1800)
@needs_uv
@needs_classifier
def test_fork_classifier_installs_and_passes(tmp_path):
    dest = fork("classifier", tmp_path / "my-classifier", ROOT, offline=True)
    subprocess.run(["uv", "sync", "--locked"], cwd=dest, env=uv_env(), check=True)
    # The classifier's whole suite already runs in this workspace; in the fork, what can break is installing,
    # importing dlshared from the copied shared/, the conftest and the test paths. Its training, export and
    # checkpoint tests cover those (the whole suite would repeat two minutes of work already done).
    subprocess.run(
        ["uv", "run", "--locked", "pytest", "-x", "-q", "tests/test_train.py", "tests/test_export.py"],
        cwd=dest,
        env=uv_env(),
        check=True,
    )

"""`capstones fork`: one project plus shared/ become a standalone uv project that locks, installs and passes."""

import ast
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from dlshared import fork as fork_module
from dlshared.cli import UserError
from dlshared.fork import fork, fork_ci_text, main
from dlshared.rename import check_name
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
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yml").write_text(
        "run: uv run pytest shared/tests projects\n", encoding="utf-8"
    )
    (root / ".ci").mkdir()
    (root / ".ci" / "run").write_text("#!/usr/bin/env bash\nuv lock --check --refresh\n", encoding="utf-8")
    (root / ".ci" / "run").chmod(0o755)
    (toy / "src" / "toy" / "__pycache__" / "x.pyc").write_text("", encoding="utf-8")
    (toy / "runs" / "toy" / "1" / "model.safetensors").write_text("", encoding="utf-8")
    return root


@pytest.fixture
def fake_uv(monkeypatch):
    """Record the uv commands instead of running them (others run)."""
    calls, run = [], subprocess.run

    def fake_run(cmd, cwd=None, **kwargs):
        if cmd[0] != "uv":
            return run(cmd, cwd=cwd, **kwargs)
        calls.append((cmd, cwd))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setenv("UV", "uv")
    monkeypatch.setattr(fork_module.subprocess, "run", fake_run)
    return calls


def test_fork_layout_skips_outputs(workspace, tmp_path, fake_uv):
    dest = fork("toy", tmp_path / "out", workspace, offline=True)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    # no runs/, .venv, __pycache__, nor the *.onnx that .gitignore names
    assert files == [
        ".ci",
        ".ci/run",
        ".github",
        ".github/workflows",
        ".github/workflows/ci.yml",
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
    assert (dest / ".ci" / "run").read_text(encoding="utf-8") == "#!/usr/bin/env bash\nuv lock --check\n"
    assert (dest / ".github" / "workflows" / "ci.yml").read_text(
        encoding="utf-8"
    ) == "run: uv run pytest shared/tests tests\n"
    assert os.access(dest / ".ci" / "run", os.X_OK)


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


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Bricks", "lowercase letters"),
        ("my-bricks", "lowercase letters"),
        ("2bricks", "lowercase letters"),
        ("class", "keyword"),
        ("json", "standard-library"),
        ("dlshared", "dlshared"),
        ("torch", "a module that torch installs"),
    ],
)
def test_bad_name_is_a_one_line_error(workspace, tmp_path, fake_uv, monkeypatch, capsys, name, reason):
    monkeypatch.chdir(workspace)
    with pytest.raises(SystemExit) as info:
        main(["fork", "toy", str(tmp_path / "out"), "--name", name])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"capstones fork: error: --name {name!r}") and reason in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and fake_uv == []


def test_good_names():
    for name in ("bricks", "digits_v2", "detector"):  # another project of the workspace: not in the fork
        check_name(name)


TOY_FILES = {  # the toy project's package, tests and README, before --name bricks and after
    "src/toy/config.py": (
        'PROJECT = "toy"\n"""Runs go to runs/toy/NAME; see runs/toys."""\n',
        'PROJECT = "bricks"\n"""Runs go to runs/bricks/NAME; see runs/toys."""\n',
    ),
    "src/toy/train.py": (
        "def train(toy, destroy_toys=False):  # a variable named like the package\n    return toy.size\n",
        None,  # unchanged
    ),
    "src/toy/cli.py": (
        """\
        \"""The `toy` command: `toy train`, or `python -m toy.cli train`; a toy project.\"""
        import toy.config
        from toy.config import PROJECT

        Command = str  # stands in for dlshared.cli.Command
        COMMANDS = {"train": Command("toy.train:train")}
        TITLE = f"`toy train` writes runs/toy/{PROJECT}"  # toy in a comment
        card = {"toy": "toy", "kind": ("toy", "toys")}  # data

        if __name__ == "__main__":
            print(PROJECT, toy.config.PROJECT, COMMANDS["train"], TITLE, card.get("toy"), card["kind"])
        """,
        """\
        \"""The `bricks` command: `bricks train`, or `python -m bricks.cli train`; a toy project.\"""
        import bricks.config
        from bricks.config import PROJECT

        Command = str  # stands in for dlshared.cli.Command
        COMMANDS = {"train": Command("bricks.train:train")}
        TITLE = f"`bricks train` writes runs/bricks/{PROJECT}"  # toy in a comment
        card = {"toy": "toy", "kind": ("toy", "toys")}  # data

        if __name__ == "__main__":
            print(PROJECT, bricks.config.PROJECT, COMMANDS["train"], TITLE, card.get("toy"), card["kind"])
        """,
    ),
    "tests/test_cli.py": (
        'from toy import cli\n\nRUN = latest_run("toy") / "toy" / "run"\n',
        'from bricks import cli\n\nRUN = latest_run("bricks") / "bricks" / "run"\n',
    ),
    "README.md": (
        "# toy: a toy project\n\n    uv run toy train   # runs/toy/NAME\n\n"
        "`toy <verb> --help`, [cli](src/toy/cli.py), projects/toy/README.md, runs/toy-profile, runs/toy-unet\n",
        "# toy: a toy project\n\n    uv run bricks train   # runs/bricks/NAME\n\n"
        # projects/toy/README.md: a workspace path, which fork_markdown rewrites for the fork's layout
        "`bricks <verb> --help`, [cli](src/bricks/cli.py), README.md, runs/bricks-profile, runs/toy-unet\n",
    ),
}


def test_fork_name_renames_the_package_and_its_command(workspace, tmp_path, fake_uv):
    toy = workspace / "projects" / "toy"
    for path, (before, _) in TOY_FILES.items():
        (toy / path).write_text(textwrap.dedent(before), encoding="utf-8")
    with (toy / "pyproject.toml").open("a", encoding="utf-8") as pyproject:
        pyproject.write('\n[project.scripts]\ntoy = "toy.cli:main"\n')
    dest = fork("toy", tmp_path / "out", workspace, name="bricks")

    assert not (dest / "src" / "toy").exists() and (dest / "src" / "bricks" / "__init__.py").is_file()
    for path, (before, after) in TOY_FILES.items():
        renamed = dest / path.replace("src/toy/", "src/bricks/")
        assert renamed.read_text(encoding="utf-8") == textwrap.dedent(after or before), path
    project = tomllib.loads((dest / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "bricks" and project["scripts"] == {"bricks": "bricks.cli:main"}
    env = os.environ | {"PYTHONPATH": str(dest / "src")}  # no `toy` to import: an import left behind fails
    ran = subprocess.run([sys.executable, "-m", "bricks.cli"], env=env, capture_output=True, text=True, check=True)
    assert (
        ran.stdout == "bricks bricks bricks.train:train `bricks train` writes runs/bricks/bricks toy ('toy', 'toys')\n"
    )


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
    # The CI: the root's workflow, and .ci/run, whose tools the dev group brings (xdist for -n 2, playwright).
    ci = (dest / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert ci == fork_ci_text((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    assert os.access(dest / ".ci" / "run", os.X_OK)
    assert (dest / ".ci" / "run").read_text(encoding="utf-8").rstrip().endswith("\nuv run pytest -n 2")
    dev = " ".join(config["dependency-groups"]["dev"])
    assert all(tool in dev for tool in ("pytest-xdist", "playwright", "ruff"))
    subprocess.run(["uv", "lock", "--check"], cwd=dest, env=uv_env(), check=True)
    # Same versions as the workspace was tested with: the fork's lock is the root's minus what it does not need.
    forked, root = _versions(dest / "uv.lock"), _versions(ROOT / "uv.lock")
    assert all(forked[name] <= root[name] for name in forked if name not in ("classifier", "dlshared"))
    assert "pytorch-capstones" not in forked


def _imported_names(tree: Path) -> set[str]:
    """The top-level package of every import in the .py files of `tree` outside shared/."""
    names = set()
    for path in tree.rglob("*.py"):
        if path.relative_to(tree).parts[0] != "shared":
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names


@needs_uv
@needs_classifier
def test_fork_classifier_with_a_new_name(tmp_path):
    dest = fork("classifier", tmp_path / "my-digits", ROOT, offline=True, name="digits")
    assert not (dest / "src" / "classifier").exists() and (dest / "src" / "digits" / "cli.py").is_file()
    imported = _imported_names(dest)
    assert "digits" in imported and "classifier" not in imported
    config = tomllib.loads((dest / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["project"]["name"] == "digits" and config["project"]["scripts"] == {"digits": "digits.cli:main"}
    readme = (dest / "README.md").read_text(encoding="utf-8")
    assert "uv run digits train" in readme and "uv run classifier" not in readme
    subprocess.run(["uv", "lock", "--check"], cwd=dest, env=uv_env(), check=True)
    # The command runs from the renamed package, here in this workspace's environment (where `classifier` is
    # importable, so an import left behind would go unnoticed but for the sys.modules check); in the fork's own
    # environment: the slow test below.
    check = "import sys, digits.cli\ntry:\n    digits.cli.main(['--help'])\nfinally:\n    assert 'classifier' not in sys.modules"
    env = os.environ | {"PYTHONPATH": str(dest / "src")}
    ran = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("usage: digits <command>") and "writes runs/digits/NAME" in ran.stdout


@pytest.mark.slow
@pytest.mark.timeout(1800)
@needs_uv
@needs_classifier
def test_fork_classifier_installs_and_passes(tmp_path):
    """Forked under a new name, so that one install checks both: the fork, and the renamed package at work."""
    dest = fork("classifier", tmp_path / "my-digits", ROOT, offline=True, name="digits")
    subprocess.run(["uv", "sync", "--locked"], cwd=dest, env=uv_env(), check=True)
    ran = subprocess.run(["uv", "run", "--locked", "digits", "--help"], cwd=dest, env=uv_env(), capture_output=True)
    assert ran.returncode == 0 and ran.stdout.startswith(b"usage: digits <command>"), ran.stderr
    no_old_name = "import importlib.util as u, digits; assert u.find_spec('classifier') is None"
    subprocess.run(["uv", "run", "--locked", "python", "-c", no_old_name], cwd=dest, env=uv_env(), check=True)
    # The classifier's whole suite already runs in this workspace; in the fork, what can break is installing,
    # importing dlshared from the copied shared/, the conftest, the test paths and, renamed, runs/digits and
    # `-m digits.cli` under torchrun. Its training, export and checkpoint tests cover those (the whole suite would
    # repeat two minutes of work already done).
    subprocess.run(
        ["uv", "run", "--locked", "pytest", "-x", "-q", "tests/test_train.py", "tests/test_export.py"],
        cwd=dest,
        env=uv_env(),
        check=True,
    )

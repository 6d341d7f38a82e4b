"""The text `capstones fork` rewrites for the fork's layout: its pyproject.toml (the root's settings merged into the
project's), its CI files (the fork's own test paths) and its Markdown (every relative link of a forked page
resolves; commands lose the workspace's `projects/NAME/` prefix)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from dlshared.fork import LINK, fork_ci_text, fork_markdown, fork_pyproject

ROOT = Path(__file__).resolve().parents[2]
needs_classifier = pytest.mark.skipif(
    not (ROOT / "projects" / "classifier" / "tests").is_dir(),
    reason="no projects/classifier/tests (inside a fork?)",
)
PROJECTS = sorted(p.parent.name for p in ROOT.glob("projects/*/pyproject.toml"))


def test_links_follow_the_files_and_dead_ones_become_text(tmp_path):
    project = tmp_path / "projects" / "demo"
    page = project / "src" / "demo" / "weights" / "README.md"
    text = (
        "[code](../train.py#L3-L9) [helper](../../../../../shared/src/dlshared/runs.py) "
        "[lesson](../../../../../course/day01.md) ![fig](../../../assets/a.png) [web](https://example.org/x.md) "
        "[here](#results)\n`uv run demo eval --ckpt projects/demo/src/demo/weights`; `uv run pytest projects/demo -x`"
    )
    assert fork_markdown(text, page, project, tmp_path) == (
        "[code](../train.py#L3-L9) [helper](../../../shared/src/dlshared/runs.py) lesson ![fig](../../../assets/a.png)"
        " [web](https://example.org/x.md) [here](#results)\n"
        "`uv run demo eval --ckpt src/demo/weights`; `uv run pytest -x`"
    )


@pytest.mark.parametrize("project", PROJECTS)
def test_every_relative_link_of_a_forked_page_resolves(project, tmp_path):
    """What `fork` does to each page, checked against the fork's layout: the project at the root, shared/ beside."""
    source = ROOT / "projects" / project
    pages = [p for p in source.rglob("*.md") if not {".venv", "runs"} & set(p.relative_to(source).parts)]
    for page in pages:
        forked = fork_markdown(page.read_text(encoding="utf-8"), page, source, ROOT)
        where = page.relative_to(source)
        for _, _, target in LINK.findall(forked):
            path = target.split("#", 1)[0]
            if not path or re.match(r"[a-z][a-z0-9+.-]*:", path):
                continue
            resolved = (source / where).parent / path  # the fork's root is the project's folder...
            parts = (
                resolved.resolve().relative_to(source.resolve()).parts
                if resolved.resolve().is_relative_to(source.resolve())
                else None
            )
            if parts and parts[0] == "shared":  # ...and its shared/ is the workspace's
                resolved = ROOT / Path(*parts)
            assert resolved.exists(), f"{project}/{where}: {target} does not exist in the fork"
        assert f"projects/{project}/" not in forked, f"{project}/{where} still names a workspace path"


@needs_classifier  # i.e. in the workspace, whose CI files these are
def test_fork_ci_text_of_the_root():
    script = fork_ci_text((ROOT / ".ci" / "run").read_text(encoding="utf-8"))
    workflow = fork_ci_text((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    commands = [line for line in script.splitlines() if line.startswith("uv run ")]
    assert commands[-1] == "uv run pytest -n 2"  # the fork's test command
    assert "\nuv lock --check\nuv sync --locked\n" in script and "README" not in script
    for line in [*script.splitlines(), *workflow.splitlines()]:
        if not line.lstrip().startswith("#"):  # commands and step names
            assert "--refresh" not in line and "fork test" not in line, line
            if "pytest" in line:  # test paths of the fork only: tests and shared/tests
                assert not re.search(r"(?<= )(?:projects|course)\b", line), line
    assert fork_ci_text("run: uv run pytest -m 'not slow' shared/tests projects course/tests\n") == (
        "run: uv run pytest -m 'not slow' shared/tests tests\n"
    )


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

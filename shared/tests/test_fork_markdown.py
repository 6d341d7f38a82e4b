"""`capstones fork` rewrites the project's Markdown for the fork's layout: every relative link of a forked README
resolves, and commands lose the workspace's `projects/NAME/` prefix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dlshared.fork import LINK, fork_markdown

ROOT = Path(__file__).resolve().parents[2]
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

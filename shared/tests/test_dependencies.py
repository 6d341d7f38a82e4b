"""Every third-party package a member's code imports is one that member declares (pyproject.toml), not one that
happens to arrive through another package: a fork, or a resolver choosing other versions, would lose it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = sorted(p.parent for p in [*ROOT.glob("projects/*/pyproject.toml"), ROOT / "shared" / "pyproject.toml"])
OPTIONAL = {
    "tinygpt": {"triton"},  # model.py: looked up with importlib.util.find_spec, used only where it is installed
    "dlshared": {"datasets"},  # hubdata.py imports it when a Hub dataset is loaded; its callers declare it
}


def _declared(pyproject: Path) -> tuple[str, set[str]]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = project.get("dependencies", []) + sum(project.get("optional-dependencies", {}).values(), [])
    return project["name"], {_normal(re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0]) for r in requirements}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_distributions(source: Path) -> set[str]:
    by_module = importlib.metadata.packages_distributions()
    found = set()
    for path in source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            found |= {_normal(d) for m in modules for d in by_module.get(m.split(".")[0], [])}
    return found


@pytest.mark.parametrize("member", MEMBERS, ids=lambda p: p.name)
def test_every_imported_package_is_declared(member):
    name, declared = _declared(member / "pyproject.toml")
    workspace = {_declared(m / "pyproject.toml")[0] for m in MEMBERS} | {"coursekit"}
    imported = _imported_distributions(member / "src") - workspace - OPTIONAL.get(name, set())
    assert not imported - declared, f"{member.name} imports {sorted(imported - declared)} without declaring them"

"""`capstones fork <project> <dest>`: turn one project of the workspace into a standalone uv project.

The fork is the project's folder at the top, a copy of `shared/` (the `dlshared` package it imports) as its one
workspace member, the root's test and lint config, and a lock file derived from the workspace's, so that the fork
installs the very versions the course was tested with.

    dest/pyproject.toml   the project's, plus [tool.uv.workspace] members = ["shared"], dev group, ruff, pytest
    dest/uv.lock          the workspace's lock, re-locked: same versions, packages no one needs dropped
    dest/src/ tests/ README.md ...
    dest/shared/          src/dlshared, tests, pyproject.toml
    dest/conftest.py      the root one: tests run offline
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Annotated

import tomlkit
import tyro

from .cli import Command, UserError, run_cli
from .outputs import MARKER, staged_output

# Outputs, environments and caches are never part of a template; the root .gitignore's simple patterns add to these.
SKIP = ("runs", ".venv", "__pycache__", "*.pyc", "*.egg-info", ".*_cache", ".gradio", "dist", "build")


@dataclasses.dataclass
class ForkConfig:
    project: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="PROJECT")]
    """Project to copy: a folder name under projects/, e.g. classifier."""
    dest: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="DEST")]
    """Folder to create the standalone project in; must not exist yet, or be empty."""
    offline: bool = False
    """Lock from uv's cache only, without asking the package index (`uv lock --offline`)."""


def find_workspace_root(start: str | os.PathLike) -> Path | None:
    """The nearest folder at or above `start` whose pyproject.toml declares a uv workspace."""
    for folder in [Path(start).resolve(), *Path(start).resolve().parents]:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as err:
                raise UserError(f"{pyproject} is not valid TOML: {err}") from None
            if "workspace" in config.get("tool", {}).get("uv", {}):
                return folder
    return None


def fork(project: str, dest: str | os.PathLike, root: str | os.PathLike, offline: bool = False) -> Path:
    """Write `project` of the workspace at `root` as a standalone uv project at `dest`; return `dest`."""
    root, dest = Path(root).resolve(), Path(dest).resolve()
    src = root / "projects" / project
    known = sorted(p.parent.name for p in root.glob("projects/*/pyproject.toml"))
    if project not in known:  # also refuses "../shared", "/abs" and other names that are paths
        raise UserError(f"unknown project {project!r} in {root}; choose one of: {', '.join(known) or '(none)'}")
    if dest.is_relative_to(src) or dest.is_relative_to(root / "shared") or root.is_relative_to(dest):
        raise UserError(f"{dest} is inside a folder being copied; choose a folder elsewhere")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"{dest} already exists and is not empty; choose a new folder")
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` tells its children where uv is
    if uv is None:
        raise UserError("uv is not installed; see https://docs.astral.sh/uv/getting-started/installation/")

    skip = shutil.ignore_patterns(*SKIP, *_gitignore_names(root / ".gitignore"))
    with staged_output(dest) as stage:  # copied beside dest, renamed into place once complete
        shutil.copytree(src, stage, ignore=skip, dirs_exist_ok=True)
        shutil.copytree(root / "shared", stage / "shared", ignore=skip)
        for name in ("conftest.py", ".gitignore", "uv.lock"):
            if (root / name).is_file():
                shutil.copy2(root / name, stage / name)
        root_pyproject, project_pyproject = (
            (root / "pyproject.toml").read_text(encoding="utf-8"),
            (src / "pyproject.toml").read_text(encoding="utf-8"),
        )
        (stage / "pyproject.toml").write_text(fork_pyproject(root_pyproject, project_pyproject), encoding="utf-8")
    (dest / MARKER).unlink()  # the fork is the user's project now, not an output of ours

    # Re-locking with the old lock in place keeps every version it pins; only the workspace's shape changes.
    if subprocess.run([uv, "lock", *(["--offline"] if offline else [])], cwd=dest).returncode != 0:
        raise UserError(f"`uv lock` failed in {dest} (see above); the files are in place, rerun it there")
    return dest


def fork_pyproject(root_text: str, project_text: str) -> str:
    """The project's pyproject.toml turned workspace root: its own tables plus what the workspace root set up."""
    root, project = tomlkit.parse(root_text), tomlkit.parse(project_text)  # tomlkit keeps comments and layout
    root_tool, project_tool = root.get("tool", {}), project.get("tool", {})

    uv = tomlkit.table(is_super_table=True)
    for key, value in root_tool.get("uv", {}).items():
        if key not in ("package", "workspace", "sources"):  # the root's own shape, not settings to inherit
            uv[key] = value
    uv.update(project_tool.get("uv", {}))
    sources = uv.setdefault("sources", tomlkit.table())
    sources.setdefault("dlshared", tomlkit.parse("x = { workspace = true }")["x"])
    uv["workspace"] = {"members": ["shared"]}

    tool = tomlkit.table(is_super_table=True)
    tool.update(project_tool)
    tool["uv"] = uv
    for name in ("ruff", "pytest"):  # configured once, at the root
        if name in root_tool:
            tool[name] = root_tool[name]
    if "src" in tool.get("ruff", {}):  # first-party source folders, for import sorting
        tool["ruff"]["src"] = ["src", "shared/src"]
    if "pytest" in tool:
        tool["pytest"].setdefault("ini_options", tomlkit.table())["testpaths"] = ["tests", "shared/tests"]

    doc = tomlkit.document()
    for key, item in project.body:  # body, not items(): it holds the comments at the top too
        if key is None:
            doc.add(item)
        elif key.key not in ("tool", "build-system"):
            doc[key.key] = item
    if "dev" in root.get("dependency-groups", {}):
        dev = root["dependency-groups"]["dev"]
        dev.extend(d for d in project.get("dependency-groups", {}).get("dev", []) if d not in dev)
        doc.setdefault("dependency-groups", tomlkit.table())["dev"] = dev
    doc["tool"] = tool
    if "build-system" in project:
        doc["build-system"] = project["build-system"]
    # Tables moved between documents bring their own spacing: one blank line before each header.
    return re.sub(r"\n+(?=^\[\[?[\w.\-\"]+\]\]?$)", "\n\n", tomlkit.dumps(doc), flags=re.M).strip() + "\n"


def _gitignore_names(path: Path) -> list[str]:
    """The .gitignore lines that are plain name globs ("runs/", "*.onnx"); anchored paths and negations skipped."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    names = [line.strip().removesuffix("/") for line in lines]
    return [n for n in names if n and not n.startswith(("#", "!")) and "/" not in n]


def _fork_command(cfg: ForkConfig) -> Path:
    candidates = [find_workspace_root(Path.cwd()), find_workspace_root(Path(__file__).parent)]
    roots = [r for r in dict.fromkeys(candidates) if r is not None]
    if not roots:
        raise UserError("no uv workspace above this folder; run this inside the capstones checkout")
    # Prefer the workspace that has the project: cwd may be some other uv workspace, the code's own checkout not.
    root = next((r for r in roots if (r / "projects" / cfg.project / "pyproject.toml").is_file()), roots[0])
    dest = fork(cfg.project, cfg.dest, root, offline=cfg.offline)
    print(f"\nForked {cfg.project} into {dest}. Next:\n  cd {shlex.quote(str(cfg.dest))} && uv run pytest")
    return dest


def main(argv: list[str] | None = None) -> None:
    from .sweep import SweepConfig

    commands = {
        "fork": Command(_fork_command, ForkConfig, "Copy a project and shared/ into a standalone uv project."),
        "sweep": Command("dlshared.sweep:sweep", SweepConfig, "Train one preset with several seeds: mean ± std."),
    }
    run_cli("capstones", commands, argv)

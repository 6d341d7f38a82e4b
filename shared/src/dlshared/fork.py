"""`capstones fork <project> <dest>`: turn one project of the workspace into a standalone uv project.

The fork is the project's folder at the top, a copy of `shared/` (the `dlshared` package it imports) as its one
workspace member, the root's test and lint config, and a lock file derived from the workspace's, so that the fork
installs the very versions the course was tested with.

    dest/pyproject.toml   the project's, plus [tool.uv.workspace] members = ["shared"], dev group, ruff, pytest
    dest/uv.lock          the workspace's lock, re-locked: same versions, packages no one needs dropped
    dest/src/ tests/ README.md ...
    dest/shared/          src/dlshared, tests, pyproject.toml
    dest/conftest.py      the root one: tests run offline
    dest/.ci/run, .github/workflows/ci.yml   the root's CI, adapted (`fork_ci_text`): lock, install, lint, test

`--name NEW` renames the package and its command (src/PROJECT/ becomes src/NEW/): see dlshared.rename for what is
renamed and what is not.
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
from .rename import check_name, rename_project

# Outputs, environments and caches are never part of a template; the root .gitignore's simple patterns add to these.
SKIP = ("runs", ".venv", "__pycache__", "*.pyc", "*.egg-info", ".*_cache", ".gradio", "dist", "build")
CI_FILES = (".github/workflows/ci.yml", ".ci/run")


@dataclasses.dataclass
class ForkConfig:
    project: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="PROJECT")]
    """Project to copy: a folder name under projects/, e.g. classifier."""
    dest: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="DEST")]
    """Folder to create the standalone project in; must not exist yet, or be empty."""
    offline: bool = False
    """Lock from uv's cache only, without asking the package index (`uv lock --offline`)."""
    name: str | None = None
    """New name for the package and its command (lowercase, e.g. digits); unset: the project's own."""


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


def fork(
    project: str, dest: str | os.PathLike, root: str | os.PathLike, offline: bool = False, name: str | None = None
) -> Path:
    """Write `project` of the workspace at `root` as a standalone uv project at `dest`, its package renamed to
    `name` if given; return `dest`."""
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
    if name is not None:
        check_name(name)
        if not (src / "src" / project).is_dir():
            raise UserError(f"--name needs the package folder src/{project}/, which {src} lacks")

    skip = shutil.ignore_patterns(*SKIP, *_gitignore_names(root / ".gitignore"))
    with staged_output(dest) as stage:  # copied beside dest, renamed into place once complete
        shutil.copytree(src, stage, ignore=skip, dirs_exist_ok=True)
        shutil.copytree(root / "shared", stage / "shared", ignore=skip)
        for file in ("conftest.py", ".gitignore", "uv.lock"):
            if (root / file).is_file():
                shutil.copy2(root / file, stage / file)
        root_pyproject, project_pyproject = (
            (root / "pyproject.toml").read_text(encoding="utf-8"),
            (src / "pyproject.toml").read_text(encoding="utf-8"),
        )
        (stage / "pyproject.toml").write_text(fork_pyproject(root_pyproject, project_pyproject), encoding="utf-8")
        copy_ci(root, stage)
        for page in stage.rglob("*.md"):  # the project's README and cards; shared/ has its own layout
            if page.relative_to(stage).parts[0] != "shared":
                original = src / page.relative_to(stage)
                page.write_text(fork_markdown(page.read_text(encoding="utf-8"), original, src, root), encoding="utf-8")
        if name is not None and name != project:
            rename_project(stage, project, name)
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


LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")  # [label](target) and ![alt](target)


def fork_markdown(text: str, page: Path, project: Path, root: Path) -> str:
    """A Markdown page of the project as the fork needs it: links and paths that named workspace places name the
    fork's. `page` is where the page lies in the workspace, `project` the project's folder there.

    A relative link is resolved where the page was: into the project, it becomes the same file in the fork (the
    project is the fork's root); into shared/, the fork's copy; anywhere else (the course, other projects), the fork
    has no such file, so the link becomes its label. Repository-root paths in commands (`projects/NAME/...`, run
    from the workspace root) lose their `projects/NAME/` prefix, since the fork's root is the project."""
    fork_page = page.relative_to(project)

    def relink(match: re.Match) -> str:
        bang, label, target = match.groups()
        path, anchor = (target.split("#", 1) + [""])[:2]
        if not path or re.match(r"[a-z][a-z0-9+.-]*:", path) or path.startswith("/"):
            return match[0]  # an anchor on the page, a URL, or an absolute path: the same in the fork
        where = Path(os.path.normpath(page.parent / path))
        for base, moved in ((project, Path()), (root / "shared", Path("shared"))):
            if where.is_relative_to(base):
                new = Path(os.path.relpath(moved / where.relative_to(base), fork_page.parent)).as_posix()
                return f"{bang}[{label}]({new}{'#' + anchor if anchor else ''})"
        return "" if bang else label  # a course page or another project: not in the fork

    text = LINK.sub(relink, text)
    name = re.escape(project.name)
    text = re.sub(rf"(?<![\w./-])projects/{name}/", "", text)  # projects/NAME/src/... -> src/...
    return re.sub(rf" projects/{name}(?=[\s`]|$)", "", text, flags=re.M)  # `uv run pytest projects/NAME -m x`


def copy_ci(root: Path, dest: Path) -> None:
    """The root's CI files (the workflow, .ci/run), adapted to the fork by `fork_ci_text`; .ci/run stays executable."""
    for name in CI_FILES:
        if (root / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, dest / name)  # copy2 keeps the mode
            (dest / name).write_text(fork_ci_text((root / name).read_text(encoding="utf-8")), encoding="utf-8")


def fork_ci_text(text: str) -> str:
    """A CI file of the root, for the fork. Its steps work there (the fork's pyproject has the root's dev group,
    pytest-xdist and playwright included, its conftest.py and pytest config) but for what names the workspace: test
    paths (projects/... becomes the fork's tests, course/... goes) and `--refresh`, which at the root fills uv's
    cache for the workspace's fork test (a fork skips it). The comments about those follow."""
    text = re.sub(r"(?m)^# The lock must match[^\n]*\n(?:#[^\n]*\n)*", "# The lock must match pyproject.toml.\n", text)
    text = re.sub(
        r" \([^()\n]*fork test[^()\n]*\)", "", text
    )  # "Check the lock (and fill uv's cache ... fork test ...)"
    text = re.sub(r"(?m)(\buv lock --check) --refresh\b", r"\1", text)
    text = re.sub(r"(?m)^.*\bpytest\b.*$", lambda line: _fork_test_paths(line[0]), text)
    return re.sub(r"(?i)(t)he test (command)(s?) (?:README\.md gives|from README\.md)", r"\1he fork's test \2\3", text)


def _fork_test_paths(line: str) -> str:
    """`... pytest -m "not slow" shared/tests projects course/tests` -> `... pytest -m "not slow" shared/tests tests`."""
    line = re.sub(r"(?<= )projects(?:/\S*)?(?= |$)", "tests", line)
    line = re.sub(r" course(?:/\S*)?(?= |$)", "", line)
    return re.sub(r"(?<= )tests(?: tests)+(?= |$)", "tests", line)


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
    dest = fork(cfg.project, cfg.dest, root, offline=cfg.offline, name=cfg.name)
    renamed = f" as {cfg.name}" if cfg.name else ""
    print(f"\nForked {cfg.project} into {dest}{renamed}. Next:\n  cd {shlex.quote(str(cfg.dest))} && uv run pytest")
    return dest


def main(argv: list[str] | None = None) -> None:
    from .sweep import SweepConfig

    commands = {
        "fork": Command(_fork_command, ForkConfig, "Copy a project and shared/ into a standalone uv project."),
        "sweep": Command("dlshared.sweep:sweep", SweepConfig, "Train one preset with several seeds: mean ± std."),
    }
    run_cli("capstones", commands, argv)

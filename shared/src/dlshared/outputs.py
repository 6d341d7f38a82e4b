"""Output folders of commands that write (export, sample, index, convert, fork): staged, then renamed into place.

A command never writes into, or deletes, a folder it did not create: `staged_output(dest)` refuses a non-empty
`dest` unless `overwrite=True` *and* the folder carries the marker file an earlier command of this repository left
in it. The new contents are written into a hidden sibling folder and renamed onto `dest` only when complete, so a
crash leaves the old folder or the new one, never a mixture (an old folder being replaced is moved aside first and
deleted only once the new one is in place).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .cli import UserError

MARKER = ".written-by-capstones"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str, fallback: str = "item") -> str:
    """`name` as one harmless file name: runs of other characters become "_", no leading dots, so a class name
    such as "../../etc" or "/tmp/x" read from an artefact can only ever name a file inside the output folder."""
    cleaned = _UNSAFE.sub("_", str(name)).lstrip(".")
    return cleaned[:100] or fallback


def check_output_folder(dest: Path, overwrite: bool = False, sources: tuple[Path, ...] = ()) -> None:
    """Refuse `dest` when it is (or contains) a source being read, or is a non-empty folder this tool may not
    replace. One clear line each, before any work is done."""
    dest = Path(dest).resolve()
    for source in sources:
        source = Path(source).resolve()
        if dest == source or source.is_relative_to(dest):
            raise UserError(f"--out {dest} would replace {source}, which is being read; choose another folder")
    if dest.exists() and not dest.is_dir():
        raise UserError(f"--out {dest} is a file; give a folder")
    if dest.is_dir() and any(dest.iterdir()):
        if not overwrite:
            raise UserError(f"--out {dest} is not empty; choose a new folder or add --overwrite")
        if not (dest / MARKER).is_file():
            raise UserError(f"--overwrite: {dest} was not written by this tool (no {MARKER}); not replacing it")


@contextlib.contextmanager
def staged_output(dest: str | os.PathLike, overwrite: bool = False, sources: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Yield an empty staging folder beside `dest`; on success it becomes `dest` (see the module docstring)."""
    dest = Path(dest).resolve()
    check_output_folder(dest, overwrite, sources)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for leftover in dest.parent.glob(f".{dest.name}.*"):  # what a killed earlier call left: ours by its name
        if leftover.is_dir() and leftover.suffix in (".partial", ".old"):
            shutil.rmtree(leftover, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial"))
    try:
        yield stage
        (stage / MARKER).write_text(
            "This folder was written by a PyTorch Capstones command; --overwrite may replace it.\n", encoding="utf-8"
        )
        old = None
        if dest.exists():  # empty, or ours and --overwrite: move it aside, put the new one in, then drop the old
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
            os.replace(dest, old / "previous")
        os.replace(stage, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

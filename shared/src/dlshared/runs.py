"""Run folders: `runs/<project>/<name>/`, one per training run, holding config, weights, metrics and logs.

A run folder belongs to one run. It is created exclusively (two runs started in the same second get two folders),
a non-empty one is refused unless the run resumes it (`--resume`) or replaces it (`--overwrite`), and a lock
file keeps a second process from training into it at the same time.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar

from .checkpoint import RESUME_NAME, WEIGHTS_NAME
from .cli import UserError

DEFAULT_ROOT = Path("runs")
LOCK_NAME = ".lock"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_created_here: list[tuple[Path, bool]] = []  # (folder this process made, is a run folder) for discard_unfinished_runs


def check_name(name: str, what: str = "run name") -> str:
    """`name` if it is one plain path component (letters, digits, . _ -), else a UserError: a name that becomes a
    path must not climb out of its folder (`../x`, `/abs`) or hide (`.x`)."""
    if not _SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise UserError(f"{what} {name!r}: use letters, digits, '.', '_' and '-' only (one folder, no path)")
    return name


def make_run_dir(project: str, name: str | None = None, root: str | os.PathLike | None = None) -> Path:
    """Create a new, empty `root/project/name` (never an existing one); `name` defaults to a timestamp, with a
    `-2`, `-3`, ... suffix when another run took that second."""
    base = (Path(root) if root is not None else DEFAULT_ROOT) / project
    _created_here.extend((p, False) for p in (base.parent, base) if not p.exists())
    base.mkdir(parents=True, exist_ok=True)
    if name is not None:
        run_dir = base / check_name(name)
        run_dir.mkdir()  # FileExistsError if another process won the race
        return run_dir
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", *(f"-{i}" for i in range(2, 1000))):
        try:
            (base / f"{stamp}{suffix}").mkdir()
            return base / f"{stamp}{suffix}"
        except FileExistsError:
            continue
    raise UserError(f"could not create a fresh run folder under {base}")


def latest_run(project: str, root: str | os.PathLike | None = None, required: str = WEIGHTS_NAME) -> Path | None:
    """The most recently modified run folder of `project` that holds `required`, or None."""
    base = (Path(root) if root is not None else DEFAULT_ROOT) / project
    if not base.is_dir():
        return None
    candidates = [d for d in base.iterdir() if (d / required).is_file()]
    return max(candidates, key=lambda d: (d / required).stat().st_mtime, default=None)


def _decide(base: Path, project: str, root: Path, name: str | None, resume: bool, overwrite: bool, required: str):
    """(folder name or None for a fresh timestamp, error message or None), decided by one process."""
    if resume and overwrite:
        return None, "--resume continues a run and --overwrite replaces it: give one of them"
    if resume and name is None:
        newest = latest_run(project, root, required=required)
        if newest is None:
            return None, f"--resume: no run with a {required} under {base}"
        return newest.name, None
    if name is None:
        return None, None
    check_name(name)
    folder = base / name
    if resume:
        if not (folder / required).is_file():
            return name, f"--resume: {folder} has no {required} to resume from"
        return name, None
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            return name, f"{folder} already holds a run: add --resume to continue it or --overwrite to replace it"
        if not (folder / "config.json").is_file():
            return name, f"--overwrite: {folder} is not a run folder (no config.json); not deleting it"
    return name, None


def resolve_run_dir(
    project: str,
    root: str | os.PathLike,
    name: str | None = None,
    resume: bool = False,
    required: str = RESUME_NAME,
    overwrite: bool = False,
) -> Path:
    """The folder of a training run, the same on every process of a distributed job, ready to write into.

    `name` when given; to resume without a name, the newest run holding `required`; otherwise a fresh timestamp.
    Rank 0 decides, creates the folder and broadcasts its choice (ranks would otherwise pick timestamps a second
    apart); a problem (nothing to resume, a folder in use) is raised on every rank, so that none is left waiting.
    """
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized()
    decision: list[str | None] = [name, None]  # [folder name, error message]
    if not distributed or dist.get_rank() == 0:
        root_path = Path(root)
        base = root_path / project
        try:
            decision = list(_decide(base, project, root_path, name, resume, overwrite, required))
            if decision[1] is None:
                decision[0] = _prepare(base, decision[0], resume, overwrite).name
        except UserError as err:
            decision[1] = str(err)
        except OSError as err:
            decision[1] = f"cannot create a run folder under {base}: {err.strerror or err}"
    if distributed:
        dist.broadcast_object_list(decision, src=0)
    if decision[1] is not None:
        raise UserError(decision[1])
    return Path(root) / project / decision[0]


def _prepare(base: Path, name: str | None, resume: bool, overwrite: bool) -> Path:
    if resume:
        return base / name
    if name is not None and overwrite and (base / name).exists():
        if (base / name / LOCK_NAME).exists() and RunLock.held(base / name):
            raise UserError(f"--overwrite: {base / name} is being trained by another process")
        shutil.rmtree(base / name)  # a run folder (it has a config.json): what a run wrote, nothing else
    if name is not None and (base / name).is_dir():  # empty, e.g. made by hand: use it (and never delete it)
        return base / name
    run_dir = make_run_dir(base.name, name, base.parent)
    _created_here.append((run_dir, True))
    return run_dir


def _is_set_up_only(entry: Path) -> bool:
    """What a run writes before its first step: config, card, lock, an empty log or TensorBoard's event file."""
    if entry.name in ("config.json", "card.json", LOCK_NAME) or entry.name.startswith("events.out.tfevents"):
        return True
    return entry.is_dir() and all(_is_set_up_only(child) for child in entry.iterdir())


def discard_unfinished_runs() -> None:
    """Release this process's run locks and delete the run folders it created that hold nothing but their set-up
    files (a run stopped by a user error before its first save leaves no junk folder behind; anything it produced
    is kept)."""
    for lock in list(RunLock.held_here):
        lock.release()
    while _created_here:  # newest first: a run folder before the runs/<project> folder made for it
        folder, is_run = _created_here.pop()
        if is_run and folder.is_dir() and all(_is_set_up_only(entry) for entry in folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
        elif not is_run and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


class RunLock:
    """An advisory lock on `RUN/.lock` for as long as a process trains into RUN (released at exit, even a crash,
    and by `discard_unfinished_runs` when a verb stops with a user error).

    `fcntl.flock` where the platform has it; elsewhere the lock is a no-op.
    """

    held_here: ClassVar[list[RunLock]] = []  # the locks this process holds

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._file = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; the folder is still created exclusively
            return self
        for earlier in [lock for lock in RunLock.held_here if lock.path == self.path]:
            # Training runs one after another in a process, so a lock this process still holds on the same run is
            # left by a train() that stopped with an exception (an interrupted run resumed in the same process,
            # as tests do): take it over. A killed process needs nothing: the OS drops its locks.
            earlier.release()
        self._file = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            raise UserError(f"{self.path.parent} is being trained by another process") from None
        RunLock.held_here.append(self)
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.path.unlink(missing_ok=True)
        if self in RunLock.held_here:
            RunLock.held_here.remove(self)

    @staticmethod
    def held(run_dir: Path) -> bool:
        """Whether another process trains into RUN now."""
        if any(lock.path == Path(run_dir) / LOCK_NAME for lock in RunLock.held_here):
            return False
        try:
            lock = RunLock(run_dir).acquire()
        except UserError:
            return True
        lock.release()
        return False


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the `.NAME.*.tmp` files an atomic write leaves when its process is killed mid-save (call it only
    while holding the run's lock: then no one else is writing them)."""
    stale = [p for p in Path(run_dir).glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as JSON-ready values (paths become strings)."""
    out = {}
    for key, value in dataclasses.asdict(cfg).items():
        out[key] = str(value) if isinstance(value, Path) else value
    return out

"""Run folders: `runs/<project>/<name>/`, one per training run, holding config, weights, metrics and logs."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from .checkpoint import RESUME_NAME, WEIGHTS_NAME
from .cli import UserError

DEFAULT_ROOT = Path("runs")


def make_run_dir(project: str, name: str | None = None, root: str | os.PathLike | None = None) -> Path:
    """Create (or reuse, for resume) `root/project/name`; `name` defaults to a timestamp."""
    root = Path(root) if root is not None else DEFAULT_ROOT
    name = name or time.strftime("%Y%m%d-%H%M%S")
    run_dir = root / project / name
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def latest_run(
    project: str, root: str | os.PathLike | None = None, required: str = WEIGHTS_NAME
) -> Path | None:
    """The most recently modified run folder of `project` that holds `required`, or None."""
    base = (Path(root) if root is not None else DEFAULT_ROOT) / project
    if not base.is_dir():
        return None
    candidates = [d for d in base.iterdir() if (d / required).is_file()]
    return max(candidates, key=lambda d: (d / required).stat().st_mtime, default=None)


def resolve_run_dir(
    project: str, root: str | os.PathLike, name: str | None = None, resume: bool = False,
    required: str = RESUME_NAME,
) -> Path:  # fmt: skip
    """The folder of a training run, the same on every process of a distributed job.

    `name` when given; to resume without a name, the newest run holding `required`; otherwise a fresh timestamp.
    Rank 0 decides and broadcasts its choice (ranks would otherwise pick timestamps a second apart); a problem
    (nothing to resume) is raised on every rank, so that none is left waiting. Only rank 0 creates the folder.
    """
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized()
    decision: list[str | None] = [name, None]  # [folder name, error message]
    if not distributed or dist.get_rank() == 0:
        base = Path(root) / project
        if resume and name is None:
            newest = latest_run(project, root, required=required)
            decision = (
                [newest.name, None] if newest else [None, f"--resume: no run with a {required} under {base}"]
            )
        elif name is None:
            decision[0] = time.strftime("%Y%m%d-%H%M%S")
        if resume and decision[1] is None and not (base / decision[0] / required).is_file():
            decision[1] = f"--resume: {base / decision[0]} has no {required} to resume from"
    if distributed:
        dist.broadcast_object_list(decision, src=0)
    if decision[1] is not None:
        raise UserError(decision[1])
    if not distributed or dist.get_rank() == 0:
        return make_run_dir(project, decision[0], root)
    return Path(root) / project / decision[0]


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as JSON-ready values (paths become strings)."""
    out = {}
    for key, value in dataclasses.asdict(cfg).items():
        out[key] = str(value) if isinstance(value, Path) else value
    return out

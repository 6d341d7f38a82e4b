"""Run folders: `runs/<project>/<name>/`, one per training run, holding config, weights, metrics and logs."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from .checkpoint import WEIGHTS_NAME

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


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as JSON-ready values (paths become strings)."""
    out = {}
    for key, value in dataclasses.asdict(cfg).items():
        out[key] = str(value) if isinstance(value, Path) else value
    return out

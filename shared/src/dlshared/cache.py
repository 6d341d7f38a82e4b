"""One cache root for what the projects download or generate once (CIFAR-10, the detector's synthetic shapes):
$CAPSTONES_CACHE when set, else ~/.cache/capstones. A flag such as --data or --shapes-root still wins; model weights
stay in their libraries' own caches (Hugging Face's, torch hub's), which every user of those libraries shares."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CAPSTONES_CACHE"


def cache_dir(*parts: str) -> Path:
    """The cache root joined with `parts` (not created: the code that fills it does, atomically)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "capstones"
    return Path(root).expanduser().joinpath(*parts)

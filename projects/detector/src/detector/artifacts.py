"""A trained detector on disk: RUN/model.safetensors + card.json (classes, image size, architecture).

Loading reads safetensors and JSON only: no pickle, so a downloaded run folder cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dlshared.checkpoint import WEIGHTS_NAME, load_json, load_weights
from dlshared.cli import UserError
from dlshared.device import pick_device
from dlshared.runs import latest_run

from .config import PROJECT
from .model import CenterNet, DetectorConfig


@dataclass
class LoadedDetector:
    model: CenterNet
    classes: list[str]
    image_size: int
    run_dir: Path
    device: torch.device


def resolve_checkpoint(ckpt: Path | None, runs: Path) -> Path:
    if ckpt is None:
        ckpt = latest_run(PROJECT, runs, required="metrics.json")
        if ckpt is None:
            raise UserError(
                f"no trained detector under {runs / PROJECT}; run `detector train` or pass --ckpt"
            )
    return Path(ckpt)


def load_detector(run_dir: Path, device: str = "auto") -> LoadedDetector:
    run_dir = Path(run_dir)
    for name in ("card.json", WEIGHTS_NAME):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a detector run folder: {name} is missing")
    try:
        target = pick_device(device)
    except ValueError as err:
        raise UserError(str(err)) from None
    card = load_json(run_dir / "card.json")
    cfg = DetectorConfig(**{**card["model"], "widths": tuple(card["model"]["widths"])})
    model = load_weights(CenterNet(cfg), run_dir / WEIGHTS_NAME).to(target).eval()
    return LoadedDetector(model, card["classes"], card["image_size"], run_dir, target)

"""A trained detector on disk: RUN/model.safetensors + card.json (classes, image size, architecture: the
CenterNet or one of torchvision's R-CNNs).

Loading reads safetensors and JSON only: no pickle, so a downloaded run folder cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dlshared.checkpoint import WEIGHTS_NAME, load_weights, read_json_object
from dlshared.cli import UserError, short_reason
from dlshared.device import pick_device
from dlshared.runs import latest_run

from .config import PROJECT
from .model import CenterNet, DetectorConfig, build_detector

SHIPPED = Path(__file__).resolve().parent / "weights" / "quick"
"""The quick preset's run (seed 0) shipped with the package: `demo` serves it when nothing has been trained."""


@dataclass
class LoadedDetector:
    model: torch.nn.Module
    """CenterNet or a torchvision R-CNN: evaluate.detect runs either."""
    arch: str
    classes: list[str]
    image_size: int
    run_dir: Path
    device: torch.device


def resolve_checkpoint(ckpt: Path | None, runs: Path) -> Path:
    if ckpt is None:
        ckpt = latest_run(PROJECT, runs, required="metrics.json")
        if ckpt is None:
            raise UserError(f"no trained detector under {runs / PROJECT}; run `detector train` or pass --ckpt")
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
    card = read_card(run_dir / "card.json", ("classes", "image_size"))
    arch = card.get("arch", "centernet")
    try:
        if arch == "centernet":  # the card holds its DetectorConfig
            model = CenterNet(DetectorConfig(**card["model"]), card["classes"], card["image_size"])
        else:  # an R-CNN needs its class count only; the architecture only: the weights come from the run folder
            model_cfg = DetectorConfig(num_classes=len(card["classes"]))
            model = build_detector(arch, model_cfg, card["image_size"], pretrained=False)
    except (KeyError, TypeError, ValueError, AttributeError, UserError) as err:
        raise UserError(f"{run_dir / 'card.json'} describes no detector ({short_reason(err)})") from None
    model = load_weights(model, run_dir / WEIGHTS_NAME).to(target).eval()
    return LoadedDetector(model, arch, card["classes"], card["image_size"], run_dir, target)


def read_card(path: Path, keys: tuple[str, ...]) -> dict:
    """A run's card.json, with `keys` present and a non-empty list of class names."""
    card = read_json_object(path)
    classes = card.get("classes")
    if any(key not in card for key in keys) or not isinstance(classes, list) or not classes:
        raise UserError(f"{path} is not a model card of this project (it needs {', '.join(keys)})")
    return card

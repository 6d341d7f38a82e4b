"""Loading what training wrote: a run folder -> its model (weights from safetensors), tokenizer, config, splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dlshared.checkpoint import WEIGHTS_NAME, load_weights
from dlshared.cli import UserError
from dlshared.configs import read_config
from dlshared.device import pick_device
from dlshared.runs import latest_run

from .config import PROJECT, TrainConfig
from .data import Splits, embedded_splits, real_splits
from .model import build_clip, image_size

SHIPPED = Path(__file__).resolve().parent / "weights" / "quick"
"""The quick preset's run, shipped with the package in float16 (weights/quick/README.md: command, commit, figures):
`multimodal demo` serves it at once on a fresh clone, before anything is trained."""


@dataclass
class ClipRun:
    model: torch.nn.Module
    preprocess: object  # image -> tensor, open_clip's evaluation transform
    tokenizer: object  # list[str] -> tokens [N, context_length]
    config: TrainConfig
    dir: Path
    device: torch.device


def find_run(ckpt: Path | None, runs: Path) -> Path:
    if ckpt is not None:
        if not Path(ckpt).is_dir():
            raise UserError(f"--ckpt {ckpt}: no such run folder")
        return Path(ckpt)
    newest = latest_run(PROJECT, runs)
    if newest is None:
        raise UserError(f"no trained model under {runs / PROJECT}; run `multimodal train` or pass --ckpt")
    return newest


def load_run(run_dir: Path, device: str = "auto") -> ClipRun:
    """The run's model rebuilt from its config (never downloaded again: pretrained=None) and its saved weights."""
    for name in ("config.json", WEIGHTS_NAME):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a multimodal run folder (no {name})")
    cfg = read_config(run_dir / "config.json", TrainConfig)
    try:
        target = pick_device(device)
    except ValueError as err:
        raise UserError(str(err)) from None
    model, preprocess, tokenizer = build_clip(cfg.model, None)
    load_weights(model, run_dir / WEIGHTS_NAME)
    return ClipRun(model.to(target).eval(), preprocess, tokenizer, cfg, run_dir, target)


def run_splits(run: ClipRun) -> Splits:
    """The run's own data splits, rebuilt from its config (the scenes are drawn again from their seed)."""
    cfg = run.config
    if cfg.data is None:
        return embedded_splits(cfg.train_scenes, cfg.data_seed, image_size(run.model), run.preprocess)
    return real_splits(cfg.data, run.preprocess, cfg.data_seed, cfg.csv_separator)

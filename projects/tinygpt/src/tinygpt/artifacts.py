"""A trained model on disk: RUN/model.safetensors + model_config.json + tokenizer.json (+ config.json, metrics.json).

Loading reads safetensors and JSON only: no pickle, so a downloaded run folder cannot run code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from dlshared.checkpoint import WEIGHTS_NAME, load_json, load_weights, save_json, save_weights
from dlshared.cli import UserError
from dlshared.device import pick_device
from dlshared.runs import latest_run

from .config import PROJECT
from .model import GPT, GPTConfig
from .tokenizer import Tokenizer, load_tokenizer

MODEL_CONFIG_NAME = "model_config.json"


def save_model(model: GPT, tokenizer: Tokenizer, folder: Path, metadata: dict[str, str] | None = None) -> None:
    """Weights, architecture and tokenizer: everything `load_model` needs. Each file is written atomically."""
    save_json(dataclasses.asdict(model.cfg), folder / MODEL_CONFIG_NAME)
    tokenizer.save(folder)
    save_weights(model, folder / WEIGHTS_NAME, metadata=metadata)


@dataclass
class LoadedModel:
    model: GPT
    tokenizer: Tokenizer
    run_dir: Path
    device: torch.device


def resolve_checkpoint(ckpt: Path | None, runs: Path) -> Path:
    """--ckpt as given, or the newest finished run under --runs."""
    if ckpt is None:
        ckpt = latest_run(PROJECT, runs, required=WEIGHTS_NAME)
        if ckpt is None:
            raise UserError(f"no trained model under {runs / PROJECT}; run `tinygpt train` or pass --ckpt RUN_DIR")
    return Path(ckpt)


def load_model(run_dir: Path, device: str = "auto") -> LoadedModel:
    run_dir = Path(run_dir)
    for name in (MODEL_CONFIG_NAME, WEIGHTS_NAME, "tokenizer.json"):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a tinygpt run folder: {name} is missing")
    try:
        target = pick_device(device)
    except ValueError as err:
        raise UserError(str(err)) from None
    cfg = GPTConfig(**load_json(run_dir / MODEL_CONFIG_NAME))
    model = GPT(cfg)
    load_weights(model, run_dir / WEIGHTS_NAME)
    return LoadedModel(model.to(target).eval(), load_tokenizer(run_dir), run_dir, target)

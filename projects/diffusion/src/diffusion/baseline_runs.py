"""What the two baseline loops (autoencoder.py, gan.py) share: their batches, the start of their run, the means
they log, and reading a finished run back."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from dlshared.checkpoint import read_json_object
from dlshared.cli import UserError, validate
from dlshared.configs import read_config
from dlshared.seed import seed_everything
from dlshared.training import Run, start_run

from .baselines_config import BaselineRunConfig
from .config import PROJECT
from .data import DataBundle, load_data


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """The rows of batch `step`: a fresh permutation per epoch, a function of (seed, epoch) only, so a resumed
    run sees exactly the batches the uninterrupted one would have seen."""
    per_epoch = n // batch_size  # the ragged tail of each epoch is dropped: every step sees a full batch
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[position * batch_size : (position + 1) * batch_size]


def start_baseline_run(cfg: BaselineRunConfig, model: str, weights: str) -> tuple[Run, DataBundle]:
    """Check the sizes, seed, load the data, then start the run (dlshared.training) in a folder named
    <model>-<timestamp> unless --name; card.json says which model the folder holds. `weights`, the file only
    this model writes (with every checkpoint), is how --resume without --name finds the newest run of its kind."""
    validate(cfg)  # each field's range (config.py), before the data is read
    seed_everything(cfg.seed)
    data = load_data(cfg)
    if cfg.batch_size > len(data.train_images):
        raise UserError(f"--batch-size {cfg.batch_size} exceeds the {len(data.train_images)} training images")
    name = cfg.name if cfg.name or cfg.resume else f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = start_run(PROJECT, dataclasses.replace(cfg, name=name), required=weights)
    if run.accelerator.num_processes > 1:
        raise UserError(f"the {model} loop trains on one device: launch it without torchrun / accelerate launch")
    run.save_json({"model": model, "classes": data.classes, "source": data.source}, "card.json")
    run.log.print(f"data: {data.source}: {len(data.train_images)} train / {len(data.test_images)} test images")
    return run, data


class RunningMeans:
    """Means of a few per-step scalars since the last `pop()`. The sums stay on the device, so that the loop
    waits for it once per history entry, not once per step."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, **values: torch.Tensor) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0) + value.detach()
        self.count += 1

    def pop(self, digits: int = 4) -> dict[str, float]:
        means = {name: round((total / self.count).item(), digits) for name, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


def load_config_and_card(run_dir: Path, cls: type) -> tuple:
    """(the run's VAEConfig / GANConfig, its card.json) from a baseline run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / "card.json").is_file():
        raise UserError(f"{run_dir}: not a baseline run folder (no config.json / card.json)")
    card = read_json_object(run_dir / "card.json")
    if not isinstance(card.get("classes"), list) or not card["classes"]:
        raise UserError(f'{run_dir / "card.json"}: no list of class names under "classes"')
    return read_config(run_dir / "config.json", cls), card

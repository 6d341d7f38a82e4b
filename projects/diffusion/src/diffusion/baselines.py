"""The two baselines' shared run plumbing (batches, run folder, scoring), and the VAE and GAN runs seen through
the same doors as the diffusion runs: `eval` and the demo's interpolation."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dlshared.checkpoint import load_json, save_json
from dlshared.cli import UserError
from dlshared.monitor import RunLogger
from dlshared.runs import config_to_dict, resolve_run_dir
from dlshared.seed import seed_everything

from .baselines_config import BaselineRunConfig, GANConfig, VAEConfig, baseline_config_from_dict
from .config import PROJECT
from .data import DataBundle, load_data
from .evaluate import balanced_labels, load_or_train_judge, score_samples

# --- run plumbing of the two baseline loops (autoencoder.py, gan.py) ------------------------------------


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """The rows of batch `step`: a fresh permutation per epoch, a function of (seed, epoch) only, so a resumed
    run sees exactly the batches the uninterrupted one would have seen."""
    per_epoch = n // batch_size  # the ragged tail of each epoch is dropped: every step sees a full batch
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[position * batch_size : (position + 1) * batch_size]


def open_run(cfg: BaselineRunConfig, model: str, resume_name: str) -> tuple[Path, DataBundle, RunLogger]:
    """Seed, load the data, pick the run folder (<model>-<timestamp> unless --name) and start logging."""
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise UserError(f"--steps and --batch-size must be positive, got {cfg.steps} and {cfg.batch_size}")
    seed_everything(cfg.seed)
    data = load_data(cfg)
    if cfg.batch_size > len(data.train_images):
        raise UserError(f"--batch-size {cfg.batch_size} exceeds the {len(data.train_images)} training images")
    name = cfg.name if cfg.name or cfg.resume else f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = resolve_run_dir(PROJECT, cfg.out, name, cfg.resume, required=resume_name)
    log = RunLogger(run_dir)
    log.print(f"config: {json.dumps(config_to_dict(cfg))}")
    log.print(f"data: {data.source}: {len(data.train_images)} train / {len(data.test_images)} test images")
    save_json({**config_to_dict(cfg), "model": model}, run_dir / "config.json")
    save_json({"model": model, "classes": data.classes, "source": data.source}, run_dir / "card.json")
    return run_dir, data, log


def score_generator(cfg: BaselineRunConfig, data: DataBundle, sample: Callable) -> dict:
    """The project's metric for `cfg.eval_samples` samples of balanced classes: judge accuracy, FID, KID."""
    if cfg.eval_samples <= 0:
        return {}
    requested = balanced_labels(cfg.eval_samples, len(data.classes))
    generator = torch.Generator().manual_seed(cfg.seed)  # the same noise for every evaluation of a run
    samples = torch.cat([sample(labels, generator) for labels in requested.split(500)])
    judge = load_or_train_judge(cfg, data, cfg.out)
    return score_samples(judge, samples, requested, data.test_images)


def load_config_and_card(run_dir: Path, cls: type) -> tuple:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / "card.json").is_file():
        raise UserError(f"{run_dir}: not a baseline run folder (no config.json / card.json)")
    return baseline_config_from_dict(cls, load_json(run_dir / "config.json")), load_json(
        run_dir / "card.json"
    )


def evaluate_baseline(run: Path, n: int, seed: int = 0, runs: Path = Path("runs")) -> dict:
    """n samples of balanced classes from a VAE or GAN run, scored with the judge of its data."""
    from .autoencoder import load_vae, sample_vae
    from .gan import load_generator, sample_gan

    values = load_json(run / "config.json")
    kind = values.get("model")
    if kind not in ("vae", "gan"):
        raise UserError(f"{run}: unknown model kind {kind!r}")
    if not 1 <= n <= 10_000:
        raise UserError(f"--n must be between 1 and 10000, got {n}")
    cfg = baseline_config_from_dict(VAEConfig if kind == "vae" else GANConfig, values)
    model = load_vae(run) if kind == "vae" else load_generator(run)
    cfg = dataclasses.replace(cfg, eval_samples=n, seed=seed, out=runs)
    if kind == "vae":
        return score_generator(cfg, load_data(cfg), lambda y, g: sample_vae(model, y, g, cfg.temperature))
    return score_generator(cfg, load_data(cfg), lambda y, g: sample_gan(model, y, g))


def interpolation_strip(vae_run: Path, digit_a: int, digit_b: int, points: int) -> torch.Tensor:
    """Decoded points on the latent line between the first held-out real image of each digit: [points, C, H, W]
    in [0, 1]."""
    from .autoencoder import interpolate, load_vae

    cfg = baseline_config_from_dict(VAEConfig, load_json(Path(vae_run) / "config.json"))
    data = load_data(cfg)
    image_a = data.test_images[(data.test_labels == digit_a).nonzero()[0, 0]]
    image_b = data.test_images[(data.test_labels == digit_b).nonzero()[0, 0]]
    path = interpolate(load_vae(vae_run), image_a, image_b, digit_a, digit_b, steps=points)
    return ((path + 1) / 2).clamp(0, 1)

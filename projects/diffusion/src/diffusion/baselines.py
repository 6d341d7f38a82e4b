"""The VAE and GAN runs seen through the same doors as the diffusion runs: `diffusion eval` scores them with the
judge of their data, and the demo's second tab walks the VAE's latent space."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from dlshared.cli import UserError

from .autoencoder import interpolate, load_vae, sample_vae
from .baseline_runs import load_config_and_card
from .baselines_config import GANConfig, VAEConfig
from .data import load_data
from .evaluate import balanced_labels, draw_balanced, load_or_train_judge, score_samples
from .gan import load_generator, sample_gan


def evaluate_baseline(
    run: Path, kind: str, n: int, seed: int = 0, runs: Path = Path("runs")
) -> tuple[dict, torch.Tensor, list[str]]:
    """n samples of balanced classes from a VAE or GAN run, scored with the judge of its data (cached in runs).
    Returns the scores, the samples ([n, C, H, W] in [0, 1], for samples.png) and the class names."""
    if kind not in ("vae", "gan"):
        raise UserError(f"{run}: unknown model kind {kind!r}")
    if not 1 <= n <= 10_000:
        raise UserError(f"--n must be between 1 and 10000, got {n}")
    cfg, _ = load_config_and_card(run, VAEConfig if kind == "vae" else GANConfig)
    if kind == "vae":
        sample = partial(sample_vae, load_vae(run), temperature=cfg.temperature)
    else:
        sample = partial(sample_gan, load_generator(run))
    data = load_data(cfg)
    judge = load_or_train_judge(cfg, data, runs)
    samples = draw_balanced(sample, n, len(data.classes), seed)
    scores = score_samples(judge, samples, balanced_labels(n, len(data.classes)), data.test_images)
    return scores, ((samples + 1) / 2).clamp(0, 1), list(data.classes)


def interpolation_strip(vae_run: Path, digit_a: int, digit_b: int, points: int) -> torch.Tensor:
    """Decoded points on the latent line between the first held-out real image of each digit: [points, C, H, W]
    in [0, 1]."""
    cfg, _ = load_config_and_card(Path(vae_run), VAEConfig)
    data = load_data(cfg)
    image_a = data.test_images[(data.test_labels == digit_a).nonzero()[0, 0]]
    image_b = data.test_images[(data.test_labels == digit_b).nonzero()[0, 0]]
    path = interpolate(load_vae(vae_run), image_a, image_b, digit_a, digit_b, steps=points)
    return ((path + 1) / 2).clamp(0, 1)

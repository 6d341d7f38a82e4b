"""The VAE and GAN runs seen through the same doors as the diffusion runs: `eval` and the demo's interpolation."""

from __future__ import annotations

from pathlib import Path

import torch

from dlshared.checkpoint import load_json
from dlshared.cli import UserError

from .baselines_config import GANConfig, VAEConfig, baseline_config_from_dict
from .data import load_data
from .evaluate import balanced_labels, load_or_train_judge, score_samples


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
    data = load_data(cfg)
    model = load_vae(run) if kind == "vae" else load_generator(run)
    sample = sample_vae if kind == "vae" else sample_gan
    requested = balanced_labels(n, len(data.classes))
    generator = torch.Generator().manual_seed(seed)
    samples = torch.cat([sample(model, labels, generator) for labels in requested.split(500)])
    return score_samples(load_or_train_judge(cfg, data, runs), samples, requested, data.test_images)


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

"""Typed configuration of the two baselines the diffusion model is compared with: a conditional VAE (course
day 16, autoencoder.py) and a class-conditional DCGAN (day 17, gan.py), each with a tiny and a quick preset.

Both share DataConfig with the diffusion model, so all three train on the same split and face the same judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from dlshared.cli import Check, NonNegative, NonNegativeFloat, Positive, PositiveFloat

from .config import DataConfig

AdamBeta = Annotated[float, Check(lambda v: 0 <= v < 1, "at least 0 and below 1", (1.0, -0.1))]


@dataclass
class BaselineRunConfig(DataConfig):
    """Fields every baseline has: optimisation length, seed, run folder, evaluation."""

    steps: Positive = 3000
    """Optimizer steps (one batch each; an epoch is len(train) // batch_size steps)."""
    batch_size: Positive = 64
    seed: NonNegative = 0
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """bf16: the forward passes run under bf16 autocast (Accelerate; recent CPUs and GPUs)."""
    eval_samples: NonNegative = 500
    """Samples generated (equally many per class) and scored by the judge at the end (0 = skip)."""
    out: Path = Path("runs")
    """Root of the run folders: runs are written to OUT/diffusion/NAME."""
    name: str | None = None
    """Run folder name (default: vae-<timestamp> / gan-<timestamp>). With --resume and no name: the newest run
    of the same model."""
    resume: bool = False
    """Continue the run named by --name from its last checkpoint."""
    overwrite: bool = False
    """Replace an earlier run of the same --name (without it, a non-empty run folder is refused)."""
    checkpoint_every: Positive = 500
    """Write weights, optimizer and RNG state every N steps (and at the end)."""
    log_every: Positive = 50
    """Add the mean losses since the last entry to the history, and log to TensorBoard, every N steps."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class VAEConfig(BaselineRunConfig):
    latent_dim: Positive = 16
    """Size of the latent vector z (a flat vector: the prior N(0, I) is then plain to sample and to walk)."""
    width: Positive = 32
    """Channels of the first conv layer; the second has twice as many."""
    beta: NonNegativeFloat = 0.5
    """Weight of the KL term. 1 = the ELBO proper; > 1 = beta-VAE (smoother latents, blurrier images). 0.5
    lets z carry more of each digit's style: measured on the quick preset, FID 0.62 instead of 0.91 at
    beta = 1, for a held-out -ELBO 1.1 nats worse (98.6 vs 97.4)."""
    kl_warmup_steps: NonNegative = 500
    """Raise beta linearly from 0 over these steps, so the decoder learns to use z before the KL term can
    switch it off (posterior collapse; Bowman et al. 2016)."""
    lr: PositiveFloat = 2e-3
    """Adam learning rate, decayed by a cosine to 10% of it."""
    temperature: NonNegativeFloat = 1.0
    """Scale of the prior noise when sampling (< 1 trades variety for cleaner digits)."""


@dataclass
class GANConfig(BaselineRunConfig):
    noise_dim: Positive = 64
    """Size of the generator's noise vector z ~ N(0, I)."""
    embed_dim: Positive = 32
    """Size of the generator's label embedding, concatenated to z."""
    g_width: Positive = 32
    """Generator channels at 8x8 (twice as many at 4x4)."""
    d_width: Positive = 32
    """Discriminator channels at 8x8 (twice as many at 4x4)."""
    lr: PositiveFloat = 2e-4
    """Adam learning rate of both networks (the DCGAN recipe: 2e-4, betas 0.5 / 0.999)."""
    beta1: AdamBeta = 0.5
    """Adam's first-moment decay (the DCGAN recipe lowers it from 0.9)."""


VAE_PRESETS: dict[str, VAEConfig] = {
    # seconds: a narrow net, a few dozen steps; what the tests run
    "tiny": VAEConfig(
        width=8,
        latent_dim=8,
        steps=30,
        batch_size=32,
        kl_warmup_steps=10,
        checkpoint_every=10,
        log_every=5,
        eval_samples=20,
        progress=False,
    ),
    # about a minute on a 2-core CPU
    "quick": VAEConfig(),
}

GAN_PRESETS: dict[str, GANConfig] = {
    "tiny": GANConfig(
        g_width=8,
        d_width=8,
        noise_dim=16,
        embed_dim=8,
        steps=30,
        batch_size=32,
        checkpoint_every=10,
        log_every=5,
        eval_samples=20,
        progress=False,
    ),
    # about two minutes on a 2-core CPU
    "quick": GANConfig(),
}

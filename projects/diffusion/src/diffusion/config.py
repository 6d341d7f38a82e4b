"""Typed configuration of every verb, and the presets of `train` (tiny for tests, quick by default, full on GPUs)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

PROJECT = "diffusion"
"""Name of the run folder family: runs/diffusion/<name>/."""

Sampler = Literal["ddim", "ddpm", "dpm", "diffusers-ddim", "diffusers-ddpm"]
SAMPLERS: tuple[str, ...] = typing.get_args(Sampler)
"""The samplers `sample`, `eval`, the demo and `bench` offer. ddim (deterministic, 20-50 steps) and ddpm (ancestral,
made for ~1000 steps) are the hand-written steps of schedule.py; diffusers-ddim and diffusers-ddpm the same two
samplers from diffusers (DDIMScheduler, DDPMScheduler); dpm is diffusers' DPM-Solver++ (multistep, 10-20 steps)."""


@dataclass
class DataConfig:
    data: Path | None = None
    """ImageFolder root (class folders, optionally under train/ and test/). Unset: scikit-learn's digits. With
    --dataset cifar10: where CIFAR-10 is downloaded/cached."""
    dataset: Literal["auto", "digits", "imagefolder", "cifar10"] = "auto"
    """auto = imagefolder when --data is given, else digits. cifar10 downloads through torchvision (online)."""
    image_size: int = 16
    """Side of the square images (digits are 8x8, upscaled)."""
    channels: int = 1
    """1 = grayscale, 3 = RGB (ImageFolder/CIFAR-10 images are converted)."""
    test_fraction: float = 0.2
    """Share of the data held out (FID/KID reference and the judge's test set) when the source has no test split."""
    split_seed: int = 0
    """Seed of the train/test split (apart from --seed, so the held-out set never moves)."""


@dataclass
class TrainConfig(DataConfig):
    # --- model: diffusers UNet2DModel, class-conditional through a class embedding added to the time embedding ---
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    """Channels of each resolution level of the U-Net (each level after the first halves the resolution)."""
    attention_levels: tuple[bool, ...] = (False, False, True)
    """Self-attention blocks at each level (cheap at the low resolutions)."""
    layers_per_block: int = 1
    """ResNet blocks per level on the way down (the way up has one more)."""

    # --- diffusion ---
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    """Noise schedule; squaredcos_cap_v2 is the cosine schedule of Nichol & Dhariwal (2021), kinder to small images."""
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    """What the network predicts: the noise (epsilon, DDPM) or v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0
    (Salimans & Ho 2022). v is the default: at the noisy end of the cosine schedule an epsilon model's x0 estimate
    is the noise divided by sqrt(alpha_bar) ~ 0, and measured on the quick preset about a quarter of the DDIM
    samples kept a salt-and-pepper texture from it; with v none did (README)."""
    label_dropout: float = 0.1
    """Share of training labels replaced by the "no class" token, so one network learns p(x|y) and p(x) for
    classifier-free guidance (Ho & Salimans 2022)."""
    ema_decay: float = 0.999
    """Exponential moving average of the weights; the EMA weights are the ones saved and sampled."""

    # --- optimisation ---
    steps: int = 1200
    batch_size: int = 128
    lr: float = 2e-3
    """Peak learning rate (AdamW), after a linear warm-up; cosine decay to 10% of it."""
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""
    seed: int = 0

    # --- evaluation at the end of training ---
    eval_samples: int = 500
    """Samples generated (equally many per class) to judge the model at the end (0 = skip)."""
    eval_scheduler: Sampler = "ddim"
    """Sampler of that evaluation: ddim and ddpm are schedule.py's own steps, diffusers-ddim, diffusers-ddpm and dpm
    diffusers' schedulers."""
    eval_steps: int = 50
    guidance: float = 2.0
    """Classifier-free guidance scale used at the end-of-training evaluation (1 = no guidance)."""

    # --- run ---
    out: Path = Path("runs")
    """Root of the run folders: runs are written to OUT/diffusion/NAME."""
    name: str | None = None
    """Run folder name (default: a timestamp). With --resume and no name: the newest run."""
    resume: bool = False
    """Continue the run named by --name from its last checkpoint."""
    overwrite: bool = False
    """Replace an earlier run of the same --name (without it, a non-empty run folder is refused)."""
    checkpoint_every: int = 500
    """Write weights, EMA, optimizer and RNG state every N steps (and at the end)."""
    log_every: int = 50
    """Log loss, learning rate, EMA decay and throughput to TensorBoard every N steps."""
    progress: bool = True
    """Show a progress bar."""


PRESETS: dict[str, TrainConfig] = {
    # seconds: a narrow U-Net, a few dozen steps; what the tests run
    "tiny": TrainConfig(
        block_out_channels=(8, 16),
        attention_levels=(False, True),
        steps=30,
        batch_size=16,
        warmup_steps=5,
        checkpoint_every=10,
        log_every=5,
        eval_samples=20,
        eval_steps=5,
        progress=False,
    ),
    # minutes on a 2-core CPU: >= 90% of DDIM-50 guided samples judged the requested digit (see README)
    "quick": TrainConfig(mixed_precision="bf16"),  # bf16 autocast: 1.2x on this CPU (AMX), see README
    # the GPU recipe: CIFAR-10 at 32 px, a wider U-Net, bf16
    "full": TrainConfig(
        dataset="cifar10",
        image_size=32,
        channels=3,
        block_out_channels=(128, 256, 256, 256),
        attention_levels=(False, True, False, False),
        layers_per_block=2,
        steps=100_000,
        batch_size=128,
        lr=2e-4,
        warmup_steps=1000,
        ema_decay=0.9999,
        mixed_precision="bf16",
        eval_samples=5000,
        checkpoint_every=5000,
    ),
}


def config_from_dict(values: dict) -> TrainConfig:
    """Rebuild a TrainConfig from config.json (lists back to tuples, strings back to paths)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kwargs = {k: v for k, v in values.items() if k in fields}
    for key in ("block_out_channels", "attention_levels"):
        kwargs[key] = tuple(kwargs[key])
    for key in ("data", "out"):
        if kwargs.get(key) is not None:
            kwargs[key] = Path(kwargs[key])
    return TrainConfig(**kwargs)


@dataclass
class SamplingArgs:
    ckpt: Path | None = None
    """Run folder or pipeline folder (unset: the newest diffusion run under --runs)."""
    scheduler: Sampler = "ddim"
    """The sampler. ddim (deterministic, 20-50 steps) and ddpm (ancestral, ~1000 steps): the hand-written steps of
    schedule.py. diffusers-ddim, diffusers-ddpm: the same samplers from diffusers (equal to float precision).
    dpm: diffusers' DPM-Solver++ (multistep, 10-20 steps)."""
    steps: int = 50
    """Denoising steps (the model was trained with 1000)."""
    guidance: float = 2.0
    """Classifier-free guidance scale: 1 = conditional model alone, higher = more typical, less varied samples."""
    seed: int = 0
    device: str = "cpu"
    runs: Path = Path("runs")


@dataclass
class SampleArgs(SamplingArgs):
    n: int = 16
    """Number of samples."""
    digit: Annotated[int | None, tyro.conf.arg(name="class")] = None
    """Class to draw (its index; for digits the digit itself). Unset: the classes in turn."""
    out: Path = Path("samples")
    """Folder for <class>_<index>.png (one per sample) and grid.png."""


@dataclass
class EvalArgs(SamplingArgs):
    n: int = 500
    """Samples to generate and judge (the classes in turn). Diffusion, VAE and GAN runs are all accepted."""


@dataclass
class ExportArgs:
    ckpt: Path | None = None
    """Run folder to export (unset: the newest diffusion run)."""
    out: Path | None = None
    """Output folder (default: CKPT/export): a diffusers pipeline folder + card.json, loadable with
    ClassConditionalPipeline.from_pretrained or UNet2DModel.from_pretrained(out, subfolder="unet")."""
    overwrite: bool = False
    """Replace an earlier export in --out (only a folder an export wrote; anything else is refused)."""
    runs: Path = Path("runs")


@dataclass
class BenchArgs:
    ckpt: Path | None = None
    """Run folder whose model to time (unset: the newest run; a fresh quick-preset U-Net when there is none)."""
    batch_size: int = 64
    """Samples per sampling call (guidance doubles the U-Net batch)."""
    configs: tuple[str, ...] = ("ddpm:1000", "ddim:50", "ddim:20", "dpm:20", "dpm:10")
    """sampler:steps pairs to time (samplers as --scheduler of `sample`, e.g. diffusers-ddim:50)."""
    guidance: float = 2.0
    train_steps: int = 20
    """Timed training steps of the quick preset's batch (after 3 warm-up steps); 0 = skip."""
    runs: Path = Path("runs")


@dataclass
class DemoArgs:
    ckpt: Path | None = None
    """Run folder to serve (unset: the newest run, trained with the quick preset first if there is none)."""
    vae: Path | None = None
    """VAE run folder for the interpolation tab (unset: the newest VAE run; the tab explains when there is none)."""
    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 exposes the demo to your network."""
    port: int = 7860
    runs: Path = Path("runs")

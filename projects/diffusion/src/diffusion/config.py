"""Typed configuration of every verb, and the presets of `train` (tiny for tests, quick by default, full on GPUs)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from dlshared.cli import (
    Check,
    Fraction,
    NonNegative,
    NonNegativeFloat,
    Port,
    Positive,
    PositiveFloat,
    Probability,
    UserError,
)
from dlshared.hub import HubRepoId
from dlshared.hubdata import DataSource

PROJECT = "diffusion"
"""Name of the run folder family: runs/diffusion/<name>/."""
PIPELINE_DIR = "pipeline"
PIPELINE_INDEX = f"{PIPELINE_DIR}/model_index.json"
"""What only a diffusion run holds, once it has a checkpoint: how `--resume`, eval and the demo find the newest."""
SHIPPED = Path(__file__).resolve().parent / "weights" / "quick"
"""The quick preset's run, shipped with the package (weights/quick/README.md: command, commit, scores): the demo
serves it at once on a fresh clone, and `eval` of it writes no pictures there (the folder belongs to the installed
package; --pictures DIR says where instead)."""

Sampler = Literal["ddim", "ddpm", "dpm", "diffusers-ddim", "diffusers-ddpm"]
SAMPLERS: tuple[str, ...] = typing.get_args(Sampler)
"""The samplers `sample`, `eval`, the demo and `bench` offer. ddim (deterministic, 20-50 steps) and ddpm (ancestral,
made for ~1000 steps) are the hand-written steps of schedule.py; diffusers-ddim and diffusers-ddpm the same two
samplers from diffusers (DDIMScheduler, DDPMScheduler); dpm is diffusers' DPM-Solver++ (multistep, 10-20 steps)."""

MAX_SAMPLES = 10_000
"""Most samples one `sample` or `eval` call draws."""
SampleCount = Annotated[int, Check(lambda v: 1 <= v <= MAX_SAMPLES, f"between 1 and {MAX_SAMPLES}", (0, -1, 10_001))]
Guidance = Annotated[float, Check(lambda v: 0 <= v <= 50, "between 0 and 50", (-1.0, 51.0))]
"""A classifier-free guidance scale: 0 = the unconditional model, 1 = the conditional one, more = guided."""


@dataclass
class DataConfig:
    data: DataSource = None
    """ImageFolder root (class folders, optionally under train/ and test/). Unset: scikit-learn's digits. With
    --dataset cifar10: where CIFAR-10 is downloaded/cached.
    Or a Hub dataset id, owner/name[/config][:split] (split train unless named): ylecun/mnist, split by --test-fraction.
    Images: its `image` column, else its only image column.
    Classes: the names of its `label` column (else of its only ClassLabel column); without one, a single class."""
    dataset: Literal["auto", "digits", "imagefolder", "cifar10"] = "auto"
    """auto = imagefolder when --data is given (a folder or a Hub dataset), else digits. cifar10 downloads through
    torchvision (online)."""
    image_size: Positive = 16
    """Side of the square images (digits are 8x8, upscaled)."""
    channels: Positive = 1
    """1 = grayscale, 3 = RGB (ImageFolder/CIFAR-10 images are converted)."""
    test_fraction: Fraction = 0.2
    """Share of the data held out (FID/KID reference and the judge's test set) when the source has no test split."""
    split_seed: NonNegative = 0
    """Seed of the train/test split (apart from --seed, so the held-out set never moves)."""


@dataclass
class TrainConfig(DataConfig):
    # --- model: diffusers UNet2DModel, class-conditional through a class embedding added to the time embedding ---
    block_out_channels: tuple[Positive, ...] = (32, 64, 64)
    """Channels of each resolution level of the U-Net (each level after the first halves the resolution)."""
    attention_levels: tuple[bool, ...] = (False, False, True)
    """Self-attention blocks at each level (cheap at the low resolutions)."""
    layers_per_block: Positive = 1
    """ResNet blocks per level on the way down (the way up has one more)."""

    # --- diffusion ---
    num_train_timesteps: Positive = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    """Noise schedule; squaredcos_cap_v2 is the cosine schedule of Nichol & Dhariwal (2021), kinder to small images."""
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    """What the network predicts: the noise (epsilon, DDPM) or v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0
    (Salimans & Ho 2022). v is the default: at the noisy end of the cosine schedule an epsilon model's x0 estimate
    is the noise divided by sqrt(alpha_bar) ~ 0, and measured on the quick preset about a quarter of the DDIM
    samples kept a salt-and-pepper texture from it; with v none did (README)."""
    label_dropout: Probability = 0.1
    """Share of training labels replaced by the "no class" token, so one network learns p(x|y) and p(x) for
    classifier-free guidance (Ho & Salimans 2022)."""
    ema_decay: Probability = 0.999
    """Exponential moving average of the weights; the EMA weights are the ones saved and sampled."""

    # --- latent diffusion (Rombach et al. 2022): the same U-Net and loop on an autoencoder's latents ---
    latent: bool = False
    """Train the U-Net on the latents of an autoencoder (diffusers' AutoencoderKL, Stable Diffusion's kind),
    trained first in this run (or taken from --autoencoder) and then frozen; samples are decoded to images."""
    autoencoder: Path | None = None
    """With --latent: an earlier latent run (or its pipeline/vae folder) whose autoencoder to reuse instead of
    training one; the --autoencoder-* and --latent-channels fields are then the loaded one's."""
    autoencoder_channels: tuple[Positive, ...] = (16, 32, 32)
    """Channels of each level of the autoencoder; each level after the first halves the side (16 px -> 4x4)."""
    latent_channels: Positive = 4
    """Channels of the latent map (Stable Diffusion: 4)."""
    autoencoder_steps: Positive = 600
    """Optimizer steps of the autoencoder (batch 64, AdamW 2e-3 with a cosine decay), before the U-Net's."""
    autoencoder_kl_weight: NonNegativeFloat = 1e-4
    """Weight of the KL term against the pixel MSE: small, so the latents keep the detail (SD uses 1e-6 with a
    perceptual loss); enough to keep the latent space smooth where the U-Net's samples land."""

    # --- optimisation ---
    steps: Positive = 1200
    batch_size: Positive = 128
    lr: PositiveFloat = 2e-3
    """Peak learning rate (AdamW), after a linear warm-up; cosine decay to 10% of it."""
    warmup_steps: NonNegative = 200
    weight_decay: NonNegativeFloat = 0.0
    grad_clip: NonNegativeFloat = 1.0
    """Clip the gradient norm to this (0 = no clipping)."""
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = "no"
    """auto: bf16 where the device computes it natively (CUDA, or a CPU with AMX / AVX512-BF16), else no."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""
    seed: NonNegative = 0

    # --- evaluation at the end of training ---
    eval_samples: NonNegative = 500
    """Samples generated (equally many per class) to judge the model at the end (0 = skip)."""
    eval_scheduler: Sampler = "ddim"
    """Sampler of that evaluation: ddim and ddpm are schedule.py's own steps, diffusers-ddim, diffusers-ddpm and dpm
    diffusers' schedulers."""
    eval_steps: Positive = 50
    guidance: Guidance = 2.0
    """Classifier-free guidance scale used at the end-of-training evaluation (1 = no guidance)."""

    # --- run ---
    out: Path = Path("runs")
    """Root of the run folders: runs are written to OUT/diffusion/NAME."""
    name: str | None = None
    """Run folder name (default: a timestamp). With --resume and no name: the newest run."""
    resume: bool = False
    """Continue the run named by --name from its last checkpoint, under its own config.json: typed flags may change
    only how long and how it runs (RESUME_MAY_CHANGE); one that would change what it trains is refused."""
    overwrite: bool = False
    """Replace an earlier run of the same --name (without it, a non-empty run folder is refused)."""
    checkpoint_every: Positive = 500
    """Write weights, EMA, optimizer and RNG state every N steps (and at the end)."""
    log_every: Positive = 50
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
    # bf16 autocast where native: 1.2x on a CPU with AMX; emulated on an AVX2-only CPU it was 30x slower (README)
    "quick": TrainConfig(mixed_precision="auto"),
    # latent diffusion: an autoencoder first (16x16x1 -> 4x4x4), then a U-Net on the 4x4 latents; see README
    # fp32: on 4x4 latents bf16 autocast made a step slower on this CPU, not faster (README)
    "latent": TrainConfig(latent=True, block_out_channels=(32, 64), attention_levels=(False, True)),
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


RESUME_MAY_CHANGE = (
    *("steps", "checkpoint_every", "log_every", "progress", "device", "mixed_precision"),
    *("eval_samples", "eval_scheduler", "eval_steps", "guidance"),
)
"""Fields `train --resume` may change: how long and how the run executes, and how it is judged at the end; not
what it trains (the U-Net, the data and its split, the noise schedule, the optimiser); with another --steps the
cosine decay runs to the new end. Every other field comes from the run's own config.json (dlshared.configs)."""


def data_source(cfg: DataConfig) -> str:
    """--dataset with auto resolved: imagefolder when --data is given, else digits."""
    return cfg.dataset if cfg.dataset != "auto" else ("imagefolder" if cfg.data is not None else "digits")


def check_data_config(cfg: DataConfig) -> None:
    """The data fields that depend on each other (each field's own range is declared with it)."""
    if cfg.image_size < 8 or cfg.image_size % 4:
        raise UserError(f"--image-size must be a multiple of 4 and at least 8, got {cfg.image_size}")
    if cfg.channels not in (1, 3):
        raise UserError(f"--channels must be 1 or 3, got {cfg.channels}")
    if data_source(cfg) == "digits" and cfg.channels != 1:
        raise UserError("the digits are grayscale: use --channels 1")


def check_train_config(cfg: TrainConfig) -> None:
    """The fields of `train` that depend on each other, checked before any folder exists."""
    check_data_config(cfg)
    levels = len(cfg.block_out_channels)
    if levels == 0 or len(cfg.attention_levels) != levels:
        raise UserError(
            f"--attention-levels needs one entry per --block-out-channels entry: got {len(cfg.attention_levels)} "
            f"for {levels}"
        )
    if any(c % 8 for c in cfg.block_out_channels):  # GroupNorm groups of 8 and attention heads of 8 channels
        raise UserError(f"--block-out-channels must be multiples of 8, got {cfg.block_out_channels}")
    if cfg.autoencoder is not None and not cfg.latent:
        raise UserError("--autoencoder reuses a latent run's autoencoder: add --latent (or --preset latent)")
    side, what = cfg.image_size, f"--image-size {cfg.image_size}"
    if cfg.latent and cfg.autoencoder is None:
        if not cfg.autoencoder_channels or any(c % 8 for c in cfg.autoencoder_channels):  # GroupNorm groups of 8
            raise UserError(f"--autoencoder-channels must be multiples of 8, got {cfg.autoencoder_channels}")
        halvings = len(cfg.autoencoder_channels) - 1
        if cfg.image_size % 2**halvings:
            raise UserError(
                f"--image-size {cfg.image_size} must be divisible by {2**halvings}: "
                f"each of the {halvings + 1} autoencoder levels after the first halves it"
            )
        side = cfg.image_size // 2**halvings
        what = f"the latent side {side} (--image-size {cfg.image_size} / {2**halvings})"
    if side % 2 ** (levels - 1):
        raise UserError(
            f"{what} must be divisible by {2 ** (levels - 1)}: each of the {levels} U-Net levels after the first halves it"
        )
    if cfg.eval_samples and cfg.eval_steps > cfg.num_train_timesteps:
        raise UserError(
            f"--eval-steps must be at most --num-train-timesteps ({cfg.num_train_timesteps}), got {cfg.eval_steps}"
        )


@dataclass
class SamplingArgs:
    ckpt: Path | None = None
    """Run folder or pipeline folder (unset: the newest diffusion run under --runs)."""
    scheduler: Sampler = "ddim"
    """The sampler. ddim (deterministic, 20-50 steps) and ddpm (ancestral, ~1000 steps): the hand-written steps of
    schedule.py. diffusers-ddim, diffusers-ddpm: the same samplers from diffusers (equal to float precision).
    dpm: diffusers' DPM-Solver++ (multistep, 10-20 steps)."""
    steps: Positive = 50
    """Denoising steps (the model was trained with 1000)."""
    guidance: Guidance = 2.0
    """Classifier-free guidance scale: 1 = conditional model alone, higher = more typical, less varied samples."""
    seed: NonNegative = 0
    device: str = "cpu"
    runs: Path = Path("runs")


@dataclass
class SampleArgs(SamplingArgs):
    n: SampleCount = 16
    """Number of samples."""
    digit: Annotated[int | None, tyro.conf.arg(name="class")] = None
    """Class to draw (its index; for digits the digit itself). Unset: the classes in turn."""
    out: Path = Path("samples")
    """Folder for <class>_<index>.png (one per sample) and grid.png: a new or empty one, or an earlier sample
    folder with --overwrite."""
    overwrite: bool = False
    """Replace the samples of an earlier `sample` in --out (only a folder this tool wrote; anything else is
    refused)."""


@dataclass
class EvalArgs(SamplingArgs):
    n: SampleCount = 500
    """Samples to generate and judge (the classes in turn). Diffusion, VAE and GAN runs are all accepted."""
    pictures: Path | None = None
    """Folder for the eval pictures (unset: the run folder; nothing for the shipped weights): samples.png, a row of
    the judged samples per class."""


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
    push_to_hub: HubRepoId = None
    """Upload the finished export folder to this Hugging Face Hub model repo ("your-name/model-name"; needs `hf
    auth login`)."""


@dataclass
class BenchArgs:
    ckpt: Path | None = None
    """Run folder whose model to time (unset: the newest run; a fresh quick-preset U-Net when there is none)."""
    batch_size: Positive = 64
    """Samples per sampling call (guidance doubles the U-Net batch)."""
    configs: tuple[str, ...] = ("ddpm:1000", "ddim:50", "ddim:20", "dpm:20", "dpm:10")
    """sampler:steps pairs to time (samplers as --scheduler of `sample`, e.g. diffusers-ddim:50)."""
    guidance: Guidance = 2.0
    train_steps: NonNegative = 20
    """Timed training steps of the quick preset's batch (after 3 warm-up steps); 0 = skip."""
    runs: Path = Path("runs")
    profile: bool = False
    """Then profile a training step of the quick preset (its batch and bf16 autocast; torch.profiler, 3 steps
    recorded after 2): a Chrome trace (trace.json) and the top operators by self time (top_ops.txt, top_ops.md)."""
    profile_out: Path | None = None
    """Folder for the profile (default: RUNS/diffusion-profile/<timestamp>; giving it turns --profile on; an earlier
    profile there is replaced, any other non-empty folder refused)."""


@dataclass
class DemoArgs:
    ckpt: Path | None = None
    """Run folder to serve (unset: the newest run, trained with the quick preset first if there is none)."""
    vae: Path | None = None
    """VAE run folder for the interpolation tab (unset: the newest VAE run; the tab explains when there is none)."""
    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 exposes the demo to your network."""
    port: Port = 7860
    """Port to serve on (the next free one if it is taken)."""
    share: bool = False
    """Also open a public gradio.live link (off unless asked: anyone with the link can use the demo)."""
    runs: Path = Path("runs")
    """Where to look for (and put) runs."""

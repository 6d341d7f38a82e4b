"""Latent diffusion (course day 31; Rombach et al. 2022, the design of Stable Diffusion) at the size of digits.

An autoencoder squeezes each image into a small spatial map of latents (16x16x1 pixels -> 4x4x4 latents with the
`latent` preset); the same U-Net, noise schedule, loop, EMA and guidance as the pixel model (train.py) learn to
generate that map, and sampling ends with one call of the autoencoder's decoder (pipeline.py). The U-Net works on
16 times fewer positions; the price is training the autoencoder first, one decoder call per sample, and a quality
bounded by what the decoder can reconstruct.

The autoencoder is diffusers' `AutoencoderKL`, the class Stable Diffusion's VAE is, trained here with day 16's
negative ELBO (autoencoder.py) over a spatial z: pixel MSE + a small weight x KL(q(z|x) || N(0, I)). It is not the
project's CVAE, for two reasons: the CVAE's z is a flat vector (16 numbers), which a U-Net's convolutions cannot
work on; and its decoder is told the class, so it would draw the digit whatever the U-Net generated, and the judge
would score the decoder. This one is unconditional, as SD's is: the class is the U-Net's to generate and to guide.

The latents are scaled to unit variance before the U-Net sees them (SD's `scaling_factor`, 0.18215 for its VAE;
here computed on the training images and saved in the autoencoder's config): the noise schedule's signal-to-noise
ratios assume data of about unit variance. train.py calls `prepare_autoencoder` and `encode_latents` before its
loop; the pipeline decodes with `decode_latents`; both are saved together as RUN/pipeline/vae, SD's layout.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME

from dlshared.checkpoint import load_weights, read_json_object
from dlshared.cli import UserError, short_reason
from dlshared.training import Run

from .autoencoder import cosine_to_tenth, kl_divergence
from .baseline_runs import batch_indices
from .config import PIPELINE_DIR, TrainConfig
from .pictures import save_autoencoder_curves

VAE_DIR = "vae"
"""The autoencoder's folder inside a pipeline folder (as in Stable Diffusion's pipelines)."""
AUTOENCODER_BATCH, AUTOENCODER_LR = 64, 2e-3
RECORD_EVERY = 20
"""Steps between the autoencoder's history records (RUN/autoencoder_curves.png)."""


def build_autoencoder(
    image_size: int, channels: int, block_out_channels: tuple[int, ...], latent_channels: int
) -> AutoencoderKL:
    """An AutoencoderKL mapping [B, C, S, S] images to a Gaussian over [B, latent_channels, S/f, S/f] latents,
    f = 2^(levels - 1), and latents back to images."""
    levels = len(block_out_channels)
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=block_out_channels,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=image_size,
        mid_block_add_attention=False,  # at 4x4 two 3x3 convolutions already see the whole map
        scaling_factor=1.0,  # set from the data once trained (latent_scaling_factor)
    )


def autoencoder_loss(
    reconstruction: torch.Tensor, images: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, kl_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mse, kl): a Gaussian decoder's reconstruction term (pixel MSE, mean over pixels) + kl_weight x the
    closed-form KL of day 16 per image (summed over the latent map [c, h, w], mean over the batch)."""
    mse = F.mse_loss(reconstruction.float(), images.float())
    kl = kl_divergence(mean.flatten(1).float(), logvar.flatten(1).float()).mean()
    return mse + kl_weight * kl, mse, kl


def train_autoencoder(
    autoencoder: AutoencoderKL, images: torch.Tensor, steps: int, kl_weight: float, seed: int, log=print
) -> tuple[AutoencoderKL, list[dict]]:
    """Fit `autoencoder` to `images` [N, C, H, W] in [-1, 1] (on its device): a batch, z drawn from q(z|x) with the
    reparameterisation trick, decoded, `autoencoder_loss`, one AdamW step. Returns it frozen, in eval mode, and
    its history (pixel MSE and KL every RECORD_EVERY steps)."""
    optimizer = torch.optim.AdamW(autoencoder.parameters(), lr=AUTOENCODER_LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(cosine_to_tenth, total=steps))
    generator = torch.Generator().manual_seed(seed)  # its own: the draws here leave the global RNG as it was
    autoencoder.train()
    history = []
    for step in range(steps):
        batch = images[batch_indices(step, len(images), AUTOENCODER_BATCH, seed).to(images.device)]
        posterior = autoencoder.encode(batch).latent_dist  # mean, logvar: [B, c, h, w] each
        reconstruction = autoencoder.decode(posterior.sample(generator)).sample  # [B, C, H, W]
        loss, mse, kl = autoencoder_loss(reconstruction, batch, posterior.mean, posterior.logvar, kl_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % RECORD_EVERY == 0 or step + 1 == steps:
            history.append({"step": step + 1, "pixel_mse": round(mse.item(), 6), "kl": round(kl.item(), 3)})
        if (step + 1) % 200 == 0 or step + 1 == steps:
            log(f"autoencoder step {step + 1}/{steps}: pixel MSE {mse.item():.4f}, KL {kl.item():.1f} nats")
    return autoencoder.eval().requires_grad_(False), history


@torch.no_grad()
def encode_latents(autoencoder: AutoencoderKL, images: torch.Tensor, scaling_factor: float | None = None):
    """[N, C, H, W] in [-1, 1] -> [N, c, h, w] latents x scaling_factor (default: the autoencoder's own). The
    posterior means, not draws: the decoder was trained on draws around them, so it forgives the U-Net's errors."""
    scale = autoencoder.config.scaling_factor if scaling_factor is None else scaling_factor
    return torch.cat([autoencoder.encode(batch).latent_dist.mean for batch in images.split(500)]) * scale


@torch.no_grad()
def decode_latents(autoencoder: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """[N, c, h, w] scaled latents (what the U-Net generates) -> [N, C, H, W] images in about [-1, 1]."""
    return autoencoder.decode(latents.to(autoencoder.dtype) / autoencoder.config.scaling_factor).sample


def latent_scaling_factor(autoencoder: AutoencoderKL, images: torch.Tensor) -> float:
    """1 / std of the training images' latents: SD's scaling_factor, measured on this data (SD's 0.18215 was
    measured on its own). Unscaled, the same t would mean another signal-to-noise ratio than the schedule's."""
    return 1.0 / encode_latents(autoencoder, images, scaling_factor=1.0).std().item()


def autoencoder_folder(path: Path) -> Path:
    """A latent run, its pipeline folder or the autoencoder folder itself -> the autoencoder folder."""
    for candidate in (path / PIPELINE_DIR / VAE_DIR, path / VAE_DIR, path):
        if (candidate / "config.json").is_file() and (candidate / SAFETENSORS_WEIGHTS_NAME).is_file():
            return candidate
    raise UserError(f"{path}: no autoencoder here (a latent run, its pipeline/ or its pipeline/vae/ folder)")


def load_autoencoder(folder: Path) -> AutoencoderKL:
    """A saved autoencoder (safetensors only), frozen: built from its config without initialising it, then every
    tensor filled by name and shape (dlshared's load_weights), as artifacts.load_pipeline does for the U-Net."""
    config = read_json_object(Path(folder) / "config.json")
    if config.get("_class_name") != AutoencoderKL.__name__:
        raise UserError(f"{folder / 'config.json'}: a {config.get('_class_name')!r}, not an AutoencoderKL")
    try:
        with torch.device("meta"):  # no memory, no random draws
            autoencoder = AutoencoderKL.from_config(config)
    except Exception as err:
        raise UserError(f"{folder / 'config.json'}: not an autoencoder config ({short_reason(err)})") from None
    autoencoder = load_weights(autoencoder.to_empty(device="cpu"), Path(folder) / SAFETENSORS_WEIGHTS_NAME)
    return autoencoder.eval().requires_grad_(False)


def prepare_autoencoder(cfg: TrainConfig, images: torch.Tensor, run: Run) -> tuple[AutoencoderKL, float]:
    """The frozen autoencoder of a latent run and the seconds spent training it: a resumed run's own
    (RUN/pipeline/vae), the one of --autoencoder, or one trained now on the training `images` by the main process
    and sent to the others, with its scaling factor measured on them."""
    device, levels = run.accelerator.device, len(cfg.block_out_channels)
    if cfg.resume or cfg.autoencoder is not None:
        folder = autoencoder_folder(run.dir if cfg.resume else Path(cfg.autoencoder))
        autoencoder = load_autoencoder(folder).to(device)
        run.log.print(f"autoencoder: {folder} (scaling factor {autoencoder.config.scaling_factor:.4f})")
        if autoencoder.config.in_channels != images.shape[1] or autoencoder.config.sample_size != images.shape[-1]:
            raise UserError(f"{folder}: an autoencoder of other images than --image-size / --channels say")
        side = images.shape[-1] // 2 ** (len(autoencoder.config.block_out_channels) - 1)
        if side % 2 ** (levels - 1):
            raise UserError(f"{folder}: its {side}x{side} latents do not halve {levels - 1} times for the U-Net")
        return autoencoder, 0.0
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # initialised apart: the U-Net's initialisation stays the same
        torch.manual_seed(cfg.seed)
        shape = (cfg.image_size, cfg.channels, cfg.autoencoder_channels, cfg.latent_channels)
        autoencoder = build_autoencoder(*shape).to(device)
    parameters = sum(p.numel() for p in autoencoder.parameters())
    run.log.print(f"autoencoder: AutoencoderKL, {parameters:,} parameters, {cfg.autoencoder_steps} steps first")
    images = images.to(device)
    if run.is_main:
        steps, kl_weight = cfg.autoencoder_steps, cfg.autoencoder_kl_weight
        _, history = train_autoencoder(autoencoder, images, steps, kl_weight, cfg.seed, run.log.print)
        save_autoencoder_curves(run, history)  # RUN/autoencoder_curves.png
    autoencoder.eval().requires_grad_(False)
    if run.accelerator.num_processes > 1:
        from accelerate.utils import broadcast

        broadcast(list(autoencoder.parameters()), from_process=0)  # every process encodes with the same weights
    autoencoder.register_to_config(scaling_factor=latent_scaling_factor(autoencoder, images))
    seconds = time.perf_counter() - started
    run.log.print(f"autoencoder: {seconds:.1f} s, scaling factor {autoencoder.config.scaling_factor:.4f}")
    return autoencoder, seconds

"""Course day 16: a conditional variational autoencoder (CVAE, Kingma & Welling 2014; Sohn et al. 2015).

The encoder maps an image and its label to a Gaussian q(z|x,y) = N(mu, diag(exp(logvar))); z is drawn with
the reparameterisation trick so that gradients reach mu and logvar; the decoder maps z and the label back to
pixel logits. The loss is the negative ELBO: Bernoulli reconstruction (BCE on [0,1] pixels: sharper than a
fixed-variance Gaussian, i.e. MSE, and the classic choice for digits) plus beta * KL(q(z|x,y) || N(0, I)),
in closed form.

z is a flat vector (16 numbers by default), not a spatial map: the prior is then plain to sample and to walk,
and the label joins it by concatenation. Sampling a digit = decoding z ~ N(0, I) next to its one-hot label.

    uv run python -c "from diffusion.autoencoder import train_vae; from diffusion.baselines_config import *; \
print(train_vae(VAE_PRESETS['quick']))"
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from dlshared.checkpoint import (
    load_weights,
    restore_training_state,
    save_json,
    save_resume_state,
    save_weights,
    training_state,
)
from dlshared.device import pick_device
from dlshared.monitor import Throughput

from .baselines import batch_indices, load_config_and_card, open_run, score_generator
from .baselines_config import VAEConfig

VAE_WEIGHTS, VAE_RESUME = "vae.safetensors", "vae_resume.pt"  # own names: never mistaken for a diffusion run


class CVAE(nn.Module):
    def __init__(
        self, channels: int, image_size: int, num_classes: int, latent_dim: int = 16, width: int = 32
    ):
        super().__init__()
        self.num_classes, self.latent_dim = num_classes, latent_dim
        self.inner = (2 * width, image_size // 4, image_size // 4)  # the 4x smaller feature map at the waist
        flat = math.prod(self.inner)
        self.encoder = nn.Sequential(
            nn.Conv2d(channels + num_classes, width, 4, 2, 1), nn.SiLU(),  # [B, w, S/2, S/2]
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.SiLU(), nn.Flatten(),  # [B, 2w * S/4 * S/4]
            nn.Linear(flat, 2 * latent_dim),  # [B, 2 * latent]: mu and logvar
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim + num_classes, flat), nn.SiLU(),
            nn.Unflatten(1, self.inner),  # [B, 2w, S/4, S/4]
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.SiLU(),  # [B, w, S/2, S/2]
            nn.ConvTranspose2d(width, channels, 4, 2, 1),  # [B, C, S, S] logits of the pixels' Bernoulli
        )  # fmt: skip

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """[B] class ids -> [B, K]; a float [B, K] (a soft label, e.g. mid-interpolation) passes through."""
        return labels.float() if labels.dim() == 2 else F.one_hot(labels, self.num_classes).float()

    def encode(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, C, H, W] in [-1, 1], [B] -> mu, logvar [B, latent] of q(z | x, y)."""
        # the label as K constant maps [B, K, H, W], stacked onto the image channels
        y = self.one_hot(labels)[:, :, None, None].expand(-1, -1, *images.shape[-2:])
        mu, logvar = self.encoder(torch.cat([images, y], 1)).chunk(2, dim=1)
        return mu, logvar.clamp(-30, 20)  # exp(logvar) stays finite in float32

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[B, latent], [B] (or soft [B, K]) -> pixel logits [B, C, H, W]; sigmoid(logits) in [0, 1]."""
        return self.decoder(torch.cat([z, self.one_hot(labels)], 1))

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        mu, logvar = self.encode(images, labels)
        return self.decode(reparameterise(mu, logvar), labels), mu, logvar


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None):
    """z = mu + sigma * eps, eps ~ N(0, I): the randomness sits in eps, so z is differentiable in mu and
    logvar (sampling z itself would not be)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per example [B], in closed form:
    0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def vae_loss(
    logits, images, mu, logvar, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO per image (nats, summed over pixels, mean over the batch): reconstruction + beta * KL.

    Returns (loss, reconstruction, kl); images in [-1, 1] become Bernoulli targets in [0, 1].
    """
    targets = (images + 1) / 2
    recon = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).sum(1).mean()
    kl = kl_divergence(mu, logvar).mean()
    return recon + beta * kl, recon, kl


def to_images(logits: torch.Tensor) -> torch.Tensor:
    """Pixel logits -> the Bernoulli means as images in [-1, 1] (the mean, not a draw: draws are noise)."""
    return torch.sigmoid(logits) * 2 - 1


@torch.no_grad()
def sample_vae(vae: CVAE, labels: torch.Tensor, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:  # fmt: skip
    """Digits of the requested classes [N] -> [N, C, H, W] in [-1, 1], decoded from z ~ N(0, temp^2 I)."""
    device = next(vae.parameters()).device
    z = torch.randn(
        len(labels), vae.latent_dim, generator=generator, device=generator.device if generator else "cpu"
    )
    return to_images(vae.eval().decode(temperature * z.to(device), labels.to(device))).cpu()


@torch.no_grad()
def best_labels(vae: CVAE, images: torch.Tensor) -> torch.Tensor:
    """The class under which the CVAE explains each image best (lowest -ELBO at the posterior mean): [B] ids.
    A conditional generative model is also a classifier; interpolate uses this when no label is given."""
    scores = []
    for k in range(vae.num_classes):
        labels = torch.full((len(images),), k, device=images.device)
        mu, logvar = vae.encode(images, labels)
        recon = F.binary_cross_entropy_with_logits(vae.decode(mu, labels), (images + 1) / 2, reduction="none")
        scores.append(recon.flatten(1).sum(1) + kl_divergence(mu, logvar))  # [B]
    return torch.stack(scores, 1).argmin(1)


@torch.no_grad()
def interpolate(vae: CVAE, image_a: torch.Tensor, image_b: torch.Tensor, label_a: int | None = None,
                label_b: int | None = None, steps: int = 8) -> torch.Tensor:  # fmt: skip
    """A straight line between the posterior means of two images ([C, H, W] each) -> [steps, C, H, W]
    in [-1, 1].

    The one-hot label moves along the same line (a 3 can morph into an 8); a missing label is the class the
    VAE finds most likely (best_labels). The two ends decode the posterior means of image_a and image_b.
    """
    vae.eval()
    device = next(vae.parameters()).device
    pair = torch.stack([image_a.reshape(image_a.shape[-3:]), image_b.reshape(image_b.shape[-3:])]).to(device)
    guessed = best_labels(vae, pair) if label_a is None or label_b is None else None
    labels = torch.tensor(
        [guessed[0] if label_a is None else label_a, guessed[1] if label_b is None else label_b]
    )
    y = vae.one_hot(labels.to(device))  # [2, K]
    mu, _ = vae.encode(pair, y)  # [2, latent]
    t = torch.linspace(0, 1, steps, device=device)[:, None]  # [steps, 1]
    return to_images(vae.decode((1 - t) * mu[0] + t * mu[1], (1 - t) * y[0] + t * y[1])).cpu()


# --- training ---------------------------------------------------------------------------------------------


def build_vae(cfg: VAEConfig, num_classes: int) -> CVAE:
    return CVAE(cfg.channels, cfg.image_size, num_classes, cfg.latent_dim, cfg.width)


def load_vae(run_dir: str | Path, device: str | torch.device = "cpu") -> CVAE:
    """The trained CVAE of a run folder, rebuilt from config.json, card.json, vae.safetensors (eval mode)."""
    cfg, card = load_config_and_card(Path(run_dir), VAEConfig)
    vae = build_vae(cfg, len(card["classes"])).to(device)
    return load_weights(vae, Path(run_dir) / VAE_WEIGHTS).eval()


def train_vae(cfg: VAEConfig) -> dict:
    """Train a CVAE as `cfg` says; returns the final metrics (also written to RUN/metrics.json)."""
    device = pick_device(cfg.device)
    run_dir, data, log = open_run(cfg, "vae", VAE_RESUME)
    train_x, train_y = data.train_images.to(device), data.train_labels.to(device)
    vae = build_vae(cfg, len(data.classes)).to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    # cosine decay to 10% of the peak: a VAE needs no warm-up, but the last steps settle better at a low rate
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.1 + 0.45 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
    )
    start, history = 0, []
    if cfg.resume:
        progress = restore_training_state(run_dir / VAE_RESUME, vae, optimizer, scheduler)
        start, history = progress["step"], progress["history"]
        log.print(f"resumed {run_dir} at step {start}")
    log.print(
        f"model: CVAE, {sum(p.numel() for p in vae.parameters()):,} parameters, latent {cfg.latent_dim}"
    )

    meter, started = Throughput(warmup=5), time.perf_counter()
    window, window_steps = torch.zeros(3, device=device), 0  # loss, reconstruction, KL since the last log
    bar = tqdm(range(start, cfg.steps), desc="vae", disable=not cfg.progress, initial=start, total=cfg.steps)
    for step in bar:
        rows = batch_indices(step, len(train_x), cfg.batch_size, cfg.seed).to(device)
        images, labels = train_x[rows], train_y[rows]
        logits, mu, logvar = vae(images, labels)  # [B, C, H, W], [B, latent] x 2
        beta = cfg.beta * min(1.0, (step + 1) / max(1, cfg.kl_warmup_steps))
        loss, recon, kl = vae_loss(logits, images, mu, logvar, beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        meter.update(len(images))
        window += torch.stack([loss, recon, kl]).detach()
        window_steps += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:  # .tolist() waits for the device: only here
            loss_m, recon_m, kl_m = (window / window_steps).tolist()
            window, window_steps = torch.zeros_like(window), 0
            history.append({"step": done, "loss": round(loss_m, 4), "recon": round(recon_m, 4),
                            "kl": round(kl_m, 4), "beta": round(beta, 4)})  # fmt: skip
            log.scalars({"train/loss": loss_m, "train/recon": recon_m, "train/kl": kl_m, "train/beta": beta,
                         "train/lr": scheduler.get_last_lr()[0], "train/images_per_s": meter.rate},
                        done)  # fmt: skip
            bar.set_postfix(loss=f"{loss_m:.1f}", kl=f"{kl_m:.1f}")
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save_weights(vae, run_dir / VAE_WEIGHTS, metadata={"step": str(done)})
            save_resume_state(training_state(vae, optimizer, scheduler, step=done, history=history),
                              run_dir / VAE_RESUME)  # fmt: skip
            last = history[-1]
            log.print(f"step {done}/{cfg.steps}  loss {last['loss']:.2f}  (recon {last['recon']:.2f} + "
                      f"{beta:.2f} * KL {last['kl']:.2f})  {meter.rate:.0f} img/s")  # fmt: skip
    train_seconds = time.perf_counter() - started

    vae.eval()
    with torch.no_grad():  # held-out -ELBO (beta = 1, one z per image, seeded): the VAE's own test loss
        test_x, test_y = data.test_images.to(device), data.test_labels.to(device)
        mu, logvar = vae.encode(test_x, test_y)
        z = reparameterise(mu, logvar, torch.Generator(device).manual_seed(cfg.seed))
        test_loss = vae_loss(vae.decode(z, test_y), test_x, mu, logvar)
        test_nelbo, test_recon, test_kl = (v.item() for v in test_loss)
    scores = score_generator(cfg, data, lambda y, g: sample_vae(vae, y, g, cfg.temperature))
    metrics = {
        "model": "vae", **scores, "test_nelbo": round(test_nelbo, 3), "test_recon": round(test_recon, 3),
        "test_kl": round(test_kl, 3), "steps": cfg.steps, "train_seconds": round(train_seconds, 1),
        "train_samples_per_s": round(meter.rate, 1), "run_dir": str(run_dir), "history": history,
    }  # fmt: skip
    save_json(metrics, run_dir / "metrics.json")
    log.scalars({f"eval/{k}": v for k, v in scores.items() if isinstance(v, float)}, cfg.steps)
    log.print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    log.close()
    return metrics

"""Course day 16: a conditional variational autoencoder (CVAE, Kingma & Welling 2014; Sohn et al. 2015).

The encoder maps an image and its label to a Gaussian q(z|x,y) = N(mu, diag(exp(logvar))); z is drawn with
the reparameterisation trick so that gradients reach mu and logvar; the decoder maps z and the label back to
pixel logits. The loss is the negative ELBO: Bernoulli reconstruction (BCE on [0,1] pixels: sharper than a
fixed-variance Gaussian, i.e. MSE, and the classic choice for digits) plus beta * KL(q(z|x,y) || N(0, I)),
in closed form.

z is a flat vector (16 numbers by default), not a spatial map: the prior is then plain to sample and to walk,
and the label joins it by concatenation. Sampling a digit = decoding z ~ N(0, I) next to its one-hot label.

    uv run diffusion train-vae                  # the quick preset: about a minute on 2 CPU cores
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dlshared.checkpoint import load_weights, save_weights

from .baseline_runs import RunningMeans, batch_indices, load_config_and_card, start_baseline_run
from .baselines_config import VAEConfig
from .evaluate import load_or_train_judge, score_generator
from .pictures import save_baseline_curves

VAE_WEIGHTS = "vae.safetensors"  # its own name: a diffusion or GAN --resume never picks a VAE run


class CVAE(nn.Module):
    def __init__(self, channels: int, image_size: int, num_classes: int, latent_dim: int = 16, width: int = 32):
        super().__init__()
        self.num_classes, self.latent_dim = num_classes, latent_dim
        self.inner = (2 * width, image_size // 4, image_size // 4)  # the 4x smaller feature map at the waist
        flat = math.prod(self.inner)
        self.encoder = nn.Sequential(
            nn.Conv2d(channels + num_classes, width, 4, 2, 1),
            nn.SiLU(),  # [B, w, S/2, S/2]
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.SiLU(),
            nn.Flatten(),  # [B, 2w * S/4 * S/4]
            nn.Linear(flat, 2 * latent_dim),  # [B, 2 * latent]: mu and logvar
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim + num_classes, flat),
            nn.SiLU(),
            nn.Unflatten(1, self.inner),  # [B, 2w, S/4, S/4]
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.SiLU(),  # [B, w, S/2, S/2]
            nn.ConvTranspose2d(width, channels, 4, 2, 1),  # [B, C, S, S] logits of the pixels' Bernoulli
        )

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


def vae_loss(logits, images, mu, logvar, beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
def sample_vae(vae: CVAE, labels: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0):
    """Digits of the requested classes [N] -> [N, C, H, W] in [-1, 1], decoded from z ~ N(0, temp^2 I)."""
    device = next(vae.parameters()).device
    noise_device = generator.device if generator else "cpu"  # draw where the generator lives: the same z anywhere
    z = torch.randn(len(labels), vae.latent_dim, generator=generator, device=noise_device)
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
def interpolate(vae: CVAE, image_a, image_b, label_a: int | None = None, label_b: int | None = None, steps: int = 8):
    """A straight line between the posterior means of two images ([C, H, W] each) -> [steps, C, H, W] in [-1, 1].

    The one-hot label moves along the same line (a 3 can morph into an 8); a missing label is the class the
    VAE finds most likely (best_labels). The two ends decode the posterior means of image_a and image_b.
    """
    vae.eval()
    device = next(vae.parameters()).device
    pair = torch.stack([image_a.reshape(image_a.shape[-3:]), image_b.reshape(image_b.shape[-3:])]).to(device)
    guessed = best_labels(vae, pair).tolist() if label_a is None or label_b is None else None
    label_a = guessed[0] if label_a is None else label_a
    label_b = guessed[1] if label_b is None else label_b
    y = vae.one_hot(torch.tensor([label_a, label_b], device=device))  # [2, K]
    mu, _ = vae.encode(pair, y)  # [2, latent]
    t = torch.linspace(0, 1, steps, device=device)[:, None]  # [steps, 1]
    z_path = (1 - t) * mu[0] + t * mu[1]  # [steps, latent]
    y_path = (1 - t) * y[0] + t * y[1]  # [steps, K]: soft labels, a 3 becoming an 8
    return to_images(vae.decode(z_path, y_path)).cpu()


# --- training ---------------------------------------------------------------------------------------------


def load_vae(run_dir: str | Path, device: str | torch.device = "cpu") -> CVAE:
    """The trained CVAE of a run folder, rebuilt from config.json, card.json, vae.safetensors (eval mode)."""
    cfg, card = load_config_and_card(Path(run_dir), VAEConfig)
    vae = CVAE(cfg.channels, cfg.image_size, len(card["classes"]), cfg.latent_dim, cfg.width).to(device)
    return load_weights(vae, Path(run_dir) / VAE_WEIGHTS).eval()


def cosine_to_tenth(step: int, total: int) -> float:
    """Learning-rate factor: cosine decay from 1 to 0.1 over `total` steps. A VAE needs no warm-up, but its last
    steps settle better at a low rate."""
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(step, total) / total))


def train_vae(cfg: VAEConfig) -> dict:
    """Train a CVAE as `cfg` says; returns the final metrics (also written to RUN/metrics.json)."""
    # --- set-up: run folder and data (baseline_runs.py), model, optimiser, resume ---
    run, data = start_baseline_run(cfg, "vae", VAE_WEIGHTS)
    device = run.accelerator.device
    train_x, train_y = data.train_images.to(device), data.train_labels.to(device)
    vae = CVAE(cfg.channels, cfg.image_size, len(data.classes), cfg.latent_dim, cfg.width)
    vae = run.accelerator.prepare(vae)  # on the device; bf16 autocast around forward with --mixed-precision bf16
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(cosine_to_tenth, total=cfg.steps))
    progress = run.resume(vae, optimizer, scheduler) or {"step": 0, "history": []}
    step, history = progress["step"], progress["history"]
    run.log.print(f"model: CVAE, {sum(p.numel() for p in vae.parameters()):,} parameters, latent {cfg.latent_dim}")
    meter = run.meter(cfg.steps, step, every=cfg.log_every, unit="images", warmup=5)
    means = RunningMeans()  # loss, reconstruction and KL since the last history entry

    # --- the loop: a batch, the negative ELBO, one optimizer step ---
    while step < cfg.steps:
        rows = batch_indices(step, len(train_x), cfg.batch_size, cfg.seed).to(device)
        images, labels = train_x[rows], train_y[rows]
        logits, mu, logvar = vae(images, labels)  # [B, C, H, W], [B, latent] x 2
        beta = cfg.beta * min(1.0, (step + 1) / max(1, cfg.kl_warmup_steps))  # KL warm-up
        loss, recon, kl = vae_loss(logits, images, mu, logvar, beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        meter.step(step, len(images), loss=loss, recon=recon, kl=kl, beta=beta, lr=scheduler.get_last_lr()[0])
        means.add(loss=loss, recon=recon, kl=kl)
        if step % cfg.log_every == 0 or step == cfg.steps:
            history.append({"step": step, **means.pop(), "beta": round(beta, 4)})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            with meter.paused():
                publish = partial(save_weights, vae, run.dir / VAE_WEIGHTS, {"step": str(step)})
                run.checkpoint(vae, optimizer, scheduler, publish, step=step, history=history)
                run.log.print(
                    f"step {step}/{cfg.steps}  loss {loss.item():.2f} (recon {recon.item():.2f} + "
                    f"{beta:.2f} * KL {kl.item():.2f})  {meter.rate:.0f} img/s"
                )
    meter.close()

    # --- finish: the held-out -ELBO, then samples scored by the judge ---
    test = held_out_nelbo(vae, data.test_images.to(device), data.test_labels.to(device), cfg.seed)
    scores = {}
    if cfg.eval_samples > 0:
        judge = load_or_train_judge(cfg, data, cfg.out)
        sample = partial(sample_vae, vae, temperature=cfg.temperature)  # sample(labels, generator)
        scores = score_generator(sample, judge, data, cfg.eval_samples, cfg.seed)
        run.log.scalars({f"eval/{k}": v for k, v in scores.items() if isinstance(v, float)}, cfg.steps)
    terms = {"negative ELBO terms (nats)": ["loss", "recon", "kl", "held_out_nelbo"]}
    save_baseline_curves(run, history, terms, scores, held_out_nelbo=test["test_nelbo"])  # RUN/curves.png
    metrics = {
        "model": "vae",
        **scores,
        **test,
        "steps": cfg.steps,
        "train_seconds": round(meter.seconds, 1),
        "train_samples_per_s": round(meter.rate, 1),
        "run_dir": str(run.dir),
        "history": history,
    }
    summary = f"done: CVAE, held-out -ELBO {test['test_nelbo']:.2f} nats"
    if scores:
        summary += f", judged accuracy {scores['accuracy']:.4f}, FID {scores['fid']:.3f}"
    return run.finish(metrics, f"{summary}, {meter.seconds:.1f} s, run folder {run.dir}")


@torch.no_grad()
def held_out_nelbo(vae: CVAE, images: torch.Tensor, labels: torch.Tensor, seed: int) -> dict[str, float]:
    """The VAE's own test loss: -ELBO (beta = 1) on held-out images, one seeded z per image, and its two parts."""
    vae.eval()
    mu, logvar = vae.encode(images, labels)
    z = reparameterise(mu, logvar, torch.Generator(images.device).manual_seed(seed))
    nelbo, recon, kl = (v.item() for v in vae_loss(vae.decode(z, labels), images, mu, logvar))
    return {"test_nelbo": round(nelbo, 3), "test_recon": round(recon, 3), "test_kl": round(kl, 3)}

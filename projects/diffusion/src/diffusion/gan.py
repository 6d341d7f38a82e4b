"""Course day 17: a class-conditional DCGAN (Radford et al. 2016) with a projection discriminator (Miyato &
Koyama 2018).

The generator turns noise z and a label embedding into an image through transposed convolutions; the
discriminator scores (image, label) pairs: a conv stack gives features h, and the score is w.h + embed(y).h,
so "is this a real 3?" is asked directly instead of "is this real?" with the label as a side input. The
losses are the non-saturating pair of Goodfellow et al. (2014): D minimises -log D(x) - log(1 - D(G(z))),
G minimises -log D(G(z)) (strong gradients while D still wins easily). Adam 2e-4, betas (0.5, 0.999): the
DCGAN recipe. No EMA of the generator: measured on the quick preset it did not help (decay 0.99: FID 0.72 vs
0.71 without) or hurt (0.999: 1.71), as BatchNorm statistics of the raw weights do not fit averaged ones.

    uv run python -c "from diffusion.gan import train_gan; from diffusion.baselines_config import *; \
print(train_gan(GAN_PRESETS['quick']))"
"""

from __future__ import annotations

import json
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
from .baselines_config import GANConfig

GENERATOR_WEIGHTS, DISCRIMINATOR_WEIGHTS = "generator.safetensors", "discriminator.safetensors"
GAN_RESUME = "gan_resume.pt"  # its own name: a diffusion or VAE --resume never picks a GAN run


class Generator(nn.Module):
    def __init__(self, channels: int, image_size: int, num_classes: int, noise_dim: int = 64,
                 embed_dim: int = 32, width: int = 32):  # fmt: skip
        super().__init__()
        self.noise_dim = noise_dim
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = nn.Sequential(  # DCGAN: BatchNorm + ReLU inside, no norm on the output, tanh to [-1, 1]
            nn.ConvTranspose2d(noise_dim + embed_dim, 2 * width, image_size // 4, 1, 0, bias=False),
            nn.BatchNorm2d(2 * width), nn.ReLU(),  # [B, 2w, S/4, S/4]
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(),  # [B, w, S/2, S/2]
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh(),  # [B, C, S, S] in [-1, 1]
        )  # fmt: skip

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z [B, noise_dim], labels [B] -> images [B, C, S, S]."""
        return self.net(torch.cat([z, self.embed(labels)], 1)[:, :, None, None])  # a 1x1 "image" of B vectors


class Discriminator(nn.Module):
    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32):
        super().__init__()
        features = 4 * width
        self.net = nn.Sequential(  # DCGAN: LeakyReLU(0.2), BatchNorm except on the input layer
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),  # [B, w, S/2, S/2]
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),  # [B, 2w, S/4, S/4]
            nn.Conv2d(2 * width, features, image_size // 4, 1, 0), nn.LeakyReLU(0.2), nn.Flatten(),  # [B, 4w]
        )  # fmt: skip
        self.score = nn.Linear(features, 1)  # "does it look real at all?"
        self.project = nn.Embedding(num_classes, features)  # "does it look like this class?"

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """images [B, C, S, S] in [-1, 1], labels [B] -> logits [B] (> 0: judged real, of that class)."""
        h = self.net(images)  # [B, 4w]
        return self.score(h).squeeze(1) + (self.project(labels) * h).sum(1)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))), D = sigmoid(logit); softplus(-l) = -log sigmoid(l), stable in float32."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating: -log D(G(z)) rather than log(1 - D(G(z))), whose gradient vanishes when D is sure."""
    return F.softplus(-fake_logits).mean()


@torch.no_grad()
def sample_gan(
    gen: Generator, labels: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Digits of the requested classes [N] -> [N, C, H, W] in [-1, 1] (eval mode: BatchNorm's running
    statistics, so a sample does not depend on the others in its batch)."""
    device = next(gen.parameters()).device
    z = torch.randn(
        len(labels), gen.noise_dim, generator=generator, device=generator.device if generator else "cpu"
    )
    return gen.eval()(z.to(device), labels.to(device)).cpu()


def build_gan(cfg: GANConfig, num_classes: int) -> tuple[Generator, Discriminator]:
    gen = Generator(cfg.channels, cfg.image_size, num_classes, cfg.noise_dim, cfg.embed_dim, cfg.g_width)
    return gen, Discriminator(cfg.channels, cfg.image_size, num_classes, cfg.d_width)


def load_generator(run_dir: str | Path, device: str | torch.device = "cpu") -> Generator:
    """The trained generator of a run folder, rebuilt from config.json + card.json + safetensors (eval)."""
    cfg, card = load_config_and_card(Path(run_dir), GANConfig)
    gen = build_gan(cfg, len(card["classes"]))[0].to(device)
    return load_weights(gen, Path(run_dir) / GENERATOR_WEIGHTS).eval()


def train_gan(cfg: GANConfig) -> dict:
    """Train a conditional DCGAN as `cfg` says; returns the final metrics (also in RUN/metrics.json)."""
    device = pick_device(cfg.device)
    run_dir, data, log = open_run(cfg, "gan", GAN_RESUME)
    train_x, train_y = data.train_images.to(device), data.train_labels.to(device)
    gen, disc = (m.to(device) for m in build_gan(cfg, len(data.classes)))
    for net in (gen, disc):  # DCGAN's initialisation: N(0, 0.02) weights, BatchNorm gains N(1, 0.02)
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    nets = nn.ModuleDict({"generator": gen, "discriminator": disc})  # one state dict to resume from
    start, history = 0, []
    if cfg.resume:
        progress = restore_training_state(run_dir / GAN_RESUME, nets, opt_g)
        opt_d.load_state_dict(progress["optimizer_d"])
        start, history = progress["step"], progress["history"]
        log.print(f"resumed {run_dir} at step {start}")
    log.print(f"model: DCGAN, generator {sum(p.numel() for p in gen.parameters()):,} / discriminator "
              f"{sum(p.numel() for p in disc.parameters()):,} parameters")  # fmt: skip

    meter, started = Throughput(warmup=5), time.perf_counter()
    # D loss, G loss, D(x), D(G(z)) summed since the last log line
    window, window_steps = torch.zeros(4, device=device), 0
    bar = tqdm(range(start, cfg.steps), desc="gan", disable=not cfg.progress, initial=start, total=cfg.steps)
    for step in bar:
        rows = batch_indices(step, len(train_x), cfg.batch_size, cfg.seed).to(device)
        real, labels = train_x[rows], train_y[rows]
        # the fakes get the real batch's labels, so both halves of D's batch have the data's class mix
        z = torch.randn(len(real), cfg.noise_dim, device=device)
        fake = gen(z, labels)  # [B, C, S, S]

        # discriminator step: real and fake in separate batches (DCGAN), so BatchNorm never mixes the two
        real_logits, fake_logits = disc(real, labels), disc(fake.detach(), labels)
        d_loss = discriminator_loss(real_logits, fake_logits)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        # generator step against the just-updated discriminator
        g_loss = generator_loss(disc(fake, labels))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        meter.update(len(real))

        d_real, d_fake = torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()
        window += torch.stack([d_loss, g_loss, d_real, d_fake]).detach()
        window_steps += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:  # .tolist() waits for the device: only here
            d_m, g_m, real_m, fake_m = (window / window_steps).tolist()
            window, window_steps = torch.zeros_like(window), 0
            history.append({"step": done, "d_loss": round(d_m, 4), "g_loss": round(g_m, 4),
                            "d_real": round(real_m, 4), "d_fake": round(fake_m, 4)})  # fmt: skip
            log.scalars({"train/d_loss": d_m, "train/g_loss": g_m, "train/d_real": real_m,
                         "train/d_fake": fake_m, "train/images_per_s": meter.rate}, done)  # fmt: skip
            bar.set_postfix(d=f"{d_m:.3f}", g=f"{g_m:.3f}")
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save_weights(gen, run_dir / GENERATOR_WEIGHTS, metadata={"step": str(done)})
            save_weights(disc, run_dir / DISCRIMINATOR_WEIGHTS, metadata={"step": str(done)})
            save_resume_state(training_state(nets, opt_g, optimizer_d=opt_d.state_dict(), step=done,
                                             history=history), run_dir / GAN_RESUME)  # fmt: skip
            log.print(f"step {done}/{cfg.steps}  D loss {history[-1]['d_loss']:.3f}  G loss "
                      f"{history[-1]['g_loss']:.3f}  D(x) {history[-1]['d_real']:.2f}  D(G(z)) "
                      f"{history[-1]['d_fake']:.2f}  {meter.rate:.0f} img/s")  # fmt: skip
    train_seconds = time.perf_counter() - started

    scores = score_generator(cfg, data, lambda y, g: sample_gan(gen, y, g))
    metrics = {
        "model": "gan", **scores, "steps": cfg.steps, "train_seconds": round(train_seconds, 1),
        "train_samples_per_s": round(meter.rate, 1), "run_dir": str(run_dir), "history": history,
    }  # fmt: skip
    save_json(metrics, run_dir / "metrics.json")
    log.scalars({f"eval/{k}": v for k, v in scores.items() if isinstance(v, float)}, cfg.steps)
    log.print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    log.close()
    return metrics

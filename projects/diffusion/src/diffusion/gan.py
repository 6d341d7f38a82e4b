"""Course day 17: a class-conditional DCGAN (Radford et al. 2016) with a projection discriminator (Miyato &
Koyama 2018).

The generator turns noise z and a label embedding into an image through transposed convolutions; the
discriminator scores (image, label) pairs: a conv stack gives features h, and the score is w.h + embed(y).h,
so "is this a real 3?" is asked directly instead of "is this real?" with the label as a side input. The
losses are the non-saturating pair of Goodfellow et al. (2014): D minimises -log D(x) - log(1 - D(G(z))),
G minimises -log D(G(z)) (strong gradients while D still wins easily). Adam 2e-4, betas (0.5, 0.999): the
DCGAN recipe. No EMA of the generator: measured on the quick preset it did not help (decay 0.99: FID 0.72 vs
0.71 without) or hurt (0.999: 1.71), as BatchNorm statistics of the raw weights do not fit averaged ones.

    uv run diffusion train-gan                  # the quick preset: about two minutes on 2 CPU cores
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dlshared.checkpoint import load_weights, save_weights

from .baseline_runs import RunningMeans, batch_indices, load_config_and_card, start_baseline_run
from .baselines_config import GANConfig
from .evaluate import load_or_train_judge, score_generator
from .pictures import save_baseline_curves

# their own names: a diffusion or VAE --resume never picks a GAN run
GENERATOR_WEIGHTS, DISCRIMINATOR_WEIGHTS = "generator.safetensors", "discriminator.safetensors"


class Generator(nn.Module):
    def __init__(self, channels: int, image_size: int, num_classes: int, noise_dim=64, embed_dim=32, width=32):
        super().__init__()
        self.noise_dim = noise_dim
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = nn.Sequential(  # DCGAN: BatchNorm + ReLU inside, no norm on the output, tanh to [-1, 1]
            nn.ConvTranspose2d(noise_dim + embed_dim, 2 * width, image_size // 4, 1, 0, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),  # [B, 2w, S/4, S/4]
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),  # [B, w, S/2, S/2]
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
            nn.Tanh(),  # [B, C, S, S] in [-1, 1]
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z [B, noise_dim], labels [B] -> images [B, C, S, S]."""
        return self.net(torch.cat([z, self.embed(labels)], 1)[:, :, None, None])  # a 1x1 "image" of B vectors


class Discriminator(nn.Module):
    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32):
        super().__init__()
        features = 4 * width
        self.net = nn.Sequential(  # DCGAN: LeakyReLU(0.2), BatchNorm except on the input layer
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2),  # [B, w, S/2, S/2]
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),  # [B, 2w, S/4, S/4]
            nn.Conv2d(2 * width, features, image_size // 4, 1, 0),
            nn.LeakyReLU(0.2),
            nn.Flatten(),  # [B, 4w]
        )
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
def sample_gan(gen: Generator, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Digits of the requested classes [N] -> [N, C, H, W] in [-1, 1] (eval mode: BatchNorm's running
    statistics, so a sample does not depend on the others in its batch)."""
    device = next(gen.parameters()).device
    noise_device = generator.device if generator else "cpu"  # draw where the generator lives: the same z anywhere
    z = torch.randn(len(labels), gen.noise_dim, generator=generator, device=noise_device)
    return gen.eval()(z.to(device), labels.to(device)).cpu()


def dcgan_init(net: nn.Module) -> nn.Module:
    """DCGAN's initialisation: N(0, 0.02) weights, BatchNorm gains N(1, 0.02) and zero biases."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return net


def load_generator(run_dir: str | Path, device: str | torch.device = "cpu") -> Generator:
    """The trained generator of a run folder, rebuilt from config.json + card.json + safetensors (eval)."""
    cfg, card = load_config_and_card(Path(run_dir), GANConfig)
    gen = Generator(cfg.channels, cfg.image_size, len(card["classes"]), cfg.noise_dim, cfg.embed_dim, cfg.g_width)
    return load_weights(gen.to(device), Path(run_dir) / GENERATOR_WEIGHTS).eval()


def save_networks(gen: Generator, disc: Discriminator, run_dir: Path, step: int) -> None:
    save_weights(gen, run_dir / GENERATOR_WEIGHTS, metadata={"step": str(step)})
    save_weights(disc, run_dir / DISCRIMINATOR_WEIGHTS, metadata={"step": str(step)})


def train_gan(cfg: GANConfig) -> dict:
    """Train a conditional DCGAN as `cfg` says; returns the final metrics (also in RUN/metrics.json)."""
    # --- set-up: run folder and data (baseline_runs.py), the two networks and their optimisers, resume ---
    run, data = start_baseline_run(cfg, "gan", GENERATOR_WEIGHTS)
    device = run.accelerator.device
    train_x, train_y = data.train_images.to(device), data.train_labels.to(device)
    k = len(data.classes)
    gen = Generator(cfg.channels, cfg.image_size, k, cfg.noise_dim, cfg.embed_dim, cfg.g_width)
    disc = Discriminator(cfg.channels, cfg.image_size, k, cfg.d_width)
    # on the device, and under bf16 autocast with --mixed-precision bf16
    gen, disc = run.accelerator.prepare(dcgan_init(gen), dcgan_init(disc))
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    nets = nn.ModuleDict({"generator": gen, "discriminator": disc})  # one state dict to resume from
    progress = run.resume(nets, opt_g) or {"step": 0, "history": []}
    if "optimizer_d" in progress:  # the second optimizer is saved beside the counters
        opt_d.load_state_dict(progress["optimizer_d"])
    step, history = progress["step"], progress["history"]
    sizes = [f"{sum(p.numel() for p in net.parameters()):,}" for net in (gen, disc)]
    run.log.print(f"model: DCGAN, generator {sizes[0]} / discriminator {sizes[1]} parameters")
    meter = run.meter(cfg.steps, step, every=cfg.log_every, unit="images", warmup=5)
    means = RunningMeans()  # losses and D's verdicts since the last history entry

    # --- the loop: one discriminator step, then one generator step, on each batch ---
    while step < cfg.steps:
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
        step += 1

        d_real, d_fake = torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()  # D's mean verdicts
        meter.step(step, len(real), d_loss=d_loss, g_loss=g_loss, d_real=d_real, d_fake=d_fake)
        means.add(d_loss=d_loss, g_loss=g_loss, d_real=d_real, d_fake=d_fake)
        if step % cfg.log_every == 0 or step == cfg.steps:
            history.append({"step": step, **means.pop()})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            with meter.paused():
                publish = partial(save_networks, gen, disc, run.dir, step)
                run.checkpoint(nets, opt_g, None, publish, optimizer_d=opt_d.state_dict(), step=step, history=history)
                run.log.print(
                    f"step {step}/{cfg.steps}  D loss {d_loss.item():.3f}  G loss {g_loss.item():.3f}  "
                    f"D(x) {d_real.item():.2f}  D(G(z)) {d_fake.item():.2f}  {meter.rate:.0f} img/s"
                )
    meter.close()

    # --- finish: samples scored by the judge ---
    scores = {}
    if cfg.eval_samples > 0:
        judge = load_or_train_judge(cfg, data, cfg.out)
        scores = score_generator(partial(sample_gan, gen), judge, data, cfg.eval_samples, cfg.seed)
        run.log.scalars({f"eval/{k}": v for k, v in scores.items() if isinstance(v, float)}, cfg.steps)
    panels = {"loss": ["d_loss", "g_loss"], "D's mean verdict": ["d_real", "d_fake"]}
    save_baseline_curves(run, history, panels, scores)  # RUN/curves.png
    metrics = {
        "model": "gan",
        **scores,
        "steps": cfg.steps,
        "train_seconds": round(meter.seconds, 1),
        "train_samples_per_s": round(meter.rate, 1),
        "run_dir": str(run.dir),
        "history": history,
    }
    summary = "done: DCGAN"
    if scores:
        summary += f", judged accuracy {scores['accuracy']:.4f}, FID {scores['fid']:.3f}"
    return run.finish(metrics, f"{summary}, {meter.seconds:.1f} s, run folder {run.dir}")

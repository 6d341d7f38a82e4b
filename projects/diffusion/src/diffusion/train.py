"""The diffusion training loop, written out (day 31). Accelerate supplies device, DDP and mixed precision;
`dlshared.training` the run folder, logs and resume file; the noising and the objective come from schedule.py
(the hand-written lesson); diffusers supplies the U-Net and the EMA of its weights. With --latent the same loop
runs on an autoencoder's latents instead of pixels (latent.py).

    uv run diffusion train                                   # quick preset: digits, ~8 min on 2 CPU cores
    uv run diffusion train --preset latent                   # latent diffusion: autoencoder first, then the U-Net
    uv run accelerate launch --num-processes 2 -m diffusion.cli train --preset full   # data-parallel
"""

from __future__ import annotations

import math
import time
from functools import partial

import torch
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel

from dlshared.checkpoint import RESUME_NAME
from dlshared.cli import UserError, short_reason, validate
from dlshared.seed import seed_everything
from dlshared.training import Run, start_run

from .artifacts import (
    PIPELINE_DIR,
    PIPELINE_INDEX,
    load_pipeline,
    remove_stale_pipelines,
    save_pipeline_atomically,
)
from .config import PROJECT, TrainConfig, check_train_config
from .data import load_data
from .evaluate import evaluate_pipeline, load_or_train_judge
from .latent import encode_latents, prepare_autoencoder
from .model import build_unet
from .pictures import save_training_curves
from .pipeline import ClassConditionalPipeline, training_scheduler
from .schedule import alphas_cumprod, diffusion_loss, make_betas, q_sample, training_target


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0.1 at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def batch_indices(n: int, batch_size: int, seed: int, step: int, rank: int) -> torch.Tensor:
    """The images of one step: a function of (seed, step, rank) alone, so a resumed run sees the same batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 97 + rank)
    return torch.randint(0, n, (batch_size,), generator=g)


def ema_copy(unet: UNet2DModel, ema: EMAModel) -> UNet2DModel:
    """A U-Net of the same architecture holding the EMA weights: the one that is saved and sampled."""
    copy = UNet2DModel.from_config(unet.config)  # a fresh U-Net: its initialisation draws from the global RNG
    ema.copy_to(copy.parameters())
    return copy


def resume_or_start(run: Run, unet: UNet2DModel, optimizer, lr_schedule, ema: EMAModel) -> tuple[int, list]:
    """(step, history) to go on from: with --resume, the run's resume.pt restores the U-Net, optimizer, schedule,
    EMA and this process's RNG; else (0, []). A file whose U-Net does not fit is refused by run.resume, one whose EMA
    or counters are not this loop's, here."""
    progress = run.resume(unet, optimizer, lr_schedule) or {"step": 0, "history": []}
    try:
        if "ema" in progress:
            ema.load_state_dict(progress["ema"])
        return progress["step"], progress["history"]
    except (RuntimeError, KeyError, ValueError, TypeError) as err:  # readable, but another model's checkpoint
        raise UserError(
            f"{run.dir / RESUME_NAME}: not a checkpoint of this run's model ({short_reason(err, 160)}); start a new run"
        ) from None


def train(cfg: TrainConfig) -> dict:
    """Train a class-conditional diffusion model as `cfg` says; returns the final metrics (RUN/metrics.json).
    `diffusion train --resume` hands it the run's own config.json, typed flags on top (dlshared.configs)."""
    # --- set-up: processes, run folder, data, model, noise schedule, optimiser, EMA, resume ---
    check_train_config(validate(cfg))  # each field's range, then the fields that depend on each other
    run = start_run(PROJECT, cfg, required=PIPELINE_INDEX)  # --resume without --name: the newest diffusion run
    accelerator, log = run.accelerator, run.log
    if run.is_main:
        remove_stale_pipelines(run.dir / PIPELINE_DIR)  # left by a save killed mid-way (this process holds the lock)
    seed_everything(cfg.seed + accelerator.process_index)  # each process draws its own noise and timesteps
    data = load_data(cfg)
    classes, images, autoencoder = data.classes, data.train_images.to(accelerator.device), None
    if cfg.latent:  # latent diffusion: an autoencoder trained first (or loaded) and frozen; the U-Net learns its codes
        autoencoder, autoencoder_seconds = prepare_autoencoder(cfg, images, run)
        images = encode_latents(autoencoder, images)  # [N, c, h, w] latents of unit variance, in place of pixels
    architecture = (cfg.block_out_channels, cfg.attention_levels, cfg.layers_per_block)
    unet = build_unet(images.shape[-1], images.shape[1], len(classes), *architecture)
    null_label = len(classes)  # the "no class" label of classifier-free guidance
    parameters = sum(p.numel() for p in unet.parameters())
    card = {
        "model": "diffusion",
        "classes": classes,
        "source": data.source,
        "image_size": cfg.image_size,
        "channels": cfg.channels,
        "parameters": parameters,
    }
    if autoencoder is not None:
        card["latent_shape"] = list(images.shape[1:])
        card["autoencoder_parameters"] = sum(p.numel() for p in autoencoder.parameters())
    run.save_json(card, "card.json")  # what a user of the pipeline needs: the class names, the data it learned
    log.print(
        f"data: {data.source}: {len(data.train_images)} train / {len(data.test_images)} held out, "
        f"{len(classes)} classes; U-Net {parameters:,} parameters on {list(images.shape[1:])}"
    )

    clip = not cfg.latent  # x_0 estimates are clipped to the pixels' [-1, 1]; latents have no fixed range
    noise_scheduler = training_scheduler(cfg.num_train_timesteps, cfg.beta_schedule, cfg.prediction_type, clip)
    alpha_bar = alphas_cumprod(make_betas(cfg.beta_schedule, cfg.num_train_timesteps)).to(accelerator.device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_factor = partial(warmup_cosine, warmup=cfg.warmup_steps, total=cfg.steps)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    # EMA warm-up: the decay grows as 1 - (1 + step)^(-2/3) up to ema_decay, so early weights fade quickly
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=2 / 3)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    raw_unet = accelerator.unwrap_model(unet)  # without DDP's wrapper: what the EMA follows and resume.pt holds
    step, history = resume_or_start(run, raw_unet, optimizer, lr_schedule, ema)
    ema.to(accelerator.device)
    labels = data.train_labels.to(accelerator.device)
    meter = run.meter(cfg.steps, step, every=cfg.log_every, unit="samples", warmup=5)

    # --- the loop: a random batch, noised to random steps; the U-Net learns to undo it ---
    unet.train()
    while step < cfg.steps:
        index = batch_indices(len(images), cfg.batch_size, cfg.seed, step, accelerator.process_index)
        x0, y = images[index], labels[index]  # [B, C, H, W] pixels (or [B, c, h, w] latents), [B]
        y = torch.where(torch.rand(len(y), device=y.device) < cfg.label_dropout, null_label, y)  # for guidance
        noise = torch.randn_like(x0)
        t = torch.randint(0, cfg.num_train_timesteps, (len(x0),), device=x0.device)
        x_t = q_sample(x0, noise, t, alpha_bar)  # [B, C, H, W], the forward process in one jump
        target = training_target(x0, noise, t, alpha_bar, cfg.prediction_type)
        with accelerator.autocast():
            prediction = unet(x_t, t, class_labels=y).sample
        loss = diffusion_loss(prediction, target)
        accelerator.backward(loss)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(raw_unet.parameters())
        step += 1
        lr, ema_decay = lr_schedule.get_last_lr()[0], ema.cur_decay_value or 0.0
        meter.step(step, len(x0) * accelerator.num_processes, loss=loss, lr=lr, ema_decay=ema_decay)
        if step % cfg.log_every == 0 or step == cfg.steps:
            mean_loss = accelerator.reduce(loss.detach(), "mean").item()  # over processes: every rank logs the same
            history.append({"step": step, "loss": round(mean_loss, 6)})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            with meter.paused():
                # built before run.checkpoint saves the RNG: a resumed run then draws what this one draws next
                pipe = ClassConditionalPipeline(ema_copy(raw_unet, ema), noise_scheduler, autoencoder)
                publish = partial(save_pipeline_atomically, pipe, run.dir / PIPELINE_DIR)
                counters = {"step": step, "history": history, "ema": ema.state_dict()}
                run.checkpoint(raw_unet, optimizer, lr_schedule, publish, **counters)
    meter.close()

    # --- finish: the EMA model's samples, judged (main process) ---
    metrics = {
        "steps": step,
        "train_seconds": round(meter.seconds, 1),
        "train_samples_per_s": round(meter.rate, 1),
        "final_loss": history[-1]["loss"] if history else None,
        "parameters": parameters,
        **({"autoencoder_seconds": round(autoencoder_seconds, 1)} if cfg.latent else {}),
        "processes": accelerator.num_processes,
        "run_dir": str(run.dir),
    }
    if run.is_main and cfg.eval_samples > 0:
        started = time.perf_counter()
        judge = load_or_train_judge(cfg, data, cfg.out)
        pipe = load_pipeline(run.dir, accelerator.device)
        sampling = (cfg.eval_scheduler, cfg.eval_steps, cfg.guidance, cfg.eval_samples)
        scores, _ = evaluate_pipeline(pipe, judge, data, *sampling)
        metrics["eval"], metrics["eval_seconds"] = scores, round(time.perf_counter() - started, 1)
        log.print(
            f"eval ({cfg.eval_scheduler}-{cfg.eval_steps}, guidance {cfg.guidance}): "
            f"accuracy {scores['accuracy']:.4f}, FID {scores['fid']:.3f}, KID {scores['kid']:.4f} "
            f"on {scores['samples']} samples"
        )
    if run.is_main:
        save_training_curves(run, history, metrics.get("eval"))  # RUN/curves.png, and TensorBoard's image
    metrics["history"] = history
    summary = f"done: {step} steps in {meter.seconds:.1f} s ({meter.rate:.0f} samples/s), run folder {run.dir}"
    return run.finish(metrics, summary)

"""The diffusion training loop, written out: Accelerate supplies device, DDP and mixed precision; the noising and
the objective come from schedule.py (the hand-written lesson); diffusers supplies the U-Net, EMA and samplers.

    uv run diffusion train                                   # quick preset: digits, ~8 min on 2 CPU cores
    uv run accelerate launch --num-processes 2 -m diffusion.cli train --preset full   # data-parallel
"""

from __future__ import annotations

import json
import math
import time

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from dlshared.checkpoint import (
    RESUME_NAME,
    restore_training_state,
    save_json,
    save_resume_state,
    training_state,
)
from dlshared.device import pick_device
from dlshared.monitor import RunLogger, Throughput
from dlshared.runs import config_to_dict, resolve_run_dir
from dlshared.seed import seed_everything

from .artifacts import PIPELINE_DIR, load_pipeline, save_pipeline_atomically
from .config import PROJECT, TrainConfig
from .data import load_data
from .evaluate import balanced_labels, load_or_train_judge, score_samples
from .model import build_unet
from .pipeline import ClassConditionalPipeline, training_scheduler
from .schedule import alphas_cumprod, diffusion_loss, make_betas, q_sample, training_target


def lr_lambda(cfg: TrainConfig):
    def factor(step: int) -> float:  # linear warm-up, then cosine decay to 10% of the peak
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def batch_indices(n: int, batch_size: int, seed: int, step: int, rank: int) -> torch.Tensor:
    """The images of one step: a function of (seed, step, rank) alone, so a resumed run sees the same batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 97 + rank)
    return torch.randint(0, n, (batch_size,), generator=g)


def train(cfg: TrainConfig) -> dict:
    """Train a class-conditional diffusion model as `cfg` says; returns the final metrics (RUN/metrics.json)."""
    device = pick_device(cfg.device)
    AcceleratorState._reset_state()  # several runs in one process (tests) may differ in precision
    GradientState._reset_state()
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=cfg.mixed_precision)
    seed_everything(cfg.seed + accelerator.process_index)
    run_dir = resolve_run_dir(PROJECT, cfg.out, cfg.name, cfg.resume)
    log = RunLogger(run_dir, enabled=accelerator.is_main_process)
    log.print(f"config: {json.dumps(config_to_dict(cfg))}")

    data = load_data(cfg)
    classes = data.classes
    unet = build_unet(cfg, len(classes), data.train_images.shape[1])
    null_label = len(classes)  # the "no class" label of classifier-free guidance
    card = {"classes": classes, "source": data.source, "image_size": cfg.image_size, "channels": cfg.channels,
            "parameters": sum(p.numel() for p in unet.parameters())}  # fmt: skip
    log.print(f"data: {data.source}: {len(data.train_images)} train / {len(data.test_images)} held out, "
              f"{len(classes)} classes; U-Net {card['parameters']:,} parameters")  # fmt: skip

    noise_scheduler = training_scheduler(cfg.num_train_timesteps, cfg.beta_schedule, cfg.prediction_type)
    alpha_bar = alphas_cumprod(make_betas(cfg.beta_schedule, cfg.num_train_timesteps)).to(accelerator.device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    # EMA warm-up: the decay grows as 1 - (1 + step)^(-2/3) up to ema_decay, so early weights fade quickly
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=2 / 3)

    step, history = 0, []
    if cfg.resume:
        progress = restore_training_state(run_dir / RESUME_NAME, unet, optimizer, lr_schedule)
        ema.load_state_dict(progress["ema"])
        step, history = progress["step"], progress["history"]
        log.print(f"resumed {run_dir} at step {step}")
    unet, optimizer = accelerator.prepare(unet, optimizer)
    ema.to(accelerator.device)
    images, labels = data.train_images.to(accelerator.device), data.train_labels.to(accelerator.device)
    if accelerator.is_main_process:
        save_json(config_to_dict(cfg), run_dir / "config.json")
        save_json(card, run_dir / "card.json")

    def checkpoint() -> None:  # the EMA weights as a pipeline to sample from; everything else to resume from
        if not accelerator.is_main_process:
            return
        raw = accelerator.unwrap_model(unet)
        ema_unet = build_unet(cfg, len(classes), data.train_images.shape[1])
        ema.copy_to(ema_unet.parameters())
        save_pipeline_atomically(ClassConditionalPipeline(ema_unet, noise_scheduler), run_dir / PIPELINE_DIR)
        save_resume_state(training_state(raw, optimizer, lr_schedule, step=step, history=history,
                                         ema=ema.state_dict()), run_dir / RESUME_NAME)  # fmt: skip

    meter = Throughput(warmup=5)
    started = time.perf_counter()
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc="train",
        disable=not (cfg.progress and accelerator.is_main_process),
    )
    unet.train()
    while step < cfg.steps:
        index = batch_indices(len(images), cfg.batch_size, cfg.seed, step, accelerator.process_index)
        x0, y = images[index], labels[index]
        y = torch.where(torch.rand(len(y), device=y.device) < cfg.label_dropout, null_label, y)
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
        ema.step(accelerator.unwrap_model(unet).parameters())
        step += 1
        meter.update(len(x0) * accelerator.num_processes)
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            value = accelerator.reduce(loss.detach(), "mean").item()  # every rank logs the same mean
            history.append({"step": step, "loss": round(value, 6)})
            log.scalars({"train/loss": value, "train/lr": lr_schedule.get_last_lr()[0],
                         "train/samples_per_s": meter.rate, "train/ema_decay": ema.cur_decay_value or 0.0}, step)  # fmt: skip
            bar.set_postfix(loss=f"{value:.4f}", samples_s=f"{meter.rate:.0f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            pause = time.perf_counter()
            checkpoint()
            meter.exclude(time.perf_counter() - pause)
            accelerator.wait_for_everyone()
    bar.close()
    train_seconds = round(time.perf_counter() - started, 1)

    metrics = {"steps": step, "train_seconds": train_seconds, "train_samples_per_s": round(meter.rate, 1),
               "final_loss": history[-1]["loss"] if history else None, "parameters": card["parameters"],
               "processes": accelerator.num_processes, "run_dir": str(run_dir)}  # fmt: skip
    if accelerator.is_main_process and cfg.eval_samples > 0:
        started = time.perf_counter()
        metrics["eval"] = evaluate_run(cfg, run_dir, cfg.eval_scheduler, cfg.eval_steps, cfg.guidance,
                                       cfg.eval_samples, data=data)  # fmt: skip
        metrics["eval_seconds"] = round(time.perf_counter() - started, 1)
        e = metrics["eval"]
        log.print(f"eval ({e['scheduler']}-{e['steps']}, guidance {e['guidance']}): accuracy {e['accuracy']:.4f}, "
                  f"FID {e['fid']:.3f}, KID {e['kid']:.4f} on {e['samples']} samples")  # fmt: skip
    metrics["history"] = history
    if accelerator.is_main_process:
        save_json(metrics, run_dir / "metrics.json")
    log.print(f"done: {step} steps in {train_seconds} s ({meter.rate:.0f} samples/s), run folder {run_dir}")
    log.close()
    accelerator.end_training()
    return metrics


def evaluate_run(
    cfg, run_dir, scheduler: str, steps: int, guidance: float, n: int, seed: int = 0, data=None
) -> dict:
    """Generate n samples (classes in turn) with a sampler and score them with the judge (evaluate.py)."""
    data = data or load_data(cfg)
    pipe = load_pipeline(run_dir, scheduler)
    requested = balanced_labels(n, len(data.classes))
    started = time.perf_counter()
    samples = pipe(requested, steps, guidance, torch.Generator().manual_seed(seed)).images
    seconds = time.perf_counter() - started
    judge = load_or_train_judge(cfg, data, cfg.out)
    scores = score_samples(judge, samples * 2 - 1, requested, data.test_images)
    return {"scheduler": scheduler, "steps": steps, "guidance": guidance, "seed": seed, **scores,
            "sampling_seconds": round(seconds, 1), "samples_per_s": round(n / seconds, 2)}  # fmt: skip

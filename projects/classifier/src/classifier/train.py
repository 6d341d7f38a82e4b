"""The training loop, written out: Accelerate supplies the device, DDP, mixed precision and accumulation,
the loop itself stays here to be read.

    uv run classifier train                      # quick preset: digits, ~1 min on 2 CPU cores
    uv run torchrun --nproc-per-node 2 -m classifier.cli train   # the same, data-parallel over 2 processes
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext

import torch
import torch.nn as nn
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState, GradientState
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dlshared.checkpoint import (
    RESUME_NAME,
    WEIGHTS_NAME,
    restore_training_state,
    save_json,
    save_resume_state,
    save_weights,
    training_state,
)
from dlshared.cli import UserError
from dlshared.device import pick_device
from dlshared.monitor import RunLogger, Throughput
from dlshared.runs import config_to_dict, resolve_run_dir
from dlshared.seed import seed_everything

from .config import PROJECT, TrainConfig
from .data import DataBundle, load_data
from .evaluate import classification_metrics, confusion_figure, predict
from .probes import LayerProbe
from .transfer import build_model, parameter_groups, set_backbone_trainable


def build_optimizer(cfg: TrainConfig, model: nn.Module, total_steps: int):
    scale = (
        cfg.backbone_lr_scale if cfg.pretrained else 1.0
    )  # a model trained from scratch learns at one rate
    groups = parameter_groups(model, cfg.lr, scale, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    peak_lrs = [g["lr"] for g in groups]
    warmup = max(2, round(cfg.warmup_fraction * total_steps))
    if cfg.schedule == "onecycle":
        if total_steps < warmup + 2:  # OneCycleLR needs a warm-up and an anneal phase of 2+ steps each
            raise UserError(f"{total_steps} optimizer steps are too few for --schedule onecycle; train longer "
                            "or use --schedule cosine")  # fmt: skip
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peak_lrs, total_steps=total_steps, pct_start=warmup / total_steps
        )
    else:

        def warmup_cosine(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
    return optimizer, scheduler


def model_card(cfg: TrainConfig, data: DataBundle, model: nn.Module) -> dict:
    """What anyone using the trained model needs to know: classes, input format, size, where it came from."""
    return {
        "classes": data.classes, "in_channels": data.in_channels, "image_size": cfg.image_size,
        "style": data.style, "backbone": cfg.backbone, "source": data.source,
        "parameters": sum(p.numel() for p in model.parameters()),
    }  # fmt: skip


def train(cfg: TrainConfig) -> dict:
    """Train a classifier as `cfg` says; returns the final metrics (also written to RUN/metrics.json)."""
    device = pick_device(cfg.device)
    # Accelerate keeps its settings in a process-wide singleton; forget the previous run's (e.g. its precision)
    # so that several runs in one process (tests, notebooks) can differ. The process group is kept.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    accelerator = Accelerator(
        cpu=device.type == "cpu",
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        # the sampler reseeds from (seed + epoch), so the data order of an epoch survives a resume
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
    )
    seed_everything(cfg.seed)
    run_dir = resolve_run_dir(PROJECT, cfg.out, cfg.name, cfg.resume)
    log = RunLogger(run_dir, enabled=accelerator.is_main_process)
    log.print(f"config: {json.dumps(config_to_dict(cfg))}")

    data = load_data(cfg)
    model = build_model(cfg, len(data.classes), data.in_channels, data.mean, data.std)
    card = model_card(cfg, data, model)
    log.print(f"data: {data.source}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test, "
              f"{len(data.classes)} classes; model: {cfg.backbone}, {card['parameters']:,} parameters")  # fmt: skip

    train_loader = DataLoader(data.train, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers)
    val_loader = DataLoader(data.val, 256, num_workers=cfg.num_workers)
    test_loader = DataLoader(data.test, 256, num_workers=cfg.num_workers)
    model, train_loader, val_loader, test_loader = accelerator.prepare(
        model, train_loader, val_loader, test_loader
    )
    steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum)
    optimizer, scheduler = build_optimizer(cfg, accelerator.unwrap_model(model), cfg.epochs * steps_per_epoch)
    optimizer = accelerator.prepare(optimizer)  # the scheduler is stepped by hand, once per optimizer step
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    start_epoch, step, history = 0, 0, []
    if cfg.resume:
        progress = restore_training_state(
            run_dir / RESUME_NAME, accelerator.unwrap_model(model), optimizer, scheduler
        )
        start_epoch, step, history = progress["epoch"], progress["step"], progress["history"]
        log.print(f"resumed {run_dir} at epoch {start_epoch}, step {step}")
    if accelerator.is_main_process:
        save_json(config_to_dict(cfg), run_dir / "config.json")
        save_json(card, run_dir / "card.json")

    def evaluate(loader) -> dict:
        model.eval()
        with accelerator.autocast():
            logits, labels = predict(model, loader, accelerator.device, accelerator.gather_for_metrics)
        return classification_metrics(logits, labels, data.classes)

    meter = Throughput(warmup=2)  # per epoch: the first steps of each pay for warm-up
    started = time.perf_counter()
    val = None
    for epoch in range(start_epoch, cfg.epochs):
        train_loader.set_epoch(epoch)
        set_backbone_trainable(accelerator.unwrap_model(model), epoch >= cfg.freeze_epochs)
        model.train()
        meter.reset()
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and accelerator.is_main_process))  # fmt: skip
        loss_sum, batches = torch.zeros((), device=accelerator.device), 0
        for images, labels in bar:
            with accelerator.accumulate(model):
                # sync_gradients is set by accumulate(): true on the micro-batch that completes an optimizer step
                inspect = cfg.stats_every > 0 and step % cfg.stats_every == 0 and accelerator.sync_gradients
                # the probe sees the unwrapped model (tags without DDP's "module.") and closes before zero_grad
                probe_or_nothing = LayerProbe(accelerator.unwrap_model(model)) if inspect else nullcontext()
                with probe_or_nothing as probe:
                    loss = criterion(model(images), labels)
                    accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if inspect:
                log.scalars({f"layers/{k}": v for k, v in probe.stats.items()}, step)
                for name, values in probe.activations.items():
                    log.histogram(f"activations/{name}", values, step)
            meter.update(len(images) * accelerator.num_processes)
            loss_sum += loss.detach()
            batches += 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            if step % cfg.log_every == 0:  # .item() waits for the GPU: only on logging steps
                log.scalars({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[-1],
                             "train/images_per_s": meter.rate}, step)  # fmt: skip
                bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{meter.rate:.0f}")

        val = evaluate(val_loader)
        # the mean of batch means (a short last batch weighs as much as a full one), averaged over processes
        train_loss = accelerator.reduce(loss_sum, "mean").item() / max(batches, 1)
        history.append(
            {"epoch": epoch + 1, "train_loss": round(train_loss, 6), "val_accuracy": val["accuracy"]}
        )
        log.scalars({"val/accuracy": val["accuracy"], "val/loss": val["loss"]}, step)
        log.figure("val/confusion_matrix", confusion_figure(val["confusion_matrix"], data.classes), step)
        log.print(f"epoch {epoch + 1}/{cfg.epochs}  step {step}  train loss {train_loss:.4f}  "
                  f"val acc {val['accuracy']:.4f}  {meter.rate:.0f} img/s")  # fmt: skip
        if accelerator.is_main_process:  # checkpoint every epoch: weights to publish, one file to resume from
            unwrapped = accelerator.unwrap_model(model)
            save_weights(unwrapped, run_dir / WEIGHTS_NAME, metadata={"epoch": str(epoch + 1)})
            save_resume_state(training_state(unwrapped, optimizer, scheduler, epoch=epoch + 1, step=step,
                                             history=history), run_dir / RESUME_NAME)  # fmt: skip
        accelerator.wait_for_everyone()

    test = evaluate(test_loader)
    val = val or evaluate(val_loader)
    metrics = {
        "test_accuracy": test["accuracy"], "test_loss": test["loss"], "val_accuracy": val["accuracy"],
        "epochs": cfg.epochs, "steps": step, "train_seconds": round(time.perf_counter() - started, 1),
        "train_images_per_s": round(meter.rate, 1), "processes": accelerator.num_processes,
        "parameters": card["parameters"], "run_dir": str(run_dir), "history": history, "test": test,
    }  # fmt: skip
    if accelerator.is_main_process:
        save_json(metrics, run_dir / "metrics.json")
        log.scalars({"test/accuracy": test["accuracy"]}, step)
    log.print(f"done: test accuracy {test['accuracy']:.4f} ({test['samples']} images), "
              f"{metrics['train_seconds']} s, run folder {run_dir}")  # fmt: skip
    log.close()
    accelerator.end_training()
    return metrics

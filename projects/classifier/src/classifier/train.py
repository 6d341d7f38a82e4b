"""The training loop, written out (day 5). Accelerate supplies the device, DDP and mixed precision; `dlshared`
the run folder, logs and resume file; the loop itself is `train()` below, to be read top to bottom.

    uv run classifier train                                        # quick preset: digits, ~1 min on 2 CPU cores
    uv run torchrun --nproc-per-node 2 -m classifier.cli train     # the same, data-parallel over 2 processes
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn as nn
from accelerate import DataLoaderConfiguration
from torch.utils.data import DataLoader

from dlshared.checkpoint import WEIGHTS_NAME, save_weights
from dlshared.cli import UserError
from dlshared.pictures import save_figures
from dlshared.seed import seed_everything
from dlshared.training import epochs_for, start_run

from .config import PROJECT, TrainConfig, check_relations
from .data import load_data
from .evaluate import classification_metrics, predict
from .model import build_model
from .pictures import confusion_figure, training_curves
from .probes import LayerProbe
from .transfer import parameter_groups, set_backbone_trainable


def build_optimizer(cfg: TrainConfig, model: nn.Module, total_steps: int):
    """AdamW or SGD over parameter groups (transfer.py), and a one-cycle or warm-up + cosine schedule."""
    # a pretrained backbone learns more slowly than its new head; a model trained from scratch at one rate
    backbone_lr_scale = cfg.backbone_lr_scale if cfg.pretrained else 1.0
    groups = parameter_groups(model, cfg.lr, backbone_lr_scale, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    warmup = max(2, round(cfg.warmup_fraction * total_steps))
    if cfg.schedule == "cosine":
        return optimizer, torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total_steps)
        )
    if total_steps < warmup + 2:  # OneCycleLR needs a warm-up and an anneal phase of 2+ steps each
        raise UserError(f"{total_steps} optimizer steps are too few for --schedule onecycle; use --schedule cosine")
    peak_lrs = [group["lr"] for group in groups]
    pct_start = warmup / total_steps
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, peak_lrs, total_steps, pct_start=pct_start)


def warmup_cosine(step: int, warmup: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0 at `total_steps`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, accelerator, classes: list[str]) -> dict:
    """Accuracy, loss and confusion matrix (evaluate.py) over a split, gathered from every process."""
    model.eval()
    with accelerator.autocast():
        logits, labels = predict(model, loader, accelerator.device, accelerator.gather_for_metrics)
    return classification_metrics(logits, labels, classes)


def log_epoch(log, val: dict, classes: list[str], where: str, train_loss: float, meter, step: int) -> None:
    """Validation scalars and confusion matrix to TensorBoard, one summary line to the console."""
    log.scalars({"val/accuracy": val["accuracy"], "val/loss": val["loss"]}, step)
    log.figure("val/confusion_matrix", confusion_figure(val["confusion_matrix"], classes), step)
    log.print(f"{where}  train loss {train_loss:.4f}  val acc {val['accuracy']:.4f}  {meter.rate:.0f} img/s")


def train(cfg: TrainConfig) -> dict:
    """Train a classifier as `cfg` says; returns the final metrics (also written to RUN/metrics.json)."""
    # --- set-up: processes, run folder, data, model, optimiser; all of it before the first step ---
    check_relations(cfg)  # e.g. one entry per stage in --widths and --blocks, before a folder exists
    # a seedable sampler draws each epoch's order from (seed, epoch), so an epoch survives a resume
    data_order = DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed)
    run = start_run(PROJECT, cfg, dataloader_config=data_order)
    accelerator, log = run.accelerator, run.log
    seed_everything(cfg.seed)
    with accelerator.main_process_first():  # --dataset cifar10: rank 0 downloads it, the others then read it
        data = load_data(cfg)
    model = build_model(
        cfg.backbone, len(data.classes), data.in_channels, data.mean, data.std, cfg.widths, cfg.blocks, cfg.pretrained
    )
    parameters = sum(p.numel() for p in model.parameters())
    card = {
        "classes": data.classes,
        "in_channels": data.in_channels,
        "image_size": cfg.image_size,
        "style": data.style,
        "backbone": cfg.backbone,
        "source": data.source,
        "parameters": parameters,
    }
    run.save_json(card, "card.json")  # what a user of the weights needs: classes, input format, origin
    log.print(
        f"data: {data.source}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test; "
        f"model: {cfg.backbone}, {parameters:,} parameters"
    )

    train_loader = DataLoader(data.train, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers)
    val_loader = DataLoader(data.val, 256, num_workers=cfg.num_workers)
    test_loader = DataLoader(data.test, 256, num_workers=cfg.num_workers)
    model, train_loader, val_loader, test_loader = accelerator.prepare(model, train_loader, val_loader, test_loader)
    raw_model = accelerator.unwrap_model(model)  # without DDP's wrapper: what is saved, frozen and probed
    steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum)
    epochs = epochs_for(cfg.epochs, cfg.min_steps, steps_per_epoch)  # training length follows the data size
    optimizer, scheduler = build_optimizer(cfg, raw_model, epochs * steps_per_epoch)
    optimizer = accelerator.prepare(optimizer)  # the scheduler is stepped by hand, once per optimizer step
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    progress = run.resume(raw_model, optimizer, scheduler) or {"epoch": 0, "step": 0, "history": []}
    epoch, step, history = progress["epoch"], progress["step"], progress["history"]
    meter = run.meter(epochs * steps_per_epoch, step, every=cfg.log_every, unit="images")
    probe = LayerProbe(raw_model, log, every=cfg.stats_every, first_step=step)  # day 9: inside the network

    # --- the loop: an epoch of optimizer steps, then validation and a checkpoint ---
    while epoch < epochs:
        train_loader.set_epoch(epoch)
        set_backbone_trainable(raw_model, epoch >= cfg.freeze_epochs)  # transfer: the head alone first
        model.train()
        loss_sum, correct, seen = (torch.zeros((), device=accelerator.device) for _ in range(3))  # epoch sums
        step_images = 0
        for i, (images, labels) in enumerate(train_loader, start=1):
            completes_step = i % cfg.grad_accum == 0 or i == len(train_loader)
            # DDP averages gradients across processes only on the batch that completes an optimizer step
            with nullcontext() if completes_step else accelerator.no_sync(model):
                logits = model(images)  # [B, classes]
                loss = criterion(logits, labels)
                accelerator.backward(loss / cfg.grad_accum)
            loss_sum += loss.detach()
            correct += (logits.argmax(dim=1) == labels).sum()
            seen += len(labels)
            step_images += len(images) * accelerator.num_processes
            if not completes_step:
                continue
            probe.log_step(step)  # every stats_every steps: this step's activations and gradients
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            meter.step(step, step_images, loss=loss, lr=scheduler.get_last_lr()[-1])
            step_images = 0
        epoch += 1

        with meter.paused():
            val = evaluate(model, val_loader, accelerator, data.classes)
            train_loss = accelerator.reduce(loss_sum, "mean").item() / len(train_loader)  # over processes
            train_accuracy = (accelerator.reduce(correct, "sum") / accelerator.reduce(seen, "sum")).item()
            record = {"epoch": epoch, "train_loss": round(train_loss, 6), "train_accuracy": round(train_accuracy, 6)}
            history.append(record | {"val_loss": round(val["loss"], 6), "val_accuracy": val["accuracy"]})
            log_epoch(log, val, data.classes, f"epoch {epoch}/{epochs}  step {step}", train_loss, meter, step)
            publish = partial(save_weights, raw_model, run.dir / WEIGHTS_NAME, {"epoch": str(epoch)})
            run.checkpoint(raw_model, optimizer, scheduler, publish, epoch=epoch, step=step, history=history)
    meter.close()

    # --- finish: the test split, once ---
    test = evaluate(model, test_loader, accelerator, data.classes)
    log.scalars({"test/accuracy": test["accuracy"]}, step)
    if run.is_main:  # RUN/curves.png and its TensorBoard copy: one process draws them
        save_figures(run.dir, {"curves": training_curves(history, cfg.label_smoothing)}, log=log, step=step)
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": history[-1]["val_accuracy"],
        "epochs": epochs,
        "steps": step,
        "train_seconds": round(meter.seconds, 1),
        "train_images_per_s": round(meter.rate, 1),
        "processes": accelerator.num_processes,
        "parameters": parameters,
        "run_dir": str(run.dir),
        "history": history,
        "test": test,
    }
    summary = f"done: test accuracy {test['accuracy']:.4f} ({test['samples']} images), {meter.seconds:.1f} s"
    return run.finish(metrics, f"{summary}, run folder {run.dir}")

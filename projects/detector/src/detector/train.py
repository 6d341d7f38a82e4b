"""The training loop of the detectors (the CenterNet of model.py, torchvision's R-CNNs), written out (day 14).
Accelerate supplies the device, DDP and mixed precision; `dlshared` the run folder, logs and resume file; the loop
itself is `train()` below, to be read top to bottom. segmentation.py trains its U-Net with the same set-up.

    uv run detector train                                          # quick preset: synthetic shapes, CPU
    uv run torchrun --nproc-per-node 2 -m detector.cli train       # data-parallel over 2 processes
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Protocol

import torch
import torch.nn as nn
from accelerate import DataLoaderConfiguration
from accelerate.utils import broadcast_object_list
from torch.utils.data import DataLoader, Dataset

from dlshared.checkpoint import WEIGHTS_NAME, save_weights
from dlshared.cli import UserError
from dlshared.pictures import save_figures
from dlshared.seed import seed_everything
from dlshared.training import Run, epochs_for, start_run

from .augment import augment_batch
from .boxes import detection_loss, encode
from .config import PROJECT, TrainConfig, check_relations
from .data import Splits, collate, load_splits
from .evaluate import coco_map, predict
from .model import DetectorConfig, build_detector
from .pictures import detector_curves
from .rcnn import rcnn_losses


def warmup_cosine(optimizer, total_steps: int, warmup_fraction: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first `warmup_fraction` of the steps, then cosine decay to 0 (stepped per batch)."""
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        decayed = min(1.0, (step - warmup) / max(1, total_steps - warmup))  # 0 -> 1 after the warm-up
        cosine = 0.5 * (1 + math.cos(math.pi * decayed))
        return min((step + 1) / warmup, cosine)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def start_with_data(project: str, cfg) -> tuple[Run, Splits]:
    """`start_run` (Accelerator, run folder, logger, config.json), then the splits `cfg` names (data.py): the set-up
    the detector's and the U-Net's loops share, before either builds its model."""
    check_relations(cfg)  # e.g. three --widths for the CenterNet's three stages, before a folder exists
    # a seedable sampler draws each epoch's order from (seed, epoch), so an epoch survives a resume
    data_order = DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed)
    run = start_run(project, cfg, dataloader_config=data_order)
    with run.accelerator.main_process_first():  # rank 0 generates the synthetic shapes; the others then read them
        splits = load_splits(cfg)
    return run, splits


class LoopOptions(Protocol):
    """The fields of TrainConfig and SegmentationConfig that `prepare_training` reads."""

    batch_size: int
    num_workers: int
    epochs: int
    min_steps: int
    lr: float
    weight_decay: float
    warmup_fraction: float


def prepare_training(accelerator, model: nn.Module, train_set: Dataset, cfg: LoopOptions):
    """The set-up the detector's and the U-Net's loops share: shuffled batches (a seedable sampler when the
    Accelerator has one), AdamW, warm-up + cosine schedule, all of it placed by Accelerate.
    Returns (model, loader, optimizer, scheduler, epochs); the scheduler is stepped by hand, once per batch, and
    epochs is cfg.epochs raised where a small training set needs more passes to reach cfg.min_steps."""
    if len(train_set) == 0:
        raise UserError("no training images")
    # a ragged last batch of a few images would give BatchNorm poor statistics; keep it only when it is all there is
    drop_last = len(train_set) > cfg.batch_size
    loader = DataLoader(
        train_set, cfg.batch_size, shuffle=True, collate_fn=collate, num_workers=cfg.num_workers, drop_last=drop_last
    )
    model, loader = accelerator.prepare(model, loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    epochs = epochs_for(cfg.epochs, cfg.min_steps, len(loader))  # training length follows the data size
    scheduler = warmup_cosine(optimizer, epochs * len(loader), cfg.warmup_fraction)
    return model, loader, accelerator.prepare(optimizer), scheduler, epochs


def on_main_process(accelerator, evaluate, *args):
    """`evaluate(*args)` on the main process alone, its result sent to every rank: a split is scored once, by
    one model, so every process logs and returns the same numbers."""
    result = [evaluate(*args) if accelerator.is_main_process else None]
    broadcast_object_list(result)
    return result[0]


def evaluate_map(model: nn.Module, dataset: Dataset, cfg: TrainConfig, accelerator) -> dict:
    """COCO mAP (evaluate.py) of `model` on a split: map, map_50, map_75, and mask_map... for Mask R-CNN."""
    loader = DataLoader(dataset, cfg.batch_size, collate_fn=collate, num_workers=cfg.num_workers)
    device, autocast = accelerator.device, accelerator.autocast
    return coco_map(predict(model, loader, device, cfg.score_threshold, cfg.max_detections, autocast))


def train(cfg: TrainConfig) -> dict:
    """Train a detector as `cfg` says; returns the final metrics (also written to RUN/metrics.json)."""
    # --- set-up: processes, run folder, data, model, optimiser; all of it before the first step ---
    run, splits = start_with_data(PROJECT, cfg)
    accelerator, log = run.accelerator, run.log
    seed_everything(cfg.seed)
    model_cfg = DetectorConfig(len(splits.classes), tuple(cfg.widths), tuple(cfg.depths), cfg.fpn_width)
    model = build_detector(cfg.model, model_cfg, cfg.image_size, cfg.pretrained)
    centernet = cfg.model == "centernet"
    card = {  # what a user of the weights needs: classes, input size, architecture, origin
        "classes": splits.classes,
        "image_size": cfg.image_size,
        "arch": cfg.model,
        "pretrained": cfg.pretrained,
        "model": dataclasses.asdict(model_cfg) if centernet else {"num_classes": len(splits.classes) + 1},
        "source": splits.source,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    run.save_json(card, "card.json")
    log.print(
        f"data: {splits.source}: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test "
        f"images, classes {splits.classes}; model: {cfg.model}, {card['parameters']:,} parameters"
    )
    model, loader, optimizer, scheduler, epochs = prepare_training(accelerator, model, splits.train, cfg)
    raw_model = accelerator.unwrap_model(model)  # without DDP's wrapper: what is evaluated and saved
    progress = run.resume(raw_model, optimizer, scheduler) or {"epoch": 0, "step": 0, "history": []}
    epoch, step, history = progress["epoch"], progress["step"], progress["history"]
    meter = run.meter(epochs * len(loader), step, every=cfg.log_every, unit="images")
    augment, shuffle_channels = cfg.augmentation()
    out_size = cfg.image_size // model_cfg.stride  # side of the CenterNet's output maps

    # --- the loop: an epoch of optimizer steps, then validation and a checkpoint ---
    while epoch < epochs:
        loader.set_epoch(epoch)
        # augmentation draws depend on (seed, epoch, rank) only, so a resumed run sees what an unbroken one did
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 1_009 + accelerator.process_index)
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        for images, targets in loader:
            images = augment_batch(images, targets, augment, shuffle_channels, generator)  # (B, 3, S, S)
            with accelerator.autocast():
                if centernet:  # dense regression against maps drawn from the boxes (boxes.py)
                    maps = encode(targets, len(splits.classes), out_size, model_cfg.stride)
                    losses = detection_loss(model(images), {k: v.to(accelerator.device) for k, v in maps.items()})
                else:  # torchvision's R-CNNs take the targets and return their losses
                    losses = rcnn_losses(model, images, targets)
            accelerator.backward(losses["loss"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_sum += losses["loss"].detach()
            meter.step(step, len(targets) * accelerator.num_processes, **losses, lr=scheduler.get_last_lr()[0])
        epoch += 1

        with meter.paused():
            val = on_main_process(accelerator, evaluate_map, raw_model, splits.val, cfg, accelerator)
            train_loss = accelerator.reduce(loss_sum, "mean").item() / len(loader)  # mean over processes
            history.append({"epoch": epoch, "train_loss": round(train_loss, 4), **val})
            log.scalars({"val/map": val["map"], "val/map_50": val["map_50"]}, step)
            log.print(
                f"epoch {epoch}/{epochs}  train loss {train_loss:.4f}  val mAP {val['map']:.4f}  "
                f"mAP@.5 {val['map_50']:.4f}  {meter.rate:.0f} img/s"
            )
            publish = partial(save_weights, raw_model, run.dir / WEIGHTS_NAME, {"epoch": str(epoch)})
            run.checkpoint(raw_model, optimizer, scheduler, publish, epoch=epoch, step=step, history=history)
    meter.close()
    train_seconds = round(meter.seconds, 1)

    # --- finish: the test split, once ---
    test = on_main_process(accelerator, evaluate_map, raw_model, splits.test, cfg, accelerator)
    log.scalars({"test/map": test["map"], "test/map_50": test["map_50"]}, step)
    if run.is_main:  # RUN/curves.png and its TensorBoard copy: one process draws them
        save_figures(run.dir, {"curves": detector_curves(history)}, log=log, step=step)
    metrics = {f"test_{name}": value for name, value in test.items() if name != "images"}
    metrics |= {
        "val_map": history[-1]["map"] if history else None,
        "epochs": epochs,
        "steps": step,
        "train_seconds": train_seconds,
        "train_images_per_s": round(meter.rate, 1),
        "parameters": card["parameters"],
        "processes": accelerator.num_processes,
        "run_dir": str(run.dir),
        "history": history,
    }
    masks = f", mask mAP {test['mask_map']:.4f}" if "mask_map" in test else ""
    summary = f"done: test mAP {test['map']:.4f}, mAP@.5 {test['map_50']:.4f}{masks} ({test['images']} images)"
    return run.finish(metrics, f"{summary}, {train_seconds} s, run folder {run.dir}")

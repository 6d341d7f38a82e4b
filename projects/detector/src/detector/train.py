"""The training loop of the CenterNet-style detector, written out; Accelerate supplies device, DDP and precision.

uv run detector train                                          # quick preset: synthetic shapes, CPU
uv run torchrun --nproc-per-node 2 -m detector.cli train       # data-parallel over 2 processes
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import broadcast_object_list
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

from .augment import augment_batch
from .boxes import detection_loss, encode
from .config import PROJECT, TrainConfig
from .data import collate, load_splits
from .evaluate import coco_map, predict
from .model import CenterNet, DetectorConfig
from .rcnn import build_rcnn, rcnn_losses


def warmup_cosine(optimizer, total_steps: int, warmup_fraction: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first `warmup_fraction` of the steps, then cosine decay to 0 (stepped per batch)."""
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))
        return min((step + 1) / warmup, cosine)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(cfg: TrainConfig) -> dict:
    """Train the detector as `cfg` says; returns the final metrics (also written to RUN/metrics.json)."""
    try:
        device = pick_device(cfg.device)
    except ValueError as err:
        raise UserError(str(err)) from None
    AcceleratorState._reset_state()
    GradientState._reset_state()
    accelerator = Accelerator(
        cpu=device.type == "cpu", mixed_precision=cfg.mixed_precision,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
    )  # fmt: skip
    run_dir = resolve_run_dir(PROJECT, cfg.out, cfg.name, cfg.resume)
    log = RunLogger(run_dir, enabled=accelerator.is_main_process)
    log.print(f"config: {json.dumps(config_to_dict(cfg))}")

    with accelerator.main_process_first():  # rank 0 generates the synthetic data; the others then read it
        splits = load_splits(cfg)
    classes = splits.classes
    seed_everything(cfg.seed)
    model_cfg = DetectorConfig(num_classes=len(classes), widths=tuple(cfg.widths), depths=tuple(cfg.depths),
                               fpn_width=cfg.fpn_width)  # fmt: skip
    centernet = cfg.model == "centernet"
    if cfg.pretrained and centernet:
        raise UserError("--pretrained applies to the torchvision R-CNNs; the CenterNet trains from scratch")
    model = CenterNet(model_cfg) if centernet else build_rcnn(cfg.model, len(classes) + 1, cfg.image_size,
                                                               cfg.pretrained)  # fmt: skip
    card = {"classes": classes, "image_size": cfg.image_size, "arch": cfg.model, "pretrained": cfg.pretrained,
            "model": dataclasses.asdict(model_cfg) if centernet else {"num_classes": len(classes) + 1},
            "source": splits.source, "parameters": sum(p.numel() for p in model.parameters())}  # fmt: skip
    log.print(f"data: {splits.source}: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test "
              f"images, classes {classes}; model: {cfg.model}, {card['parameters']:,} parameters")  # fmt: skip

    train_loader = DataLoader(splits.train, cfg.batch_size, shuffle=True, collate_fn=collate,
                              num_workers=cfg.num_workers, drop_last=len(splits.train) > cfg.batch_size)  # fmt: skip
    model, train_loader = accelerator.prepare(model, train_loader)
    total_steps = cfg.epochs * len(train_loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = warmup_cosine(optimizer, total_steps, cfg.warmup_fraction)
    optimizer = accelerator.prepare(optimizer)
    unwrapped = accelerator.unwrap_model(model)
    out_size = cfg.image_size // model_cfg.stride

    start_epoch, step, history = 0, 0, []
    if cfg.resume:
        progress = restore_training_state(run_dir / RESUME_NAME, unwrapped, optimizer, scheduler)
        start_epoch, step, history = progress["epoch"], progress["step"], progress["history"]
        log.print(f"resumed {run_dir} at epoch {start_epoch}")
    if accelerator.is_main_process:
        save_json(config_to_dict(cfg), run_dir / "config.json")
        save_json(card, run_dir / "card.json")

    def evaluate(dataset) -> dict:
        """mAP on the main process with the unwrapped model; every rank gets the result."""
        result = [None]
        if accelerator.is_main_process:
            loader = DataLoader(dataset, cfg.batch_size, collate_fn=collate, num_workers=cfg.num_workers)
            pairs = predict(unwrapped, loader, accelerator.device, cfg.score_threshold, cfg.max_detections,
                            accelerator.autocast)  # fmt: skip
            result = [coco_map(pairs)]
        broadcast_object_list(result)
        return result[0]

    # dihedral + channel shuffle for the synthetic shapes (no up, random colours); mirrors only for real data
    augment = cfg.augment if cfg.augment != "auto" else ("flip" if cfg.data else "dihedral")
    shuffle_channels = cfg.shuffle_channels if cfg.shuffle_channels is not None else cfg.data is None
    meter = Throughput(warmup=2)
    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        train_loader.set_epoch(epoch)
        # augmentation draws depend on (seed, epoch, rank) only, so a resumed run sees what an unbroken one did
        generator = torch.Generator().manual_seed(
            cfg.seed * 1_000_003 + epoch * 1_009 + accelerator.process_index
        )
        model.train()
        meter.reset()
        loss_sum, batches = 0.0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and accelerator.is_main_process))  # fmt: skip
        for images, targets in bar:
            images = augment_batch(images, targets, augment, shuffle_channels, generator)
            with accelerator.autocast():
                if centernet:
                    maps = encode(targets, len(classes), out_size, model_cfg.stride)
                    losses = detection_loss(
                        model(images), {k: v.to(accelerator.device) for k, v in maps.items()}
                    )
                else:  # torchvision's R-CNNs take the targets and return their losses
                    losses = rcnn_losses(model, images, targets)
            accelerator.backward(losses["loss"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            meter.update(len(targets) * accelerator.num_processes)
            loss_sum += losses["loss"].item()
            batches += 1
            if step % 10 == 0:
                log.scalars({f"train/{k}": v.item() for k, v in losses.items()} | {"train/lr": scheduler.get_last_lr()[0],
                            "train/images_per_s": meter.rate}, step)  # fmt: skip
                bar.set_postfix(loss=f"{losses['loss'].item():.3f}", img_s=f"{meter.rate:.0f}")
        val = evaluate(splits.val)
        history.append({"epoch": epoch + 1, "train_loss": round(loss_sum / max(batches, 1), 4), **val})
        log.scalars({"val/map": val["map"], "val/map_50": val["map_50"]}, step)
        log.print(f"epoch {epoch + 1}/{cfg.epochs}  train loss {loss_sum / max(batches, 1):.4f}  val mAP "
                  f"{val['map']:.4f}  mAP@.5 {val['map_50']:.4f}  {meter.rate:.0f} img/s")  # fmt: skip
        if accelerator.is_main_process:
            save_weights(unwrapped, run_dir / WEIGHTS_NAME, metadata={"epoch": str(epoch + 1)})
            save_resume_state(training_state(unwrapped, optimizer, scheduler, epoch=epoch + 1, step=step,
                                             history=history), run_dir / RESUME_NAME)  # fmt: skip
        accelerator.wait_for_everyone()

    test = evaluate(splits.test)  # map, map_50, map_75, and mask_map... for Mask R-CNN
    metrics = {f"test_{k}": v for k, v in test.items() if k != "images"} | {
               "val_map": history[-1]["map"] if history else None, "epochs": cfg.epochs, "steps": step,
               "train_seconds": round(time.perf_counter() - started, 1), "train_images_per_s": round(meter.rate, 1),
               "parameters": card["parameters"], "processes": accelerator.num_processes, "run_dir": str(run_dir),
               "history": history}  # fmt: skip
    if accelerator.is_main_process:
        save_json(metrics, run_dir / "metrics.json")
    masks = f", mask mAP {test['mask_map']:.4f}" if "mask_map" in test else ""
    log.print(f"done: test mAP {test['map']:.4f}, mAP@.5 {test['map_50']:.4f}{masks} ({test['images']} images), "
              f"{metrics['train_seconds']} s, run folder {run_dir}")  # fmt: skip
    log.close()
    accelerator.end_training()
    return metrics

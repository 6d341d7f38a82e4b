"""Contrastive training of CLIP on image-caption pairs (course day 37); the loop written out.

    uv run multimodal train                                        # quick: clip-small on the embedded scenes
    uv run torchrun --nproc-per-node 2 -m multimodal.cli train     # the same over 2 processes

Each step embeds a batch of images and their captions and minimises model.contrastive_loss over the similarity
matrix of the whole global batch: under DDP every process gathers the other processes' features first (with
their gradients, open_clip's `gather_features`), so two processes of 64 train exactly like one of 128. Each
epoch's order comes from a generator seeded by (seed, epoch), so a run killed and resumed at an epoch boundary
sees what an uninterrupted run sees.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader

from dlshared.checkpoint import WEIGHTS_NAME, save_weights
from dlshared.cli import UserError
from dlshared.seed import seed_everything
from dlshared.training import epochs_for, start_run

from .config import PROJECT, TrainConfig
from .data import embedded_splits, real_splits
from .evaluate import evaluate
from .model import build_clip, contrastive_loss, image_size
from .pictures import save_pictures

MAX_LOGIT_SCALE = math.log(100)
"""open_clip clamps the learned log-temperature here: a scale above 100 makes the softmax nearly one-hot."""


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def parameter_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only; gains, biases, embeddings' scale and the temperature decay-free
    (open_clip's rule: parameters with fewer than 2 dimensions, and logit_scale)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(warmup: int, total: int):
    return lambda step: (
        (step + 1) / warmup
        if step < warmup
        else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    )


def gathered_loss(image_features, text_features, logit_scale, world: int) -> torch.Tensor:
    """The loss over the global batch: with several processes, every process's features first (open_clip)."""
    if world > 1:
        from open_clip.loss import gather_features

        rank = torch.distributed.get_rank()
        image_features, text_features = gather_features(
            image_features, text_features, gather_with_grad=True, rank=rank, world_size=world
        )
    return contrastive_loss(image_features, text_features, logit_scale)


def train(cfg: TrainConfig) -> dict:
    """Train CLIP as `cfg` says; returns the final metrics (also RUN/metrics.json)."""
    # --- set-up: processes, run folder, model, data; all of it before the first step ---
    run = start_run(PROJECT, cfg)
    accelerator, log = run.accelerator, run.log
    seed_everything(cfg.seed)  # the initial weights
    model, preprocess, tokenizer = build_clip(cfg.model, cfg.pretrained)
    if cfg.data is None:  # the scenes are drawn at the size the image tower takes
        splits = embedded_splits(cfg.train_scenes, cfg.data_seed, image_size(model), preprocess)
    else:
        splits = real_splits(cfg.data, preprocess, cfg.data_seed, cfg.csv_separator)
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    local_batch = max(1, cfg.batch_size // world)  # the global batch stays cfg.batch_size under DDP
    steps_per_epoch = len(splits.train) // (local_batch * world)  # full batches only: the loss needs B > 1
    if steps_per_epoch == 0:
        raise UserError(f"{splits.source}: {len(splits.train)} training pairs, fewer than a batch; lower --batch-size")
    epochs = epochs_for(cfg.epochs, cfg.min_steps, steps_per_epoch)  # training length follows the data size
    total_steps = epochs * steps_per_epoch
    parameters = sum(p.numel() for p in model.parameters())
    log.print(
        f"data: {splits.source}: {len(splits.train):,} training pairs; model {cfg.model}, {parameters:,} parameters"
    )

    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, total_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    progress = run.resume(raw_model, optimizer, scheduler) or {"epoch": 0, "step": 0, "history": []}
    epoch, step, history = progress["epoch"], progress["step"], progress["history"]
    meter = run.meter(total_steps, step, every=cfg.log_every, unit="pairs")

    # --- the loop: contrastive steps over the epoch's batches, then validation and a checkpoint ---
    while epoch < epochs:
        order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch)))
        mine = order[: steps_per_epoch * local_batch * world][rank::world]  # this process's share
        batches = [b.tolist() for b in mine.split(local_batch)]
        loader = DataLoader(splits.train, batch_sampler=batches, num_workers=0)
        model.train()
        loss_sum = torch.zeros((), device=device)
        for images, captions in loader:
            tokens = tokenizer(list(captions)).to(device)  # [B, context_length]
            with accelerator.autocast():
                image_features, text_features, logit_scale = model(images.to(device), tokens)  # [B, D] x2, []
                loss = gathered_loss(image_features, text_features, logit_scale, world)
            accelerator.backward(loss)  # DDP averages the gradients; the gather already summed their parts
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                raw_model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            loss_sum += loss.detach()
            step += 1
            meter.step(step, len(images) * world, loss=loss, lr=scheduler.get_last_lr()[0])
        epoch += 1

        with meter.paused():
            val = validation_loss(raw_model, tokenizer, splits.val, device, cfg.batch_size)
            train_loss = accelerator.reduce(loss_sum, "mean").item() / steps_per_epoch
            temperature = 1 / raw_model.logit_scale.exp().item()
            history.append({"epoch": epoch, "train_loss": round(train_loss, 5), "val_loss": round(val, 5)})
            log.scalars({"val/loss": val, "train/temperature": temperature}, step)
            log.print(f"epoch {epoch}/{epochs}  loss {train_loss:.4f}  val {val:.4f}  temperature {temperature:.4f}")
            publish = partial(
                save_weights, raw_model, run.dir / WEIGHTS_NAME, {"epoch": str(epoch), "model": cfg.model}
            )
            run.checkpoint(raw_model, optimizer, scheduler, publish, epoch=epoch, step=step, history=history)
    meter.close()

    # --- finish: retrieval and zero-shot on the test splits, by the main process ---
    tests = evaluate(raw_model, tokenizer, splits, device) if run.is_main else {}
    save_pictures(run, raw_model, tokenizer, splits, history, tests)  # curves, zero-shot bars, a search grid
    metrics = {
        "test": tests,
        "val_loss": history[-1]["val_loss"] if history else None,
        "epochs": epoch,
        "steps": step,
        "train_seconds": round(meter.seconds, 1),
        "pairs_per_s": round(meter.rate, 1),
        "parameters": parameters,
        "processes": world,
        "data": splits.source,
        "run_dir": str(run.dir),
        "history": history,
    }
    return run.finish(metrics, f"done: {summary(tests)}, {meter.seconds:.1f} s, run folder {run.dir}")


@torch.no_grad()
def validation_loss(model, tokenizer, pairs, device, batch_size: int) -> float:
    """The mean contrastive loss over validation batches of the global batch size (the loss depends on B); every
    process computes all of it, so that every process reports the same figure."""
    model.eval()
    losses = []
    for images, captions in DataLoader(pairs, batch_size=batch_size, drop_last=len(pairs) > batch_size):
        image_features, text_features, logit_scale = model(images.to(device), tokenizer(list(captions)).to(device))
        losses.append(contrastive_loss(image_features, text_features, logit_scale).item())
    return sum(losses) / len(losses)


def summary(tests: dict) -> str:
    parts = []
    for name, m in tests.items():
        parts.append(f"{name}: text->image R@1 {m['text_to_image_r1']:.3f}")
        if "zero_shot_mean" in m:
            parts.append(f"{name} zero-shot {m['zero_shot_mean']:.3f}")
    return ", ".join(parts)

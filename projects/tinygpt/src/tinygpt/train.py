"""The training loop, written out (course days 21-27): Accelerate supplies the device, DDP and mixed precision;
the steps (learning-rate schedule, accumulation, clipping, evaluation, checkpoints) stay here to be read.

    uv run tinygpt train                                          # quick preset: Python stdlib source, CPU
    uv run tinygpt train --preset shakespeare-char --mixed-precision bf16 --compile
    uv run torchrun --nproc-per-node 2 -m tinygpt.cli train       # data-parallel over 2 processes
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from tqdm.auto import tqdm

from dlshared.checkpoint import (
    RESUME_NAME,
    restore_training_state,
    save_json,
    save_resume_state,
    training_state,
)
from dlshared.cli import UserError
from dlshared.device import pick_device
from dlshared.monitor import RunLogger, Throughput, mfu
from dlshared.runs import config_to_dict, resolve_run_dir
from dlshared.seed import seed_everything

from .artifacts import save_model
from .config import PROJECT, TrainConfig
from .data import Batches, load_data
from .evaluate import evaluate_loss
from .generate import generate
from .model import GPT, GPTConfig
from .perf import peak_flops, reuse_freed_memory
from .tokenizer import load_tokenizer


def model_config(cfg: TrainConfig, vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                     n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias, arch=cfg.arch)  # fmt: skip


def configure_optimizer(cfg: TrainConfig, model: GPT, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embeddings (dim >= 2), none on biases and norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied matrix appears once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = cfg.fused_adamw and device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


def lr_at(cfg: TrainConfig, it: int) -> float:
    """Linear warm-up to lr, cosine decay to min_lr at lr_decay_iters, then flat (nanoGPT's get_lr)."""
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if it > decay_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


def train(cfg: TrainConfig, warmup_steps: int | None = None) -> dict:
    """Train a GPT as `cfg` says; returns the final metrics (also written to RUN/metrics.json).

    Throughput counts the steps after `warmup_steps` (default 3, or 10 with torch.compile).
    """
    try:
        device = pick_device(cfg.device)
    except ValueError as err:
        raise UserError(str(err)) from None
    if cfg.max_iters < 1 or cfg.eval_interval < 1 or cfg.grad_accum < 1:
        raise UserError("--max-iters, --eval-interval and --grad-accum must be at least 1")
    if cfg.reuse_freed_memory and device.type == "cpu":
        reuse_freed_memory()
    AcceleratorState._reset_state()  # forget a previous run's settings in this process (tests, notebooks)
    GradientState._reset_state()
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=cfg.mixed_precision)
    run_dir = resolve_run_dir(PROJECT, cfg.out, cfg.name, cfg.resume)
    log = RunLogger(run_dir, enabled=accelerator.is_main_process)
    log.print(f"config: {json.dumps(config_to_dict(cfg))}")

    # resuming keeps the run's own tokenizer: retraining BPE on other data would renumber every token
    data = load_data(cfg, load_tokenizer(run_dir) if cfg.resume else None)
    seed_everything(cfg.seed)  # every rank builds the same initial weights
    raw_model = GPT(model_config(cfg, data.tokenizer.vocab_size))
    seed_everything(cfg.seed + accelerator.process_index)  # but draws its own dropout masks
    optimizer = configure_optimizer(cfg, raw_model, accelerator.device)
    model, optimizer = accelerator.prepare(raw_model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    batches = Batches(data.train, cfg.block_size, cfg.batch_size, cfg.seed + accelerator.process_index,
                      accelerator.device)  # fmt: skip
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * accelerator.num_processes
    flops_per_token = raw_model.flops_per_token()
    compute_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision, torch.float32)
    peak = cfg.peak_flops or peak_flops(accelerator.device, compute_dtype)
    log.print(f"data: {data.source}: {len(data.train):,} train / {len(data.val):,} val tokens, "
              f"{cfg.tokenizer} vocab {data.tokenizer.vocab_size}; model: {cfg.arch}, "
              f"{raw_model.num_params():,} parameters, {flops_per_token / 1e6:.1f} MFLOPs/token (training); "
              f"{tokens_per_step:,} tokens/step on {accelerator.num_processes} x {accelerator.device}")  # fmt: skip

    it, history = 0, []
    if cfg.resume:
        progress = restore_training_state(run_dir / RESUME_NAME, raw_model, optimizer)
        it, history = progress["iter"], progress["history"]
        batches.load_state(progress["batches"][accelerator.process_index])
        log.print(f"resumed {run_dir} at step {it}")
    if accelerator.is_main_process:
        save_json(config_to_dict(cfg), run_dir / "config.json")
    step_model = torch.compile(model) if cfg.compile else model

    def estimate() -> dict:
        # the uncompiled model: evaluation shapes differ from training's and would trigger recompiles
        n = cfg.eval_iters * cfg.batch_size
        kw = dict(
            block_size=cfg.block_size, batch_size=cfg.batch_size, max_windows=n, autocast=accelerator.autocast
        )
        return {"train_loss": round(evaluate_loss(raw_model, data.train, **kw), 4),
                "val_loss": round(evaluate_loss(raw_model, data.val, **kw), 4)}  # fmt: skip

    def checkpoint(losses: dict) -> None:
        batch_states = accelerator.gather(batches.state()[None].to(accelerator.device)).cpu()  # every rank's
        if accelerator.is_main_process:
            save_model(raw_model, data.tokenizer, run_dir, metadata={"iter": str(it)})
            save_resume_state(training_state(raw_model, optimizer, iter=it, history=history,
                                             batches=list(batch_states)), run_dir / RESUME_NAME)  # fmt: skip
        accelerator.wait_for_everyone()

    meter = Throughput(warmup=warmup_steps if warmup_steps is not None else 10 if cfg.compile else 3)
    started = time.perf_counter()
    bar = tqdm(
        total=cfg.max_iters,
        initial=it,
        desc="train",
        disable=not (cfg.progress and accelerator.is_main_process),
    )
    loss = torch.zeros(())
    while it < cfg.max_iters:
        lr = lr_at(cfg, it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for micro in range(cfg.grad_accum):
            x, y = next(batches)  # (B, T) each
            # DDP averages gradients across processes only on the last micro-batch of a step
            with nullcontext() if micro == cfg.grad_accum - 1 else accelerator.no_sync(model):
                with accelerator.autocast():
                    _, loss = step_model(x, y)
                accelerator.backward(loss / cfg.grad_accum)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        it += 1
        meter.update(tokens_per_step)
        bar.update(1)
        if it % cfg.log_interval == 0:  # .item() waits for the device: only on logging steps
            util = mfu(flops_per_token, meter.rate, peak * accelerator.num_processes) if peak else 0.0
            log.scalars({"train/loss": loss.item(), "train/lr": lr, "perf/tokens_per_s": meter.rate,
                         "perf/mfu": util}, it)  # fmt: skip
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{meter.rate:,.0f}", mfu=f"{util:.1%}")
        if it % cfg.eval_interval == 0 or it == cfg.max_iters:
            eval_started = time.perf_counter()
            losses = estimate()
            history.append({"iter": it, **losses})
            log.scalars({"loss/train": losses["train_loss"], "loss/val": losses["val_loss"]}, it)
            log.print(f"step {it}: train loss {losses['train_loss']:.4f}, val loss {losses['val_loss']:.4f}, "
                      f"{meter.rate:,.0f} tokens/s")  # fmt: skip
            checkpoint(losses)
            meter.exclude(time.perf_counter() - eval_started)
    bar.close()

    final = history[-1] if history else estimate()
    train_seconds = time.perf_counter() - started
    sample = ""
    if cfg.sample_tokens > 0 and accelerator.is_main_process:
        prompt = torch.tensor([data.tokenizer.encode("\n")], device=accelerator.device)
        gen = torch.Generator(device=accelerator.device).manual_seed(cfg.seed)
        with accelerator.autocast():
            tokens = [
                t.item() for t in generate(raw_model, prompt, cfg.sample_tokens, 0.8, 200, generator=gen)
            ]
        sample = data.tokenizer.decode(tokens)
        log.print(f"sample:\n{sample}\n")
    rate = meter.rate
    metrics = {
        "val_loss": final["val_loss"], "train_loss": final["train_loss"], "iters": it,
        "train_seconds": round(train_seconds, 1), "tokens_per_s": round(rate, 1),
        "mfu": round(mfu(flops_per_token, rate, peak * accelerator.num_processes), 4) if peak else None,
        "peak_flops": peak, "parameters": raw_model.num_params(), "processes": accelerator.num_processes,
        "tokenizer": cfg.tokenizer, "vocab_size": data.tokenizer.vocab_size, "data": data.source,
        "run_dir": str(run_dir), "history": history, "sample": sample,
    }  # fmt: skip
    if accelerator.is_main_process:
        save_json(metrics, run_dir / "metrics.json")
    log.print(f"done: val loss {final['val_loss']:.4f} after {it} steps, {train_seconds:.0f} s, "
              f"{rate:,.0f} tokens/s, run folder {run_dir}")  # fmt: skip
    log.close()
    accelerator.end_training()
    return metrics

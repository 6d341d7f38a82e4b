"""The training loop, written out (course days 21-26, 33): Accelerate supplies the device, DDP and mixed precision,
parallel.py FSDP, `dlshared` the run folder, logs and resume file; the steps (learning-rate schedule, accumulation,
clipping, evaluation, checkpoints) stay here, in nanoGPT's order, to be read top to bottom.

    uv run tinygpt train                                          # quick preset: Python stdlib source, CPU
    uv run tinygpt train --preset shakespeare-char --mixed-precision bf16 --compile
    uv run torchrun --nproc-per-node 2 -m tinygpt.cli train       # data-parallel over 2 processes (DDP)
    uv run torchrun --nproc-per-node 2 -m tinygpt.cli train --parallel fsdp   # the same, parameters sharded
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from functools import partial

import torch

from dlshared.cli import UserError, validate
from dlshared.monitor import mfu
from dlshared.pictures import save_figures
from dlshared.seed import seed_everything
from dlshared.training import start_run

from .artifacts import check_device, read_tokenizer, save_model
from .config import PROJECT, TrainConfig, check_relations
from .data import Batches, MaskedBatches, TokenData, load_data
from .evaluate import evaluate_loss
from .generate import generate
from .model import LanguageModel, build_model, model_config
from .parallel import bytes_per_rank, shard, sharded_targets, whole_state
from .perf import peak_flops, reuse_freed_memory
from .pictures import curves
from .tokenizer import Tokenizer


def configure_optimizer(cfg: TrainConfig, model: LanguageModel, device: torch.device) -> torch.optim.AdamW:
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


def estimate_losses(model: LanguageModel, data: TokenData, cfg: TrainConfig, autocast) -> dict:
    """nanoGPT's estimate_loss: the mean loss over eval_iters x batch_size windows of each split (evaluate.py)."""
    windows = cfg.eval_iters * cfg.batch_size
    score = partial(evaluate_loss, model, block_size=cfg.block_size, batch_size=cfg.batch_size, autocast=autocast)
    return {
        "train_loss_estimate": round(score(data.train, max_windows=windows), 4),
        "val_loss_estimate": round(score(data.val, max_windows=windows), 4),
    }


def log_estimates(log, it: int, losses: dict, tokens_per_s: float) -> None:
    """The loss estimates to TensorBoard (loss/...), one line to the console."""
    log.scalars({f"loss/{name}": value for name, value in losses.items()}, it)
    train_loss, val_loss = losses["train_loss_estimate"], losses["val_loss_estimate"]
    log.print(f"step {it}: loss estimates train {train_loss:.4f}, val {val_loss:.4f}; {tokens_per_s:,.0f} tokens/s")


def sample_text(model: LanguageModel, tokenizer: Tokenizer, n_tokens: int, seed: int) -> str:
    """A seeded sample after a newline (temperature 0.8, top-k 200): what the model has learned, at a glance."""
    device = next(model.parameters()).device
    prompt = torch.tensor([tokenizer.encode("\n")], device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = generate(model, prompt, n_tokens, temperature=0.8, top_k=200, generator=generator)
    return tokenizer.decode([token.item() for token in tokens])


def train(cfg: TrainConfig) -> dict:
    """Train a GPT as `cfg` says; returns the final metrics (also written to RUN/metrics.json)."""
    # --- set-up: processes, run folder, data, model, optimiser, resume; all of it before the first step ---
    check_relations(validate(cfg))  # a bad value or combination is one line, before any folder exists
    check_device(cfg.device)
    run = start_run(PROJECT, cfg)
    accelerator, log, rank = run.accelerator, run.log, run.accelerator.process_index
    if cfg.reuse_freed_memory and accelerator.device.type == "cpu":
        reuse_freed_memory()
    # resuming keeps the run's own tokenizer: retraining BPE on other data would renumber every token
    data = load_data(cfg, read_tokenizer(run.dir) if cfg.resume else None)
    seed_everything(cfg.seed)  # every rank builds the same initial weights
    raw_model = build_model(model_config(cfg, data.tokenizer.vocab_size))  # a GPT, or the LSTM of day 21
    seed_everything(cfg.seed + rank)  # but draws its own dropout masks
    if accelerator.distributed_type == "FSDP":  # an accelerate config's FSDP would wrap the model a second time
        raise UserError("accelerate's own FSDP settings are not read: launch without them and pass --parallel fsdp")
    fsdp = cfg.parallel == "fsdp" and accelerator.num_processes > 1
    if cfg.parallel == "fsdp" and not fsdp:
        log.print("--parallel fsdp: one process, nothing to shard; training it whole")
    if fsdp:  # FSDP2 shards in place; the optimizer is built on the shards; Accelerate keeps precision (parallel.py)
        model = shard(raw_model, accelerator.device, accelerator.num_processes)
        optimizer = accelerator.prepare(configure_optimizer(cfg, model, accelerator.device))
    else:  # DDP (or one process): Accelerate wraps the model
        optimizer = configure_optimizer(cfg, raw_model, accelerator.device)
        model, optimizer = accelerator.prepare(raw_model, optimizer)
    raw_model = accelerator.unwrap_model(model)  # without DDP's wrapper: what is saved, evaluated and sampled
    step_model = torch.compile(model) if cfg.compile else model  # evaluation keeps the eager model: other shapes
    stream = (data.train, cfg.block_size, cfg.batch_size, cfg.seed + rank, accelerator.device)
    mlm = cfg.objective == "mlm"
    batches = MaskedBatches(*stream, mask_id=raw_model.cfg.mask_id) if mlm else Batches(*stream)
    # FSDP: the saved state is whole (as one process saves it); every rank keeps its own shard of it
    resumable = sharded_targets(model, optimizer) if fsdp else (raw_model, optimizer)
    progress = run.resume(*resumable) or {"iter": 0, "history": []}
    it, history = progress["iter"], progress["history"]
    batch_losses = progress.get("batch_losses", [])  # the loss every log_interval steps, for curves.png
    if cfg.resume:
        batches.load_state(progress["per_rank"])  # this rank's own position in its own stream of windows
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * accelerator.num_processes
    flops_per_token = raw_model.flops_per_token()
    compute_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision, torch.float32)
    peak = cfg.peak_flops or peak_flops(accelerator.device, compute_dtype)
    total_peak = (peak or 0.0) * accelerator.num_processes  # MFU reads 0 where the peak is unknown
    log.print(
        f"data: {data.source}: {len(data.train):,} train / {len(data.val):,} val tokens, "
        f"{cfg.tokenizer} vocab {data.tokenizer.vocab_size}; model: {cfg.arch}, "
        f"{raw_model.num_params():,} parameters, {flops_per_token / 1e6:.1f} MFLOPs/token (training); "
        f"{tokens_per_step:,} tokens/step on {accelerator.num_processes} x {accelerator.device}"
    )
    warmup = cfg.throughput_warmup if cfg.throughput_warmup is not None else 10 if cfg.compile else 3
    meter = run.meter(cfg.max_iters, it, every=cfg.log_interval, unit="tokens", warmup=warmup)

    # --- the loop: one optimizer step per iteration; an estimate and a checkpoint every eval_interval ---
    while it < cfg.max_iters:
        lr = lr_at(cfg, it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for micro in range(cfg.grad_accum):
            x, y = next(batches)  # (B, T) each: y is x shifted left by one token (mlm: the masked tokens)
            # DDP averages gradients across processes only on the last micro-batch of a step; FSDP reduce-scatters
            # every one (skipping it would hold whole gradients until the last: the memory FSDP exists to save)
            with nullcontext() if micro == cfg.grad_accum - 1 or fsdp else accelerator.no_sync(model):
                with accelerator.autocast():
                    _, loss = step_model(x, y)
                accelerator.backward(loss / cfg.grad_accum)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        it += 1
        meter.step(it, tokens_per_step, loss=loss, lr=lr, mfu=mfu(flops_per_token, meter.rate, total_peak))
        if it % cfg.log_interval == 0:
            batch_losses.append({"iter": it, "batch_loss": round(loss.item(), 4)})
        if it % cfg.eval_interval == 0 or it == cfg.max_iters:
            with meter.paused():
                losses = estimate_losses(raw_model, data, cfg, accelerator.autocast)
                history.append({"iter": it, **losses})
                log_estimates(log, it, losses, meter.rate)
                saved = whole_state(model, optimizer) if fsdp else (raw_model, optimizer)  # FSDP: gathered, every rank
                publish = partial(save_model, saved[0], data.tokenizer, run.dir, {"iter": str(it)})
                counters = {"iter": it, "history": history, "batch_losses": batch_losses, "per_rank": batches.state()}
                run.checkpoint(*saved, None, publish, **counters)
    meter.close()
    train_seconds, tokens_per_s = meter.seconds, meter.rate

    # --- finish: the full validation pass (the eval verb's metric), a sample, the metrics ---
    val_loss = evaluate_loss(raw_model, data.val, cfg.block_size, cfg.batch_size, autocast=accelerator.autocast)
    log.scalars({"loss/val_loss": val_loss}, it)
    sample = ""
    # an encoder fills blanks; it does not continue text. FSDP: every rank joins each forward pass's all-gathers
    if cfg.sample_tokens > 0 and (run.is_main or fsdp) and not mlm:
        with accelerator.autocast():
            sample = sample_text(raw_model, data.tokenizer, cfg.sample_tokens, cfg.seed)
        log.print(f"sample:\n{sample}\n")
    if run.is_main:  # RUN/curves.png, and the same image in TensorBoard
        title = f"{cfg.arch} ({cfg.objective}), {raw_model.num_params():,} parameters: val loss {val_loss:.4f}"
        save_figures(run.dir, {"curves": curves(history, batch_losses, val_loss, title)}, log=log)
    metrics = {
        "val_loss": round(val_loss, 4),
        "val_loss_estimate": history[-1]["val_loss_estimate"],
        "train_loss_estimate": history[-1]["train_loss_estimate"],
        "iters": it,
        "train_seconds": round(train_seconds, 1),
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(mfu(flops_per_token, tokens_per_s, total_peak), 4) if peak else None,
        "peak_flops": peak,
        "parameters": raw_model.num_params(),
        "processes": accelerator.num_processes,
        **bytes_per_rank(model, optimizer),  # parameters and AdamW state held by this process (FSDP: its shards)
        "tokenizer": cfg.tokenizer,
        "vocab_size": data.tokenizer.vocab_size,
        "data": data.source,
        "run_dir": str(run.dir),
        "history": history,
        "sample": sample,
    }
    summary = f"done: val loss {val_loss:.4f} (every window) after {it} steps, {train_seconds:.0f} s"
    return run.finish(metrics, f"{summary}, {tokens_per_s:,.0f} tokens/s, run folder {run.dir}")

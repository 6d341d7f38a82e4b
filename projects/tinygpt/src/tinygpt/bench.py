"""`tinygpt bench`: steady-state training tokens/s and MFU, and generation tokens/s with and without the KV cache.

Training is measured by running the real `train()` loop for warmup + steps iterations (so the number is what a
training run sees, Accelerate and all), counting only the steps after warm-up and compilation. Generation times
greedy decoding of `new_tokens` tokens from a one-token prompt, batch 1, on the same (untrained) architecture:
speed does not depend on the weights.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch

from dlshared.cli import UserError
from dlshared.device import pick_device

from .config import PRESETS, BenchArgs
from .generate import generate
from .model import GPT
from .train import model_config, train


def generation_speed(model: GPT, new_tokens: int, use_cache: bool, autocast) -> float:
    """Tokens per second of greedy decoding (after one untimed warm-up pass)."""
    device = next(model.parameters()).device
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        with autocast():
            for token in generate(model, prompt, new_tokens, temperature=0, use_cache=use_cache):
                token.item()  # wait for the device, as a streaming client would
        rates.append(new_tokens / (time.perf_counter() - start))
    return rates[-1]


def bench(args: BenchArgs) -> dict:
    if args.preset not in PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; choose one of: {', '.join(PRESETS)}")
    overrides = {"data": args.data} if args.data is not None else {}
    if args.mixed_precision is not None:
        overrides["mixed_precision"] = args.mixed_precision
    if args.compile is not None:
        overrides["compile"] = args.compile
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(
            PRESETS[args.preset], **overrides, out=Path(tmp), name="bench", max_iters=args.warmup + args.steps,
            eval_interval=10**9, eval_iters=1, sample_tokens=0, progress=False, device=args.device,
            peak_flops=args.peak_flops, reuse_freed_memory=args.reuse_freed_memory,
        )  # fmt: skip
        metrics = train(cfg, warmup_steps=args.warmup)
    result = {
        "preset": args.preset, "mixed_precision": cfg.mixed_precision, "compile": cfg.compile,
        "parameters": metrics["parameters"],
        "tokens_per_step": cfg.batch_size * cfg.block_size * cfg.grad_accum * metrics["processes"],
        "train_tokens_per_s": metrics["tokens_per_s"], "mfu": metrics["mfu"], "peak_flops": metrics["peak_flops"],
        "timed_steps": args.steps, "reuse_freed_memory": cfg.reuse_freed_memory,
    }  # fmt: skip
    if args.new_tokens > 0:
        from accelerate import Accelerator

        torch.manual_seed(0)
        device = pick_device(args.device)  # train() has already turned a bad name into a clear error
        model = GPT(model_config(cfg, metrics["vocab_size"])).to(device).eval()
        autocast = Accelerator(cpu=device.type == "cpu", mixed_precision=cfg.mixed_precision).autocast
        cached = generation_speed(model, args.new_tokens, True, autocast)
        recompute = generation_speed(model, args.new_tokens, False, autocast)
        result.update({"new_tokens": args.new_tokens, "generate_tokens_per_s_cache": round(cached, 1),
                       "generate_tokens_per_s_recompute": round(recompute, 1),
                       "kv_cache_speedup": round(cached / recompute, 2)})  # fmt: skip
    result.update({"device": str(pick_device(args.device)), "threads": torch.get_num_threads(),
                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"), "torch": torch.__version__})  # fmt: skip
    return result

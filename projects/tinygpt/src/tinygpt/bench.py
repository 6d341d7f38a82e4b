"""`tinygpt bench`: steady-state training tokens/s and MFU, and generation tokens/s with and without the KV cache.

Training is measured by running the real `train()` loop for warmup + steps iterations (so the number is what a
training run sees, Accelerate and all), counting only the steps after warm-up and compilation. Generation times
greedy decoding of `new_tokens` tokens from a one-token prompt, batch 1, on the same (untrained) architecture:
speed does not depend on the weights.

    uv run tinygpt bench --preset quick --new-tokens 0 --profile   # + trace.json and top_ops.txt of a train() step

`--profile` then runs `train()` again, briefly, under torch.profiler: every optimizer step advances the profiler
(dlshared.profiling's hook), so the trace shows the loop as it is, Accelerate and all, without touching train.py.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from dlshared.cli import UserError
from dlshared.device import pick_device
from dlshared.profiling import profile_folder, profiled

from .artifacts import check_device
from .config import PRESETS, BenchArgs
from .evaluate import precision_autocast
from .generate import generate
from .model import LanguageModel, build_model, model_config
from .train import train


def generation_speed(model: LanguageModel, new_tokens: int, use_cache: bool, autocast) -> float:
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
    check_device(args.device)
    profile_out = profile_folder("tinygpt", args.profile, args.profile_out)
    overrides = {"data": args.data} if args.data is not None else {}
    if args.mixed_precision is not None:
        overrides["mixed_precision"] = args.mixed_precision
    if args.compile is not None:
        overrides["compile"] = args.compile
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(
            PRESETS[args.preset],
            **overrides,
            out=Path(tmp),
            name="bench",
            max_iters=args.warmup + args.steps,
            eval_interval=10**9,
            eval_iters=1,
            sample_tokens=0,
            progress=False,
            device=args.device,
            peak_flops=args.peak_flops,
            reuse_freed_memory=args.reuse_freed_memory,
            throughput_warmup=args.warmup,
        )
        metrics = train(cfg)
        profile = None
        if profile_out is not None:  # a second, short run: the profiler slows the steps it records
            wait, warmup, active = 1, 1, 3
            with profiled(profile_out, wait, warmup, active, on_optimizer_step=True) as recorder:
                train(dataclasses.replace(cfg, name="profile", max_iters=wait + warmup + active))
            profile = recorder.summary
    result = {
        "preset": args.preset,
        "mixed_precision": cfg.mixed_precision,
        "compile": cfg.compile,
        "parameters": metrics["parameters"],
        "tokens_per_step": cfg.batch_size * cfg.block_size * cfg.grad_accum * metrics["processes"],
        "train_tokens_per_s": metrics["tokens_per_s"],
        "mfu": metrics["mfu"],
        "peak_flops": metrics["peak_flops"],
        "timed_steps": args.steps,
        "reuse_freed_memory": cfg.reuse_freed_memory,
    }
    if args.new_tokens > 0 and cfg.objective == "clm":  # an mlm encoder does not generate
        torch.manual_seed(0)
        device = pick_device(args.device)  # train() has already turned a bad name into a clear error
        model = build_model(model_config(cfg, metrics["vocab_size"])).to(device).eval()
        autocast = precision_autocast(device, cfg.mixed_precision) or nullcontext
        cached = generation_speed(model, args.new_tokens, True, autocast)
        recompute = generation_speed(model, args.new_tokens, False, autocast)
        result["new_tokens"] = args.new_tokens
        result["generate_tokens_per_s_cache"] = round(cached, 1)
        result["generate_tokens_per_s_recompute"] = round(recompute, 1)
        result["kv_cache_speedup"] = round(cached / recompute, 2)
    # what the numbers depend on besides the model
    result["device"] = str(pick_device(args.device))
    result["threads"] = torch.get_num_threads()
    result["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "unset")
    result["torch"] = torch.__version__
    if profile is not None:
        result["profile"] = profile
    return result

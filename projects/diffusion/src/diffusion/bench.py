"""Throughput: samples/s of each sampler at several step counts, and training samples/s.

    uv run diffusion bench                      # the newest run (or a fresh quick-preset U-Net)
    OMP_WAIT_POLICY=PASSIVE uv run diffusion bench --configs ddim:50 dpm:20
    uv run diffusion bench --configs ddim:50 diffusers-ddim:50 --train-steps 0   # the hand-written step vs diffusers'
    uv run diffusion bench --configs ddim:50 --profile   # + a training step under torch.profiler: trace.json, top_ops

Sampling cost is (U-Net calls) x (batch): DDPM-1000 makes 1000 calls, DDIM-50 50, DPM-Solver++-20 20; guidance
doubles the batch of every call; a latent run adds one decoder call per sample. Timings depend on threads and on
what else runs (the result records the threads); the FLOP counts under "cost" (of the run's own networks) do not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, UNet2DModel
from torch.utils.flop_counter import FlopCounterMode

from dlshared.cli import UserError
from dlshared.device import resolve_precision
from dlshared.profiling import profile_folder, profile_steps
from dlshared.runs import latest_run

from .artifacts import PIPELINE_INDEX, load_pipeline
from .config import PRESETS, PROJECT, SAMPLERS, BenchArgs, TrainConfig
from .model import build_unet
from .pipeline import ClassConditionalPipeline, training_scheduler
from .schedule import alphas_cumprod, diffusion_loss, make_betas, q_sample


def parse_configs(configs: tuple[str, ...]) -> list[tuple[str, int]]:
    """("ddim:50", ...) -> [("ddim", 50), ...]."""
    pairs = []
    for item in configs:
        sampler, _, steps = item.partition(":")
        if sampler not in SAMPLERS or not steps.isdigit() or not 1 <= int(steps) <= 1000:
            raise UserError(f"--configs: {item!r} is not sampler:steps (1-1000 steps), sampler in {SAMPLERS}")
        pairs.append((sampler, int(steps)))
    return pairs


def quick_unet(cfg: TrainConfig):
    """A freshly initialised U-Net of the quick preset's shape, for 10 classes: timing needs no trained weights."""
    architecture = (cfg.block_out_channels, cfg.attention_levels, cfg.layers_per_block)
    return build_unet(cfg.image_size, cfg.channels, 10, *architecture)


def bench(args: BenchArgs) -> dict:
    pairs = parse_configs(args.configs)
    profile_out = profile_folder(PROJECT, args.profile, args.profile_out, args.runs)
    run = args.ckpt or latest_run(PROJECT, args.runs, required=PIPELINE_INDEX)
    cfg = PRESETS["quick"]
    if run is not None:
        pipe = load_pipeline(run)
    else:
        pipe = ClassConditionalPipeline(quick_unet(cfg), training_scheduler(1000, cfg.beta_schedule, "epsilon"))
        pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(args.batch_size) % pipe.num_classes
    result = {
        "model": str(run) if run else "untrained quick U-Net",
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "batch_size": args.batch_size,
        "guidance": args.guidance,
        "sampling": {},
    }
    for sampler, steps in pairs:
        pipe(labels[:2], 2, args.guidance, sampler=sampler)  # warm-up: allocator, lazy init
        started = time.perf_counter()
        pipe(labels, steps, args.guidance, torch.Generator().manual_seed(0), sampler)
        seconds = time.perf_counter() - started
        rate = args.batch_size / seconds
        result["sampling"][f"{sampler}:{steps}"] = {"samples_per_s": round(rate, 2), "seconds": round(seconds, 2)}
        print(f"{sampler}-{steps}: {rate:.2f} samples/s ({seconds:.1f} s)", flush=True)
    result["cost"] = cost(pipe, pairs, args.guidance)
    if args.train_steps > 0:
        result["training"] = time_training(cfg, args.train_steps)
    if profile_out is not None:  # the quick preset's own precision; after the timings: the profiler slows steps
        precision = resolve_precision(cfg.mixed_precision, torch.device("cpu"))
        result["profile"] = profile_steps(training_step(cfg, precision), profile_out)
    return result


def training_step(cfg: TrainConfig, precision: str) -> Callable[[], None]:
    """One optimizer step of a fresh U-Net of the quick preset's shape on random data, as a function."""
    alpha_bar = alphas_cumprod(make_betas(cfg.beta_schedule, cfg.num_train_timesteps))
    unet = quick_unet(cfg).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    x0 = torch.rand(cfg.batch_size, 1, cfg.image_size, cfg.image_size) * 2 - 1
    labels = torch.randint(0, 11, (cfg.batch_size,))

    def step() -> None:
        noise, t = torch.randn_like(x0), torch.randint(0, 1000, (len(x0),))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            prediction = unet(q_sample(x0, noise, t, alpha_bar), t, class_labels=labels).sample
        diffusion_loss(prediction, noise).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_training(cfg: TrainConfig, steps: int) -> dict:
    """Optimizer steps of the quick preset's shape on random data, fp32 and bf16 autocast."""
    out = {}
    for precision in ("no", "bf16"):
        step = training_step(cfg, precision)
        for i in range(steps + 3):
            if i == 3:
                started = time.perf_counter()
            step()
        rate = steps * cfg.batch_size / (time.perf_counter() - started)
        out[precision] = {"samples_per_s": round(rate, 1)}
        print(f"training ({precision}): {rate:.0f} samples/s", flush=True)
    return out


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs of fn() as torch.utils.flop_counter counts them (convolutions, matrix products, attention: the rest
    is small); a backward pass inside fn counts too."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def cost(pipe: ClassConditionalPipeline, pairs: list[tuple[str, int]], guidance: float) -> dict:
    """Parameters and GFLOPs per image of the run's networks: a U-Net call; a training image (U-Net forward +
    backward; with an autoencoder also its own training image: encode, decode, backward); a decoder call; a sample
    of each sampler:steps (steps x U-Net calls, two with guidance, + one decoder call). FLOPs do not depend on the
    weights: fresh networks of the same configs are counted."""
    unet, vae = UNet2DModel.from_config(pipe.unet.config), pipe.vae
    side, channels = unet.config.sample_size, unet.config.in_channels
    x, t, y = torch.randn(1, channels, side, side), torch.tensor([999]), torch.tensor([0])
    out = {"unet_parameters": sum(p.numel() for p in unet.parameters()), "autoencoder_parameters": 0}
    with torch.no_grad():
        call = counted_flops(lambda: unet(x, t, class_labels=y))
        decode = counted_flops(lambda: vae.decode(x)) if vae is not None else 0
    out["gflop_unet_call"], out["gflop_decode"] = call / 1e9, decode / 1e9
    out["gflop_train_image"] = counted_flops(lambda: unet(x, t, class_labels=y).sample.sum().backward()) / 1e9
    if vae is not None:
        autoencoder = AutoencoderKL.from_config(vae.config)
        size, image_channels = autoencoder.config.sample_size, autoencoder.config.in_channels
        image = torch.randn(1, image_channels, size, size)
        trained = counted_flops(lambda: autoencoder(image, sample_posterior=True).sample.sum().backward())
        out["autoencoder_parameters"] = sum(p.numel() for p in autoencoder.parameters())
        out["gflop_autoencoder_train_image"] = trained / 1e9
    calls = 2 if guidance != 1 else 1  # guidance: a conditional and an unconditional call per step
    out["gflop_per_sample"] = {f"{s}:{n}": (n * calls * call + decode) / 1e9 for s, n in pairs}
    print(f"cost: {out}", flush=True)
    return out

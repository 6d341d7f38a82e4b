"""`tuner bench`: training throughput of the pipeline's two loops on a fresh embedded base, and, with `--profile`,
where the time of a LoRA SFT step goes.

    uv run tuner bench                    # quick preset: pretraining tokens/s, LoRA SFT samples/s
    uv run tuner bench --profile          # then SFT steps under torch.profiler: trace.json, top_ops.txt, top_ops.md

Pretraining is base.py's own loop (tokens/s after its 3 warm-up steps); SFT is stages.py's `sft`, trl's SFTTrainer
with the preset's LoRA adapter (samples/s as the trainer reports them: its whole `train()` call). The profile runs
`sft` once more for five steps; trl's loop is not ours to edit, so every optimizer step advances the profiler
(dlshared.profiling's hook). Numbers depend on threads: the result records them.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import torch

from dlshared.cli import UserError
from dlshared.profiling import profile_folder, profiled
from dlshared.seed import seed_everything

from .config import PRESETS, PROJECT, BenchArgs

PRETRAIN_WARMUP = 3
"""The warm-up steps pretrain()'s throughput meter leaves out."""


def bench(args: BenchArgs) -> dict:
    from .base import load_base, pretrain
    from .data import load_task_data, to_prompt_completion
    from .stages import sft
    from .task import TaskSpec, split_pairs
    from .train import check_config

    if args.preset not in PRESETS:
        raise UserError(f"unknown preset {args.preset!r}; choose one of: {', '.join(PRESETS)}")
    profile_out = profile_folder(PROJECT, args.profile, args.profile_out)
    steps = {"pretrain_steps": PRETRAIN_WARMUP + args.steps, "sft_steps": args.steps}
    cfg = dataclasses.replace(PRESETS[args.preset], **steps, progress=False)
    check_config(cfg)
    seed_everything(cfg.seed)
    data = load_task_data(cfg)
    corpus, _ = split_pairs(TaskSpec(cfg.max_number, cfg.heldout_fraction, seed=cfg.data_seed))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pretrained = pretrain(cfg, corpus, tmp / "base", logs=tmp / "logs" / "pretrain")
        _, tokenizer = load_base(tmp / "base")  # only for the chat template of the SFT rows
        rows = to_prompt_completion(data.sft_rows, tokenizer)
        tuned = sft(cfg, tmp / "base", rows, tmp / "sft", tmp / "logs" / "sft")
        profile = None
        if profile_out is not None:  # a second, short SFT: the profiler slows the steps it records
            wait, warmup, active = 1, 1, 3
            short = dataclasses.replace(cfg, sft_steps=wait + warmup + active)
            with profiled(profile_out, wait, warmup, active, on_optimizer_step=True) as recorder:
                sft(short, tmp / "base", rows, tmp / "profiled", tmp / "logs" / "profiled")
            profile = recorder.summary
    result = {
        "preset": args.preset,
        "base_params": pretrained["base_params"],
        "pretrain_batch": cfg.pretrain_batch,
        "pretrain_tokens_per_s": pretrained["pretrain_tokens_per_s"],
        "lora_trainable_params": tuned["lora_trainable_params"],
        "sft_batch": cfg.sft_batch,
        "sft_samples_per_s": tuned["sft_samples_per_s"],
        "timed_steps": args.steps,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "torch": torch.__version__,
    }
    return result | ({"profile": profile} if profile else {})

"""The pipeline, stage by stage (course days 28-30): pretrain -> LoRA SFT -> LoRA DPO -> evaluate.

    uv run tuner train                                   # quick preset: the synthetic addition task, CPU
    uv run tuner train --data pairs.jsonl --base DIR     # DPO (after SFT on the chosen answers) on your pairs
    uv run tuner train --stage dpo --name NAME           # one stage of an existing run

Each stage writes its own folder in the run (base/, sft/, dpo/) through a temporary name and a rename, so a
run stopped at any moment holds only finished stages; `--resume` skips them. Evaluation reloads every model
from disk, so the numbers in metrics.json are those of the saved artifacts.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from dlshared.checkpoint import load_json, save_json
from dlshared.cli import UserError
from dlshared.monitor import RunLogger
from dlshared.runs import config_to_dict, resolve_run_dir
from dlshared.seed import seed_everything

from .artifacts import base_path, has_stage
from .config import PROJECT, TrainConfig
from .data import TaskData, load_task_data, to_prompt_completion


def validate(cfg: TrainConfig) -> None:
    checks = {
        "--pretrain-steps, --sft-steps and --dpo-steps must be at least 1": min(
            cfg.pretrain_steps, cfg.sft_steps, cfg.dpo_steps) >= 1,
        "batch sizes must be at least 1": min(cfg.pretrain_batch, cfg.sft_batch, cfg.dpo_batch) >= 1,
        "--max-number must be at least 1": cfg.max_number >= 1,
        "--heldout-fraction must be in (0, 1)": 0 < cfg.heldout_fraction < 1,
        "--format-fractions and --wrong-fraction must be in [0, 1]": all(
            0 <= f <= 1 for f in (*cfg.format_fractions, cfg.wrong_fraction)),
        "--beta must be positive": cfg.beta > 0,
        "--hidden must be a multiple of --n-head": cfg.hidden % max(1, cfg.n_head) == 0,
        "--stage pretrain builds the embedded base; with --base the base is already trained": not (
            cfg.stage == "pretrain" and cfg.base is not None),
        "--sft-examples, --dpo-pairs and --eval-prompts must be at least 1": min(
            cfg.sft_examples, cfg.dpo_pairs, cfg.eval_prompts) >= 1,
    }  # fmt: skip
    for message, ok in checks.items():
        if not ok:
            raise UserError(message)
    if cfg.data is not None and not Path(cfg.data).exists():
        raise UserError(f"{cfg.data}: no such file")


def run_stage(run_dir: Path, stage: str, fn: Callable[[Path], dict]) -> dict:
    """Run `fn(tmp_dir)`, then rename tmp_dir to run_dir/stage: a stage folder exists only once complete."""
    tmp = run_dir / f".{stage}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    print(f"--- stage {stage} ---", flush=True)
    metrics = fn(tmp)
    shutil.rmtree(run_dir / stage, ignore_errors=True)
    os.replace(tmp, run_dir / stage)
    return metrics


def stages_to_run(cfg: TrainConfig, run_dir: Path, data: TaskData) -> list[str]:
    if cfg.stage != "all":
        return [cfg.stage]
    todo = [] if cfg.base is not None else ["pretrain"]
    todo += ["sft"] + (["dpo"] if data.train_pairs else [])
    if cfg.resume:  # skip what this run has finished
        folder = {"pretrain": "base", "sft": "sft", "dpo": "dpo"}
        todo = [s for s in todo if not has_stage(run_dir, cfg, folder[s])]
    return todo


def train(cfg: TrainConfig) -> dict:
    """Run the stages `cfg.stage` asks for, evaluate every model the run holds; returns the metrics (also
    written to RUN/metrics.json)."""
    from .base import pretrain
    from .evaluate import evaluate_run
    from .stages import dpo, sft

    validate(cfg)
    seed_everything(cfg.seed)
    started = time.perf_counter()
    run_dir = resolve_run_dir(PROJECT, cfg.out, cfg.name, cfg.resume, required="config.json")
    if cfg.stage in ("sft", "dpo") and (run_dir / "config.json").is_file():
        # a later stage of an existing run: the base is the one that run used
        previous = load_json(run_dir / "config.json")
        if cfg.base is None and previous.get("base") is not None:
            cfg.base = previous["base"]
    save_json(config_to_dict(cfg), run_dir / "config.json")
    print(json.dumps({"run_dir": str(run_dir), **config_to_dict(cfg)}))
    data = load_task_data(cfg)
    old = run_dir / "metrics.json"
    metrics = {k: v for k, v in load_json(old).items() if "/" not in k} if old.is_file() else {}
    logger = RunLogger(run_dir / "logs")
    for stage in stages_to_run(cfg, run_dir, data):
        if stage == "pretrain":
            from .task import TaskSpec, split_pairs

            train_pairs, _ = split_pairs(TaskSpec(cfg.max_number, cfg.heldout_fraction, seed=cfg.seed))
            metrics |= run_stage(run_dir, "base", partial(pretrain, cfg, train_pairs, logger=logger))
            continue
        if not has_stage(run_dir, cfg, "base"):
            raise UserError(
                f"--stage {stage}: no base model; give --base, or run --stage pretrain (or all) first"
            )
        base = base_path(run_dir, cfg)
        if stage == "sft":
            from .base import load_base

            _, tokenizer = load_base(base)  # only to render chat messages with the base's own template
            rows = to_prompt_completion(data.sft_rows, tokenizer)
            metrics |= run_stage(run_dir, "sft", partial(sft, cfg, base, rows, logs=run_dir / "logs" / "sft"))
        else:
            if not data.train_pairs:
                raise UserError(
                    f"--stage dpo needs preference pairs; {data.source} has prompt/completion rows"
                )
            adapter = run_dir / "sft" if has_stage(run_dir, cfg, "sft") else None
            fn = partial(dpo, cfg, base, adapter, data.train_pairs, logs=run_dir / "logs" / "dpo")
            metrics |= run_stage(run_dir, "dpo", fn)
    logger.close()
    print("--- evaluation ---", flush=True)
    evaluation = evaluate_run(run_dir, cfg, data)
    metrics |= evaluation
    metrics |= {"data": data.source, "template": data.template, "run_dir": str(run_dir),
                "total_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    save_json(metrics, run_dir / "metrics.json")
    return metrics

"""The pipeline, stage by stage (course days 28-30): pretrain -> LoRA SFT -> LoRA DPO -> evaluate.

    uv run tuner train                                   # quick preset: the synthetic addition task, CPU
    uv run tuner train --data pairs.jsonl --base DIR     # DPO (after SFT on the chosen answers) on your pairs
    uv run tuner train --stage dpo --name NAME --resume  # rerun one stage of the existing run NAME

Each stage writes its own folder in the run (base/, sft/, dpo/) through a temporary name and a rename, so a
run stopped at any moment holds only finished stages; `--resume` skips them and redoes the stage that was
interrupted (the next call deletes its half-written .STAGE.tmp), or reruns the one `--stage` names.
A run folder that exists is trained into only with --resume (continue it) or --overwrite (replace it), and one
process at a time (a lock). Evaluation reloads every model from disk, so the numbers in metrics.json are those
of the saved artifacts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from dlshared.checkpoint import save_json
from dlshared.cli import UserError, validate
from dlshared.hubdata import parse_hub_id
from dlshared.runs import RunLock, config_to_dict, resolve_run_dir
from dlshared.seed import seed_everything

from .artifacts import base_path, has_stage, read_json, run_config
from .base import build_model, build_tokenizer
from .config import PROJECT, TrainConfig
from .data import TaskData, load_task_data, to_prompt_completion
from .lora import check_targets, quantization_config

FOLDER = {"pretrain": "base", "sft": "sft", "dpo": "dpo"}
"""The folder of the run that each stage writes."""


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings that cannot work before anything trains (found after pretraining, a mistake costs minutes):
    each field's own rule (declared with it in config.py), then the rules between fields."""
    validate(cfg)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun / accelerate launch with several processes
        raise UserError(
            "tuner trains in one process (the pretraining loop, the stage folders and the evaluation are not "
            "written for several); launch it without torchrun / accelerate launch (a GPU is used when there is one)"
        )
    if cfg.hidden % cfg.n_head != 0:
        raise UserError(f"--n-head {cfg.n_head} does not divide --hidden {cfg.hidden}: each head gets hidden / n_head")
    if cfg.hidden // cfg.n_head % 2:
        raise UserError(f"rotary positions need an even head size; --hidden / --n-head = {cfg.hidden // cfg.n_head}")
    if cfg.stage == "pretrain" and cfg.base is not None:
        raise UserError("--stage pretrain builds the embedded base; with --base the base is already trained")
    if cfg.data is not None and not Path(cfg.data).exists() and parse_hub_id(cfg.data) is None:
        raise UserError(f"{cfg.data}: no such file")  # (a Hub dataset is loaded, or refused, with the data)
    quantization_config(cfg)  # QLoRA settings raise their own one-line errors
    if cfg.base is None:  # the embedded Llama's layer names are known now (another base's once it is loaded)
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            shape = (cfg.n_layer, cfg.n_head, cfg.hidden, cfg.intermediate, cfg.max_positions)
            check_targets(build_model(build_tokenizer(), *shape), cfg)


def keep_the_runs_base(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """A resumed run goes on with the base it was trained on: --base may be left out, and must not change it."""
    previous = run_config(run_dir).base
    if cfg.base is not None and cfg.base != previous:
        raise UserError(f"{run_dir} was trained on base {previous or 'embedded'}, not --base {cfg.base}")
    return dataclasses.replace(cfg, base=previous)


def stages_to_run(cfg: TrainConfig, run_dir: Path, data: TaskData) -> list[str]:
    if cfg.stage != "all":
        return [cfg.stage]
    todo = [] if cfg.base is not None else ["pretrain"]
    todo += ["sft"] + (["dpo"] if data.train_pairs else [])
    if cfg.resume:  # skip what this run has finished
        todo = [stage for stage in todo if not has_stage(run_dir, cfg, FOLDER[stage])]
    return todo


def stage_function(stage: str, cfg: TrainConfig, run_dir: Path, data: TaskData) -> Callable[[Path], dict]:
    """fn(folder) that trains `stage` into `folder` and returns its numbers, given what the run holds so far."""
    from .base import load_base, pretrain
    from .stages import dpo, sft
    from .task import TaskSpec, split_pairs

    logs = run_dir / "logs" / stage
    if stage == "pretrain":
        train_pairs, _ = split_pairs(TaskSpec(cfg.max_number, cfg.heldout_fraction, seed=cfg.data_seed))
        return partial(pretrain, cfg, train_pairs, logs=logs)
    if not has_stage(run_dir, cfg, "base"):
        raise UserError(f"--stage {stage}: no base model; give --base, or run --stage pretrain (or all) first")
    base = base_path(run_dir, cfg)
    if stage == "sft":
        _, tokenizer = load_base(base)  # only to render chat messages with the base's own template
        return partial(sft, cfg, base, to_prompt_completion(data.sft_rows, tokenizer), logs=logs)
    if not data.train_pairs:
        raise UserError(f"--stage dpo needs preference pairs; {data.source} has prompt/completion rows")
    adapter = run_dir / "sft" if has_stage(run_dir, cfg, "sft") else None  # else a fresh adapter on the base
    return partial(dpo, cfg, base, adapter, data.train_pairs, logs=logs)


def run_stage(run_dir: Path, folder: str, fn: Callable[[Path], dict]) -> dict:
    """Run `fn(tmp)`, then rename tmp to run_dir/folder: a stage's folder exists only once it is complete. A stage
    run again replaces its folder: the old one is set aside (.FOLDER.old) and deleted only once the new one is in."""
    tmp, old = run_dir / f".{folder}.tmp", run_dir / f".{folder}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    print(f"--- stage {folder} ---", flush=True)
    metrics = fn(tmp)
    if (run_dir / folder).exists():
        os.replace(run_dir / folder, old)
    os.replace(tmp, run_dir / folder)
    shutil.rmtree(old, ignore_errors=True)
    return metrics


def clean_interrupted_stages(run_dir: Path) -> None:
    """What a run killed inside `run_stage` leaves: a half-written .FOLDER.tmp is deleted (the stage is not done,
    so it runs again); a finished stage set aside (.FOLDER.old) goes back if the kill came before its successor
    was renamed into place, else it is deleted. Call it holding the run's lock."""
    for folder in FOLDER.values():
        shutil.rmtree(run_dir / f".{folder}.tmp", ignore_errors=True)
        old = run_dir / f".{folder}.old"
        if old.is_dir() and not (run_dir / folder).exists():
            os.replace(old, run_dir / folder)
        shutil.rmtree(old, ignore_errors=True)


def train(cfg: TrainConfig) -> dict:
    """Run the stages `cfg.stage` asks for, then evaluate every model the run holds; returns the metrics (also
    written to RUN/metrics.json)."""
    from .evaluate import evaluate_run
    from .pictures import save_curves

    # --- set-up: checks, the run folder (locked while this process trains in it), its config, the data ---
    check_config(cfg)
    seed_everything(cfg.seed)
    started = time.perf_counter()
    run_dir = resolve_run_dir(PROJECT, cfg.out, cfg.name, cfg.resume, "config.json", cfg.overwrite)
    lock = RunLock(run_dir).acquire()
    try:
        clean_interrupted_stages(run_dir)
        cfg = keep_the_runs_base(cfg, run_dir) if cfg.resume else cfg
        config = config_to_dict(cfg)
        save_json(config, run_dir / "config.json")
        print(f"config: {json.dumps({'run_dir': str(run_dir), **config})}", flush=True)
        data = load_task_data(cfg)
        old = run_dir / "metrics.json"  # an earlier call's training numbers stay; the evaluation is redone
        metrics = {k: v for k, v in read_json(old).items() if "/" not in k} if old.is_file() else {}

        # --- the stages, in order, each from what the ones before it saved ---
        for stage in stages_to_run(cfg, run_dir, data):
            metrics |= run_stage(run_dir, FOLDER[stage], stage_function(stage, cfg, run_dir, data))

        # --- finish: every model the run holds, reloaded from disk, on the held-out data ---
        print("--- evaluation ---", flush=True)
        metrics |= evaluate_run(run_dir, cfg, data)
        metrics |= {"data": data.source, "template": data.template, "run_dir": str(run_dir)}
        metrics["total_seconds"] = round(time.perf_counter() - started, 1)
        save_json(metrics, run_dir / "metrics.json")
        save_curves(run_dir, metrics, cfg.dpo_sft_weight)  # RUN/curves.png, every stage the run holds
    finally:
        lock.release()
    return metrics

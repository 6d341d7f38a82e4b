"""Reading what training wrote: a run folder holds `pipeline/` (a diffusers pipeline with the EMA weights),
`card.json` (classes, data), `config.json`, `metrics.json` and `resume.pt`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from dlshared.checkpoint import load_json
from dlshared.cli import UserError
from dlshared.runs import latest_run

from .config import PROJECT
from .pipeline import ClassConditionalPipeline

PIPELINE_DIR = "pipeline"
PIPELINE_INDEX = f"{PIPELINE_DIR}/model_index.json"
"""What only a diffusion run holds, once it has a checkpoint: how `--resume`, eval and the demo find the newest."""


def find_run(ckpt: Path | None, runs: Path = Path("runs")) -> Path:
    """--ckpt as given, or the newest diffusion run (one with a pipeline) under `runs`."""
    if ckpt is not None:
        return Path(ckpt)
    newest = latest_run(PROJECT, runs, required=PIPELINE_INDEX)
    if newest is None:
        raise UserError(f"no trained diffusion model under {runs / PROJECT}; run `diffusion train` or pass --ckpt")
    return newest


def pipeline_folder(path: Path) -> Path:
    """A run folder or the pipeline folder inside it -> the pipeline folder."""
    for candidate in (path / PIPELINE_DIR, path):
        if (candidate / "model_index.json").is_file():
            return candidate
    raise UserError(f"{path}: not a diffusion run or pipeline folder (no model_index.json)")


def load_pipeline(path: Path, device: str | torch.device = "cpu") -> ClassConditionalPipeline:
    """A saved pipeline (safetensors only); each call of it picks its sampler."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # "Loading pipeline components" on every sample/eval call is noise
    pipe = ClassConditionalPipeline.from_pretrained(pipeline_folder(Path(path)), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_card(path: Path) -> dict:
    """classes and data description; a bare pipeline folder (no card) gets digit names 0..K-1."""
    for candidate in (Path(path) / "card.json", Path(path).parent / "card.json"):
        if candidate.is_file():
            return load_json(candidate)
    pipe_config = load_json(pipeline_folder(Path(path)) / "unet" / "config.json")
    return {"classes": [str(i) for i in range(pipe_config["num_class_embeds"] - 1)], "source": "unknown"}


def run_kind(run: Path) -> str:
    """Which model a run folder of this project holds: "diffusion", "vae" or "gan" (card.json says)."""
    if not (Path(run) / "config.json").is_file():
        raise UserError(f"{run}: not a run folder of this project (no config.json)")
    return load_card(run).get("model", "diffusion")


def save_pipeline_atomically(pipe: ClassConditionalPipeline, folder: Path) -> None:
    """save_pretrained into a side folder, then swap it in: a kill mid-write never leaves a half pipeline."""
    folder = Path(folder)
    staging, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    pipe.save_pretrained(staging, safe_serialization=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)

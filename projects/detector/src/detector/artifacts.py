"""A trained detector on disk: RUN/model.safetensors + card.json (classes, image size, architecture: the
CenterNet or one of torchvision's R-CNNs).

Loading reads safetensors and JSON only: no pickle, so a downloaded run folder cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from dlshared.checkpoint import WEIGHTS_NAME, load_json
from dlshared.cli import UserError, validate
from dlshared.device import pick_device
from dlshared.runs import latest_run

from .config import PROJECT, TrainConfig, check_relations, config_from_dict
from .model import DetectorConfig, build_detector


@dataclass
class LoadedDetector:
    model: torch.nn.Module
    """CenterNet or a torchvision R-CNN: evaluate.detect runs either."""
    arch: str
    classes: list[str]
    image_size: int
    run_dir: Path
    device: torch.device


def resolve_checkpoint(ckpt: Path | None, runs: Path) -> Path:
    if ckpt is None:
        ckpt = latest_run(PROJECT, runs, required="metrics.json")
        if ckpt is None:
            raise UserError(f"no trained detector under {runs / PROJECT}; run `detector train` or pass --ckpt")
    return Path(ckpt)


def load_detector(run_dir: Path, device: str = "auto") -> LoadedDetector:
    run_dir = Path(run_dir)
    for name in ("card.json", WEIGHTS_NAME):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a detector run folder: {name} is missing")
    try:
        target = pick_device(device)
    except ValueError as err:
        raise UserError(str(err)) from None
    card = read_card(run_dir / "card.json", ("classes", "image_size"))
    arch = card.get("arch", "centernet")
    try:
        if arch == "centernet":  # the card holds its DetectorConfig (JSON lists back to tuples)
            model_cfg = DetectorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in card["model"].items()})
        else:  # an R-CNN needs its class count only
            model_cfg = DetectorConfig(num_classes=len(card["classes"]))
        # the architecture only: the weights come from the run folder, never from the internet
        model = build_detector(arch, model_cfg, card["image_size"], pretrained=False)
    except (KeyError, TypeError, ValueError, AttributeError, UserError) as err:
        raise UserError(f"{run_dir / 'card.json'} describes no detector ({first_line(err)})") from None
    model = load_run_weights(model, run_dir / WEIGHTS_NAME, "card.json").to(target).eval()
    return LoadedDetector(model, arch, card["classes"], card["image_size"], run_dir, target)


def read_json(path: Path) -> dict:
    """A JSON object written by training or export; a damaged or foreign file is a UserError naming it."""
    try:
        value = load_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(
            f"{path} cannot be read as JSON ({first_line(err)}); copy the folder again or retrain"
        ) from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_card(path: Path, keys: tuple[str, ...]) -> dict:
    """A run's card.json, with `keys` present and a non-empty list of class names."""
    card = read_json(path)
    classes = card.get("classes")
    if any(key not in card for key in keys) or not isinstance(classes, list) or not classes:
        raise UserError(f"{path} is not a model card of this project (it needs {', '.join(keys)})")
    return card


def read_config(path: Path, config_type: type = TrainConfig):
    """A run's config.json as a TrainConfig (or `config_type`), checked as the flags are."""
    values = read_json(path)
    try:
        return check_relations(validate(config_from_dict(values, config_type)))
    except (TypeError, ValueError, UserError) as err:
        raise UserError(f"{path} is not a {config_type.__name__} of this project ({first_line(err)})") from None


def load_run_weights(model: torch.nn.Module, path: Path, described_by: str) -> torch.nn.Module:
    """The safetensors weights of a run into `model`; a truncated file, or weights of another architecture than
    the run's `described_by` file says, end as one line naming the file."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device=str(next(model.parameters()).device))
    except Exception as err:  # safetensors raises its own error type for a truncated or foreign file
        raise UserError(
            f"{path} is damaged or not a safetensors file ({first_line(err)}); retrain or copy it again"
        ) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        problems = [line.strip() for line in str(err).splitlines()[1:] if line.strip()] or [str(err)]
        detail = problems[0] if len(problems[0]) <= 200 else f"{problems[0][:200]}..."
        raise UserError(
            f"{path} holds weights of another architecture than {described_by} describes ({detail}); "
            "keep a run's files together"
        ) from None
    return model


def first_line(err: BaseException) -> str:
    """The gist of an error, on one line."""
    text = str(err).strip().splitlines()
    if isinstance(err, UserError) and text:
        return text[0]
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__

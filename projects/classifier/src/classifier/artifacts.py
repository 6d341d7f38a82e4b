"""Loading what training and export wrote: a run folder (PyTorch) or an exported ONNX model (ONNX Runtime),
behind one interface: `Predictor(images [B, C, H, W] in [0, 1]) -> logits [B, K]`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from dlshared.checkpoint import WEIGHTS_NAME, load_weights, read_json_object
from dlshared.cli import UserError, short_reason
from dlshared.configs import read_config
from dlshared.device import pick_device
from dlshared.runs import latest_run

from .config import PROJECT, TrainConfig, check_relations
from .model import Classifier

CARD_KEYS = ("classes", "in_channels", "image_size", "style", "backbone")
TRAIN_CONFIG = "train_config.json"
"""An export folder's copy of the run's config.json (its config.json is the Hub's: Classifier's arguments)."""
SHIPPED = Path(__file__).resolve().parent / "weights" / "quick"
"""The quick preset's weights, shipped with the package (its README.md: command, commit, accuracy): the demo
serves them at once on a fresh clone, before anything is trained."""


@dataclass
class Predictor:
    forward: Callable[[torch.Tensor], torch.Tensor]
    """float tensor [B, C, H, W] in [0, 1] -> logits tensor [B, K]."""
    card: dict
    config: TrainConfig
    kind: str
    """"pytorch" or "onnxruntime"."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    metrics: dict | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images.to(self.device))


def find_run(ckpt: Path | None, runs: Path = Path("runs")) -> Path:
    if ckpt is not None:
        return Path(ckpt)
    newest = latest_run(PROJECT, runs)
    if newest is None:
        raise UserError(f"no trained model under {runs / PROJECT}; run `classifier train` or pass --ckpt")
    return newest


def read_run_config(path: Path) -> TrainConfig:
    """A run's config.json as a TrainConfig: each field checked as its flag is (dlshared), the rules between
    fields too."""
    cfg = read_config(path, TrainConfig)
    try:
        return check_relations(cfg)
    except UserError as err:
        raise UserError(f"{path} is not a usable TrainConfig ({err})") from None


def read_card(path: Path) -> dict:
    card = read_json_object(path)
    missing = [key for key in CARD_KEYS if key not in card]
    if missing or not isinstance(card["classes"], list) or not card["classes"]:
        raise UserError(f"{path} is not a classifier model card (it needs {', '.join(CARD_KEYS)})")
    return card


def load_torch_model(run_dir: Path, device: str = "cpu") -> tuple[Classifier, TrainConfig, dict]:
    """Rebuild the model a run folder describes and load its safetensors weights (no pretrained download)."""
    for name in ("config.json", "card.json", WEIGHTS_NAME):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a classifier run folder (no {name})")
    cfg = read_run_config(run_dir / "config.json")
    card = read_card(run_dir / "card.json")
    mean, std = read_normalisation(run_dir / WEIGHTS_NAME, card["in_channels"])
    try:
        model = Classifier(
            cfg.backbone,
            len(card["classes"]),
            card["in_channels"],
            mean,
            std,
            cfg.widths,
            cfg.blocks,
            classes=card["classes"],
            image_size=card["image_size"],
        )
    except (TypeError, ValueError) as err:
        raise UserError(f"{run_dir}: config.json and card.json describe no model ({short_reason(err)})") from None
    load_weights(model, run_dir / WEIGHTS_NAME)
    return model.to(pick_device(device)).eval(), cfg, card


def read_normalisation(weights: Path, channels: int) -> tuple[list[float], list[float]]:
    """The mean and std buffers saved in a run's weights: the Hub config.json records them, so they are read, not
    guessed. A damaged file gives placeholders here; load_weights then reports it."""
    try:
        with safe_open(str(weights), "pt") as tensors:
            return tensors.get_tensor("mean").flatten().tolist(), tensors.get_tensor("std").flatten().tolist()
    except Exception:  # safetensors' own error types
        return [0.0] * channels, [1.0] * channels


def load_predictor(ckpt: Path | None, device: str = "auto", runs: Path = Path("runs")) -> Predictor:
    """A run folder -> PyTorch predictor; a .onnx file (with card.json and train_config.json beside it) -> ORT."""
    path = find_run(ckpt, runs)
    if path.suffix == ".onnx":
        return load_onnx_predictor(path)
    if not path.exists():
        raise UserError(f"--ckpt {path}: no such run folder or .onnx file")
    model, cfg, card = load_torch_model(path, device)
    metrics = read_json_object(path / "metrics.json") if (path / "metrics.json").is_file() else None

    @torch.no_grad()
    def forward(images: torch.Tensor) -> torch.Tensor:
        return model(images)

    return Predictor(forward, card, cfg, "pytorch", next(model.parameters()).device, metrics)


def load_onnx_predictor(path: Path) -> Predictor:
    import onnxruntime as ort

    if not path.is_file():
        raise UserError(f"--ckpt {path}: no such ONNX file")
    folder = path.parent
    if not (folder / "card.json").is_file() or not (folder / TRAIN_CONFIG).is_file():
        raise UserError(f"{path}: expected card.json and {TRAIN_CONFIG} beside it (written by `classifier export`)")
    cfg, card = read_run_config(folder / TRAIN_CONFIG), read_card(folder / "card.json")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT's own error types: a truncated or foreign file
        raise UserError(
            f"{path} is not an ONNX model ONNX Runtime can load ({short_reason(err)}); export it again"
        ) from None
    input_name = session.get_inputs()[0].name

    def forward(images: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run(None, {input_name: images.cpu().numpy().astype(np.float32)})
        return torch.from_numpy(logits)

    return Predictor(forward, card, cfg, "onnxruntime")

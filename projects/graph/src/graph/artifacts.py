"""Loading what training wrote: a node-classification run folder -> its model, its graph and its card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dlshared.checkpoint import WEIGHTS_NAME, load_weights, read_json_object
from dlshared.cli import UserError, short_reason
from dlshared.configs import read_config
from dlshared.device import pick_device
from dlshared.runs import latest_run

from .config import PROJECT, TrainConfig, check_relations
from .data import NodeData, load_planetoid
from .model import NodeClassifier

NODE_CARD = "card.json"
"""Written by node-classification runs only: how `eval`/`demo` tell them from recommendation runs."""
SHIPPED = Path(__file__).resolve().parent / "weights" / "quick"
"""The quick preset's run (seed 0's model), shipped with the package (weights/quick/README.md: command, commit,
accuracy): `graph demo` serves it at once on a fresh clone, before anything is trained."""


@dataclass
class NodeRun:
    model: NodeClassifier
    data: NodeData
    config: TrainConfig
    card: dict
    dir: Path
    device: torch.device


def find_run(ckpt: Path | None, runs: Path, required: str = NODE_CARD) -> Path:
    if ckpt is not None:
        if not Path(ckpt).is_dir():
            raise UserError(f"--ckpt {ckpt}: no such run folder")
        return Path(ckpt)
    newest = latest_run(PROJECT, runs, required=required)
    if newest is None:
        raise UserError(f"no trained model under {runs / PROJECT}; run `graph train` or pass --ckpt")
    return newest


def read_run_config(path: Path) -> TrainConfig:
    cfg = read_config(path, TrainConfig)
    try:
        return check_relations(cfg)
    except UserError as err:
        raise UserError(f"{path} is not a usable TrainConfig ({err})") from None


def load_node_run(run_dir: Path, device: str = "auto") -> NodeRun:
    """Rebuild the model a node run describes, load its safetensors weights, and read its graph again."""
    for name in ("config.json", NODE_CARD, WEIGHTS_NAME):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir} is not a graph node-classification run folder (no {name})")
    cfg = read_run_config(run_dir / "config.json")
    card = read_json_object(run_dir / NODE_CARD)
    if not isinstance(card.get("classes"), list) or not isinstance(card.get("num_features"), int):
        raise UserError(f"{run_dir / NODE_CARD} is not a graph model card (it needs classes and num_features)")
    data = load_planetoid(cfg.data)
    if data.num_features != card["num_features"] or len(data.classes) != len(card["classes"]):
        raise UserError(f"{run_dir}: its data ({cfg.data or 'bundled Cora'}) no longer matches the model's card")
    try:
        model = NodeClassifier(
            cfg.model, data.num_features, len(data.classes), cfg.hidden, cfg.layers, cfg.dropout, cfg.heads
        )
    except (TypeError, ValueError) as err:
        raise UserError(f"{run_dir}: config.json describes no model ({short_reason(err)})") from None
    target = pick_device(device)
    load_weights(model.to(target), run_dir / WEIGHTS_NAME)
    data.graph = data.graph.to(target)
    return NodeRun(model.eval(), data, cfg, card, run_dir, target)

"""Export a node-classification run as a self-contained folder: the weights (safetensors), the config that
rebuilds the model, the card (classes, data, test accuracy), and every node's learned representation.

    uv run graph export --ckpt runs/graph/NAME --out cora-gcn/
    model = load_exported("cora-gcn")          # NodeClassifier with the weights, in eval mode
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors.torch import save_file

from dlshared.checkpoint import WEIGHTS_NAME, load_weights, read_json_object, save_json, save_weights
from dlshared.cli import UserError
from dlshared.outputs import staged_output

from .artifacts import load_node_run

MODEL_CONFIG = "model_config.json"


def export_node(run_dir: Path, out: Path, overwrite: bool = False) -> dict:
    run = load_node_run(run_dir, "cpu")
    metrics = read_json_object(run_dir / "metrics.json")
    cfg = run.config
    model_config = {
        "kind": cfg.model,
        "in_features": run.data.num_features,
        "classes": len(run.data.classes),
        "hidden": cfg.hidden,
        "layers": cfg.layers,
        "dropout": cfg.dropout,
        "heads": cfg.heads,
    }
    card = {
        **run.card,
        "test_accuracy_of_this_model": metrics.get("model_test_accuracy"),
        "test_accuracy_over_seeds": [metrics.get("test_accuracy"), metrics.get("test_accuracy_std")],
        "trained_with": {k: str(v) for k, v in dataclasses.asdict(cfg).items()},
    }
    with torch.no_grad():
        embeddings = run.model.embed(run.data.graph.x, run.data.graph.edge_index)  # [N, hidden * heads]
    with staged_output(out, overwrite, sources=(run_dir,)) as stage:
        save_weights(run.model, stage / WEIGHTS_NAME)
        save_json(model_config, stage / MODEL_CONFIG)
        save_json(card, stage / "card.json")
        save_file({"embeddings": embeddings.contiguous(), "labels": run.data.graph.y}, str(stage / "nodes.safetensors"))
    return {"out": str(out), "files": sorted(p.name for p in Path(out).iterdir())}


def load_exported(folder: Path) -> torch.nn.Module:
    """The exported model, rebuilt from model_config.json, weights loaded (safetensors: no code runs)."""
    from .model import NodeClassifier

    folder = Path(folder)
    config = read_json_object(folder / MODEL_CONFIG)
    try:
        model = NodeClassifier(**config)
    except (TypeError, ValueError) as err:
        raise UserError(f"{folder / MODEL_CONFIG} describes no model ({err})") from None
    return load_weights(model, folder / WEIGHTS_NAME).eval()

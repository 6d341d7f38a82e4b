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

from dlshared.checkpoint import WEIGHTS_NAME, load_weights, read_json_object, save_json
from dlshared.cli import UserError
from dlshared.configs import WHERE_FIELDS
from dlshared.modelcard import Result, train_command, write_model_card
from dlshared.outputs import staged_output

from .artifacts import NodeRun, load_node_run
from .config import DEFAULT_PRESET, PRESETS

MODEL_CONFIG = "config.json"
"""The model's arguments, as huggingface_hub's PyTorchModelHubMixin writes and reads them."""


def export_node(run_dir: Path, out: Path, overwrite: bool = False) -> dict:
    run = load_node_run(run_dir, "cpu")
    metrics = read_json_object(run_dir / "metrics.json")
    cfg = run.config
    card = {
        **run.card,
        "test_accuracy_of_this_model": metrics.get("model_test_accuracy"),
        "test_accuracy_over_seeds": [metrics.get("test_accuracy"), metrics.get("test_accuracy_std")],
        "trained_with": {k: str(v) for k, v in dataclasses.asdict(cfg).items()},
    }
    with torch.no_grad():
        embeddings = run.model.embed(run.data.graph.x, run.data.graph.edge_index)  # [N, hidden * heads]
    with staged_output(out, overwrite, sources=(run_dir,)) as stage:
        run.model.save_pretrained(stage)  # model.safetensors + config.json (its arguments): from_pretrained reads them
        save_json(card, stage / "card.json")
        save_file({"embeddings": embeddings.contiguous(), "labels": run.data.graph.y}, str(stage / "nodes.safetensors"))
        write_card(stage, run, metrics)
    return {"out": str(out), "files": sorted(p.name for p in Path(out).iterdir())}


def write_card(stage: Path, run: NodeRun, metrics: dict) -> Path:
    """README.md in the Hub's format (dlshared.modelcard), from the run's config.json, card.json, metrics.json."""
    config = read_json_object(run.dir / "config.json")
    data_id, data_name = run.card.get("data", "cora"), run.card.get("source", "Cora")
    accuracy = metrics.get("model_test_accuracy")
    results = [] if accuracy is None else [Result("graph-ml", data_id, data_name, "accuracy", accuracy)]
    return write_model_card(
        stage,
        title=f"graph: {run.config.model} on {data_name}",
        library_name="pytorch",
        tags=[
            "pytorch-capstones",
            "model_hub_mixin",
            "pytorch_model_hub_mixin",
            "graph-ml",
            "node-classification",
            run.config.model,
        ],
        datasets=[data_id],
        license="mit",
        results=results,
        summary=_summary(run, metrics),
        data=(
            f"Trained and tested on {data_name}: one graph, every node's features and edges. The labels of its training nodes are learnt,"
            " its validation nodes choose the epoch whose weights are kept, its test nodes score the model."
        ),
        command=train_command(
            "graph",
            config,
            PRESETS,
            DEFAULT_PRESET[run.config.task],
            ignore=(*WHERE_FIELDS, "progress"),
            processes=metrics.get("processes", 1),
        ),
        limits=(
            "Transductive: it was trained and tested on the nodes of this one graph, and its numbers say nothing"
            " about other graphs; new nodes need their features and edges in the same format. The test split is"
            " small, so accuracies a point apart are not clearly different. The weights inherit the terms of use"
            " of the graph they were trained on."
        ),
        settings_file="card.json",  # its trained_with holds every setting of the run
    )


def _summary(run: NodeRun, metrics: dict) -> str:
    text = (
        f"A {run.config.model} node classifier ({metrics.get('parameters', 0):,} parameters) trained by the `graph`"
        " project of PyTorch Capstones: `model.safetensors` + `config.json` (`graph.model.NodeClassifier"
        ".from_pretrained(FOLDER or repo id)` rebuilds it) and `nodes.safetensors` (every node's learned representation and"
        f" label). It labels each node of the graph as one of {len(run.data.classes)} classes:"
        f" {', '.join(run.data.classes)}."
    )
    seeds, std = metrics.get("seeds", 1), metrics.get("test_accuracy_std")
    if seeds > 1 and std is not None:  # the recipe's spread, which one model's accuracy cannot show
        text += (
            f" Over {seeds} seeds the recipe scores {metrics['test_accuracy']:.4f} ± {std:.4f}; this model is the"
            f" first one's (seed {run.config.seed})."
        )
    return text


def load_exported(folder: Path) -> torch.nn.Module:
    """The exported model, rebuilt from config.json and its weights loaded (safetensors: no code runs): what
    NodeClassifier.from_pretrained does, with one-line errors for a damaged folder."""
    from .model import NodeClassifier

    folder = Path(folder)
    config = read_json_object(folder / MODEL_CONFIG)
    try:
        model = NodeClassifier(**config)
    except (TypeError, ValueError) as err:
        raise UserError(f"{folder / MODEL_CONFIG} describes no model ({err})") from None
    return load_weights(model, folder / WEIGHTS_NAME).eval()

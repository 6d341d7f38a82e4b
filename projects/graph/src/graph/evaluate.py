"""Node classification metrics, defined once (train, eval and the README use these), and the run's pictures."""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy

SPLITS = ("train", "val", "test")


@torch.no_grad()
def split_scores(model: torch.nn.Module, graph) -> dict[str, dict[str, float]]:
    """Accuracy and cross-entropy of each split, from one forward pass over the whole graph (dropout off)."""
    model.eval()
    logits = model(graph.x, graph.edge_index)  # [N, classes]
    num_classes = logits.shape[1]
    scores = {}
    for split in SPLITS:
        mask = getattr(graph, f"{split}_mask")
        accuracy = multiclass_accuracy(logits[mask], graph.y[mask], num_classes, average="micro")
        loss = F.cross_entropy(logits[mask], graph.y[mask])
        scores[split] = {"accuracy": round(accuracy.item(), 4), "loss": round(loss.item(), 4)}
    return scores


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (n - 1), the way papers report seeds."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 4), "std": round(std, 4), "n": len(values)}


@torch.no_grad()
def embedding_map(model: torch.nn.Module, graph) -> torch.Tensor:
    """Each node's learned representation (the last layer's input) projected to 2-D by PCA: [N, 2]."""
    model.eval()
    h = model.embed(graph.x, graph.edge_index).float()
    h = h - h.mean(dim=0)
    _, _, v = torch.pca_lowrank(h, q=2, center=False)
    return h @ v  # [N, 2]


def curves_figure(history: list[dict]):
    """Training loss and validation accuracy per epoch of one seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(epochs, [h["train_loss"] for h in history])
    left.set(xlabel="epoch", ylabel="training loss", title="loss (140 labelled nodes)")
    right.plot(epochs, [h["val_accuracy"] for h in history], label="validation")
    right.plot(epochs, [h["train_accuracy"] for h in history], label="training", alpha=0.6)
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    right.legend()
    fig.tight_layout()
    return fig


def map_figure(xy: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], title: str):
    """The 2-D map of the node representations, one colour per true class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5))
    for c, name in enumerate(classes):
        points = xy[labels == c]
        ax.scatter(points[:, 0], points[:, 1], s=4, label=name, alpha=0.7)
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=3, loc="best")
    fig.tight_layout()
    return fig

"""Over-smoothing, measured (day 32): stack more GCN layers and every node's representation drifts towards the
same vector, because each layer averages a node with its neighbours, and k layers average over the k-hop
neighbourhood, which on a small-world graph soon is most of the graph.

    uv run graph depth --depths 2 4 8 16 --seeds 3 --out assets/     # table + assets/oversmoothing.png

For each depth: the test accuracy (mean ± std over seeds, the quick preset otherwise); the mean pairwise cosine
similarity of the first seed's node representations (the last layer's input); and the same similarity for the
features smoothed with no weights at all, Â^k X (Â the normalised adjacency with self-loops): the mechanism
alone, which a trained model fights with its weights.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dlshared.checkpoint import atomic_path, save_json
from dlshared.seed import seed_everything

from .config import PRESETS, DepthArgs
from .data import load_planetoid
from .evaluate import mean_std
from .model import NodeClassifier, gcn_norm_by_hand
from .train import fit


def mean_pairwise_cosine(h: torch.Tensor) -> float:
    """The mean cosine similarity over all pairs i != j of the rows of h [N, d], in O(N d): with unit rows u_i,
    sum_ij u_i . u_j = |sum_i u_i|^2, and the N diagonal terms are 1 each."""
    u = F.normalize(h.double(), dim=1)
    n = len(u)
    total = u.sum(dim=0).square().sum()  # sum over all ordered pairs, i = j included
    return float((total - n) / (n * (n - 1)))


@torch.no_grad()
def smoothed_features(x: torch.Tensor, edge_index: torch.Tensor, k: int) -> torch.Tensor:
    """Â^k X: k rounds of the GCN's propagation without its weights or non-linearity."""
    edges, weight = gcn_norm_by_hand(edge_index, len(x))
    source, target = edges
    for _ in range(k):
        x = torch.zeros_like(x).index_add_(0, target, weight[:, None] * x[source])
    return x


class _NoMeter:
    def step(self, *args, **kwargs) -> None:
        pass


def depth_sweep(args: DepthArgs) -> dict:
    cfg = dataclasses.replace(PRESETS[args.preset], model=args.model)
    graph = load_planetoid().graph
    rows = []
    for depth in args.depths:
        started, accuracies, similarity = time.perf_counter(), [], None
        for seed in range(args.seeds):
            seed_everything(seed)
            model = NodeClassifier(cfg.model, graph.num_features, 7, cfg.hidden, depth, cfg.dropout, cfg.heads)
            optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            best, _, _ = fit(model, optimizer, graph, cfg.epochs, cfg.patience, _NoMeter(), 0)
            accuracies.append(best["test"]["accuracy"])
            if seed == 0:
                model.eval()
                with torch.no_grad():
                    similarity = mean_pairwise_cosine(model.embed(graph.x, graph.edge_index))
        stats = mean_std(accuracies)
        rows.append(
            {
                "layers": depth,
                "test_accuracy": stats["mean"],
                "test_accuracy_std": stats["std"],
                "mean_pairwise_cosine": round(similarity, 4),
                "cosine_of_smoothed_features": round(
                    mean_pairwise_cosine(smoothed_features(graph.x, graph.edge_index, depth)), 4
                ),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        print(f"{depth:>3} layers: test {stats['mean']:.4f} ± {stats['std']:.4f}, cosine {similarity:.4f}", flush=True)
    result = {"model": cfg.model, "seeds": args.seeds, "rows": rows}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        save_json(result, args.out / "oversmoothing.json")
        save_figure(rows, cfg.model, args.out / "oversmoothing.png")
    return result


def save_figure(rows: list[dict], model: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = [r["layers"] for r in rows]
    fig, left = plt.subplots(figsize=(5.5, 3.5))
    left.errorbar(depths, [r["test_accuracy"] for r in rows], [r["test_accuracy_std"] for r in rows], marker="o")
    left.set(xscale="log", xlabel="layers", ylabel="test accuracy")
    left.minorticks_off()
    left.set(xticks=depths, xticklabels=depths)
    right = left.twinx()
    right.plot(depths, [r["mean_pairwise_cosine"] for r in rows], "s--", color="tab:red", label="trained GCN")
    right.plot(depths, [r["cosine_of_smoothed_features"] for r in rows], "^:", color="tab:purple", label="Â^k X")
    right.set_ylabel("mean pairwise cosine similarity", color="tab:red", fontsize=8)
    right.legend(fontsize=7, loc="center right")
    left.set_title(f"over-smoothing: {model} on Cora")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)

"""Training, written out (day 32). Node classification trains full-batch: one step is one forward pass over the
whole graph, where every node's output is computed but only the 140 labelled training nodes enter the loss.
Each of `--seeds` seeds trains from scratch with early stopping on validation accuracy; the headline is the mean
± std of their test accuracies (the GCN paper's protocol). `--task recommend` trains in train_recommend.py.

    uv run graph train                        # quick preset: GCN on Cora, 10 seeds, under a minute on 2 CPU cores
    uv run graph train --preset gat           # GAT with its paper's recipe
    uv run graph train --task recommend       # LightGCN on MovieLens
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from dlshared.checkpoint import WEIGHTS_NAME, atomic_path, save_weights
from dlshared.cli import validate
from dlshared.seed import seed_everything
from dlshared.training import start_run

from .config import PROJECT, TrainConfig, check_relations
from .data import load_planetoid, split_sizes
from .evaluate import curves_figure, embedding_map, map_figure, mean_std, split_scores
from .model import NodeClassifier
from .sampled import fit_sampled


def fit(model, optimizer, graph, epochs: int, patience: int, meter, step: int) -> tuple[dict, list[dict], int]:
    """One seed: full-batch epochs with early stopping; the weights of the best validation epoch are loaded back.
    Returns that epoch's scores, the per-epoch history and the step counter."""
    best, best_state, history = {"epoch": 0, "val_accuracy": -1.0}, None, []
    for epoch in range(1, epochs + 1):
        # the step: forward over every node, loss on the labelled ones, backward, update
        model.train()
        logits = model(graph.x, graph.edge_index)  # [N, classes]
        loss = F.cross_entropy(logits[graph.train_mask], graph.y[graph.train_mask])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        meter.step(step, 1, loss=loss)

        # validation after every step (a full pass costs as much as the step; dropout off)
        scores = split_scores(model, graph)
        history.append(
            {
                "epoch": epoch,
                "train_loss": round(loss.item(), 4),
                "train_accuracy": scores["train"]["accuracy"],
                "val_accuracy": scores["val"]["accuracy"],
                "val_loss": scores["val"]["loss"],
            }
        )
        if scores["val"]["accuracy"] > best["val_accuracy"]:  # the first epoch of the best accuracy wins ties
            best = {"epoch": epoch, "val_accuracy": scores["val"]["accuracy"], **scores}
            best_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        elif patience and epoch - best["epoch"] >= patience:
            break  # no better validation accuracy for `patience` epochs
    model.load_state_dict(best_state)
    return best, history, step


def train(cfg: TrainConfig) -> dict:
    """Train as `cfg` says; returns the final metrics (also written to RUN/metrics.json)."""
    check_relations(validate(cfg))  # e.g. a recommender model for --task node: one line, before any folder
    if cfg.task == "recommend":
        from .train_recommend import train_recommend

        return train_recommend(cfg)

    # --- set-up: run folder, data, model, optimiser, resume ---
    run = start_run(PROJECT, cfg)
    accelerator, log = run.accelerator, run.log
    data = load_planetoid(cfg.data)
    # full-batch: one step per epoch on the whole graph, the same in every process; with --fanout, each epoch's
    # training nodes are split between the processes (sampled.py)
    graph = data.graph.to(accelerator.device)
    build_model = partial(
        NodeClassifier, cfg.model, data.num_features, len(data.classes), cfg.hidden, cfg.layers, cfg.dropout, cfg.heads
    )
    build_optimizer = partial(torch.optim.Adam, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model = build_model().to(accelerator.device)
    optimizer = build_optimizer(model.parameters())
    parameters = sum(p.numel() for p in model.parameters())
    card = {"data": data.name, "source": data.source, "classes": list(data.classes), "model": cfg.model}
    run.save_json({**card, "num_features": data.num_features, "parameters": parameters}, "card.json")
    log.print(f"data: {data.source}: {graph.num_nodes:,} nodes, {graph.num_edges:,} edges, {split_sizes(graph)}")
    log.print(f"model: {cfg.model}, {cfg.layers} layers, {parameters:,} parameters; {cfg.seeds} seeds")
    # a resumed run continues after its last finished seed; every seed starts from its own seed, so it is exact
    progress = run.resume(model, optimizer) or {"results": [], "step": 0}
    results, step = progress["results"], progress["step"]
    meter = run.meter(cfg.seeds * cfg.epochs, step, every=10, unit="epochs")

    # --- the seeds: each one trains a fresh model to its best validation epoch, then meets the test split ---
    for i in range(len(results), cfg.seeds):
        seed_everything(cfg.seed + i)
        model = build_model().to(accelerator.device)
        optimizer = build_optimizer(model.parameters())
        if cfg.fanout:  # GraphSAGE mini-batches: sampled neighbourhoods of cfg.batch_size seeds (sampled.py)
            best, history, step = fit_sampled(
                model, optimizer, graph, cfg.fanout, cfg.batch_size, cfg.epochs, cfg.patience, meter, step, accelerator
            )
        else:
            best, history, step = fit(model, optimizer, graph, cfg.epochs, cfg.patience, meter, step)
        results.append(
            {
                "seed": cfg.seed + i,
                "best_epoch": best["epoch"],
                "epochs": len(history),
                "val_accuracy": best["val"]["accuracy"],
                "test_accuracy": best["test"]["accuracy"],
            }
        )
        log.scalars({"seeds/test_accuracy": best["test"]["accuracy"]}, i)
        log.print(
            f"seed {cfg.seed + i}: best epoch {best['epoch']}, val {best['val']['accuracy']:.4f}, test {best['test']['accuracy']:.4f}"
        )
        publish = None
        if i == 0:  # the first seed's model is the run's model: its weights, curves and map
            publish = partial(save_weights, model, run.dir / WEIGHTS_NAME, {"seed": str(cfg.seed)})
            save_pictures(run, model, graph, data.classes, history)
        run.checkpoint(model, optimizer, None, publish, results=results, step=step)
    meter.close()

    # --- finish: mean ± std over the seeds ---
    test, val = mean_std([r["test_accuracy"] for r in results]), mean_std([r["val_accuracy"] for r in results])
    metrics = {
        "test_accuracy": test["mean"],
        "test_accuracy_std": test["std"],
        "val_accuracy": val["mean"],
        "seeds": len(results),
        "model_test_accuracy": results[0]["test_accuracy"],
        "train_seconds": round(meter.seconds, 1),
        "epochs_per_s": round(meter.rate, 1),
        "processes": accelerator.num_processes,
        "parameters": parameters,
        "data": data.source,
        "run_dir": str(run.dir),
        "per_seed": results,
    }
    summary = f"done: test accuracy {test['mean']:.4f} ± {test['std']:.4f} over {len(results)} seeds"
    return run.finish(metrics, f"{summary}, {meter.seconds:.1f} s, run folder {run.dir}")


def save_pictures(run, model, graph, classes: tuple[str, ...], history: list[dict]) -> None:
    """RUN/curves.png (loss and accuracy per epoch) and RUN/embeddings.png (the learned map of the nodes)."""
    if not run.is_main:
        return
    import matplotlib.pyplot as plt

    for name, fig in {
        "curves": curves_figure(history),
        "embeddings": map_figure(
            embedding_map(model, graph).cpu(), graph.y.cpu(), classes, "node representations (PCA)"
        ),
    }.items():
        with atomic_path(run.dir / f"{name}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        run.log.figure(name, fig, 0)
        plt.close(fig)

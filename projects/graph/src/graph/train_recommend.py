"""Training a recommender (day 39): BPR with one sampled negative per positive, the loop written out.

    train_recommend(PRESETS["recommend"])                          # LightGCN on the bundled MovieLens
    uv run torchrun --nproc-per-node 2 -m graph.cli train --task recommend     # the same over 2 processes

popularity and gfcf learn nothing: they are computed from the training interactions, ranked and saved. mf and
lightgcn train on (user, positive item, negative item) triples. Each epoch's order and negatives come from
generators seeded by (seed, epoch[, process]), not from the global RNG, so a run killed and resumed at an epoch
boundary draws exactly what an uninterrupted run draws.

The run folder holds, besides config.json / metrics.json / TensorBoard events / resume.pt:
    model.safetensors    the model's state dict (mf, lightgcn: embeddings; popularity: item counts; gfcf: its
                         ideal-filter vectors; lightgcn and gfcf rebuild their graph from graph.safetensors)
    graph.safetensors    train_edges [2, E], test_edges [2, E'] as (user index, item index)
    interactions.json    user_ids, item_ids (index -> the source's id), titles (item id -> title)
"""

from __future__ import annotations

import math
import time
from functools import partial

import numpy as np
import torch
from safetensors.torch import save_file

from dlshared.checkpoint import WEIGHTS_NAME, atomic_path, save_weights
from dlshared.cli import UserError
from dlshared.seed import seed_everything
from dlshared.training import epochs_for, start_run

from .config import PROJECT, TrainConfig, check_relations
from .rank import rank_metrics
from .ratings import Interactions, load_interactions
from .recommender import bpr_loss, build_recommender, sample_negatives, training_keys

COMPUTED = ("popularity", "gfcf")
"""Models without parameters to learn: no epochs, no optimizer, no resume file."""
GRAPH_NAME, INTERACTIONS_NAME = "graph.safetensors", "interactions.json"


def derived_seed(*numbers: int) -> int:
    """One 63-bit seed from several numbers (seed, epoch, process): different streams that never collide."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def save_interactions(run, data: Interactions, model: str) -> None:
    """What export and recommend need to map indices back to ids and titles, and the split itself."""
    titles = {i: data.item_titles[i] for i in data.item_ids if i in data.item_titles}
    maps = {"source": data.source, "model": model, "num_users": data.num_users, "num_items": data.num_items}
    run.save_json({**maps, "user_ids": data.user_ids, "item_ids": data.item_ids, "titles": titles}, INTERACTIONS_NAME)
    if run.is_main:
        with atomic_path(run.dir / GRAPH_NAME) as tmp:
            save_file(
                {"train_edges": data.train_edges.contiguous(), "test_edges": data.test_edges.contiguous()}, str(tmp)
            )


def train_recommend(cfg: TrainConfig) -> dict:
    """Fit (or compute) the recommender `cfg.model` names; returns the final metrics (also RUN/metrics.json)."""
    # --- set-up: processes, run folder, data, model; all of it before the first step ---
    check_relations(cfg)
    if cfg.task != "recommend":
        raise UserError(f"--task {cfg.task}: train_recommend trains --task recommend")
    run = start_run(PROJECT, cfg)
    accelerator, log = run.accelerator, run.log
    seed_everything(cfg.seed)  # the initial embeddings
    data = load_interactions(cfg.data, cfg.min_rating, cfg.test_fraction, cfg.split_seed)
    save_interactions(run, data, cfg.model)
    started = time.perf_counter()  # popularity and gfcf: building the model is all their "training"
    model = build_recommender(cfg.model, data.num_users, data.num_items, data.train_edges, cfg)
    counts = {
        "users": data.num_users,
        "items": data.num_items,
        "train_interactions": data.train_edges.shape[1],
        "test_interactions": data.test_edges.shape[1],
    }
    log.print(f"data: {data.source}: {', '.join(f'{v:,} {k}' for k, v in counts.items())}; model: {cfg.model}")
    k_names = (f"recall@{cfg.k}", f"ndcg@{cfg.k}")
    if cfg.model in COMPUTED:
        return finish_computed(run, cfg, model.to(accelerator.device), data, counts, k_names, started)

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)  # no weight_decay: the L2 is on the batch only
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)  # without DDP's wrapper: what is ranked and saved
    progress = run.resume(raw_model, optimizer) or {"epoch": 0, "step": 0, "history": []}
    epoch, step, history = progress["epoch"], progress["step"], progress["history"]

    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    all_users, all_items = data.train_edges  # [E] each: the training positives
    keys = training_keys(data.train_edges, data.num_items)  # for rejecting negatives the user chose
    usable = len(all_users) - len(all_users) % world  # equal shares: the last E % world of each order sit out
    local_batch = max(1, cfg.batch_size // world)  # the global batch stays cfg.batch_size under DDP
    steps_per_epoch = math.ceil((usable // world) / local_batch)
    if steps_per_epoch == 0:
        raise UserError(f"{data.source}: {len(all_users)} training interaction(s) for {world} process(es)")
    epochs = epochs_for(cfg.epochs, cfg.min_steps, steps_per_epoch)  # training length follows the data size
    meter = run.meter(epochs * steps_per_epoch, step, every=10, unit="triples")
    trained_epochs, epoch_seconds = 0, 0.0

    # --- the loop: an epoch of BPR steps over (user, positive, negative) triples, then ranking and a checkpoint ---
    while epoch < epochs:
        epoch_started = time.perf_counter()
        order = torch.randperm(len(all_users), generator=torch.Generator().manual_seed(derived_seed(cfg.seed, epoch)))
        share = order[:usable][rank::world]  # this process's positives (all of them with one process)
        users, pos = all_users[share], all_items[share]  # [E / world] each
        negatives_rng = torch.Generator().manual_seed(derived_seed(cfg.seed, epoch, rank))
        neg = sample_negatives(users, data.num_items, keys, negatives_rng)  # [E / world], fresh every epoch
        model.train()
        loss_sum = torch.zeros((), device=device)
        for batch in torch.arange(len(users)).split(local_batch):
            u, p, n = users[batch].to(device), pos[batch].to(device), neg[batch].to(device)  # [B] each
            pos_scores, neg_scores, reg = model(u, p, n)  # [B], [B], []
            loss = bpr_loss(pos_scores, neg_scores) + cfg.weight_decay * reg
            accelerator.backward(loss)  # under DDP: gradients averaged over the processes here
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            step += 1
            meter.step(step, len(batch) * world, loss=loss)
        epoch += 1
        trained_epochs, epoch_seconds = trained_epochs + 1, epoch_seconds + time.perf_counter() - epoch_started

        with meter.paused():
            train_loss = accelerator.reduce(loss_sum, "mean").item() / steps_per_epoch  # mean over processes
            if epoch % cfg.eval_every == 0 or epoch == epochs:
                ranked = rank_metrics(raw_model, data, cfg.k)  # every process ranks its share of the users
                history.append({"epoch": epoch, "train_loss": round(train_loss, 6), **ranked})
                log.scalars({f"test/{name}": ranked[name] for name in k_names}, step)
                log.print(
                    f"epoch {epoch}/{epochs}  loss {train_loss:.4f}  "
                    + "  ".join(f"{name} {ranked[name]:.4f}" for name in k_names)
                    + f"  {meter.rate:,.0f} triples/s"
                )
            publish = partial(save_weights, raw_model, run.dir / WEIGHTS_NAME, {"epoch": str(epoch)})
            run.checkpoint(raw_model, optimizer, None, publish, epoch=epoch, step=step, history=history)
    meter.close()

    # --- finish: the ranking of the final model (also what a resumed, already finished run reports) ---
    test = rank_metrics(raw_model, data, cfg.k)
    metrics = {
        **test,
        "model": cfg.model,
        "epochs": epoch,
        "steps": step,
        "train_seconds": round(meter.seconds, 1),
        "epoch_seconds": round(epoch_seconds / max(1, trained_epochs), 3),
        "triples_per_s": round(meter.rate, 1),
        "processes": world,
        **counts,
        "run_dir": str(run.dir),
        "history": history,
    }
    summary = "  ".join(f"{name} {test[name]:.4f}" for name in k_names)
    return run.finish(metrics, f"done: {cfg.model} {summary}, {meter.seconds:.1f} s, run folder {run.dir}")


def finish_computed(run, cfg, model, data: Interactions, counts: dict, k_names: tuple, started: float) -> dict:
    """popularity and gfcf: nothing to fit, so no loop: rank, save the weights (buffers), report."""
    test = rank_metrics(model, data, cfg.k)
    if run.is_main:
        save_weights(model, run.dir / WEIGHTS_NAME, {"epoch": "0", "model": cfg.model})
    metrics = {
        **test,
        "model": cfg.model,
        "epochs": 0,
        "train_seconds": round(time.perf_counter() - started, 1),
        "epoch_seconds": 0.0,
        "processes": run.accelerator.num_processes,
        **counts,
        "run_dir": str(run.dir),
        "history": [],
    }
    summary = "  ".join(f"{name} {test[name]:.4f}" for name in k_names)
    return run.finish(metrics, f"done: {cfg.model} {summary}, run folder {run.dir}")

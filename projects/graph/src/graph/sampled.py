"""GraphSAGE training on neighbour-sampled mini-batches (day 32, "scale"): `fit_sampled`, the mini-batch twin of
train.py's `fit`.

`fit` runs the model over the whole graph on every step. Here an epoch is a pass over the training nodes in
batches of seeds; each batch is the seeds' sampled neighbourhood (sampler.py), the model runs over that small
subgraph only, and the loss is taken on the seeds, the first `batch.batch_size` nodes of the batch. Evaluation
stays full-batch: a GraphSAGE layer averages whatever neighbours it is given, so on the whole graph it computes
every node's exact output (no sampling noise in the validation accuracy that picks the best epoch).

Under DDP every process trains on its own share of each epoch's seeds and the gradients are averaged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch_geometric.loader import NodeLoader

from dlshared.cli import UserError

from .evaluate import split_scores
from .sampler import UniformNeighborSampler


def sampling_seed(accelerator) -> int:
    """The seed of the shuffles and the neighbour draws, from torch's global RNG (which train.py seeds once per
    model): rank 0's draw, broadcast, so every process shuffles the same way even if their RNGs differ."""
    from accelerate.utils import broadcast

    seed = torch.randint(2**32, 2**62, (1,)).to(accelerator.device)
    return int(broadcast(seed, from_process=0).item())


def epoch_shard(train_nodes: torch.Tensor, seed: int, epoch: int, rank: int, world: int) -> torch.Tensor:
    """This process's seeds for one epoch: a permutation of the training nodes drawn from (seed, epoch) alone, so
    the same on every process, of which process `rank` takes every `world`-th node from its rank on, cut to
    len // world nodes. The cut matters: every process then makes the same number of steps. DDP all-reduces
    the gradients at every backward; a process with one batch more would wait forever for the others."""
    order = torch.randperm(train_nodes.numel(), generator=torch.Generator().manual_seed(seed + epoch))
    return train_nodes[order][rank::world][: train_nodes.numel() // world]  # [N_train // world]


def fit_sampled(
    model, optimizer, graph, fanout, batch_size: int, epochs: int, patience: int, meter, step: int, accelerator
) -> tuple[dict, list[dict], int]:
    """One seed, trained on sampled mini-batches: the contract of train.py's `fit`. Epochs with early stopping
    on the full-graph validation accuracy; the best epoch's weights are loaded back into `model`. Returns that
    epoch's scores (split_scores' "train"/"val"/"test", "epoch", "val_accuracy"), the per-epoch history and
    the step counter (one step per epoch, as `fit`'s meter counts).

    `model` and `optimizer` are plain; they are prepared here (DDP under several processes, precision), so
    the caller keeps and saves the plain `model`. `batch_size` seeds per step in all, batch_size // world per
    process, as train_recommend.py splits its batches. The sampler draws from its own generator, seeded from
    `sampling_seed` and the rank: different neighbourhoods per process, the same ones on a rerun.
    """
    rank, world = accelerator.process_index, accelerator.num_processes
    seed = sampling_seed(accelerator)
    net = model  # the plain module: evaluated and saved; `model` becomes the one that trains (DDP-wrapped)
    model, optimizer = accelerator.prepare(model, optimizer)
    # neighbour draws: seed - 1 - rank, never one of the shuffles' seed + epoch (epoch >= 1)
    sampler = UniformNeighborSampler(graph, fanout, torch.Generator().manual_seed(seed - 1 - rank))
    train_nodes = graph.train_mask.nonzero().squeeze(1).cpu()  # [N_train]
    if train_nodes.numel() < world:
        raise UserError(f"{train_nodes.numel()} training node(s) for {world} processes: at least one each")
    local_batch = max(1, batch_size // world)
    best, best_state, history = {"epoch": 0, "val_accuracy": -1.0}, None, []
    for epoch in range(1, epochs + 1):
        seeds = epoch_shard(train_nodes, seed, epoch, rank, world)  # [N_train // world], already shuffled
        loader = NodeLoader(graph, node_sampler=sampler, input_nodes=seeds, batch_size=local_batch)
        model.train()
        loss_sum = torch.zeros((), device=accelerator.device)
        for batch in loader:  # batch.x [n, F], batch.edge_index [2, e] in local ids, seeds = nodes 0 .. B - 1
            logits = model(batch.x, batch.edge_index)[: batch.batch_size]  # [B, classes]: the seeds' outputs
            loss = F.cross_entropy(logits, batch.y[: batch.batch_size])
            accelerator.backward(loss)  # under DDP: the gradients are averaged over the processes here
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach() * batch.batch_size
        step += 1
        # the mean over every process's seeds (they all have seeds.numel() of them)
        train_loss = accelerator.reduce(loss_sum, "mean").item() / seeds.numel()
        meter.step(step, 1, loss=train_loss)

        # validation on the whole graph: every process computes the same scores from the same (all-reduced)
        # weights, so all of them take the same early-stopping decision and none is left waiting
        scores = split_scores(net, graph)
        history.append(
            {
                "epoch": epoch,
                "train_loss": round(train_loss, 4),
                "train_accuracy": scores["train"]["accuracy"],
                "val_accuracy": scores["val"]["accuracy"],
                "val_loss": scores["val"]["loss"],
                "batches": math.ceil(seeds.numel() / local_batch),
                "seeds": seeds.numel(),
            }
        )
        if scores["val"]["accuracy"] > best["val_accuracy"]:  # the first epoch of the best accuracy wins ties
            best = {"epoch": epoch, "val_accuracy": scores["val"]["accuracy"], **scores}
            best_state = {name: tensor.clone() for name, tensor in net.state_dict().items()}
        elif patience and epoch - best["epoch"] >= patience:
            break  # no better validation accuracy for `patience` epochs
    net.load_state_dict(best_state)
    return best, history, step

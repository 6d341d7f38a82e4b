"""Neighbour sampling (sampler.py), sampled training (sampled.py) and the generated graphs of bench.py."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_file
from torch_geometric.data import Data
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import NodeSamplerInput

from dlshared.processes import run_distributed
from dlshared.seed import seed_everything
from graph.bench import gowalla_like, measure_sampling, profile_sampled_step, sbm_graph
from graph.config import PRESETS
from graph.data import load_planetoid
from graph.evaluate import split_scores
from graph.model import NodeClassifier
from graph.sampled import epoch_shard, fit_sampled
from graph.sampler import UniformNeighborSampler, neighbor_loader
from graph.train import train as train_graph

# a hand graph: node -> its in-neighbours (the sources of the edges into it)
IN_NEIGHBOURS = {
    0: [1, 2, 3, 4, 5],
    1: [0, 6],
    2: [0],
    3: [7, 0, 6],
    4: [],
    5: [0, 1, 2, 3, 4, 6, 7],
    6: [5],
    7: [3, 4],
}


def hand_graph() -> Data:
    pairs = [(s, t) for t, sources in IN_NEIGHBOURS.items() for s in sources]
    edge_index = torch.tensor(pairs).T  # [2, E]
    return Data(x=torch.arange(8.0)[:, None] * 10, y=torch.arange(8), edge_index=edge_index, num_nodes=8)


def sample(sampler: UniformNeighborSampler, seeds: list[int]):
    return sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.tensor(seeds)))


class Silent:
    def step(self, step, items, **scalars):
        pass


@pytest.mark.parametrize("seed", range(5))
def test_sampled_edges_exist_point_into_the_previous_hop_and_respect_the_fanout(seed):
    graph, fanout, seeds = hand_graph(), [3, 2], [0, 4, 6]
    out = sample(UniformNeighborSampler(graph, fanout, torch.Generator().manual_seed(seed)), seeds)
    assert out.node[:3].tolist() == seeds  # seeds first, in order
    assert len(set(out.node.tolist())) == len(out.node)  # every node once
    assert sum(out.num_sampled_nodes) == len(out.node) and sum(out.num_sampled_edges) == len(out.row)
    edges = {tuple(e) for e in graph.edge_index.T.tolist()}
    hop_starts = [0, *torch.tensor(out.num_sampled_nodes).cumsum(0).tolist()]  # local ids of each hop's nodes
    edge_starts = [0, *torch.tensor(out.num_sampled_edges).cumsum(0).tolist()]
    for hop, k in enumerate(fanout):
        rows = out.row[edge_starts[hop] : edge_starts[hop + 1]]
        cols = out.col[edge_starts[hop] : edge_starts[hop + 1]]
        frontier = range(hop_starts[hop], hop_starts[hop + 1])
        assert all(c in frontier for c in cols.tolist())  # targets: the nodes the previous hop reached
        ids = out.edge[edge_starts[hop] : edge_starts[hop + 1]]
        for source, target, e in zip(out.node[rows].tolist(), out.node[cols].tolist(), ids.tolist(), strict=True):
            assert (source, target) in edges  # a real edge, source -> target
            assert graph.edge_index[:, e].tolist() == [source, target]  # `edge` holds global edge ids
        picked = {t: [] for t in frontier}
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            picked[c].append(out.node[r].item())
        for target, neighbours in picked.items():
            degree = len(IN_NEIGHBOURS[out.node[target].item()])
            assert len(neighbours) == min(k, degree)  # at most k, and all of them when there are fewer
            assert len(set(neighbours)) == len(neighbours)  # without replacement


def test_a_fanout_of_minus_one_takes_every_neighbour_and_empty_frontiers_are_fine():
    out = sample(UniformNeighborSampler(hand_graph(), [-1, -1, -1]), [4])  # node 4 has no in-neighbours
    assert out.node.tolist() == [4] and out.num_sampled_edges == [0, 0, 0]
    out = sample(UniformNeighborSampler(hand_graph(), [-1]), [5])
    assert sorted(out.node[out.row].tolist()) == IN_NEIGHBOURS[5]


def test_each_neighbour_is_picked_with_frequency_k_over_degree():
    # 4,000 disjoint stars (20 leaves -> 1 centre), every centre sampled once with k = 5 in one batch: each leaf
    # should be picked ~ 4000 * 5 / 20 = 1000 times. Pearson's statistic over the 20 leaf positions, 19 degrees
    # of freedom: 43.8 is the 0.1% critical value (the generator is seeded, so the test is deterministic).
    stars, leaves, k = 4000, 20, 5
    centre = torch.arange(stars) * (leaves + 1)
    source = (centre[:, None] + torch.arange(1, leaves + 1)).flatten()
    graph = Data(edge_index=torch.stack([source, centre.repeat_interleave(leaves)]), num_nodes=stars * (leaves + 1))
    out = sample(UniformNeighborSampler(graph, [k], torch.Generator().manual_seed(0)), centre.tolist())
    assert out.num_sampled_edges == [stars * k]
    leaf_position = (out.node[out.row] % (leaves + 1)).tolist()  # 1 .. 20 within its star
    counts = Counter(leaf_position)
    expected = stars * k / leaves
    chi2 = sum((counts[p] - expected) ** 2 / expected for p in range(1, leaves + 1))
    assert chi2 < 43.8, counts
    # the edges come grouped by centre, k per centre, never the same leaf twice
    assert all(len(set(leaf_position[i * k : (i + 1) * k])) == k for i in range(stars))


def test_the_same_seed_gives_the_same_batches_and_another_seed_others():
    graph = load_planetoid().graph

    def batches(seed: int) -> list:
        loader = neighbor_loader(graph, [5, 5], graph.train_mask, 32, True, torch.Generator().manual_seed(seed))
        return [(b.n_id, b.edge_index) for b in loader]

    first, again, other = batches(0), batches(0), batches(1)
    assert len(first) == math.ceil(140 / 32)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    # one epoch covers every training node once, as seeds
    seeds = torch.cat([n_id[: min(32, 140 - 32 * i)] for i, (n_id, _) in enumerate(first)])
    assert sorted(seeds.tolist()) == graph.train_mask.nonzero().flatten().tolist()


def test_a_loader_batch_is_the_usual_pyg_mini_batch():
    graph = load_planetoid().graph
    batch = next(iter(neighbor_loader(graph, [10, 10], graph.train_mask, 16)))
    assert batch.batch_size == 16 and batch.n_id[:16].tolist() == graph.train_mask.nonzero().flatten()[:16].tolist()
    assert torch.equal(batch.x, graph.x[batch.n_id]) and torch.equal(batch.y, graph.y[batch.n_id])
    assert batch.edge_index.max() < batch.num_nodes
    assert torch.equal(graph.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])  # local -> global


def test_graphsage_trained_on_sampled_batches_learns_cora():
    data = load_planetoid()
    seed_everything(0)
    model = NodeClassifier("sage", data.num_features, len(data.classes), 32, 2, 0.5, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    best, history, step = fit_sampled(
        model, optimizer, data.graph, (10, 10), 16, 20, 0, Silent(), 0, Accelerator(cpu=True)
    )
    assert step == len(history) == 20 and history[0]["batches"] == math.ceil(140 / 16)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert best["test"]["accuracy"] > 0.7  # ~0.81 (full-batch GCN: ~0.81)
    assert split_scores(model, data.graph) == {s: best[s] for s in ("train", "val", "test")}  # best weights back


def test_shards_are_disjoint_equal_and_cover_all_but_a_remainder():
    train = torch.arange(100, 203)  # 103 nodes for 4 processes: 25 each, 3 sit out
    shards = [epoch_shard(train, 7, 1, rank, 4) for rank in range(4)]
    assert [len(s) for s in shards] == [25] * 4
    together = torch.cat(shards)
    assert len(set(together.tolist())) == 100 and set(together.tolist()) <= set(train.tolist())
    assert not torch.equal(epoch_shard(train, 7, 2, 0, 4), shards[0])  # a new order every epoch


def test_two_process_ddp_equals_averaging_the_two_shards_gradients(tmp_path):
    # `graph train --fanout` under 2-process gloo DDP; then what fit_sampled does there, written out in one
    # process: per step, the mean of the two processes' losses on their own shard's batch (each with its own
    # sampler). The DDP run must end with these weights.
    epochs, batch_size, fanout = 2, 32, (10, 10)
    cfg = dataclasses.replace(
        PRESETS["tiny"],
        model="sage",
        fanout=fanout,
        batch_size=batch_size,
        epochs=epochs,
        seeds=1,
        dropout=0.0,
        device="cpu",
        out=tmp_path,
        name="ddp",
    )
    rank0, rank1 = run_distributed(train_graph, cfg)
    assert rank0["processes"] == rank1["processes"] == 2
    assert rank0["per_seed"] == rank1["per_seed"]  # DDP kept the replicas identical: the same scores
    saved = load_file(tmp_path / "graph" / "ddp" / "model.safetensors")

    data = load_planetoid()
    graph, train = data.graph, data.graph.train_mask.nonzero().squeeze(1)
    seed_everything(cfg.seed)  # what train does before each seed's model
    model = NodeClassifier("sage", data.num_features, len(data.classes), cfg.hidden, 2, 0.0, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    seed = int(torch.randint(2**32, 2**62, (1,)))  # sampling_seed's draw
    samplers = [UniformNeighborSampler(graph, fanout, torch.Generator().manual_seed(seed - 1 - r)) for r in (0, 1)]
    best_accuracy, best_state = -1.0, None
    for epoch in range(1, epochs + 1):
        loaders = [
            NodeLoader(
                graph, node_sampler=samplers[r], input_nodes=epoch_shard(train, seed, epoch, r, 2), batch_size=16
            )
            for r in (0, 1)
        ]
        model.train()
        for batches in zip(*loaders, strict=True):
            losses = [F.cross_entropy(model(b.x, b.edge_index)[: b.batch_size], b.y[: b.batch_size]) for b in batches]
            (sum(losses) / 2).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        accuracy = split_scores(model, graph)["val"]["accuracy"]
        if accuracy > best_accuracy:
            best_accuracy, best_state = accuracy, {n: t.clone() for n, t in model.state_dict().items()}
    assert best_accuracy == rank0["per_seed"][0]["val_accuracy"]
    for name, tensor in best_state.items():
        torch.testing.assert_close(saved[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_sbm_graph_has_the_requested_size_and_mostly_intra_block_edges():
    graph = sbm_graph(3000, 6, 10, 16, seed=0)
    assert graph.num_nodes == 3000 and graph.x.shape == (3000, 16) and int(graph.y.max()) == 5
    assert graph.num_edges == 3000 * 10  # each of the 15,000 undirected edges in both directions
    source, target = graph.edge_index
    assert (source != target).all()
    keys = source * 3000 + target
    assert keys.unique().numel() == graph.num_edges  # no duplicates
    assert torch.equal(keys.sort().values, (target * 3000 + source).sort().values)  # undirected
    assert (graph.y[source] == graph.y[target]).float().mean() > 0.75  # p_in 0.8 (+ chance)
    masks = graph.train_mask.int() + graph.val_mask.int() + graph.test_mask.int()
    assert (masks == 1).all() and graph.train_mask.sum() == 600
    assert torch.equal(sbm_graph(3000, 6, 10, 16, seed=0).edge_index, graph.edge_index)  # seeded


def test_measure_sampling_reports_a_row():
    row = measure_sampling(2000, "sampled", "cpu")
    assert row["nodes"] == 2000 and row["edges"] == 2000 * 12 and row["steps"] == 1
    assert row["epoch_s"] > 0 and row["peak_mib"] >= 0 and row["sample_ms_per_batch"] > 0


def test_bench_profile_records_sampled_steps_with_their_sampling(tmp_path):
    summary = profile_sampled_step(tmp_path / "profile", torch.device("cpu"), num_nodes=2000)
    assert summary["nodes"] == 2000 and summary["profiled_steps"] == 3
    table = (tmp_path / "profile" / "top_ops.txt").read_text(encoding="utf-8")
    assert "aten::mm" in table or "aten::addmm" in table  # SAGE's linear layers
    trace = json.loads((tmp_path / "profile" / "trace.json").read_text(encoding="utf-8"))
    assert any(event.get("name") == "ProfilerStep#4" for event in trace["traceEvents"])


def test_gowalla_like_pairs_are_distinct_and_popularity_is_skewed():
    users, items, n = 300, 400, 6000
    edges = gowalla_like(0, users, items, n)
    assert edges.shape == (2, n) and edges[0].max() < users and edges[1].max() < items
    assert (edges[0] * items + edges[1]).unique().numel() == n
    counts = torch.bincount(edges[1], minlength=items).sort(descending=True).values
    assert counts[: items // 10].sum() > 0.25 * n  # the top 10% of items hold well over 10% of the interactions

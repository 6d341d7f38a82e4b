"""Neighbour sampling for GraphSAGE mini-batches (day 32, "scale"), in plain torch.

Full-batch training runs every layer over every edge of the graph on every step: memory grows with
edges x width, and a graph of a billion edges does not fit. GraphSAGE (Hamilton et al. 2017) trains on
mini-batches instead. For a batch of seed nodes it samples at most k1 incoming neighbours of each seed, then at
most k2 incoming neighbours of each node reached that way, one hop per layer; an L-layer model run on that
small subgraph computes each seed's output from at most k1 + k1 * k2 + ... nodes, whatever the graph's size.

PyG's NeighborLoader does this in C++ (pyg-lib or torch-sparse, neither of which installs everywhere). Here the
same algorithm is a dozen tensor operations, plugged into PyG's NodeLoader, which turns what a sampler returns
(a SamplerOutput) into the usual mini-batch Data:
    batch.x, batch.y     [n, F], [n]   features and labels of the sampled nodes; the first batch.batch_size
                                       of them are the seeds, in the order they were asked for
    batch.edge_index     [2, e]        local ids; row 0 = source (the sampled neighbour), row 1 = target (the
                                       node it was sampled for): messages flow from row 0 to row 1, as in PyG
    batch.n_id, batch.e_id             the sampled nodes' and edges' ids in the whole graph
    batch.num_sampled_nodes/_edges     per hop: [seeds, new at hop 1, ...], [edges of hop 1, ...]

Randomness: a `torch.Generator` given to the sampler (and to the loader, for the shuffle), or else torch's
global RNG (seeded by `torch.manual_seed`). The same seed gives the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import BaseSampler, NodeSamplerInput, SamplerOutput

KEY_BITS = 31  # random bits per candidate edge; the frontier position sits above them in one int64 sort key


class UniformNeighborSampler(BaseSampler):
    """Samples up to k incoming neighbours per node and hop, uniformly without replacement.

    Built once per graph: the edges sorted by target (a CSC view), so that node v's incoming edges are the slice
    colptr[v]:colptr[v + 1] of `self.source`. A k of -1 takes every neighbour (as PyG's NeighborLoader does).
    The sampler keeps a global -> local id table of N entries that every batch fills and clears again: use it
    from one thread (a DataLoader worker process gets its own copy).
    """

    def __init__(self, data, num_neighbors: Sequence[int], generator: torch.Generator | None = None):
        num_nodes = data.num_nodes
        source, target = data.edge_index.cpu()  # [E], [E]: edge j carries a message source[j] -> target[j]
        order = torch.argsort(target, stable=True)  # stable: ties keep the graph's edge order, so runs repeat
        self.source = source[order]  # [E] the sources, grouped by target
        self.edge_id = order  # [E] each grouped edge's column in data.edge_index: PyG's `e_id`
        self.colptr = torch.zeros(num_nodes + 1, dtype=torch.long)  # [N + 1]
        self.colptr[1:] = torch.bincount(target, minlength=num_nodes).cumsum(0)
        self.num_neighbors = [int(k) for k in num_neighbors]
        self.generator = generator
        if num_nodes >= 2 ** (63 - KEY_BITS):
            raise ValueError(f"{num_nodes:,} nodes: too many for the {KEY_BITS}-bit sort keys")
        self.local = torch.full((num_nodes,), -1, dtype=torch.long)  # global id -> id in the batch, -1: absent

    def sample_hop(self, frontier: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For each frontier node, up to k of its incoming edges, drawn uniformly without replacement.

        Returns, per sampled edge, its source (global id), the position of its target in `frontier`, and its
        global edge id; the edges come grouped by target. No Python loop over nodes: every candidate edge of
        every frontier node gets a random key, one sort orders each node's candidates randomly, and the first
        k of each node are kept. A uniformly random order's first k are a uniform k-subset.
        """
        start = self.colptr[frontier]  # [F] where each node's incoming edges begin in `self.source`
        degree = self.colptr[frontier + 1] - start  # [F]
        # one entry per candidate edge: the frontier node it belongs to, and its rank within that node
        owner = torch.repeat_interleave(degree)  # [C] = repeat_interleave(arange(F), degree)
        first = degree.cumsum(0) - degree  # [F] where each node's candidates begin in [0, C)
        rank = torch.arange(owner.numel()) - first[owner]  # [C] 0, 1, ..., degree - 1 per node
        position = start[owner] + rank  # [C] index into self.source / self.edge_id
        if k >= 0:
            # key = (owner, random bits) in one int64: the owner is the high part and is already sorted, so one
            # sort keeps every node's candidates in their slot and shuffles them within it; `rank` still counts
            # 0, 1, ... per node, and `rank < k` keeps the first k of a random order. (Nodes with at most k
            # neighbours are shuffled for nothing: skipping them costs more boolean indexing than it saves.)
            bits = torch.randint(2**KEY_BITS, owner.shape, generator=self.generator)  # [C]
            order = ((owner << KEY_BITS) | bits).argsort()  # [C] shuffled within each node's slot
            keep = (rank < k).nonzero().squeeze(1)  # [c] the first min(k, degree) slots of each node
            position, owner = position[order[keep]], owner[keep]  # (the shuffle leaves `owner` as it was)
        return self.source[position], owner, self.edge_id[position]

    def first_seen(self, source: torch.Tensor) -> torch.Tensor:
        """The nodes of `source` not yet in the batch, each once, in order of first appearance (as pyg-lib).

        Deduplicated without a sort: every candidate writes its position into the id table at its node, the
        smallest position winning (scatter "amin": the same result in any order of writes), and a candidate is
        its node's first appearance if it reads its own position back. The caller then overwrites the entries
        with the nodes' local ids. A few times faster than `.unique()`, which sorts.
        """
        fresh = source[self.local[source] < 0]  # [c] candidates whose node is not in the batch yet
        position = torch.arange(fresh.numel())  # [c]
        self.local.scatter_reduce_(0, fresh, position, "amin", include_self=False)
        return fresh[self.local[fresh] == position]  # [n_new]

    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs) -> SamplerOutput:
        """One mini-batch: the seeds first, then the nodes each hop reaches for the first time."""
        seeds = index.node  # [B] global ids (distinct: a loader's input nodes are)
        local = self.local
        local[seeds] = torch.arange(seeds.numel())  # the seeds are local nodes 0 .. B - 1
        nodes, rows, cols, edges = [seeds], [], [], []
        frontier, frontier_start, count = seeds, 0, seeds.numel()
        try:
            for k in self.num_neighbors:
                source, owner, edge = self.sample_hop(frontier, k)  # [e] global, [e] position in frontier, [e]
                # the sources new to the batch are the next frontier; the others have had (or are having) their
                # own neighbours sampled already
                new = self.first_seen(source)  # [n_new]
                local[new] = torch.arange(count, count + new.numel())
                rows.append(local[source])  # [e] local source
                cols.append(frontier_start + owner)  # [e] local target: a frontier's local ids are contiguous
                edges.append(edge)
                nodes.append(new)
                frontier, frontier_start, count = new, count, count + new.numel()
        except BaseException:
            local.fill_(-1)  # an interrupted batch may leave anything in the table
            raise
        node = torch.cat(nodes)  # [n] global ids, seeds first
        local[node] = -1  # clear the table for the next batch (cheaper than refilling all N entries)
        return SamplerOutput(
            node=node,
            row=torch.cat(rows) if rows else seeds.new_empty(0),
            col=torch.cat(cols) if cols else seeds.new_empty(0),
            edge=torch.cat(edges) if edges else seeds.new_empty(0),
            num_sampled_nodes=[n.numel() for n in nodes],
            num_sampled_edges=[r.numel() for r in rows],
            metadata=(index.input_id, index.time),  # NodeLoader reads batch_size = len(input_id) from here
        )

    def sample_from_edges(self, index, neg_sampling=None):
        raise NotImplementedError("UniformNeighborSampler samples from nodes only (link prediction is not taught)")


def neighbor_loader(
    data,
    num_neighbors: Sequence[int],
    input_nodes: torch.Tensor | None = None,
    batch_size: int = 1,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    **kwargs,
) -> NodeLoader:
    """A drop-in for `torch_geometric.loader.NeighborLoader(data, num_neighbors, input_nodes=..., ...)`: batches
    of `batch_size` seeds from `input_nodes` (ids or a boolean mask; None: every node), each with its sampled
    neighbourhood. `generator` drives both the shuffle and the sampling (None: torch's global RNG). Other keyword
    arguments go to torch's DataLoader (drop_last, num_workers, ...); with num_workers > 0 leave `generator`
    None: every worker would copy the same generator, while DataLoader seeds each worker's global RNG apart."""
    sampler = UniformNeighborSampler(data, num_neighbors, generator)
    return NodeLoader(
        data,
        node_sampler=sampler,
        input_nodes=input_nodes,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        **kwargs,
    )

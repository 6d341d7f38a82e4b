"""recommender.py and rank.py against hand computations: BPR, LightGCN's propagation, GF-CF, the metrics."""

from __future__ import annotations

import math
import time
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from graph.rank import rank_metrics
from graph.ratings import Interactions
from graph.recommender import (
    GFCF,
    LightGCNRecommender,
    bpr_loss,
    build_recommender,
    sample_negatives,
    training_keys,
)


def interactions(num_users, num_items, train, test) -> Interactions:
    as_edges = lambda pairs: torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T  # noqa: E731
    ids = lambda n: [str(i) for i in range(n)]  # noqa: E731
    return Interactions(num_users, num_items, as_edges(train), as_edges(test), ids(num_users), ids(num_items))


def test_bpr_loss_is_the_mean_negative_log_sigmoid_of_the_margin():
    pos = torch.tensor([2.0, -1.0, 0.0, 30.0, -40.0])
    neg = torch.tensor([1.0, 1.0, 0.0, -30.0, 40.0])
    reference = np.mean(
        [-math.log(1 / (1 + math.exp(-(p - n)))) for p, n in zip(pos.tolist(), neg.tolist(), strict=True)]
    )
    assert bpr_loss(pos, neg).item() == pytest.approx(reference, rel=1e-6)  # 80.0 for the last: no overflow
    assert bpr_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(2))


def test_lightgcn_scores_are_the_mean_of_hand_propagated_layers():
    # 3 users, 2 items: u0-i0, u0-i1, u1-i0, u2-i1; nodes 0..2 users, 3..4 items
    edges = [(0, 0), (0, 1), (1, 0), (2, 1)]
    model = LightGCNRecommender(3, 2, torch.tensor(edges).T, dim=2, layers=2)
    x0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0], [0.5, 3.0]])
    with torch.no_grad():
        model.gnn.embedding.weight.copy_(x0)

    neighbours = {v: [] for v in range(5)}
    for u, i in edges:
        neighbours[u].append(3 + i)
        neighbours[3 + i].append(u)
    layers = [[np.array(row) for row in x0.tolist()]]  # layer 0: one vector per node
    for _ in range(2):  # x_v <- sum over neighbours w of x_w / sqrt(deg v * deg w), node by node
        prev = layers[-1]
        layers.append(
            [sum(prev[w] / math.sqrt(len(neighbours[v]) * len(neighbours[w])) for w in neighbours[v]) for v in range(5)]
        )
    final = [sum(layer[v] for layer in layers) / 3 for v in range(5)]  # the mean of layers 0, 1, 2
    expected = torch.tensor([[float(final[u] @ final[3 + i]) for i in range(2)] for u in range(3)])
    torch.testing.assert_close(model.user_item_scores(torch.arange(3)), expected, atol=1e-5, rtol=0)


def test_lightgcn_propagation_and_its_gradient_equal_pygs_get_embedding():
    # the hand-written symmetric backward against autograd through PyG's own LightGCN.get_embedding
    g = torch.Generator().manual_seed(0)
    pairs = torch.stack([torch.randint(40, (300,), generator=g), torch.randint(60, (300,), generator=g)])
    pairs = torch.unique(pairs, dim=1)  # distinct (user, item) pairs
    model = LightGCNRecommender(40, 60, pairs, dim=8, layers=3)
    weights = torch.randn(100, 8, generator=g)  # an arbitrary loss: sum(weights * embeddings)

    users, items = model.embeddings()
    (torch.cat([users, items]) * weights).sum().backward()
    ours = model.gnn.embedding.weight.grad.clone()
    model.gnn.embedding.weight.grad = None
    reference = model.gnn.get_embedding(model.edge_index, model.edge_weight)  # PyG's gather/scatter path
    (reference * weights).sum().backward()

    torch.testing.assert_close(torch.cat([users, items]), reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours, model.gnn.embedding.weight.grad, atol=1e-6, rtol=0)


def test_every_model_factorises_its_scores_as_the_export_assumes():
    rng = np.random.default_rng(0)
    train = sorted({(int(u), int(i)) for u, i in rng.integers(0, [30, 40], size=(300, 2))})
    data = interactions(30, 40, train, [])
    cfg = SimpleNamespace(hidden=8, layers=2, gfcf_alpha=0.3, gfcf_rank=5)
    users = torch.arange(30)
    for name in ("popularity", "mf", "lightgcn", "gfcf"):
        model = build_recommender(name, 30, 40, data.train_edges, cfg)
        with torch.no_grad():
            user_table, item_table = model.embeddings()
            torch.testing.assert_close(user_table @ item_table.T, model.user_item_scores(users), msg=name)


def planted_interactions(num_users: int, num_items: int, seed: int = 0) -> list[tuple[int, int]]:
    """Random background choices, plus a pattern: every user who chose item 0 also chose item 1 (but the last)."""
    rng = np.random.default_rng(seed)
    pairs = {(u, int(i)) for u in range(num_users) for i in rng.choice(np.arange(2, num_items), 20, replace=False)}
    fans = range(0, num_users, 4)
    pairs |= {(u, 0) for u in fans} | {(u, 1) for u in fans if u != fans[-1]}
    return sorted(pairs)


def test_gfcf_works_on_50k_items_without_a_dense_item_item_matrix_and_finds_a_planted_pair():
    users, items = 2000, 50_000  # a dense item x item matrix would be 10 GB in float32
    pairs = planted_interactions(users, items)
    tracemalloc.start()  # numpy and scipy report their allocations to tracemalloc
    started = time.perf_counter()
    model = GFCF(users, items, torch.tensor(pairs).T, alpha=0.3, rank=8)
    fan = (users - 1) // 4 * 4  # the fan who chose item 0 but not item 1
    scores = model.user_item_scores(torch.tensor([fan, 1]))  # [2, I]
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert scores.shape == (2, items)
    assert peak < 300e6 and seconds < 20, (peak, seconds)
    chosen = {i for u, i in pairs if u == fan}
    ranked = [i for i in scores[0].argsort(descending=True).tolist() if i not in chosen]
    assert ranked[0] == 1  # the item every other chooser of item 0 chose


def test_rank_metrics_on_a_hand_example():
    class Fixed(torch.nn.Module):  # scores given by hand: [3 users, 5 items]
        def __init__(self):
            super().__init__()
            rows = [[5, 4, 3, 2, 1], [1, 2, 3, 4, 5], [5, 4, 3, 2, 1]]
            self.register_buffer("table", torch.tensor(rows, dtype=torch.float))

        def user_item_scores(self, users):
            return self.table[users].clone()

    # user 0: item 0 seen (masked), top 2 = [1, 2], test {2, 4}: one hit at rank 2
    # user 1: item 4 seen (masked), top 2 = [3, 2], test {3}: a hit at rank 1
    # user 2: no test items: skipped
    data = interactions(3, 5, train=[(0, 0), (1, 4), (2, 0)], test=[(0, 2), (0, 4), (1, 3)])
    got = rank_metrics(Fixed(), data, k=2)
    ndcg_user0 = (1 / math.log2(3)) / (1 / math.log2(2) + 1 / math.log2(3))
    assert got["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert got["ndcg@2"] == pytest.approx((ndcg_user0 + 1.0) / 2)
    assert set(got) == {"recall@2", "ndcg@2"}


def test_negatives_are_never_the_users_own_positives_and_are_seeded():
    num_items = 6
    train = torch.tensor([[0, 0, 0, 0, 0, 1], [0, 1, 2, 3, 4, 5]])  # user 0 chose 5 of 6 items
    keys = training_keys(train, num_items)
    users = torch.tensor([0] * 500 + [1] * 500)
    neg = sample_negatives(users, num_items, keys, torch.Generator().manual_seed(0))
    assert (neg[:500] == 5).all()  # the only item user 0 did not choose
    assert (neg[500:] != 5).all() and len(set(neg[500:].tolist())) == 5
    assert torch.equal(neg, sample_negatives(users, num_items, keys, torch.Generator().manual_seed(0)))

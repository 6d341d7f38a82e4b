"""Ranking metrics of a recommender (day 39): recall@k and NDCG@k over all items, the protocol of the LightGCN
and GF-CF papers.

For every user with held-out (test) items, every item is scored, the user's training items are removed from the
ranking (recommending what they already chose is no recommendation), and the top k are compared with the test
items. recall@k: the share of a user's test items found in their top k. NDCG@k: the same hits, each discounted by
log2(1 + position), over the best possible such sum. Both are averaged over users; the formulas are PyG's
(`torch_geometric.metrics`), not rewritten here.
"""

from __future__ import annotations

import itertools
import warnings

import torch
import torch.distributed as dist
import torch.nn as nn
from torch_geometric.metrics import LinkPredNDCG, LinkPredRecall

from .ratings import Interactions


@torch.no_grad()
def rank_metrics(model: nn.Module, interactions: Interactions, k: int, batch_users: int = 1024) -> dict[str, float]:
    """{"recall@K": ..., "ndcg@K": ...} of `model.user_item_scores` on the test edges; users without test items
    are skipped. Under a process group (DDP) every process must call it: each scores its share of the users and
    the metrics add up their sums and counts across processes (torchmetrics' sync on compute)."""
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    recall, ndcg = LinkPredRecall(k).to(device), LinkPredNDCG(k).to(device)
    users = interactions.test_edges[0].unique()  # [T] sorted user indices with at least one test item
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        users = users[dist.get_rank() :: dist.get_world_size()]
    train, test = interactions.train_edges.to(device), interactions.test_edges.to(device)
    row_of = torch.full((interactions.num_users,), -1, dtype=torch.long, device=device)  # user -> row in batch

    was_training = model.training
    model.eval()
    for batch in users.to(device).split(batch_users):
        row_of[batch] = torch.arange(len(batch), device=device)
        scores = model.user_item_scores(batch)  # [B, I]
        seen = train[:, row_of[train[0]] >= 0]  # [2, E_b] the batch's training pairs
        scores[row_of[seen[0]], seen[1]] = float("-inf")  # never recommend what the user already chose
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices  # [B, k] item indices, best first
        wanted = test[:, row_of[test[0]] >= 0]  # [2, T_b] the batch's test pairs
        labels = torch.stack([row_of[wanted[0]], wanted[1]])  # [2, T_b] (row in batch, item)
        recall.update(top, labels)
        ndcg.update(top, labels)
        row_of[batch] = -1
    model.train(was_training)

    with warnings.catch_warnings():  # a process whose share was empty: compute() before update() is fine here
        warnings.filterwarnings("ignore", message=".*compute.*before the ``update``")
        return {f"recall@{k}": recall.compute().item(), f"ndcg@{k}": ndcg.compute().item()}

"""Recommenders on a user-item graph (day 39): popularity, matrix factorisation, LightGCN and GF-CF.

One interface, so that training, ranking and export treat them alike (U users, I items, B a batch):

    model.user_item_scores(users [B]) -> scores [B, I]     higher = recommend first
    model.embeddings() -> users [U, d], items [I, d]       scores = users @ items.T (what export writes)
    model(users [B], pos [B], neg [B]) -> pos_scores [B], neg_scores [B], reg []   (mf and lightgcn: BPR training)

nn.Modules only: reading files is ratings.py's job, the loop is train_recommend.py's.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.sparse.linalg import svds
from torch_geometric.nn import LightGCN


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian Personalised Ranking (Rendle et al. 2009): -log sigmoid(pos - neg), averaged over the batch.

    The model is not asked to predict a rating, only to rank: for each (user, positive item, sampled negative
    item) triple, sigmoid(pos - neg) is the probability that the user prefers the positive, and BPR maximises its
    log-likelihood. logsigmoid is the stable form of log(sigmoid(x)) (no log(0) for very negative x).
    """
    return -F.logsigmoid(pos_scores - neg_scores).mean()  # [B], [B] -> []


def l2_of_batch(*ego: torch.Tensor) -> torch.Tensor:
    """LightGCN's regulariser: half the squared L2 norm of the batch's own (layer-0, "ego") embeddings, divided
    by the batch size. Only the rows a batch touches are penalised, so rare items are not pulled to zero by
    every step, as a weight decay over the whole table would do."""
    return sum(e.pow(2).sum() for e in ego) / 2 / ego[0].shape[0]


class Popularity(nn.Module):
    """The baseline every recommender must beat: every user gets the items most often chosen in training."""

    def __init__(self, num_users: int, num_items: int, train_edges: torch.Tensor):
        super().__init__()
        self.num_users = num_users
        counts = torch.bincount(train_edges[1], minlength=num_items).float()  # [I] training positives per item
        self.register_buffer("counts", counts)

    def user_item_scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(len(users), -1).clone()  # [B, I], the same row for everyone

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        # 1-dimensional: every user is 1, every item its count, so the inner product is the count
        return torch.ones(self.num_users, 1, device=self.counts.device), self.counts[:, None]  # [U, 1], [I, 1]


class MatrixFactorization(nn.Module):
    """MF-BPR: a vector per user and per item, score = their dot product (what LightGCN's layer 0 is)."""

    def __init__(self, num_users: int, num_items: int, dim: int):
        super().__init__()
        self.user = nn.Embedding(num_users, dim)
        self.item = nn.Embedding(num_items, dim)
        nn.init.normal_(self.user.weight, std=0.1)  # the LightGCN paper code's initialisation for both models
        nn.init.normal_(self.item.weight, std=0.1)

    def forward(self, users, pos, neg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u, p, n = self.user(users), self.item(pos), self.item(neg)  # [B, d] each
        return (u * p).sum(-1), (u * n).sum(-1), l2_of_batch(u, p, n)  # [B], [B], []

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight  # [U, d], [I, d]

    def user_item_scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.user(users) @ self.item.weight.T  # [B, d] @ [d, I] -> [B, I]


def bipartite_edge_index(train_edges: torch.Tensor, num_users: int) -> torch.Tensor:
    """(user, item) pairs [2, E] -> the undirected user-item graph [2, 2E] on U + I nodes: users keep their
    indices 0..U-1, item i becomes node U + i, and every interaction is an edge in both directions."""
    users, items = train_edges[0], train_edges[1] + num_users
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])


class SymmetricSparseProduct(torch.autograd.Function):
    """y = A @ x for a symmetric sparse A, with the backward pass written out: dL/dx = A^T @ dL/dy = A @ dL/dy.

    torch.sparse.mm's own backward forms A^T from the CSR matrix at every call (a sort of all 2E entries): two
    thirds of a LightGCN training step at Gowalla's size went there (torch.profiler: aten::sort, index_select
    under _to_sparse_csr). A is its own transpose, so the backward is one more product with A: 3.3x faster."""

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency  # a constant, not an input that needs a gradient
        return adjacency @ x  # [N, N] sparse @ [N, d] -> [N, d]

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return None, ctx.adjacency @ grad_out  # no gradient for A; A^T = A for x


class LightGCNRecommender(nn.Module):
    """LightGCN (He et al., SIGIR 2020), its parameters and layer weights in `torch_geometric.nn.LightGCN`.

    Propagation, per layer: x_v <- sum over neighbours w of x_w / sqrt(deg(v) deg(w)), i.e. a product with the
    symmetrically normalised adjacency D^-1/2 A D^-1/2 of the user-item graph. No weight matrix, no non-linearity,
    no self-loop: the only parameters are the layer-0 ("ego") embeddings. The final embedding is the mean of the
    layer 0..L embeddings (PyG's alpha = 1 / (L + 1)), so a user is described by their own vector, their items'
    (layer 1), their items' other users (layer 2), ... A layer costs one sparse product, the whole graph at once.
    The L products are written out in `embeddings` (what PyG's `LightGCN.get_embedding` computes, a test checks
    it to 1e-6) so that the backward pass can use A's symmetry: SymmetricSparseProduct.
    """

    def __init__(self, num_users: int, num_items: int, train_edges: torch.Tensor, dim: int, layers: int):
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        # normalize=False: the normalised weights are computed once below, not again by every layer at every step
        self.gnn = LightGCN(num_users + num_items, dim, layers, normalize=False)
        nn.init.normal_(self.gnn.embedding.weight, std=0.1)  # as the paper's code (PyG's default is Xavier)
        edge_index = bipartite_edge_index(train_edges, num_users)  # [2, 2E]
        inv_sqrt_deg = torch.bincount(edge_index[0], minlength=num_users + num_items).float().rsqrt()  # [U + I]
        edge_weight = inv_sqrt_deg[edge_index[0]] * inv_sqrt_deg[edge_index[1]]  # [2E] 1 / sqrt(deg(v) deg(w))
        # derived from the training edges, not learned: rebuilt by the constructor, so kept out of the weights file
        self.register_buffer("edge_index", edge_index, persistent=False)
        self.register_buffer("edge_weight", edge_weight, persistent=False)
        self._adjacency: torch.Tensor | None = None

    def adjacency(self) -> torch.Tensor:
        """D^-1/2 A D^-1/2 as a sparse CSR matrix [U + I, U + I], built once per device: one sparse-dense product
        per layer is 3x faster on a CPU than PyG's gather/scatter path over an edge list."""
        if self._adjacency is None or self._adjacency.device != self.edge_index.device:
            n = self.num_users + self.num_items
            coo = torch.sparse_coo_tensor(self.edge_index, self.edge_weight, (n, n), check_invariants=True)
            with warnings.catch_warnings():  # "sparse CSR support is in beta": sparse @ dense is all we use
                warnings.simplefilter("ignore", UserWarning)
                self._adjacency = coo.coalesce().to_sparse_csr()
        return self._adjacency

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        adjacency, alpha = self.adjacency(), self.gnn.alpha  # alpha [L + 1]: each layer's weight in the mean
        x = self.gnn.embedding.weight  # [U + I, d] layer 0
        out = x * alpha[0]
        for layer_weight in alpha[1:]:
            x = SymmetricSparseProduct.apply(adjacency, x)  # [U + I, d] layer l + 1 = A @ layer l
            out = out + x * layer_weight
        return out[: self.num_users], out[self.num_users :]  # [U, d], [I, d]

    def forward(self, users, pos, neg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        user_out, item_out = self.embeddings()  # every node's final embedding: the propagation needs them all
        u, p, n = user_out[users], item_out[pos], item_out[neg]  # [B, d] each
        ego = self.gnn.embedding.weight  # [U + I, d] layer 0: what the regulariser acts on
        reg = l2_of_batch(ego[users], ego[self.num_users + pos], ego[self.num_users + neg])
        return (u * p).sum(-1), (u * n).sum(-1), reg  # [B], [B], []

    def user_item_scores(self, users: torch.Tensor) -> torch.Tensor:
        user_out, item_out = self.embeddings()
        return user_out[users] @ item_out.T  # [B, I]


class GFCF(nn.Module):
    """GF-CF (Shen et al., CIKM 2021): graph filtering without training.

    With R the binary user-item matrix [U, I] and R~ = D_U^-1/2 R D_I^-1/2 its normalised form, a user's row r
    [1, I] is scored as

        r R~^T R~  +  alpha * r D_I^-1/2 V^T V D_I^1/2

    The first term is a linear low-pass filter over the item-item graph R~^T R~ (two steps of LightGCN's
    propagation, item -> user -> item, with no embeddings at all). It is computed left to right, (r R~^T) R~, two
    sparse products, so the item x item matrix (50k items: 10 GB dense) is never formed. The second term is an
    "ideal" low-pass filter: V [rank, I] are the top right singular vectors of R~, the smoothest signals on the
    item graph (scipy's sparse SVD, svds, which never densifies R~ either).
    """

    def __init__(self, num_users: int, num_items: int, train_edges: torch.Tensor, alpha: float, rank: int):
        super().__init__()
        self.alpha = alpha
        users, items = train_edges.numpy()
        self.R = sp.csr_matrix((np.ones(users.size), (users, items)), shape=(num_users, num_items))  # [U, I]
        user_deg = np.asarray(self.R.sum(1)).ravel()  # [U]
        item_deg = np.asarray(self.R.sum(0)).ravel()  # [I]
        self.R_norm = (sp.diags(_inv_sqrt(user_deg)) @ self.R @ sp.diags(_inv_sqrt(item_deg))).tocsr()  # R~
        rank = min(rank, min(num_users, num_items) - 1)  # svds needs rank < min(U, I)
        if rank > 0:
            v0 = np.full(min(num_users, num_items), 1.0)  # a fixed start vector: the same filter on every run
            _, _, vt = svds(self.R_norm, k=rank, v0=v0)  # vt [rank, I]
        else:
            vt = np.zeros((0, num_items))
        # what the ideal filter needs, as buffers: they are also what model.safetensors holds for this model
        self.register_buffer("vt", torch.from_numpy(np.ascontiguousarray(vt)).float())  # [rank, I]
        self.register_buffer("item_deg", torch.from_numpy(item_deg).float())  # [I]

    def _ideal_user_part(self, rows: sp.csr_matrix) -> torch.Tensor:
        """alpha * r D_I^-1/2 V^T for the rows r [B, I] -> [B, rank]."""
        scaled = rows @ sp.diags(_inv_sqrt(self.item_deg.cpu().double().numpy()))  # [B, I] sparse
        ideal = scaled @ self.vt.cpu().double().numpy().T  # [B, I] @ [I, rank] -> [B, rank]
        return self.alpha * torch.from_numpy(ideal).float().to(self.vt.device)

    def _ideal_item_part(self) -> torch.Tensor:
        return (self.vt * self.item_deg.sqrt()).T  # V D_I^1/2 -> [I, rank]

    def user_item_scores(self, users: torch.Tensor) -> torch.Tensor:
        rows = self.R[users.cpu().numpy()]  # [B, I] sparse: the users' training items
        linear = ((rows @ self.R_norm.T) @ self.R_norm).toarray()  # ([B, I] @ [I, U]) @ [U, I] -> [B, I]
        ideal = self._ideal_user_part(rows) @ self._ideal_item_part().T  # [B, rank] @ [rank, I] -> [B, I]
        return torch.from_numpy(linear).float().to(self.vt.device) + ideal

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact factors of the scores: users [U, U + rank], items [I, U + rank]. The linear filter's factors are
        r R~^T (a user's similarity to every user) and the columns of R~, so the width grows with the number of
        users: fine for MovieLens (610), for a data set of 100k users export would keep the ideal part only."""
        users = torch.from_numpy((self.R @ self.R_norm.T).toarray()).float().to(self.vt.device)  # [U, U]
        items = torch.from_numpy(self.R_norm.T.toarray()).float().to(self.vt.device)  # [I, U]
        ideal_users = self._ideal_user_part(self.R)  # [U, rank]
        return torch.cat([users, ideal_users], 1), torch.cat([items, self._ideal_item_part()], 1)


def _inv_sqrt(degree: np.ndarray) -> np.ndarray:
    """1 / sqrt(degree), and 0 where the degree is 0 (a node without edges contributes nothing)."""
    return np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)


def build_recommender(model: str, num_users: int, num_items: int, train_edges: torch.Tensor, cfg) -> nn.Module:
    """The model `cfg.model` names (popularity | mf | lightgcn | gfcf), sized by cfg.hidden / layers / gfcf_*."""
    if model == "popularity":
        return Popularity(num_users, num_items, train_edges)
    if model == "mf":
        return MatrixFactorization(num_users, num_items, cfg.hidden)
    if model == "lightgcn":
        return LightGCNRecommender(num_users, num_items, train_edges, cfg.hidden, cfg.layers)
    if model == "gfcf":
        return GFCF(num_users, num_items, train_edges, cfg.gfcf_alpha, cfg.gfcf_rank)
    raise ValueError(f"not a recommender: {model}")


def training_keys(train_edges: torch.Tensor, num_items: int) -> torch.Tensor:
    """Each training positive as one sorted int64 key, user * I + item: membership tests become a torch.isin."""
    return (train_edges[0] * num_items + train_edges[1]).sort().values  # [E]


def sample_negatives(
    users: torch.Tensor, num_items: int, keys: torch.Tensor, generator: torch.Generator, rounds: int = 10
) -> torch.Tensor:
    """One negative item per positive: uniform over the items the user did not choose. Vectorised rejection:
    draw from all items, redraw only the collisions; after `rounds` rounds, the few left (users who chose most
    items) draw from their own complement, one by one. users [B] -> items [B]."""
    neg = torch.randint(num_items, users.shape, generator=generator)
    for _ in range(rounds):
        hit = torch.isin(users * num_items + neg, keys)  # [B] bool: sampled one of the user's own positives
        if not hit.any():
            return neg
        neg[hit] = torch.randint(num_items, (int(hit.sum()),), generator=generator)
    for j in torch.isin(users * num_items + neg, keys).nonzero().flatten().tolist():
        u = int(users[j])
        lo, hi = torch.searchsorted(keys, torch.tensor([u * num_items, (u + 1) * num_items])).tolist()
        unchosen = torch.ones(num_items, dtype=torch.bool)
        unchosen[keys[lo:hi] - u * num_items] = False  # the user's positives
        if unchosen.any():  # (a user who chose every item has no negative: keeps the draw)
            options = unchosen.nonzero().flatten()
            neg[j] = options[torch.randint(len(options), (1,), generator=generator)]
    return neg

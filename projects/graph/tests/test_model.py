"""The hand-written GCN layers against torch-geometric's GCNConv, the sparse input dropout, every model's shape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv

from graph.config import NODE_MODELS
from graph.data import load_planetoid
from graph.model import HandGCNLayer, MessagePassingGCNLayer, NodeClassifier, SparseInputDropout, gcn_norm_by_hand


@pytest.fixture(scope="module")
def cora():
    return load_planetoid().graph


@pytest.mark.parametrize("layer_type", [HandGCNLayer, MessagePassingGCNLayer])
def test_hand_written_gcn_layers_equal_pyg_gcnconv_on_cora(cora, layer_type):
    torch.manual_seed(0)
    reference = GCNConv(cora.num_features, 16)
    torch.nn.init.normal_(reference.bias)  # a non-zero bias, so that adding it is checked too
    layer = layer_type(cora.num_features, 16)
    layer.load_state_dict({"lin.weight": reference.lin.weight, "bias": reference.bias})
    x = cora.x * 10  # row-normalised features are small; scale them so the 1e-5 tolerance bites
    torch.testing.assert_close(layer(x, cora.edge_index), reference(x, cora.edge_index), rtol=0, atol=1e-5)
    # gradients too: the layer trains as GCNConv does
    layer(x, cora.edge_index).square().sum().backward()
    reference(x, cora.edge_index).square().sum().backward()
    torch.testing.assert_close(layer.lin.weight.grad, reference.lin.weight.grad, rtol=1e-4, atol=1e-5)


def test_normalised_adjacency_of_a_path_graph_by_hand():
    # 0 - 1 - 2, both directions; with self-loops the degrees are 2, 3, 2
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    edges, weight = gcn_norm_by_hand(edge_index, 3)
    weights = {(int(s), int(t)): float(w) for s, t, w in zip(*edges, weight, strict=True)}
    assert weights[(0, 1)] == pytest.approx(1 / (2 * 3) ** 0.5)
    assert weights[(1, 1)] == pytest.approx(1 / 3) and weights[(0, 0)] == pytest.approx(1 / 2)
    assert len(weights) == 7  # 4 edges + 3 self-loops


def test_sparse_input_dropout_keeps_zeros_and_the_expectation():
    torch.manual_seed(0)
    x = (torch.rand(400, 300) < 0.05).float() * torch.rand(400, 300)  # sparse, like bag-of-words features
    dropout = SparseInputDropout(0.5).train()
    outs = torch.stack([dropout(x) for _ in range(400)])
    assert (outs[:, x == 0] == 0).all()  # a zero stays zero
    kept = (outs[:, x != 0] != 0).float().mean()
    assert kept == pytest.approx(0.5, abs=0.01)  # each non-zero entry dropped with probability p
    torch.testing.assert_close(outs.mean(0), x, rtol=0, atol=0.15)  # the expectation is the input
    assert set(outs[:, x != 0].unique().tolist()) <= {0.0} | set((x[x != 0] * 2).tolist())
    assert torch.equal(dropout.eval()(x), x)


@pytest.mark.parametrize("kind", NODE_MODELS)
def test_every_model_maps_nodes_to_class_logits_and_learns(cora, kind):
    torch.manual_seed(0)
    model = NodeClassifier(kind, cora.num_features, 7, hidden=8, layers=2, dropout=0.5, heads=2)
    assert model(cora.x, cora.edge_index).shape == (cora.num_nodes, 7)
    assert model.embed(cora.x, cora.edge_index).shape == (cora.num_nodes, 8 * (2 if kind == "gat" else 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(cora.x, cora.edge_index)[cora.train_mask], cora.y[cora.train_mask])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8


def test_one_layer_and_deep_models_build(cora):
    for layers in (1, 4):
        model = NodeClassifier("gcn", cora.num_features, 7, 8, layers, 0.5, 1).train()
        assert model(cora.x, cora.edge_index).shape == (cora.num_nodes, 7)
        assert len(model.layers) == layers

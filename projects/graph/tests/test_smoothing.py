"""Over-smoothing measures against brute-force references, and the depth sweep end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from graph.cli import main
from graph.smoothing import mean_pairwise_cosine, smoothed_features


def test_mean_pairwise_cosine_equals_the_mean_over_all_pairs():
    torch.manual_seed(0)
    h = torch.randn(50, 8)
    u = F.normalize(h, dim=1)
    similarity = u @ u.T  # [50, 50]
    reference = (similarity.sum() - similarity.diagonal().sum()) / (50 * 49)
    assert mean_pairwise_cosine(h) == pytest.approx(reference.item(), abs=1e-6)
    assert mean_pairwise_cosine(torch.ones(10, 3)) == pytest.approx(1.0)


def test_smoothed_features_are_powers_of_the_normalised_adjacency():
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])  # the path 0-1-2-3
    adjacency = torch.eye(4)
    adjacency[edge_index[1], edge_index[0]] = 1.0
    inv_sqrt = adjacency.sum(1).pow(-0.5)
    normalised = inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]
    x = torch.randn(4, 3)
    expected = torch.linalg.matrix_power(normalised, 3) @ x
    torch.testing.assert_close(smoothed_features(x, edge_index, 3), expected)
    # smoothing makes the nodes alike: the similarity grows with the rounds
    many = [mean_pairwise_cosine(smoothed_features(x.abs(), edge_index, k)) for k in (0, 2, 20)]
    assert many[0] < many[1] < many[2]


def test_the_depth_sweep_writes_its_table_and_figure(tmp_path, capsys):
    main(["depth", "--depths", "1", "3", "--seeds", "1", "--preset", "tiny", "--out", str(tmp_path)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [row["layers"] for row in printed["rows"]] == [1, 3]
    assert (tmp_path / "oversmoothing.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "oversmoothing.json").read_text(encoding="utf-8")) == printed

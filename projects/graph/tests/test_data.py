"""Planetoid folders: the bundled Cora, a user's folder named by its files, and damaged folders refused."""

from __future__ import annotations

import pytest
import torch

from dlshared.cli import UserError
from graph.data import CORA_CLASSES, load_planetoid, split_sizes

from .conftest import copy_planetoid


def test_bundled_cora_is_the_planetoid_split():
    data = load_planetoid()
    graph = data.graph
    assert (graph.num_nodes, graph.num_edges, data.num_features) == (2708, 10556, 1433)
    assert split_sizes(graph) == {"train": 140, "val": 500, "test": 1000}
    assert torch.bincount(graph.y[graph.train_mask]).tolist() == [20] * 7  # 20 labelled papers per class
    assert data.classes == CORA_CLASSES and data.name == "cora"
    torch.testing.assert_close(graph.x.sum(1), torch.ones(2708))  # row-normalised bag of words


def test_a_users_folder_is_named_by_its_files_and_may_hold_a_raw_subfolder(tmp_path):
    data = load_planetoid(copy_planetoid(tmp_path / "citeseer-like" / "raw", "mini").parent)
    assert data.name == "mini" and data.classes == tuple(f"class {i}" for i in range(7))
    assert data.graph.num_nodes == 2708 and str(tmp_path) in data.source


@pytest.mark.parametrize("damage, message", [("missing", "missing ind.mini.graph"), ("truncated", "cannot read")])
def test_a_damaged_folder_is_one_line_naming_it(tmp_path, damage, message):
    folder = copy_planetoid(tmp_path / "data")
    graph_file = folder / "ind.mini.graph"
    if damage == "missing":
        graph_file.unlink()
    else:
        graph_file.write_bytes(graph_file.read_bytes()[:100])
    with pytest.raises(UserError, match=message) as err:
        load_planetoid(folder)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_a_folder_without_or_with_two_data_sets_is_refused(tmp_path):
    with pytest.raises(UserError, match="found none"):
        load_planetoid(tmp_path)
    copy_planetoid(tmp_path, "one")
    copy_planetoid(tmp_path, "two")
    with pytest.raises(UserError, match="several"):
        load_planetoid(tmp_path)

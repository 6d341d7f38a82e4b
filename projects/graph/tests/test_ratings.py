"""ratings.py: every format read from generated files, the per-user split, and clear errors for bad lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dlshared.cli import UserError
from graph.ratings import load_interactions, split_per_user


def pairs(data, edges: torch.Tensor) -> set[tuple[str, str]]:
    """(user id, item id) of an edge tensor, in the source's ids."""
    return {(data.user_ids[u], data.item_ids[i]) for u, i in edges.T.tolist()}


def test_movielens_csv_keeps_ratings_at_or_above_the_threshold_and_reads_titles(tmp_path):
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n"
        "1,10,4.0,1\n1,2,5.0,1\n1,3,3.5,1\n"  # the 3.5 is below --min-rating 4: dropped
        "2,10,4.5,1\n2,3,4.0,1\n",
        encoding="utf-8",
    )
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n10,"Heat, The (1995)",Action\n2,Jumanji (1995),X\n', encoding="utf-8"
    )
    data = load_interactions(tmp_path / "ratings.csv", 4.0, 0.5, 0)
    assert data.user_ids == ["1", "2"] and data.item_ids == ["2", "3", "10"]  # numeric ids in numeric order
    assert pairs(data, data.train_edges) | pairs(data, data.test_edges) == {
        ("1", "10"),
        ("1", "2"),
        ("2", "10"),
        ("2", "3"),
    }
    assert data.item_titles == {"10": "Heat, The (1995)", "2": "Jumanji (1995)"}
    assert (data.num_users, data.num_items) == (2, 3)
    # a folder holding ratings.csv is read the same way
    assert load_interactions(tmp_path, 4.0, 0.5, 0).item_ids == data.item_ids


def test_movielens_100k_u_data_with_latin1_titles(tmp_path):
    (tmp_path / "u.data").write_text(
        "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t1\n7\t242\t4\t1\n", encoding="utf-8"
    )
    (tmp_path / "u.item").write_bytes("242|Kolya (1996)|x\n302|Caf\xe9 (1997)|x\n".encode("latin-1"))
    data = load_interactions(tmp_path / "u.data", 3.0, 0.5, 0)
    all_pairs = pairs(data, data.train_edges) | pairs(data, data.test_edges)
    assert all_pairs == {("196", "242"), ("186", "302"), ("196", "302"), ("7", "242")}
    assert data.user_ids == ["7", "186", "196"]
    assert data.item_titles == {"242": "Kolya (1996)", "302": "Café (1997)"}
    assert len(pairs(data, data.train_edges)) == 3  # user 196 (2 positives) holds one out; the others keep theirs
    four = load_interactions(tmp_path / "u.data", 4.0, 0.5, 0)
    assert pairs(four, four.train_edges) | pairs(four, four.test_edges) == {("196", "302"), ("7", "242")}


@pytest.mark.parametrize(
    "text",
    ["user,item\nalice,apple\nbob,apple\nalice,pear\n", "alice,apple\nbob,apple\nalice,pear\n"],
    ids=["header", "no-header"],
)
def test_generic_csv_with_or_without_header_and_ratings(tmp_path, text):
    (tmp_path / "clicks.csv").write_text(text, encoding="utf-8")
    data = load_interactions(tmp_path / "clicks.csv", 4.0, 0.5, 0)  # no rating column: every row is a positive
    assert data.user_ids == ["alice", "bob"] and data.item_ids == ["apple", "pear"] and data.item_titles == {}
    assert data.train_edges.shape[1] + data.test_edges.shape[1] == 3
    (tmp_path / "rated.csv").write_text("alice,apple,5\nbob,apple,1\nalice,pear,4\n", encoding="utf-8")
    rated = load_interactions(tmp_path / "rated.csv", 4.0, 0.5, 0)
    assert rated.user_ids == ["alice"]  # bob's only rating is below 4


def test_split_is_seeded_per_user_and_keeps_each_user_on_both_sides(tmp_path):
    rng = np.random.default_rng(1)
    counts = [1, 2, 3, 5, 10, 40]
    edges = np.array([(u, i) for u, n in enumerate(counts) for i in rng.choice(100, n, replace=False)]).T
    edges = np.unique(edges, axis=1)
    train, test = split_per_user(edges, 0.2, seed=7)
    again_train, again_test = split_per_user(edges, 0.2, seed=7)
    other_train, _ = split_per_user(edges, 0.2, seed=8)
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)  # seeded
    assert not np.array_equal(train, other_train)  # and the seed matters
    whole = {tuple(e) for e in edges.T}
    assert {tuple(e) for e in train.T} | {tuple(e) for e in test.T} == whole
    assert not {tuple(e) for e in train.T} & {tuple(e) for e in test.T}
    n_train = np.bincount(train[0], minlength=len(counts))
    n_test = np.bincount(test[0], minlength=len(counts))
    # 1 positive: train only; 2: one each; otherwise round(0.2 n), at least 1
    assert n_test.tolist() == [0, 1, 1, 1, 2, 8]
    assert (n_train + n_test).tolist() == counts and (n_train >= 1).all()


def test_malformed_lines_name_the_file_and_line(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,10,4.0,1\n1,20,great,1\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_interactions(path, 4.0, 0.2, 0)
    message = str(err.value)
    assert f"{path}:3" in message and "'great' is not a number" in message and "\n" not in message
    path.write_text("user,item\na,b\nlonely\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"ratings\.csv:3: expected user,item"):
        load_interactions(path, 4.0, 0.2, 0)
    (tmp_path / "u.data").write_text("1\t2\t5\t0\n1 2 5 0\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"u\.data:2: expected user<TAB>item"):
        load_interactions(tmp_path / "u.data", 4.0, 0.2, 0)


def test_nothing_positive_or_nothing_there_is_a_user_error(tmp_path):
    (tmp_path / "low.csv").write_text("a,x,1\nb,y,2\n", encoding="utf-8")
    with pytest.raises(UserError, match="no positive interactions"):
        load_interactions(tmp_path / "low.csv", 4.0, 0.2, 0)
    with pytest.raises(UserError, match="does not exist"):
        load_interactions(tmp_path / "missing.csv", 4.0, 0.2, 0)
    with pytest.raises(UserError, match="train.txt"):
        load_interactions(tmp_path, 4.0, 0.2, 0)  # a folder without any known file


def test_lightgcn_folder_keeps_its_own_split(tmp_path):
    folder = tmp_path / "gowalla"
    folder.mkdir()
    (folder / "train.txt").write_text("0 0 1 2\n1 2 3\n2 4\n", encoding="utf-8")
    (folder / "test.txt").write_text("0 3\n1 0 4\n2 5\n", encoding="utf-8")
    data = load_interactions(folder, 4.0, 0.2, 123)  # min_rating, test_fraction and seed do not apply
    assert pairs(data, data.train_edges) == {("0", "0"), ("0", "1"), ("0", "2"), ("1", "2"), ("1", "3"), ("2", "4")}
    assert pairs(data, data.test_edges) == {("0", "3"), ("1", "0"), ("1", "4"), ("2", "5")}
    assert data.num_items == 6 and data.num_users == 3  # item 5 appears in test.txt only: it still has an index
    (folder / "test.txt").write_text("0 3\n1 x\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"test\.txt:2: expected integer ids"):
        load_interactions(folder, 4.0, 0.2, 0)


def test_bundled_movielens_loads_quickly_with_titles():
    data = load_interactions(Path(__file__).parents[1] / "src/graph/data/movielens", 4.0, 0.2, 0)
    assert data.num_users == 609 and data.item_titles["1"] == "Toy Story (1995)"
    total = data.train_edges.shape[1] + data.test_edges.shape[1]
    assert 0.19 < data.test_edges.shape[1] / total < 0.21

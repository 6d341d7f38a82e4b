"""User-item interactions for recommendation (day 39): read, keep the positives, split per user.

Implicit feedback: recommenders of this kind learn from *which* items a user chose, not how much they liked them.
A rating at or above `min_rating` is a positive interaction; lower ratings are dropped (not used as negatives:
an unrated item is as likely to be unseen as disliked). The formats read:

    ratings.csv        MovieLens (latest, 20M, 25M, 32M): header userId,movieId,rating,timestamp; titles from the
                       movies.csv beside it, when there is one
    u.data             MovieLens 100k: user<TAB>item<TAB>rating<TAB>timestamp, no header; titles from u.item
    any other .csv     user,item[,rating]; a header line is optional (recognised by a first field "user...")
    a folder with      the LightGCN / NGCF benchmark split (Gowalla, Yelp2018, Amazon-Book): each line a user id
    train.txt+test.txt then the ids of the items; the folder's own split is used as given (no ratings)

    interactions = load_interactions(None, min_rating=4.0, test_fraction=0.2, split_seed=0)  # bundled MovieLens
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dlshared.cli import UserError

BUNDLED = Path(__file__).parent / "data" / "movielens"


@dataclass
class Interactions:
    num_users: int
    num_items: int
    train_edges: torch.Tensor
    """LongTensor [2, E]: row 0 user index (0..num_users-1), row 1 item index (0..num_items-1)."""
    test_edges: torch.Tensor
    """LongTensor [2, E']: held-out positives, the same layout."""
    user_ids: list[str]
    """The ids of the source file, in index order: user_ids[u] is user index u."""
    item_ids: list[str]
    item_titles: dict[str, str] = field(default_factory=dict)
    """item id -> title, for the items of a source that has titles (MovieLens)."""
    source: str = ""


def load_interactions(data: Path | None, min_rating: float, test_fraction: float, split_seed: int) -> Interactions:
    """The positives of `data` (unset: the bundled MovieLens ml-latest-small), as user/item indices, split into
    train and test: per user, a seeded `test_fraction` of their positives is held out (see `split_per_user`)."""
    path = Path(data) if data is not None else BUNDLED / "ratings.csv"
    if not path.exists():
        raise UserError(f"--data {path} does not exist")
    if path.is_dir():
        if (path / "train.txt").is_file() and (path / "test.txt").is_file():
            return _lightgcn_folder(path)
        found = [path / name for name in ("ratings.csv", "u.data") if (path / name).is_file()]
        if not found:
            raise UserError(f"--data {path}: a folder needs train.txt + test.txt, ratings.csv or u.data")
        path = found[0]

    if path.name == "u.data":
        pairs, titles = _read_u_data(path, min_rating), _read_u_item(path.parent / "u.item")
    else:
        pairs, movielens = _read_csv(path, min_rating)
        titles = _read_movies_csv(path.parent / "movies.csv") if movielens else {}
    if not pairs:
        raise UserError(f"{path}: no positive interactions (rating >= {min_rating}); check the file or --min-rating")

    user_ids, item_ids = _sorted_ids(u for u, _ in pairs), _sorted_ids(i for _, i in pairs)
    user_index = {u: n for n, u in enumerate(user_ids)}
    item_index = {i: n for n, i in enumerate(item_ids)}
    edges = np.array([(user_index[u], item_index[i]) for u, i in pairs], dtype=np.int64).T  # [2, E]
    edges = np.unique(edges, axis=1)  # a user who rated an item twice is one positive
    train, test = split_per_user(edges, test_fraction, split_seed)
    return Interactions(
        num_users=len(user_ids),
        num_items=len(item_ids),
        train_edges=torch.from_numpy(train),
        test_edges=torch.from_numpy(test),
        user_ids=user_ids,
        item_ids=item_ids,
        item_titles={i: titles[i] for i in item_ids if i in titles},
        source=str(path),
    )


def split_per_user(edges: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out round(test_fraction * n) of each user's n positives, chosen at random (seeded). A user with 2 or
    more positives keeps at least one on each side; a user with a single positive keeps it for training (a
    test item the model never saw its user choose anything else could not be ranked from that user's history).

    edges: int64 [2, E] (user, item) -> train [2, E - E'], test [2, E'], each sorted by user then item.
    """
    users = edges[0]
    keys = np.random.default_rng(seed).random(users.size)  # a random key per edge ...
    order = np.lexsort((keys, users))  # ... sorted within each user: a random order of each user's items
    counts = np.bincount(users, minlength=users.max() + 1)  # [U] positives per user
    starts = np.cumsum(counts) - counts  # [U] where each user's block begins in `order`
    rank = np.empty_like(users)
    rank[order] = np.arange(users.size) - starts[users[order]]  # position of each edge within its user's block
    n_test = np.clip(np.rint(test_fraction * counts), 1, counts - 1)  # [U] at least 1, never all
    is_test = rank < n_test[users]  # n_test = 0 for users with 1 positive (clip's upper bound wins)
    return np.ascontiguousarray(edges[:, ~is_test]), np.ascontiguousarray(edges[:, is_test])


# --- readers: each returns (user id, item id) pairs of the positives, as strings ---


def _read_csv(path: Path, min_rating: float) -> tuple[list[tuple[str, str]], bool]:
    """MovieLens ratings.csv or a generic user,item[,rating] CSV; also says whether it was MovieLens."""
    pairs = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        first = next(rows, None)
        if first is None:
            raise UserError(f"{path} is empty")
        movielens = [c.strip() for c in first[:2]] == ["userId", "movieId"]
        header = movielens or first[0].strip().lower().startswith("user")
        if not header:  # the first line is data
            rows = itertools.chain([first], rows)
        for line, row in enumerate(rows, start=2 if header else 1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise UserError(f"{path}:{line}: expected user,item[,rating], got {','.join(row)!r}")
            if len(row) >= 3 and _rating(path, line, row[2]) < min_rating:
                continue
            pairs.append((row[0].strip(), row[1].strip()))
    return pairs, movielens


def _read_u_data(path: Path, min_rating: float) -> list[tuple[str, str]]:
    """MovieLens 100k: user<TAB>item<TAB>rating<TAB>timestamp per line."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            fields = text.rstrip("\n").split("\t")
            if len(fields) < 3 or not fields[0].strip() or not fields[1].strip():
                raise UserError(f"{path}:{line}: expected user<TAB>item<TAB>rating<TAB>timestamp, got {text.strip()!r}")
            if _rating(path, line, fields[2]) >= min_rating:
                pairs.append((fields[0].strip(), fields[1].strip()))
    return pairs


def _lightgcn_folder(folder: Path) -> Interactions:
    """train.txt + test.txt of the LightGCN/NGCF benchmarks: every id seen in either file gets an index."""
    split = {name: _read_adjacency_lines(folder / f"{name}.txt") for name in ("train", "test")}
    every = split["train"] + split["test"]
    if not split["train"]:
        raise UserError(f"{folder / 'train.txt'} holds no interactions")
    user_ids, item_ids = _sorted_ids(u for u, _ in every), _sorted_ids(i for _, i in every)
    user_index = {u: n for n, u in enumerate(user_ids)}
    item_index = {i: n for n, i in enumerate(item_ids)}

    def edges(pairs: list[tuple[str, str]]) -> torch.Tensor:  # -> [2, E] sorted, duplicates removed
        array = np.array([(user_index[u], item_index[i]) for u, i in pairs], dtype=np.int64).reshape(-1, 2).T
        return torch.from_numpy(np.unique(array, axis=1))

    return Interactions(
        num_users=len(user_ids),
        num_items=len(item_ids),
        train_edges=edges(split["train"]),
        test_edges=edges(split["test"]),
        user_ids=user_ids,
        item_ids=item_ids,
        source=str(folder),
    )


def _read_adjacency_lines(path: Path) -> list[tuple[str, str]]:
    """Lines "user item item ..." (space-separated integers) -> (user, item) pairs."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            tokens = text.split()
            bad = next((t for t in tokens if not t.isdigit()), None)
            if bad is not None:
                raise UserError(f"{path}:{line}: expected integer ids (user item item ...), got {bad!r}")
            pairs += [(tokens[0], item) for item in tokens[1:]]
    return pairs


def _read_movies_csv(path: Path) -> dict[str, str]:
    """MovieLens movies.csv: movieId,title,genres -> {movieId: title} (empty when the file is absent)."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        return {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2 and row[0] != "movieId"}


def _read_u_item(path: Path) -> dict[str, str]:
    """MovieLens 100k u.item: item id|title|release date|... in latin-1 (empty when the file is absent)."""
    if not path.is_file():
        return {}
    with open(path, encoding="latin-1") as f:
        return {fields[0]: fields[1] for fields in (line.split("|") for line in f) if len(fields) >= 2}


def _rating(path: Path, line: int, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{path}:{line}: the rating {text.strip()!r} is not a number") from None


def _sorted_ids(ids) -> list[str]:
    """Distinct ids in a stable order, numeric ones by value (2 before 10), whatever the file's line order."""
    return sorted(set(ids), key=lambda s: (0, int(s), "") if s.isdigit() else (1, 0, s))

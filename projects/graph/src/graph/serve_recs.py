"""Serving recommendations (day 39): export a recommend run to embeddings + a faiss index, answer from them.

Every model reduces to two tables whose inner products are its scores, score(u, i) = users[u] . items[i]:

    mf, lightgcn   the learned (lightgcn: propagated, mean-of-layers) user and item embeddings, d = --hidden
    popularity     1-dimensional: every user 1, every item its training count (so every user gets the same list)
    gfcf           its exact factors (recommender.GFCF.embeddings): d = users + gfcf_rank

so serving needs no PyTorch model: `faiss.IndexFlatIP` over the item table finds the items of highest inner
product with a query vector. A known user queries with their own row. A new user names items they like; their
query is the mean of those items' vectors (for mf/lightgcn a user's score is linear in their vector, and items
liked together sit close together), and each answer says which liked item it is closest to (cosine similarity).

The export folder: embeddings.safetensors (user_embeddings [U, d], item_embeddings [I, d], train_edges [2, E]),
ids.json (model, user_ids, item_ids, titles), items.faiss, export.json, and README.md: a Hub model card
(dlshared.modelcard) with the run's own recall@k and NDCG@k.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dlshared.checkpoint import WEIGHTS_NAME, atomic_path, load_weights, read_json_object, save_json
from dlshared.cli import UserError, short_reason
from dlshared.configs import WHERE_FIELDS, read_config
from dlshared.modelcard import Result, train_command, write_model_card
from dlshared.outputs import check_output_folder, staged_output

from .config import PRESETS, TrainConfig
from .recommender import build_recommender
from .train_recommend import GRAPH_NAME, INTERACTIONS_NAME

EMBEDDINGS_NAME, IDS_NAME, INDEX_NAME = "embeddings.safetensors", "ids.json", "items.faiss"


def export_recommender(run_dir: Path, out: Path, overwrite: bool = False) -> dict:
    """Write the run's user/item embeddings, id maps and a faiss index of the items into the new folder `out`
    (refused when it exists and is not empty, unless `overwrite` and an earlier export wrote it)."""
    run_dir, out = Path(run_dir), Path(out).resolve()
    check_output_folder(out, overwrite, sources=(run_dir,))  # before any work: refuse a folder we may not fill
    cfg = read_config(run_dir / "config.json", TrainConfig)
    if cfg.task != "recommend":
        raise UserError(f"{run_dir} is a --task {cfg.task} run; export of recommendations needs --task recommend")
    maps = read_json_object(run_dir / INTERACTIONS_NAME)
    missing = {"num_users", "num_items", "user_ids", "item_ids", "titles"} - set(maps)
    if missing:
        raise UserError(f"{run_dir / INTERACTIONS_NAME} lacks {', '.join(sorted(missing))}; retrain the run")
    graph = _load_tensors(run_dir / GRAPH_NAME)
    if not (run_dir / WEIGHTS_NAME).is_file():
        raise UserError(f"{run_dir} has no {WEIGHTS_NAME}: the run has not saved a model yet")
    model = build_recommender(cfg.model, maps["num_users"], maps["num_items"], graph["train_edges"], cfg)
    load_weights(model, run_dir / WEIGHTS_NAME)
    with torch.no_grad():
        users, items = (t.detach().float().cpu().contiguous() for t in model.embeddings())  # [U, d], [I, d]

    with staged_output(out, overwrite, sources=(run_dir,)) as stage:
        tensors = {"user_embeddings": users, "item_embeddings": items, "train_edges": graph["train_edges"]}
        with atomic_path(stage / EMBEDDINGS_NAME) as tmp:
            save_file({name: t.contiguous() for name, t in tensors.items()}, str(tmp))
        ids = {key: maps[key] for key in ("user_ids", "item_ids", "titles")}
        save_json({"model": cfg.model, **ids}, stage / IDS_NAME)
        # exact inner-product search: enough for thousands of items (IVF or HNSW indexes take over at millions)
        index = faiss.IndexFlatIP(items.shape[1])
        index.add(items.numpy())  # [I, d] float32
        with atomic_path(stage / INDEX_NAME) as tmp:
            faiss.write_index(index, str(tmp))
        result = {
            "out": str(out),
            "model": cfg.model,
            "users": users.shape[0],
            "items": items.shape[0],
            "dim": items.shape[1],
            **{name: str(out / name) for name in (EMBEDDINGS_NAME, IDS_NAME, INDEX_NAME)},
        }
        metrics = run_dir / "metrics.json"
        if metrics.is_file():
            shutil.copyfile(metrics, stage / "metrics.json")
        save_json({**result, "source_run": str(run_dir)}, stage / "export.json")
        write_recommender_card(stage, run_dir, cfg, maps, items.shape[1])
    return result


RANKING = (("recall@", "recall", "recall@{k}"), ("ndcg@", "ndcg", "NDCG@{k}"))
"""metrics.json's key prefix -> (metric id, the name a reader knows); rank.py defines both."""
HOW = {
    "popularity": "every user 1, every item its training count, so every user gets the same list",
    "mf": "matrix factorisation trained with the BPR loss",
    "lightgcn": "LightGCN: BPR-trained embeddings propagated over the user-item graph, the mean of its layers",
    "gfcf": "GF-CF, training-free graph filtering; its exact factors are the tables",
}


def write_recommender_card(stage: Path, run_dir: Path, cfg: TrainConfig, maps: dict, dim: int) -> Path:
    """README.md in the Hub's format, from the run's config.json, interactions.json and metrics.json."""
    config = read_json_object(run_dir / "config.json")
    metrics = read_json_object(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    source = Path(maps.get("source") or cfg.data or "ratings.csv")
    if cfg.data is None:
        data_id, data_name = "movielens-ml-latest-small", "MovieLens ml-latest-small"
    else:  # a MovieLens download is a folder of ratings.csv / u.data: the folder names the data set
        data_id = source.parent.name if source.name in ("ratings.csv", "u.data") else source.stem
        data_name = str(cfg.data)
    results = [
        Result("graph-ml", data_id, data_name, metric, value, name.format(k=key.split("@")[1]))
        for prefix, metric, name in RANKING
        for key, value in metrics.items()
        if key.startswith(prefix) and isinstance(value, int | float)
    ]
    if source.is_dir():  # a LightGCN folder (train.txt + test.txt) brings its own split
        split = "its own train.txt / test.txt split"
    else:
        split = (
            f"ratings of {cfg.min_rating:g} or more are positives; {cfg.test_fraction:.0%} of each user's positives"
            f" are held out for the test (split seed {cfg.split_seed})"
        )
    counts = " and ".join(f"{metrics[k]:,} {k}" for k in ("users", "items") if k in metrics)
    return write_model_card(
        stage,
        title=f"graph: a {cfg.model} recommender of {data_name}",
        library_name="pytorch",
        tags=["pytorch-capstones", "graph-ml", "recommendation", "link-prediction", "faiss", cfg.model],
        datasets=[data_id],
        license="other",  # the folder holds the data's own interactions and titles: the data's terms apply
        results=results,
        summary=(
            f"A {cfg.model} recommender trained by the `graph` project of PyTorch Capstones, exported as two tables"
            f" whose inner products are its scores, score(u, i) = users[u] . items[i], {dim} numbers per user and"
            f" item ({HOW.get(cfg.model, cfg.model)})."
            " `embeddings.safetensors` holds user_embeddings [U, d], item_embeddings [I, d] and the training"
            " interactions; `ids.json` the source's user and item ids and titles; `items.faiss` an exact"
            " inner-product index of the items. `uv run graph recommend --export FOLDER --user ID` (a known user)"
            " or `--likes ITEM ...` (a new user) answers from them, with no model code."
        ),
        data=(
            f"{data_name}{f', {counts}' if counts else ''}: {split}. recall@k and NDCG@k rank every item for every"
            " test user, with the user's training items removed (the protocol of the LightGCN and GF-CF papers)."
        ),
        command=train_command(
            "graph",
            config,
            PRESETS,
            "quick",  # the preset `graph train` starts from: a recommend run's command names its preset
            ignore=(*WHERE_FIELDS, "progress", "eval_every"),  # none of these changes the weights
            processes=metrics.get("processes", 1),
        ),
        limits=(
            "The test items are a random share of the same users' choices, so the scores say how well it fills in"
            " a user's history, not how well it predicts tomorrow's choices (time-ordered splits usually score lower)."
            " A new user's list (`--likes`) comes from the mean of their items' vectors and is not measured here."
            " The folder holds the training interactions and titles of its data, so the data's terms of use apply"
            " to it (MovieLens, for one, may be shared only under its own licence: research use, no commercial use"
            " without GroupLens's permission); check the terms of your data before you share an export of it."
        ),
        settings_file=None,  # the folder holds no config.json: the command above is the run's settings
    )


def recommend(export: Path, user: str | None, likes: tuple[str, ...], k: int) -> list[dict]:
    """Top-k items for a known `user` id (their training items left out), or for a new user who `likes` the
    given item ids (those left out). Each: {"item": id, "title": str | None, "score": float, "because": ...},
    `because` the title (or id, without titles) of the user's item closest to the answer."""
    export = Path(export)
    ids = read_json_object(export / IDS_NAME)
    tensors = _load_tensors(export / EMBEDDINGS_NAME)
    try:
        index = faiss.read_index(str(export / INDEX_NAME))
    except RuntimeError as err:
        raise UserError(f"{export / INDEX_NAME} cannot be read ({short_reason(err)}); export the run again") from None
    items = tensors["item_embeddings"].numpy()  # [I, d]
    item_index = {item: n for n, item in enumerate(ids["item_ids"])}

    if user is not None and likes:
        raise UserError("give --user (a known user) or --likes (a new user), not both")
    if user is not None:
        user_index = {u: n for n, u in enumerate(ids["user_ids"])}
        if user not in user_index:
            raise UserError(f"unknown user {user!r}: not in {export / IDS_NAME} ({len(user_index)} users)")
        u = user_index[user]
        edges = tensors["train_edges"]
        chosen = edges[1, edges[0] == u].tolist()  # the user's training items: not recommended again
        query = tensors["user_embeddings"][u].numpy()  # [d]
    else:
        if not likes:
            raise UserError("give --user ID (a known user) or --likes ITEM [ITEM ...] (item ids a new user likes)")
        unknown = [item for item in likes if item not in item_index]
        if unknown:
            raise UserError(f"unknown item id(s) {', '.join(unknown)}: not among the {len(item_index)} items")
        chosen = sorted({item_index[item] for item in likes})
        query = items[chosen].mean(0)  # [d] the new user's vector: the mean of their items'

    # the k best that the user has not chosen: ask faiss for k more than they have chosen, then drop those
    scores, found = index.search(query[None].astype(np.float32), min(k + len(chosen), index.ntotal))  # [1, n]
    skip = set(chosen)
    hits = [(int(i), float(s)) for i, s in zip(found[0], scores[0], strict=True) if i >= 0 and i not in skip][:k]
    unit = items / np.linalg.norm(items, axis=1, keepdims=True).clip(min=1e-12)  # [I, d] rows of length 1
    return [_answer(i, score, chosen, unit, ids) for i, score in hits]


def _answer(i: int, score: float, chosen: list[int], unit: np.ndarray, ids: dict) -> dict:
    """One result: the item, its title, its score, and the chosen item of highest cosine similarity to it."""
    item_ids, titles = ids["item_ids"], ids["titles"]
    because = None
    if chosen:
        nearest = chosen[int(np.argmax(unit[chosen] @ unit[i]))]  # [C, d] @ [d] -> [C] cosine similarities
        because = titles.get(item_ids[nearest], item_ids[nearest])
    return {"item": item_ids[i], "title": titles.get(item_ids[i]), "score": score, "because": because}


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"{path} is missing: not a complete recommend run or export; retrain or export again")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated or foreign files
        raise UserError(f"{path} is damaged or not a safetensors file ({short_reason(err)})") from None

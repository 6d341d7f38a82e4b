"""train_recommend end to end on generated data: files, loss, quality against popularity, exact resume, 2-process
DDP, and export + recommend (known user, new user, bad input)."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dlshared.checkpoint import load_weights
from dlshared.cli import UserError
from dlshared.processes import run_distributed
from graph.config import PRESETS
from graph.recommender import build_recommender
from graph.serve_recs import export_recommender, recommend
from graph.train_recommend import train_recommend

GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP = 4, 40, 30


def write_planted_csv(path: Path, seed: int = 0) -> Path:
    """user,item,rating with a structure popularity cannot see: users of group g choose 10 of the 30 items of
    group g (and 2 at random); every item is about as popular as any other. Plus one rating of 1 per user, below
    --min-rating 4, which must be dropped."""
    rng = np.random.default_rng(seed)
    lines = ["user,item,rating"]
    for g in range(GROUPS):
        for n in range(USERS_PER_GROUP):
            own = rng.choice(ITEMS_PER_GROUP, 10, replace=False) + g * ITEMS_PER_GROUP
            anywhere = rng.choice(GROUPS * ITEMS_PER_GROUP, 2, replace=False)
            lines += [f"u{g * USERS_PER_GROUP + n},i{i},{rng.choice([4, 5])}" for i in {*own, *anywhere}]
            lines.append(f"u{g * USERS_PER_GROUP + n},i{rng.integers(GROUPS * ITEMS_PER_GROUP)},1")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny(data: Path, out: Path, **overrides):
    """The recommend-tiny preset (3 epochs) on the generated data, in batches of 256 (several steps an epoch)."""
    return dataclasses.replace(PRESETS["recommend-tiny"], data=data, out=out, batch_size=256, **overrides)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return write_planted_csv(tmp_path_factory.mktemp("data") / "planted.csv")


@pytest.fixture(scope="module")
def tiny_runs(planted, tmp_path_factory) -> dict[str, dict]:
    """Each of the four models trained (or computed) once on the planted data."""
    out = tmp_path_factory.mktemp("runs")
    return {m: train_recommend(tiny(planted, out, model=m, name=m)) for m in ("popularity", "mf", "lightgcn", "gfcf")}


def test_tiny_lightgcn_run_writes_its_files_and_the_loss_falls(tiny_runs):
    run = tiny_runs["lightgcn"]
    run_dir = Path(run["run_dir"])
    for name in ("config.json", "model.safetensors", "resume.pt", "metrics.json", "interactions.json"):
        assert (run_dir / name).is_file(), name
    losses = [h["train_loss"] for h in run["history"]]
    assert [h["epoch"] for h in run["history"]] == [1, 2, 3] and losses[-1] < losses[0] - 0.05
    assert run["users"] == GROUPS * USERS_PER_GROUP and run["items"] <= GROUPS * ITEMS_PER_GROUP
    assert run["train_interactions"] + run["test_interactions"] <= 12 * run["users"]  # the ratings of 1 dropped
    maps = json.loads((run_dir / "interactions.json").read_text(encoding="utf-8"))
    assert maps["user_ids"][:3] == ["u0", "u1", "u10"] and maps["titles"] == {}  # sorted as strings; no titles
    assert json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["recall@20"] == run["recall@20"]


def test_a_small_ratings_file_trains_for_min_steps_not_for_the_preset_epochs(planted, tmp_path):
    steps_per_epoch = train_recommend(tiny(planted, tmp_path, name="one", epochs=1))["steps"]
    run = train_recommend(tiny(planted, tmp_path, name="longer", epochs=1, min_steps=2 * steps_per_epoch + 1))
    assert run["epochs"] == 3 and run["steps"] == 3 * steps_per_epoch  # whole epochs: the minimum rounds up


def test_graph_models_beat_popularity_on_planted_structure(tiny_runs):
    popularity = tiny_runs["popularity"]["recall@20"]
    assert tiny_runs["lightgcn"]["recall@20"] > popularity + 0.2
    assert tiny_runs["gfcf"]["recall@20"] > popularity + 0.2
    assert tiny_runs["popularity"]["epochs"] == tiny_runs["gfcf"]["epochs"] == 0


def test_resume_after_two_epochs_ends_exactly_like_four_straight(planted, tmp_path):
    cfg = tiny(planted, tmp_path, model="lightgcn", epochs=4)
    straight = train_recommend(dataclasses.replace(cfg, name="straight"))
    train_recommend(dataclasses.replace(cfg, name="halves", epochs=2))  # stops after the epoch-2 checkpoint
    resumed = train_recommend(dataclasses.replace(cfg, name="halves", resume=True))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["history"] == straight["history"]  # same order, same negatives, same optimizer state
    assert resumed["recall@20"] == straight["recall@20"] and resumed["steps"] == straight["steps"]
    a = load_file(str(tmp_path / "graph" / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "graph" / "halves" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-7, msg=name)


@pytest.fixture(scope="module")
def ddp_lightgcn(planted, tmp_path_factory) -> list[dict]:
    """LightGCN for 3 epochs under 2-process gloo DDP: each rank's metrics."""
    cfg = tiny(planted, tmp_path_factory.mktemp("runs"), model="lightgcn", name="ddp", device="cpu")
    return run_distributed(train_recommend, cfg)


def test_two_process_ddp_trains_with_identical_replicas(ddp_lightgcn):
    rank0, rank1 = ddp_lightgcn
    assert rank0["processes"] == rank1["processes"] == 2
    assert rank0["history"] == rank1["history"]  # every process reports the gathered metrics
    losses = [h["train_loss"] for h in rank0["history"]]
    assert losses[-1] < losses[0] - 0.05
    # each process takes half of every epoch's positives in batches of 128: as many steps as one process at 256
    assert rank0["steps"] == 3 * math.ceil(rank0["train_interactions"] / 256)
    assert rank0["recall@20"] > 0.4  # far above popularity (about 0.2), as in one process


def test_two_process_ddp_resumed_after_two_epochs_ends_exactly_like_three_straight(ddp_lightgcn, planted, tmp_path):
    # each process draws its own negatives from its own generator: resume must give every rank its own stream back
    straight = ddp_lightgcn[0]
    cfg = tiny(planted, tmp_path, model="lightgcn", device="cpu", name="halves")
    run_distributed(train_recommend, dataclasses.replace(cfg, epochs=2))  # stops after the epoch-2 checkpoint
    resumed, _ = run_distributed(train_recommend, dataclasses.replace(cfg, resume=True))
    assert resumed["processes"] == 2 and resumed["history"] == straight["history"]
    assert resumed["recall@20"] == straight["recall@20"] and resumed["steps"] == straight["steps"]
    a = load_file(str(Path(straight["run_dir"]) / "model.safetensors"))
    b = load_file(str(tmp_path / "graph" / "halves" / "model.safetensors"))
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("model", ["popularity", "mf", "lightgcn", "gfcf"])
def test_export_answers_a_known_user_as_the_model_ranks(tiny_runs, tmp_path, model):
    run_dir = Path(tiny_runs[model]["run_dir"])
    result = export_recommender(run_dir, tmp_path / "export")
    assert result["model"] == model and (tmp_path / "export" / "items.faiss").is_file()
    answers = recommend(tmp_path / "export", "u5", (), k=10)

    # the run's own model, rebuilt from its folder: its top 10 for u5, training items masked
    cfg = dataclasses.replace(PRESETS["recommend-tiny"], model=model)
    maps = json.loads((run_dir / "interactions.json").read_text(encoding="utf-8"))
    edges = load_file(str(run_dir / "graph.safetensors"))["train_edges"]
    net = load_weights(
        build_recommender(model, maps["num_users"], maps["num_items"], edges, cfg), run_dir / "model.safetensors"
    )
    u = maps["user_ids"].index("u5")
    with torch.no_grad():
        scores = net.user_item_scores(torch.tensor([u]))[0]
    seen = edges[1, edges[0] == u]
    scores[seen] = float("-inf")
    top = scores.topk(10)
    assert [a["score"] for a in answers] == pytest.approx(top.values.tolist(), rel=1e-4, abs=1e-4)
    if model != "popularity":  # popularity's equal counts tie: the order among ties is the index's own
        assert [a["item"] for a in answers] == [maps["item_ids"][i] for i in top.indices.tolist()]
    assert not {a["item"] for a in answers} & {maps["item_ids"][i] for i in seen.tolist()}
    assert all(a["because"] in {maps["item_ids"][i] for i in seen.tolist()} for a in answers)


def test_a_new_user_gets_items_of_the_group_they_like(tiny_runs, tmp_path):
    export_recommender(Path(tiny_runs["lightgcn"]["run_dir"]), tmp_path / "export")
    likes = ("i0", "i3", "i7", "i12")  # all of group 0 (items i0..i29)
    answers = recommend(tmp_path / "export", None, likes, k=10)
    assert len(answers) == 10 and not {a["item"] for a in answers} & set(likes)
    in_group = sum(int(a["item"][1:]) < ITEMS_PER_GROUP for a in answers)
    assert in_group >= 8, answers
    assert all(a["because"] in likes and a["title"] is None for a in answers)  # no titles in this CSV: the id
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True)


def test_the_export_is_a_hub_model_card_with_the_runs_own_ranking_scores(tiny_runs, tmp_path, planted):
    from huggingface_hub import ModelCard

    run_dir = Path(tiny_runs["lightgcn"]["run_dir"])
    export_recommender(run_dir, tmp_path / "export")
    card = ModelCard.load(tmp_path / "export" / "README.md")
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert card.data.library_name == "pytorch" and {"recommendation", "lightgcn"} <= set(card.data.tags)
    assert card.data.datasets == ["planted"] and card.data.license == "other"  # the data's terms, not the code's
    scores = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert scores == {"recall@20": saved["recall@20"], "NDCG@20": saved["ndcg@20"]}
    assert {(r.metric_type, r.dataset_split) for r in card.data.eval_results} == {("recall", "test"), ("ndcg", "test")}
    command = shlex.join(["uv", "run", "graph", "train", "--preset", "recommend-tiny", "--data", str(planted)])
    assert f"```bash\n{command}\n```" in card.text
    for section in ("## Data", "## Training", "## Results", "## Limits"):
        assert section in card.text


def test_bad_requests_and_output_folders_are_refused_in_one_line(tiny_runs, tmp_path):
    export = tmp_path / "export"
    export_recommender(Path(tiny_runs["mf"]["run_dir"]), export)
    cases = [
        (dict(user="nobody", likes=()), "unknown user 'nobody'"),
        (dict(user=None, likes=("i0", "nothing")), "unknown item id(s) nothing"),
        (dict(user=None, likes=()), "give --user"),
        (dict(user="u1", likes=("i0",)), "not both"),
    ]
    for request, message in cases:
        with pytest.raises(UserError) as err:
            recommend(export, k=5, **request)
        assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="is not empty"):
        export_recommender(Path(tiny_runs["mf"]["run_dir"]), export)
    export_recommender(Path(tiny_runs["lightgcn"]["run_dir"]), export, overwrite=True)  # our own: replaced
    assert json.loads((export / "export.json").read_text(encoding="utf-8"))["model"] == "lightgcn"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(UserError, match="not written by this tool"):
        export_recommender(Path(tiny_runs["mf"]["run_dir"]), mine, overwrite=True)
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep"

"""The demo's Movies tab through gradio_client: a known user, a new user's picks, and bad input as messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dlshared.testing import served_demo
from graph.artifacts import load_node_run
from graph.cli import exported_recommender
from graph.config import PRESETS
from graph.demo import build_demo
from graph.train_recommend import train_recommend

from .test_train_recommend import write_planted_csv


@pytest.fixture(scope="module")
def client(node_run, tmp_path_factory):

    root = tmp_path_factory.mktemp("movies")
    data = write_planted_csv(root / "planted.csv")
    runs = root / "runs"
    train_recommend(
        dataclasses.replace(PRESETS["recommend-tiny"], data=data, out=runs, batch_size=256, name="mf", model="mf")
    )
    recs = exported_recommender(runs)
    assert recs is not None and (recs / "items.faiss").is_file()
    demo = build_demo(load_node_run(Path(node_run["run_dir"]), "cpu"), recs)
    with served_demo(demo) as client:
        yield client


def test_a_known_user_gets_twenty_movies_with_scores(client):
    text = client.predict("u0", [], api_name="/recommend")
    assert text.startswith("### Top 20 for user u0 (mf)")
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 20
    scores = [float(row.split("|")[3]) for row in rows]
    assert scores == sorted(scores, reverse=True)


def test_a_new_users_picks_give_movies_and_why(client):
    text = client.predict(None, ["i1", "i2"], api_name="/recommend")
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 20 and "the movies you picked (2)" in text
    assert all(row.split("|")[4].strip() in ("i1", "i2") for row in rows)  # because: one of the picks
    assert not any(row.split("|")[2].strip() in ("i1", "i2") for row in rows)  # never the picks themselves


@pytest.mark.parametrize("user, liked, message", [("nobody", [], "unknown user"), (None, [], "Pick a user")])
def test_bad_picks_are_messages_and_the_server_stays_up(client, user, liked, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(user, liked, api_name="/recommend")
    assert "Top 20" in client.predict("u1", [], api_name="/recommend")

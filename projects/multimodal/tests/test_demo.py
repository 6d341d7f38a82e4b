"""The demo through gradio_client on 127.0.0.1: text search, similar images, zero-shot labels, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlshared.testing import served_demo
from multimodal.artifacts import load_run
from multimodal.cli import demo_index
from multimodal.demo import build_demo


@pytest.fixture(scope="module")
def client(tiny_run):

    run_dir = Path(tiny_run["run_dir"])
    index = demo_index(run_dir, None, "cpu")  # the run's own test scenes, as `multimodal demo` does
    demo = build_demo(load_run(run_dir, "cpu"), index)
    with served_demo(demo) as client:
        yield client, index


def test_text_search_returns_indexed_images_best_first(client):
    app, index = client
    gallery = app.predict("two small red circles left of a blue triangle", api_name="/search")
    assert len(gallery) == 8
    scores = [float(item["caption"]) for item in gallery]
    assert scores == sorted(scores, reverse=True)


def test_an_indexed_image_finds_itself_first(client):
    from gradio_client import handle_file

    app, index = client
    some_image = next((index.parent / "test-scenes").glob("seen-000.png"))
    gallery = app.predict(handle_file(str(some_image)), api_name="/similar")
    assert float(gallery[0]["caption"]) == pytest.approx(1.0, abs=1e-3)


def test_zero_shot_gives_a_probability_per_label(client):
    from gradio_client import handle_file

    app, index = client
    image = handle_file(str(index.parent / "test-scenes" / "seen-001.png"))
    result = app.predict(image, "red circle, blue square, green triangle", api_name="/zero_shot")
    confidences = {c["label"]: c["confidence"] for c in result["confidences"]}
    assert set(confidences) == {"red circle", "blue square", "green triangle"}
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("api", "inputs", "message"),
    [
        ("/search", ["   "], "Type what to look for"),
        ("/similar", [None], "Upload an image first"),
        ("/zero_shot", ["IMAGE", "just one"], "at least two labels"),
    ],
)
def test_bad_input_is_a_message_and_the_server_stays_up(client, api, inputs, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    app, index = client
    image = handle_file(str(index.parent / "test-scenes" / "seen-002.png"))
    with pytest.raises(AppError, match=message):
        app.predict(*[image if x == "IMAGE" else x for x in inputs], api_name=api)
    assert len(app.predict("one large blue square", api_name="/search")) == 8  # still answering

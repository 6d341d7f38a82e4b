"""The demo, served on 127.0.0.1 and called through gradio_client, as a browser would."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from detector.artifacts import load_detector
from detector.config import SEGMENT_PRESETS
from detector.demo import build_demo, example_image
from detector.segmentation import load_segmenter, train_segmentation
from dlshared.demo import launch
from dlshared.testing import free_port


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    from detector.config import PRESETS
    from detector.train import train

    out = tmp_path_factory.mktemp("demo_runs")
    run = train(dataclasses.replace(PRESETS["tiny"], out=out, shapes_root=out / "shapes", name="d"))
    unet = train_segmentation(dataclasses.replace(SEGMENT_PRESETS["tiny"], out=out, shapes_root=out / "shapes32"))
    segmenter, card = load_segmenter(unet["run_dir"])
    demo = build_demo(load_detector(Path(run["run_dir"]), "cpu"), segmenter, card)
    url = launch(demo, port=free_port(), block=False)
    assert url.startswith("http://127.0.0.1:")
    yield Client(url, verbose=False)
    demo.close()


def test_an_example_image_gets_boxes_and_a_segmentation(client, tmp_path):
    from gradio_client import handle_file

    path = tmp_path / "example.png"
    example_image(3, size=200).save(path)
    drawn, table, status = client.predict(handle_file(str(path)), 0.05, api_name="/detect")
    assert Path(drawn).is_file() and "objects above score" in status
    overlay, message = client.predict(handle_file(str(path)), api_name="/segment")
    assert Path(overlay).is_file() and message == ""
    made = client.predict(7, api_name="/example")
    assert Path(made).is_file()


def test_a_tiny_image_gets_a_message(client, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "tiny.png")
    drawn, table, status = client.predict(handle_file(str(tmp_path / "tiny.png")), 0.3, api_name="/detect")
    assert drawn is None and "at least 16" in status

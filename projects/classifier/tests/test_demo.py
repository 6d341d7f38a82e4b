"""The demo, served on 127.0.0.1 and called through gradio_client, as a user's browser would."""

from __future__ import annotations

import dataclasses
import html
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt
from PIL import Image

from classifier.artifacts import load_predictor
from classifier.demo import build_demo
from dlshared.testing import served_demo


@pytest.fixture(scope="module")
def client(trained_run):

    demo = build_demo(load_predictor(Path(trained_run["run_dir"])))
    with served_demo(demo) as client:
        yield client


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _save(array: np.ndarray, path: Path) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def test_an_uploaded_test_digit_is_recognised(client, trained_run, tmp_path):
    from gradio_client import handle_file

    from classifier.data import load_data

    predictor = load_predictor(Path(trained_run["run_dir"]))
    test = load_data(predictor.config).test
    image, label = test[0]
    # the demo sees what a user uploads: an 8-bit picture, bigger than the model's input
    big = Image.fromarray((image[0].numpy() * 255).astype(np.uint8)).resize((128, 128), Image.Resampling.BILINEAR)
    labels, seen, message = client.predict(
        handle_file(_save(np.asarray(big), tmp_path / "digit.png")), api_name="/classify_upload"
    )
    assert message == ""
    assert labels["label"] == str(label)
    assert len(labels["confidences"]) == 5
    assert Image.open(seen).size == (32, 32)


def test_a_drawn_digit_through_the_sketchpad(client, tmp_path):
    from gradio_client import handle_file

    canvas = np.zeros((280, 280, 4), np.uint8)  # transparent background, black strokes: what the sketchpad sends
    canvas[40:240, 130:150] = (0, 0, 0, 255)  # a "1"
    value = {"background": None, "layers": [], "composite": handle_file(_save(canvas, tmp_path / "one.png"))}
    labels, _, message = client.predict(value, api_name="/classify_sketch")
    assert message == "" and labels["label"] == "1"


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: _write_text(p, "not an image"), "not an image file"),
        (lambda p: Path(_save(np.zeros((4, 4, 3), np.uint8), p.with_suffix(".png"))), "at least 8x8"),
        (lambda p: Path(_save(np.full((64, 64), 255, np.uint8), p.with_suffix(".png"))), "blank"),
    ],
    ids=["text-file", "tiny-image", "blank-image"],
)
def test_bad_uploads_get_a_message(client, tmp_path, make, expected):
    from gradio_client import handle_file

    labels, seen, message = client.predict(handle_file(str(make(tmp_path / "upload.txt"))), api_name="/classify_upload")
    assert expected in message and seen is None


def test_empty_sketch_gets_a_message(client):
    _, _, message = client.predict(None, api_name="/classify_sketch")
    assert "Draw a digit first" in message


def test_grayscale_and_rgba_uploads_work(client, tmp_path):
    from gradio_client import handle_file

    gray = np.zeros((64, 64), np.uint8)
    gray[10:54, 28:36] = 255
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[10:54, 28:36] = (0, 0, 0, 255)
    for array, name in ((gray, "gray.png"), (rgba, "rgba.png")):
        labels, _, message = client.predict(handle_file(_save(array, tmp_path / name)), api_name="/classify_upload")
        assert message == "" and labels["label"] == "1", name


def test_a_huge_image_is_refused_before_it_is_decoded(client, tmp_path):
    from gradio_client import handle_file

    path = tmp_path / "huge.png"
    Image.new("L", (8000, 7000)).save(path)  # 56 megapixels, a few kB on disk: over the demo's 50, under PIL's limit
    labels, seen, message = client.predict(handle_file(str(path)), api_name="/classify_upload")
    assert "8000x7000 pixels" in message and "the limit is 50" in message and not labels and seen is None


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grey pixels but holds a few bytes of data: a decompression bomb as
    far as any decoder that trusts the header is concerned (PIL refuses over ~179 megapixels when opening)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _truncated_png(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # incompressible: a long IDAT
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


BROKEN = {
    "decompression-bomb": (lambda p: p.write_bytes(_png_claiming(20_000, 20_000)), "too large"),
    "truncated": (_truncated_png, "truncated or damaged"),
}


@pytest.mark.parametrize("broken", BROKEN)
def test_bombs_and_truncated_uploads_get_a_message(client, tmp_path, broken):
    from gradio_client import handle_file

    make, expected = BROKEN[broken]
    make(tmp_path / "upload.png")
    labels, seen, message = client.predict(handle_file(str(tmp_path / "upload.png")), api_name="/classify_upload")
    assert expected in message and not labels and seen is None


@pytest.mark.parametrize("broken", BROKEN)
def test_bombs_and_truncated_drawings_get_a_message(client, tmp_path, broken):
    from gradio_client import handle_file

    make, expected = BROKEN[broken]
    make(tmp_path / "drawing.png")
    value = {"background": None, "layers": [], "composite": handle_file(str(tmp_path / "drawing.png"))}
    labels, seen, message = client.predict(value, api_name="/classify_sketch")
    assert f"The drawing is {expected}" in message and not labels and seen is None


def test_class_names_from_the_card_are_file_names_and_text_not_paths_or_markup(trained_run):
    from classifier.demo import example_images, model_card_markdown

    predictor = load_predictor(Path(trained_run["run_dir"]))
    hostile = [
        "../../up",
        "/tmp/abs",
        "<img src=x onerror=alert(1)>",
        "**bold**",
        "..",
        ".hidden",
        "a/b",
        "c\\d",
        "",
        "x",
    ]
    predictor = dataclasses.replace(predictor, card={**predictor.card, "classes": hostile})
    paths = [Path(p) for p in example_images(predictor)]
    assert paths and len({p.parent for p in paths}) == 1  # every example inside the one folder made for them
    assert all(p.is_file() and p.name[0] not in "./" and "/" not in p.name for p in paths)
    page = MarkdownIt("commonmark").render(model_card_markdown(predictor))
    assert "<img" not in page and "<strong>bold" not in page  # the names are shown as the text they are
    assert html.escape(", ".join(hostile), quote=False) in page

"""The demo, served on 127.0.0.1 and called through gradio_client, as a browser would."""

from __future__ import annotations

import dataclasses
import html
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from markdown_it import MarkdownIt
from PIL import Image

from detector.artifacts import LoadedDetector, load_detector
from detector.boxes import encode
from detector.demo import COLOURS, build_demo, example_image
from detector.model import CenterNet, DetectorConfig
from detector.segmentation import load_segmenter
from detector.shapes import CLASSES, draw_image
from dlshared.testing import served_demo


@pytest.fixture(scope="module")
def client(tiny_run, tiny_unet):

    segmenter, card = load_segmenter(tiny_unet["run_dir"])
    demo = build_demo(load_detector(Path(tiny_run["run_dir"]), "cpu"), segmenter, card)
    with served_demo(demo) as client:
        yield client


class Oracle(CenterNet):
    """A CenterNet that "predicts" the true maps of one known image (boxes.encode of its objects): decoding gives
    exactly its boxes, so what the demo draws can be checked box by box, apart from what a tiny run learns."""

    def __init__(self, target: dict, image_size: int):
        super().__init__(DetectorConfig(num_classes=len(CLASSES), widths=(4, 4, 4), depths=(1, 1, 1), fpn_width=4))
        self.maps = encode([target], len(CLASSES), image_size // 4, stride=4)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        heatmap = torch.logit(self.maps["heatmap"], eps=1e-6)  # logits, as the real heads return
        return {"heatmap": heatmap, "size": self.maps["size"], "offset": self.maps["offset"]}


def test_boxes_are_drawn_for_the_objects_of_an_image(tmp_path):
    from gradio_client import handle_file

    pixels, objects = draw_image(np.random.default_rng(7), 256)  # four shapes, from the data's generator
    truth = [(CLASSES[k - 1], _box(mask)) for k, mask in objects]
    assert len(truth) == 4
    target = {
        "boxes": torch.tensor([box for _, box in truth]) * 64 / 256,
        "labels": torch.tensor([k for k, _ in objects]),
    }
    loaded = LoadedDetector(Oracle(target, 64).eval(), "centernet", list(CLASSES), 64, tmp_path, torch.device("cpu"))
    Image.fromarray(pixels).save(tmp_path / "objects.png")
    with served_demo(build_demo(loaded)) as client:
        drawn, table, status = client.predict(handle_file(str(tmp_path / "objects.png")), 0.3, api_name="/detect")
    rows = table["data"]
    assert status == "4 objects above score 0.30" and len(rows) == 4
    found = sorted((name, [round(v) for v in box]) for name, _, *box in rows)
    assert found == sorted((name, [round(v) for v in box]) for name, box in truth)
    drawn = np.asarray(Image.open(drawn).convert("RGB"))
    for name, _, x1, y1, _x2, y2 in rows:  # each box outlined in its class's colour (others may cross an edge)
        left_edge = drawn[round(y1) + 1 : round(y2) - 1, round(x1) + 1]  # (rows, 3)
        colour = COLOURS[CLASSES.index(name) % len(COLOURS)]
        assert (left_edge == colour).all(1).mean() > 0.5, name
    assert (drawn != pixels).any(2).mean() < 0.5  # the rest is the picture itself


def _box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_a_trained_run_answers_through_the_served_demo(client, tmp_path):
    from gradio_client import handle_file

    example_image(3, size=200).save(tmp_path / "example.png")
    drawn, table, status = client.predict(handle_file(str(tmp_path / "example.png")), 0.05, api_name="/detect")
    assert Image.open(drawn).size == (200, 200) and status == f"{len(table['data'])} objects above score 0.05"


def test_an_example_image_gets_a_segmentation(client, tmp_path):
    from gradio_client import handle_file

    path = tmp_path / "example.png"
    example_image(3, size=200).save(path)
    overlay, message = client.predict(handle_file(str(path)), api_name="/segment")
    assert Path(overlay).is_file() and message == ""
    assert Image.open(overlay).size == (200, 200)
    made = client.predict(7, api_name="/example")
    assert Path(made).is_file()


def test_a_tiny_image_gets_a_message(client, tmp_path):
    from gradio_client import handle_file

    Image.new("RGB", (8, 8)).save(tmp_path / "tiny.png")
    drawn, table, status = client.predict(handle_file(str(tmp_path / "tiny.png")), 0.3, api_name="/detect")
    assert drawn is None and "at least 16" in status


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grey pixels but holds a few bytes of data: a decompression bomb as
    far as any decoder that trusts the header is concerned (PIL refuses over ~179 megapixels when opening)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b"")


def _truncated_png(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # incompressible: a long IDAT
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BROKEN = {
    "decompression-bomb": (lambda p: p.write_bytes(_png_claiming(20_000, 20_000)), "too large"),
    "over-our-limit": (lambda p: p.write_bytes(_png_claiming(8_000, 6_000)), "8000x6000 pixels"),  # PIL would decode
    "truncated": (_truncated_png, "truncated or damaged"),
    "not-an-image": (lambda p: p.write_text("<b>hello</b>", encoding="utf-8"), "not an image file"),
}


@pytest.mark.parametrize("broken", BROKEN)
def test_bombs_truncated_and_foreign_files_get_a_message(client, tmp_path, broken):
    from gradio_client import handle_file

    make, expected = BROKEN[broken]
    make(tmp_path / "upload.png")
    drawn, table, status = client.predict(handle_file(str(tmp_path / "upload.png")), 0.3, api_name="/detect")
    assert drawn is None and not table["data"] and expected in status
    overlay, message = client.predict(handle_file(str(tmp_path / "upload.png")), api_name="/segment")
    assert overlay is None and expected in message


def test_class_and_run_names_are_shown_as_text_not_markup(tiny_run, tmp_path):
    from detector.demo import detect, title_markdown

    loaded = load_detector(Path(tiny_run["run_dir"]), "cpu")
    hostile = ["<img src=x onerror=alert(1)>", "**bold**", "../../etc"]
    loaded = dataclasses.replace(loaded, classes=hostile, run_dir=tmp_path / "<script>")
    page = MarkdownIt("commonmark").render(title_markdown(loaded))
    assert "<img" not in page and "<script>" not in page and "<strong>bold" not in page  # text, not markup
    assert html.escape(", ".join(hostile), quote=False) in page and "(&lt;script&gt;)" in page
    _, rows = detect(loaded, example_image(3, size=128), 0.05)  # names are labels on the image, never paths
    assert {row[0] for row in rows} <= set(hostile)
    assert list(tmp_path.iterdir()) == []

"""Penn-Fudan -> COCO: a fake download in the real layout converts to a folder the loader reads back exactly,
through the function and the `convert-pennfudan` verb; bad inputs end in a UserError that names the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detector.cli import main
from detector.data import CocoDetection
from detector.pennfudan import convert_pennfudan
from dlshared.cli import UserError
from dlshared.testing import assert_one_line_error

WIDTH, HEIGHT = 40, 30


def _instances(k: int) -> np.ndarray:
    """Instance ids [H, W] of fake image k: 0 background, 1..N one pedestrian each, not all box-shaped."""
    ids = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    ids[5:15, 3 + k : 10 + k] = 1
    ids[5:8, 3 + k : 5 + k] = 0  # a notch, so the mask is not its box
    if k != 1:
        ids[12:30, 25:40] = 2  # touches the bottom and right border
        ids[12:18, 25:30] = 0
    return ids


def _save_mask(ids: np.ndarray, path: Path, mode: str) -> None:
    """As Penn-Fudan stores them: a palette PNG whose indices are the ids (colours unrelated to the ids, so
    reading grey levels instead of indices would fail), or plain greyscale."""
    if mode == "P":
        image = Image.frombytes("P", (WIDTH, HEIGHT), ids.tobytes())
        image.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30] + [0, 0, 0] * 253)
    else:
        image = Image.fromarray(ids)
    image.save(path)


def make_pennfudan(root: Path) -> Path:
    """Three 40x30 RGB images with masks of 1-2 instances: two palette masks, one greyscale."""
    (root / "PNGImages").mkdir(parents=True)
    (root / "PedMasks").mkdir()
    names = ["FudanPed00001", "FudanPed00002", "PennPed00001"]
    for k, name in enumerate(names):
        pixels = np.random.default_rng(k).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "PNGImages" / f"{name}.png")
        _save_mask(_instances(k), root / "PedMasks" / f"{name}_mask.png", "L" if k == 1 else "P")
    return root


def test_convert_round_trips_through_the_loader(tmp_path):
    src = make_pennfudan(tmp_path / "PennFudanPed")
    out = tmp_path / "coco"
    assert convert_pennfudan(src, out) == {"images": 3, "annotations": 5, "out": str(out)}
    coco = json.loads((out / "annotations.json").read_text(encoding="utf-8"))
    assert [im["file_name"] for im in coco["images"]] == [
        "FudanPed00001.png",
        "FudanPed00002.png",
        "PennPed00001.png",
    ]
    assert [im["id"] for im in coco["images"]] == [0, 1, 2]
    assert coco["categories"] == [{"id": 1, "name": "person", "supercategory": "person"}]

    dataset = CocoDetection(out, classes=["person"])
    assert len(dataset) == 3 and dataset.classes == ["person"]
    for k in range(3):
        image, target = dataset[k]
        original = np.array(Image.open(src / "PNGImages" / coco["images"][k]["file_name"]))
        assert torch.equal((image * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(original))
        ids = _instances(k)
        expected_masks, expected_boxes = [], []
        for value in range(1, ids.max() + 1):
            ys, xs = np.nonzero(ids == value)
            expected_boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])  # pixel i spans [i, i + 1)
            expected_masks.append(ids == value)
        assert target["image_id"] == k
        assert target["boxes"].tolist() == expected_boxes
        assert torch.equal(target["masks"], torch.from_numpy(np.stack(expected_masks)).to(torch.uint8))
        assert target["labels"].tolist() == [1] * len(expected_boxes)


def test_cli_verb_prints_counts_and_writes_only_where_it_may(tmp_path, capsys):
    src = make_pennfudan(tmp_path / "PennFudanPed")
    out = tmp_path / "coco"
    main(["convert-pennfudan", str(src), str(out)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["annotations"] == 5
    assert "is not empty" in assert_one_line_error(main, ["convert-pennfudan", str(src), str(out)], capsys)
    (out / "images" / "FudanPed00001.png").unlink()  # an earlier conversion of ours: --overwrite replaces it whole
    main(["convert-pennfudan", str(src), str(out), "--overwrite"])
    assert len(list((out / "images").iterdir())) == 3
    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    for target, flags, message in [
        (mine, [], "is not empty"),
        (mine, ["--overwrite"], "was not written by this tool"),
        (src, [], "which is being read"),
        (tmp_path, ["--overwrite"], "which is being read"),  # a folder holding the source
    ]:
        assert message in assert_one_line_error(main, ["convert-pennfudan", str(src), str(target), *flags], capsys)
    assert sorted(p.name for p in mine.rglob("*")) == ["images", "notes.txt"]
    assert not list(tmp_path.glob(".*"))  # no staging folder left behind


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (shutil.rmtree, "no such folder"),
        (lambda src: shutil.rmtree(src / "PedMasks"), "PNGImages/ and PedMasks/"),
        (
            lambda src: (src / "PedMasks" / "FudanPed00002_mask.png").unlink(),
            "without a mask.*FudanPed00002.png",
        ),
        (lambda src: [p.unlink() for p in (src / "PNGImages").iterdir()], "no .png images"),
        (
            lambda src: Image.new("L", (8, 8)).save(src / "PedMasks" / "PennPed00001_mask.png"),
            "PennPed00001_mask.png: expected a one-channel 40x30 instance mask",
        ),
        (
            lambda src: (src / "PNGImages" / "FudanPed00001.png").write_bytes(b"not a png"),
            "cannot read .*FudanPed00001.png",
        ),
    ],
)
def test_bad_inputs_give_clear_errors(tmp_path, breakage, message):
    src = make_pennfudan(tmp_path / "PennFudanPed")
    breakage(src)
    with pytest.raises(UserError, match=message):
        convert_pennfudan(src, tmp_path / "coco")
    assert not (tmp_path / "coco").exists() and not list(tmp_path.glob(".coco*"))  # nothing half-written

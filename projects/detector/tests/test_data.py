"""Data: generated shapes survive the COCO round trip exactly, a foreign COCO folder loads by category name,
resizing keeps boxes on their masks, and every bad input ends in a UserError that says what is wrong."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from detector import shapes
from detector.config import TrainConfig
from detector.data import CocoDetection, collate, load_splits
from detector.shapes import CLASSES, draw_image, ensure_shapes, write_shapes
from dlshared.cli import UserError

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*ignoring categories not in classes"),  # asserted where it matters
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),  # pycocotools annToMask
]


def mask_box(mask: torch.Tensor) -> list[float]:
    """xyxy extents of a mask, pixel i spanning [i, i + 1)."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_shapes_round_trip_through_coco(shapes_dir, capsys):
    coco = COCO(str(shapes_dir / "annotations.json"))  # the reference reader accepts the file
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == sorted(CLASSES)
    data = CocoDetection(shapes_dir)
    assert len(data) == 16 and data.classes == list(CLASSES) and data.num_classes == 4
    n_objects = 0
    for image, target in data:
        assert image.shape == (3, 128, 128) and image.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.05  # textured, not flat
        boxes, masks, labels = target["boxes"], target["masks"], target["labels"]
        assert masks.shape == (len(boxes), 128, 128) and masks.dtype == torch.uint8
        assert 1 <= len(labels) <= 4 and ((labels >= 1) & (labels <= 3)).all()
        assert (masks.sum(0) <= 1).all()  # what one object hides is no longer part of its mask
        for box, mask, ann in zip(boxes, masks, coco.loadAnns(coco.getAnnIds(imgIds=target["image_id"])), strict=True):
            assert mask.sum() >= shapes.MIN_VISIBLE_PIXELS
            assert box.tolist() == mask_box(mask)
            assert ann["area"] == mask.sum().item()
            assert np.array_equal(coco.annToMask(ann), mask.numpy())
        n_objects += len(boxes)
    assert n_objects == len(coco.getAnnIds())
    assert set(np.unique([a["category_id"] for a in coco.loadAnns(coco.getAnnIds())])) == {1, 2, 3}


def test_shapes_are_deterministic(tmp_path):
    a = write_shapes(tmp_path / "a", n_images=6, seed=3)
    b = write_shapes(tmp_path / "b", n_images=6, seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 7 and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    other = write_shapes(tmp_path / "c", n_images=3, seed=4)
    assert (a / "images/000000.png").read_bytes() != (other / "images/000000.png").read_bytes()
    prefix = write_shapes(tmp_path / "d", n_images=3, seed=3)  # image i depends on (seed, i) only
    assert (a / "images/000002.png").read_bytes() == (prefix / "images/000002.png").read_bytes()


def test_later_shapes_occlude_earlier_ones(monkeypatch):
    """Three placements: A, then B hiding most of A (redrawn), then C biting a corner off A."""
    yy, xx = np.mgrid[:64, :64]
    a = (yy >= 10) & (yy < 40) & (xx >= 10) & (xx < 40)  # 900 px
    b = (yy >= 5) & (yy < 45) & (xx >= 5) & (xx < 36)  # would leave A 4 columns: rejected
    c = (yy >= 30) & (yy < 50) & (xx >= 30) & (xx < 50)  # covers A's 10 x 10 corner
    queue = [a, b, c]
    monkeypatch.setattr(shapes, "_shape", lambda *args: (queue.pop(0) if queue else a & ~a, 900.0))
    pixels, objects = draw_image(np.random.default_rng(0), 64, min_objects=2, max_objects=2)
    (_, first), (_, second) = objects
    assert np.array_equal(first, a & ~c) and first.sum() == 800  # the overlap went to the later shape
    assert np.array_equal(second, c)
    colour_of = lambda m: pixels[m].astype(float).mean(0)  # noqa: E731
    overlap = a & c
    assert np.abs(colour_of(overlap) - colour_of(c & ~a)).max() < 20  # painted in C's colour, as labelled
    assert np.linalg.norm(colour_of(first) - colour_of(c)) > 50


def test_generated_masks_are_occluded_and_big_enough(tmp_path):
    out = write_shapes(tmp_path, n_images=30, image_size=96, seed=1, min_objects=4, max_objects=4)
    anns = json.loads((out / "annotations.json").read_text(encoding="utf-8"))["annotations"]
    assert all(a["area"] >= shapes.MIN_VISIBLE_PIXELS for a in anns)
    data = CocoDetection(out)
    touching = 0
    for _, target in data:
        masks = target["masks"].bool()
        assert (masks.sum(0) <= 1).all()
        for i in range(len(masks)):  # a later mask inside an earlier one's box: the earlier lost those pixels
            x1, y1, x2, y2 = (int(v) for v in target["boxes"][i])
            touching += int(masks[i + 1 :, y1:y2, x1:x2].any())
    assert touching >= 5  # overlaps are common, not a corner case


def test_foreign_coco_folder_matches_classes_by_name(tmp_path, make_coco):
    root = make_coco(tmp_path / "coco")
    with pytest.warns(UserWarning, match=r"ignoring categories not in classes: \['dog'\]"):
        data = CocoDetection(root, classes=["circle", "square", "triangle"])
    image, target = data[0]
    assert image.shape == (3, 60, 100) and target["image_id"] == 11
    assert target["labels"].tolist() == [3, 1, 1]  # triangle, circle (box only), circle (RLE); dog, crowd out
    assert target["boxes"].tolist() == [[60, 40, 90, 55], [20, 10, 50, 30], [60, 20, 65, 30]]
    triangle, box_only, rle = target["masks"]
    assert 180 < triangle.sum() < 270 and mask_box(triangle)[:2] == [60, 40]  # polygon area 225
    assert triangle[41, 61] == 1 and triangle[54, 88] == 0  # inside near the right angle; outside the slope
    assert box_only.sum() == 600 and mask_box(box_only) == [20, 10, 50, 30]
    assert rle.sum() == 50 and mask_box(rle) == [60, 20, 65, 30]
    assert target["iscrowd"].tolist() == [0, 0, 0]
    grey, empty = data[1]  # grey PNG, no annotations: RGB, empty targets of the right shapes
    assert grey.shape == (3, 40, 40) and torch.allclose(grey, torch.full_like(grey, 128 / 255))
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,) and empty["masks"].shape == (0, 40, 40)
    by_file = CocoDetection(root, classes=["triangle", "dog", "circle"])  # any order the caller gives
    assert by_file[0][1]["labels"].tolist() == [1, 3, 2, 3]
    assert CocoDetection(root).classes == ["circle", "dog", "triangle"]  # default: file's order of ids


def test_coco2017_layout(tmp_path, make_coco):
    root = make_coco(tmp_path / "coco")
    (root / "annotations").mkdir()
    (root / "annotations.json").rename(root / "annotations" / "instances_val2017.json")
    (root / "pics").rename(root / "val2017")
    ann = json.loads((root / "annotations" / "instances_val2017.json").read_text(encoding="utf-8"))
    for image in ann["images"]:
        image["file_name"] = image["file_name"].removeprefix("pics/")
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(ann), encoding="utf-8")
    data = CocoDetection(root, classes=["circle", "dog", "triangle"])
    assert data.image_dir == root / "val2017" and len(data[0][1]["boxes"]) == 4


def test_resize_and_pad_keep_boxes_on_masks(tmp_path, make_coco, shapes_dir):
    data = CocoDetection(make_coco(tmp_path / "coco"), classes=["circle", "triangle"], image_size=50)
    image, target = data[0]  # 100 x 60 -> 50 x 30, padded below to 50 x 50
    assert image.shape == (3, 50, 50) and target["masks"].shape == (3, 50, 50)
    assert target["size"].tolist() == [30, 50] and target["orig_size"].tolist() == [60, 100]
    assert image[:, 30:].abs().sum() == 0 and target["masks"][:, 30:].sum() == 0
    assert target["boxes"].tolist() == [[30, 20, 45, 27.5], [10, 5, 25, 15], [30, 10, 32.5, 15]]
    assert CocoDetection(make_coco(tmp_path / "tall"), image_size=80)[1][0].shape == (3, 80, 80)  # upscaled
    for (_, small), (_, full) in zip(CocoDetection(shapes_dir, image_size=64), CocoDetection(shapes_dir), strict=True):
        assert torch.equal(small["boxes"], full["boxes"] / 2) and small["masks"].shape[-2:] == (64, 64)
        for box, mask in zip(small["boxes"], small["masks"], strict=True):
            assert (box - torch.tensor(mask_box(mask))).abs().max() <= 1.0


def test_transform_moves_boxes_and_masks_with_the_image(shapes_dir):
    from torchvision.transforms import v2

    plain = CocoDetection(shapes_dir)[0]
    flipped = CocoDetection(shapes_dir, transform=v2.RandomHorizontalFlip(p=1.0))[0]
    assert torch.equal(flipped[0], plain[0].flip(-1)) and torch.equal(flipped[1]["masks"], plain[1]["masks"].flip(-1))
    assert type(flipped[1]["boxes"]) is torch.Tensor
    for box, mask in zip(flipped[1]["boxes"], flipped[1]["masks"], strict=True):
        assert box.tolist() == mask_box(mask)


def test_collate_stacks_equal_sizes_only(shapes_dir, tmp_path, make_coco):
    images, targets = collate([CocoDetection(shapes_dir)[i] for i in range(3)])
    assert images.shape == (3, 3, 128, 128) and len(targets) == 3
    mixed = CocoDetection(make_coco(tmp_path / "coco"), classes=["circle"])
    images, targets = collate([mixed[0], mixed[1]])
    assert isinstance(images, list) and [im.shape[-1] for im in images] == [100, 40]


def test_ensure_shapes_generates_once_per_parameters(tmp_path, monkeypatch):
    calls = []
    real = shapes.write_shapes
    monkeypatch.setattr(shapes, "write_shapes", lambda out, *a, **k: calls.append(out.name) or real(out, *a, **k))
    sizes = {"train": 4, "val": 2, "test": 2}
    root = ensure_shapes(tmp_path, sizes, image_size=64)
    assert calls == ["train", "val", "test"]
    assert (root / "train/images/000000.png").read_bytes() != (root / "val/images/000000.png").read_bytes()
    ensure_shapes(tmp_path, sizes, image_size=64)
    assert len(calls) == 3  # complete and matching: reused
    (root / "val/annotations.json").unlink()  # as an interrupted write leaves it
    ensure_shapes(tmp_path, {**sizes, "test": 3}, image_size=64)
    assert calls[3:] == ["val", "test"]
    assert len(CocoDetection(root / "test")) == 3


def test_load_splits_shapes_and_single_folder(tmp_path):
    cfg = TrainConfig(image_size=64, shapes_train=6, shapes_root=tmp_path / "s", val_fraction=0.2)
    splits = load_splits(cfg)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 50, 50) and splits.classes == list(CLASSES)
    single = load_splits(dataclasses.replace(cfg, data=tmp_path / "s" / "val"))
    assert (len(single.train), len(single.val), len(single.test)) == (30, 10, 10)
    assert single.train[0][0].shape == (3, 64, 64)


def corrupt(root: Path, how: str) -> None:
    ann = root / "annotations.json"
    coco = json.loads(ann.read_text(encoding="utf-8"))
    if how == "missing annotations":
        ann.unlink()
    elif how == "invalid json":
        ann.write_text(ann.read_text(encoding="utf-8")[:-10], encoding="utf-8")
    elif how == "not coco":
        ann.write_text("[1, 2, 3]", encoding="utf-8")
    elif how == "missing image":
        (root / "pics" / "b.png").unlink()
    elif how == "no matching category":
        coco["categories"] = [{"id": 1, "name": "cat"}]
        coco["annotations"] = []
        ann.write_text(json.dumps(coco), encoding="utf-8")
    elif how == "unknown category id":
        coco["annotations"][0]["category_id"] = 99
        ann.write_text(json.dumps(coco), encoding="utf-8")
    elif how == "unreadable image":
        (root / "pics" / "a.png").write_bytes(b"not a png at all")


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing folder", "no such folder"),
        ("missing annotations", "no annotations.json"),
        ("invalid json", r"invalid JSON \(.*line 1 column"),
        ("not coco", "not a COCO detection file"),
        ("missing image", r"1 listed image\(s\) missing under .*pics/b.png"),
        ("no matching category", r"classes: \['circle', 'square'\], categories in the file: \['cat'\]"),
        ("unknown category id", "known category_id"),
        ("unreadable image", r"a.png: cannot read image"),
    ],
)
def test_bad_inputs_give_clear_errors(tmp_path, make_coco, how, message):
    root = tmp_path / "coco"
    if how != "missing folder":
        corrupt(make_coco(root), how)
    with pytest.raises(UserError, match=message):
        CocoDetection(root, classes=["circle", "square"])[0]


def test_the_shapes_verb_writes_an_outlined_coco_folder_train_reads(tmp_path, capsys):
    from detector.cli import main

    main(["shapes", str(tmp_path / "own"), "--train", "5", "--val", "2", "--test", "3", "--image-size", "64"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["style"] == "outlined"
    splits = load_splits(TrainConfig(data=tmp_path / "own", image_size=64))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (5, 2, 3) and splits.classes == list(CLASSES)
    outlined, _ = draw_image(np.random.default_rng(0), 64, style="outlined")
    textured, _ = draw_image(np.random.default_rng(0), 64)
    # plain paper: the corner pixels of an outlined image vary by noise only, a textured one's by much more
    corner_spread = lambda pixels: np.ptp(pixels[:4, :4].astype(float), axis=(0, 1)).max()  # noqa: E731
    assert corner_spread(outlined) < 20 and np.ptp(textured.astype(float), axis=(0, 1)).max() > 60
    with pytest.raises(SystemExit):  # a folder it did not write is never replaced
        main(["shapes", str(tmp_path / "own" / "train"), "--train", "1", "--val", "1", "--test", "1"])
    assert "is not empty" in capsys.readouterr().err

"""Fixtures: tiny trained runs and a small generated shapes set (once per session), a hand-built COCO folder in the
real format."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.config import PRESETS, SEGMENT_PRESETS
from detector.shapes import write_shapes


def tiny(out: Path, **overrides):
    """The tiny preset writing its runs and its synthetic shapes under `out`."""
    return dataclasses.replace(PRESETS["tiny"], out=out, shapes_root=out / "shapes", **overrides)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """The tiny detector preset trained once: seconds, loss falls, files written."""
    from detector.train import train

    return train(tiny(tmp_path_factory.mktemp("runs"), name="tiny"))


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory) -> list[dict]:
    """The tiny detector preset for 3 epochs under 2-process gloo DDP: each rank's returned metrics."""
    from detector.train import train
    from dlshared.processes import run_distributed

    cfg = tiny(tmp_path_factory.mktemp("runs"), name="ddp", device="cpu", epochs=3)
    return run_distributed(train, cfg, nprocs=2)


@pytest.fixture(scope="session")
def tiny_unet(tmp_path_factory) -> dict:
    """The tiny U-Net preset (`segment`) trained once."""
    from detector.segmentation import train_segmentation

    out = tmp_path_factory.mktemp("unet_runs")
    return train_segmentation(dataclasses.replace(SEGMENT_PRESETS["tiny"], out=out, shapes_root=out / "shapes32"))


@pytest.fixture(scope="session")
def ddp_unet(tmp_path_factory) -> list[dict]:
    """The tiny U-Net preset (`segment`) for 4 epochs under 2-process gloo DDP: each rank's returned metrics."""
    from detector.segmentation import train_segmentation
    from dlshared.processes import run_distributed

    out = tmp_path_factory.mktemp("unet_runs")
    cfg = dataclasses.replace(
        SEGMENT_PRESETS["tiny"], out=out, shapes_root=out / "shapes32", name="ddp", device="cpu", epochs=4
    )
    return run_distributed(train_segmentation, cfg, nprocs=2)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """16 generated images of 128 px, written as COCO."""
    return write_shapes(tmp_path_factory.mktemp("shapes"), n_images=16, image_size=128, seed=0)


@pytest.fixture
def make_coco():
    return write_coco_folder


def write_coco_folder(root: Path) -> Path:
    """A COCO folder as other tools write it: images in a sub-folder named in file_name, category ids that are
    not 1..K and in another order, an extra category, polygon / uncompressed RLE / no segmentation, a crowd
    region and an image without annotations. Image a.png is 100 wide and 60 high, RGB; b.png is grey, 40 x 40."""
    (root / "pics").mkdir(parents=True)
    a = np.full((60, 100, 3), 30, dtype=np.uint8)
    a[10:30, 20:50] = (200, 40, 40)  # the "circle" object's box, painted for the eye only
    Image.fromarray(a).save(root / "pics" / "a.png")
    Image.fromarray(np.full((40, 40), 128, dtype=np.uint8), mode="L").save(root / "pics" / "b.png")
    # uncompressed RLE (column-major runs, zeros first): rows 20..29 x columns 60..64 of the 60 x 100 image
    rle_counts = [60 * 60 + 20, 10, 50, 10, 50, 10, 50, 10, 50, 10, 60 * 100 - (60 * 64 + 30)]
    coco = {
        "images": [
            {"id": 11, "file_name": "pics/a.png", "width": 100, "height": 60},
            {"id": 12, "file_name": "pics/b.png", "width": 40, "height": 40},
        ],
        "categories": [
            {"id": 9, "name": "triangle"},
            {"id": 4, "name": "dog"},
            {"id": 2, "name": "circle"},
        ],
        "annotations": [
            # a triangle as a polygon: corners (60, 40), (90, 40), (60, 55)
            {
                "id": 1,
                "image_id": 11,
                "category_id": 9,
                "bbox": [60, 40, 30, 15],
                "area": 225,
                "iscrowd": 0,
                "segmentation": [[60, 40, 90, 40, 60, 55]],
            },
            # no segmentation: the mask is the box
            {"id": 2, "image_id": 11, "category_id": 2, "bbox": [20, 10, 30, 20], "area": 600, "iscrowd": 0},
            {"id": 3, "image_id": 11, "category_id": 4, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {
                "id": 4,
                "image_id": 11,
                "category_id": 2,
                "bbox": [60, 20, 5, 10],
                "area": 50,
                "iscrowd": 0,
                "segmentation": {"size": [60, 100], "counts": rle_counts},
            },
            {
                "id": 5,
                "image_id": 11,
                "category_id": 2,
                "bbox": [0, 30, 40, 30],
                "area": 1200,
                "iscrowd": 1,
                "segmentation": [[0, 30, 40, 30, 40, 60, 0, 60]],
            },
        ],
    }
    (root / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")
    return root

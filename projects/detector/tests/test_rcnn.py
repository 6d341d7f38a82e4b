"""torchvision's R-CNN baselines through the project's data, loop and metric; box and mask mAP."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from detector.config import PRESETS, ExportArgs
from detector.evaluate import coco_map
from detector.model import DetectorConfig, build_detector
from detector.rcnn import build_rcnn
from dlshared.cli import UserError


@pytest.fixture(scope="module")
def mask_run(tmp_path_factory) -> dict:
    from detector.train import train

    out = tmp_path_factory.mktemp("runs")
    tiny = dataclasses.replace(PRESETS["tiny"], out=out, shapes_root=out / "shapes", name="mask", epochs=1)
    return train(dataclasses.replace(tiny, model="maskrcnn_mobilenet", max_detections=10))  # 10: fewer masks to paste


def test_mask_rcnn_trains_and_reports_box_and_mask_map(mask_run):
    run_dir = Path(mask_run["run_dir"])
    assert {"test_map", "test_map_50", "test_mask_map", "test_mask_map_50"} <= set(mask_run)
    assert all(0.0 <= mask_run[k] <= 1.0 for k in ("test_map", "test_mask_map"))
    card = json.loads((run_dir / "card.json").read_text(encoding="utf-8"))
    assert card["arch"] == "maskrcnn_mobilenet" and card["model"] == {"num_classes": 4}

    from detector.artifacts import load_detector
    from detector.evaluate import detect

    loaded = load_detector(run_dir, "cpu")
    found = detect(loaded.model, torch.rand(2, 3, 64, 64), score_threshold=0.0)
    assert len(found) == 2 and found[0]["masks"].dtype == torch.bool
    assert found[0]["masks"].shape[1:] == (64, 64) and len(found[0]["masks"]) == len(found[0]["boxes"])

    from detector.demo import detect as demo_detect
    from detector.demo import example_image

    image = example_image(3, size=96)
    drawn, rows = demo_detect(loaded, image, threshold=0.0)  # masks painted, boxes drawn, at the image's size
    assert drawn.size == image.size and drawn.tobytes() != image.tobytes() and len(rows) <= 100


def test_export_explains_that_it_writes_the_centernet_only(mask_run):
    from detector.export import export

    with pytest.raises(UserError, match="torchvision maskrcnn_mobilenet"):
        export(ExportArgs(ckpt=Path(mask_run["run_dir"]), out=Path(mask_run["run_dir"]) / "x.onnx"))


def test_coco_map_scores_masks_apart_from_boxes():
    """Perfect boxes with perfect masks: 1 and 1; the same boxes with masks half wrong: boxes 1, masks lower."""
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[0, 2:12, 2:12] = True
    masks[1, 16:30, 10:20] = True
    truth = {
        "boxes": torch.tensor([[2.0, 2, 12, 12], [10, 16, 20, 30]]),
        "labels": torch.tensor([1, 2]),
        "masks": masks.to(torch.uint8),
    }
    perfect = {"boxes": truth["boxes"], "scores": torch.tensor([0.9, 0.8]), "labels": truth["labels"], "masks": masks}
    assert coco_map([([perfect], [truth])]) | {"images": 1} == {
        "map": 1.0,
        "map_50": 1.0,
        "map_75": 1.0,
        "mask_map": 1.0,
        "mask_map_50": 1.0,
        "mask_map_75": 1.0,
        "images": 1,
    }
    half = masks.clone()
    half[:, :, :11] = False  # the first mask keeps 1 of 10 columns, the second 9 of 10
    scored = coco_map([([dict(perfect, masks=half)], [truth])])
    assert scored["map"] == 1.0 and 0.3 < scored["mask_map"] < 0.9
    without = coco_map([([{k: v for k, v in perfect.items() if k != "masks"}], [truth])])
    assert without == {"map": 1.0, "map_50": 1.0, "map_75": 1.0, "images": 1}


def test_anchors_scale_with_the_image_size():
    model = build_rcnn("fasterrcnn_resnet50", num_classes=4, image_size=128)
    assert model.rpn.anchor_generator.sizes == ((8.0,), (16.0,), (32.0,), (64.0,), (128.0,))
    assert model.transform.min_size == (128,) and model.transform.max_size == 128


def test_bad_architecture_and_offline_pretrained_weights_are_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="unknown model 'yolo'"):
        build_detector("yolo", DetectorConfig(3), 128)
    with pytest.raises(UserError, match="--pretrained applies to the torchvision R-CNNs"):
        build_detector("centernet", DetectorConfig(3), 128, pretrained=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights: a download is needed, and refused
    with pytest.raises(UserError, match="cannot download the pretrained weights of fasterrcnn_mobilenet"):
        build_rcnn("fasterrcnn_mobilenet", 4, 128, pretrained=True)

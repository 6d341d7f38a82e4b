"""The U-Net of day 15: shapes, masks to class maps, the mIoU arithmetic, and a tiny training run end to end
(with a resume that continues from the saved step)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from detector.data import Splits, collate, load_splits
from detector.segmentation import (
    SegmentationConfig,
    UNet,
    confusion_matrix,
    dice_loss,
    evaluate_segmentation,
    load_segmenter,
    miou,
    predict_mask,
    semantic_target,
    train_segmentation,
)
from detector.shapes import CLASSES, write_shapes
from dlshared.checkpoint import load_resume_state
from dlshared.processes import run_distributed

NAMES = ["background", *CLASSES]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A COCO folder with train/ (32 images of 64 px) and val/ (8, doubling as test), as real data comes."""
    root = tmp_path_factory.mktemp("shapes")
    write_shapes(root / "train", 32, 64, seed=1)
    write_shapes(root / "val", 8, 64, seed=2)
    return root


@pytest.fixture(scope="module")
def splits(data) -> Splits:
    return load_splits(dataclasses.replace(TINY, data=data))


TINY = SegmentationConfig(
    epochs=3,
    min_steps=0,
    batch_size=8,
    lr=1e-2,
    widths=(8, 16, 32),
    image_size=64,
    progress=False,
    device="cpu",
    log_every=2,
)


@pytest.mark.parametrize("size", [64, 128])
def test_unet_keeps_the_resolution_and_has_a_class_per_channel(size):
    torch.manual_seed(0)
    model = UNet(num_classes=3)
    assert 0.4e6 < sum(p.numel() for p in model.parameters()) < 0.6e6  # the default widths (16, 32, 64, 128)
    logits = model(torch.rand(2, 3, size, size))
    assert logits.shape == (2, 4, size, size)
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unet_takes_sizes_that_do_not_halve_evenly():
    assert UNet(2, widths=(4, 8, 16)).eval()(torch.rand(1, 3, 50, 50)).shape == (1, 3, 50, 50)


def test_semantic_target_paints_instances_in_order():
    masks = torch.zeros(3, 6, 6, dtype=torch.uint8)
    masks[0, :3, :3] = 1  # a square, label 2
    masks[1, 2:5, 2:5] = 1  # overlaps the first at (2, 2): the later instance wins there
    masks[2, 5, 5] = 1
    target = {"masks": masks, "labels": torch.tensor([2, 1, 3])}
    want = torch.tensor(
        [
            [2, 2, 2, 0, 0, 0],
            [2, 2, 2, 0, 0, 0],
            [2, 2, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 3],
        ]
    )
    got = semantic_target(target, 6)
    assert got.dtype == torch.int64 and torch.equal(got, want)
    empty = {"masks": torch.zeros(0, 6, 6, dtype=torch.uint8), "labels": torch.zeros(0, dtype=torch.int64)}
    assert torch.equal(semantic_target(empty, 6), torch.zeros(6, 6, dtype=torch.int64))
    # another size: nearest-neighbour resampling keeps the class map exact for a 2x upscale
    assert torch.equal(semantic_target(target, 12), want.repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_confusion_matrix_counts_truth_by_prediction_and_ignores_void():
    truth = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    assert confusion_matrix(pred, truth, 3).tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_miou_on_a_hand_made_confusion_matrix():
    confusion = torch.tensor(
        [
            [5, 1, 0, 1],  # background: TP 5, FN 2, FP 2 -> 5 / 9
            [2, 3, 0, 0],  # class 1:    TP 3, FN 2, FP 1 -> 3 / 6
            [0, 0, 0, 0],  # class 2:    never true, never predicted -> no IoU, left out of the means
            [0, 0, 0, 0],  # class 3:    never true, predicted once -> IoU 0, counted
        ]
    )
    result = miou(confusion, ["bg", "a", "b", "c"])
    assert result["iou"] == {"bg": pytest.approx(5 / 9), "a": 0.5, "b": None, "c": 0.0}
    assert result["miou"] == pytest.approx((5 / 9 + 0.5 + 0.0) / 3)  # background included (Pascal VOC)
    assert result["miou_foreground"] == pytest.approx(0.25)
    assert result["pixel_accuracy"] == pytest.approx(8 / 12)
    assert miou(torch.diag(torch.tensor([7, 3, 0, 2])))["miou"] == 1.0


def test_dice_loss_is_zero_for_a_confident_right_answer_and_large_for_a_wrong_one():
    truth = torch.tensor([[[0, 0, 1], [2, 2, 1], [0, 0, 0]]])  # (1, 3, 3); class 3 absent: left out
    right = 50.0 * F.one_hot(truth, 4).permute(0, 3, 1, 2).float()  # (1, 4, 3, 3)
    assert dice_loss(right, truth) < 1e-6
    assert dice_loss(right, (truth + 1) % 3) > 0.99


class Oracle(nn.Module):
    """Answers each batch of an unshuffled loader with its ground truth, as one-hot logits."""

    def __init__(self, truths: list[torch.Tensor], num_classes: int):
        super().__init__()
        self.truths, self.num_classes = list(truths), num_classes
        self.dummy = nn.Parameter(torch.zeros(()))  # so that the model has a device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        truth = torch.stack([self.truths.pop(0) for _ in range(len(images))])
        return F.one_hot(truth, self.num_classes + 1).permute(0, 3, 1, 2).float()  # (B, K + 1, S, S)


def test_predicting_the_ground_truth_scores_miou_one(splits):
    truths = [semantic_target(target, 64) for _, target in splits.val]
    loader = DataLoader(splits.val, 3, collate_fn=collate)
    result = evaluate_segmentation(Oracle(truths, 3), loader, torch.device("cpu"), NAMES)
    assert result["miou"] == result["miou_foreground"] == result["pixel_accuracy"] == 1.0
    assert sum(map(sum, result["confusion_matrix"])) == 8 * 64 * 64
    assert torch.equal(predict_mask(Oracle(truths[:1], 3), splits.val[0][0]), truths[0])


def test_tiny_training_lowers_the_loss_and_writes_a_loadable_checkpoint(data, splits, tmp_path):
    cfg = dataclasses.replace(TINY, data=data, out=tmp_path, name="run")
    metrics = train_segmentation(cfg)
    run_dir = Path(metrics["run_dir"])
    assert run_dir == tmp_path / "detector-unet" / "run"
    for name in ("config.json", "card.json", "model.safetensors", "resume.pt", "metrics.json"):
        assert (run_dir / name).is_file(), name
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0] - 0.1, losses
    assert 0.0 <= metrics["test_miou"] <= 1.0 and set(metrics["test_iou"]) == set(NAMES)
    assert json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["test_miou"] == metrics["test_miou"]
    with Image.open(run_dir / "curves.png") as curves:
        assert curves.format == "PNG" and curves.width > 600 and curves.height > 300

    model, card = load_segmenter(run_dir)
    assert card["classes"] == list(CLASSES) and model.widths == (8, 16, 32)
    weights = load_file(run_dir / "model.safetensors")
    assert torch.equal(model.state_dict()["head.weight"], weights["head.weight"])
    mask = predict_mask(model, splits.test[0][0])
    assert mask.shape == (64, 64) and mask.dtype == torch.int64 and 0 <= mask.min() <= mask.max() <= 3
    # the saved weights reproduce the reported test mIoU
    loader = DataLoader(splits.test, 8, collate_fn=collate)
    assert evaluate_segmentation(model, loader, torch.device("cpu"), NAMES)["miou"] == pytest.approx(
        metrics["test_miou"], abs=1e-9
    )

    # resume: two more epochs continue from the saved step, not from scratch
    state = load_resume_state(run_dir / "resume.pt")
    assert state["epoch"] == 3 and state["step"] == metrics["steps"] == 12
    resumed = train_segmentation(dataclasses.replace(cfg, epochs=5, resume=True))
    assert resumed["steps"] == 20 and [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4, 5]


def test_two_process_ddp_run_uses_one_run_folder(data, tmp_path):
    cfg = dataclasses.replace(TINY, data=data, out=tmp_path, epochs=1)  # no --name: a timestamp that rank 0 picks
    rank0, rank1 = run_distributed(train_segmentation, cfg, nprocs=2)
    assert rank0["run_dir"] == rank1["run_dir"] and rank0["processes"] == rank1["processes"] == 2
    assert rank0["steps"] == 2  # 32 images dealt to 2 ranks: 2 batches of 8 each
    assert rank0["test_miou"] == rank1["test_miou"]  # evaluated once, shared with every rank
    assert [p.name for p in (tmp_path / "detector-unet").iterdir()] == [Path(rank0["run_dir"]).name]

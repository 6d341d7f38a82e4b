"""The pictures: detections drawn where they are (boxes, masks, the ground truth), curves with gaps left out."""

from __future__ import annotations

import torch

from detector.pictures import COLOURS, TRUTH, drawn_detections, segmentation_curves


def test_detections_are_drawn_at_their_place_enlarged_with_the_image():
    image = torch.zeros(3, 32, 32)  # black, so every drawn pixel is the drawing's
    target = {"boxes": torch.tensor([[2.0, 2.0, 12.0, 12.0]])}
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 16:28, 16:28] = True
    found = {
        "boxes": torch.tensor([[16.0, 16.0, 28.0, 28.0]]),
        "labels": torch.tensor([2]),
        "scores": torch.tensor([0.9]),
        "masks": mask,
    }
    pixels = drawn_detections(image, target, found, ["circle", "square"], side=64)
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.uint8  # enlarged twice
    assert pixels[:, 4, 4:24].T.tolist() == [list(TRUTH)] * 20  # the ground truth's top edge, at 2x, in white
    square = torch.tensor(COLOURS[1])  # label 2 = the second class
    assert (pixels[:, 54, 54] - square * 0.45).abs().max() < 1  # inside the mask: its colour at 45%
    assert pixels[:, 55:57, 40].T.tolist() == [square.tolist()] * 2  # the predicted box's bottom edge, 2 wide
    assert pixels[:, 20, 20].tolist() == [0, 0, 0]  # between them: nothing drawn
    assert pixels[:, 44:, :30].sum() == 0  # nothing below-left of both


def test_a_large_image_is_shrunk_with_its_boxes():
    image = torch.zeros(3, 512, 512)
    found = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    pixels = drawn_detections(image, {"boxes": torch.tensor([[0.0, 256.0, 511.0, 511.0]])}, found, ["a"], side=256)
    assert pixels.shape == (3, 256, 256) and pixels[:, 128, 100].tolist() == list(TRUTH)


def test_curves_leave_out_an_epoch_without_a_value():
    history = [
        {"epoch": 1, "train_loss": 1.0, "val_miou": 0.3, "val_miou_foreground": None},
        {"epoch": 2, "train_loss": 0.8, "val_miou": 0.5, "val_miou_foreground": 0.4},
    ]
    figure = segmentation_curves(history)
    lines = {line.get_label(): line.get_xdata().tolist() for ax in figure.axes for line in ax.get_lines()}
    assert lines == {"train loss": [1, 2], "val mIoU": [1, 2], "val mIoU foreground": [2]}

"""What a run leaves to look at: RUN/curves.png from `train` and `segment`, detections.png from `eval`: test images
with the boxes (and masks) the model predicts, drawn by torchvision.utils, the ground truth beside them in white."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks, make_grid

from dlshared.pictures import curves_figure, pyplot

from .evaluate import detect

SHOWN_SCORE = 0.3
"""Detections drawn: those scoring at least this (the demo's default threshold), not mAP's long tail down to 0.05."""
COLOURS = [(255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255), (0, 220, 220)]
"""One colour per class (label 1 first), here and in the demo."""
TRUTH = (255, 255, 255)


def epoch_curves(history: list[dict], panels: dict[str, list[str]], names: dict[str, str], title: str | None = None):
    """`curves_figure` over epochs, history keys renamed for the legend by `names` (e.g. "map" -> "val_mAP");
    a None (a class never seen that epoch) is left out rather than drawn as a gap."""
    records = [{names.get(key, key): value for key, value in h.items() if value is not None} for h in history]
    fig = curves_figure(records, panels, x="epoch", title=title)
    return fig


def detector_curves(history: list[dict]):
    """Training loss and validation COCO mAP per epoch (mask mAP too for Mask R-CNN)."""
    names = {"map": "val_mAP", "map_50": "val_mAP@.5", "mask_map": "val_mask_mAP", "mask_map_50": "val_mask_mAP@.5"}
    return epoch_curves(history, {"loss": ["train_loss"], "COCO mAP": list(names.values())}, names)


def segmentation_curves(history: list[dict]):
    """The U-Net's training loss (cross-entropy + Dice) and validation mIoU per epoch."""
    names = {"val_miou": "val_mIoU", "val_miou_foreground": "val_mIoU_foreground"}
    return epoch_curves(history, {"loss": ["train_loss"], "mIoU": list(names.values())}, names)


def drawn_detections(image: torch.Tensor, target: dict, found: dict, classes: list[str], side: int = 256):
    """One image (3, H, W) in [0, 1] -> uint8 (3, h, w) about `side` pixels on its longer side (small images
    enlarged a whole number of times, so that labels are legible, large ones shrunk): ground-truth boxes in white,
    then the detections `found` (boxes, labels, scores[, masks]) in the class colours, labels on their colour."""
    longer = max(image.shape[-2:])
    scale = max(1, round(side / longer)) if longer <= side else side / longer
    size = [round(n * scale) for n in image.shape[-2:]]
    mode = "nearest" if scale >= 1 else "bilinear"  # whole pixels enlarged stay sharp; shrinking needs antialiasing
    pixels = F.interpolate(image[None], size, mode=mode, antialias=scale < 1)[0].clamp(0, 1)
    pixels = (pixels * 255).round().to(torch.uint8)
    colours = [COLOURS[(int(label) - 1) % len(COLOURS)] for label in found["labels"]]
    if "masks" in found and len(found["masks"]):
        masks = F.interpolate(found["masks"][None].float(), size, mode="nearest")[0].bool()
        pixels = draw_segmentation_masks(pixels, masks, alpha=0.45, colors=colours)
    if len(target["boxes"]):
        pixels = draw_bounding_boxes(pixels, target["boxes"] * scale, colors=TRUTH, width=1)
    if len(found["boxes"]):
        from matplotlib import font_manager  # PIL's built-in font is too small to read; matplotlib ships this one

        scores = found["scores"].tolist()
        names = [f"{classes[int(label) - 1]} {score:.2f}" for label, score in zip(found["labels"], scores, strict=True)]
        font = font_manager.findfont("DejaVu Sans")
        box = {"width": 2, "font": font, "font_size": 10, "fill_labels": True}
        pixels = draw_bounding_boxes(pixels, found["boxes"] * scale, names, colours, **box)
    return pixels


def detections_figure(model, dataset, classes: list[str], device, count: int = 3, columns: int = 3):
    """The first `count` images of `dataset` (a test split: the same ones every time) with their detections, one
    pixel of the drawings per pixel of the PNG (resampling would blur the labels and bloat the file). Three of the
    noisy synthetic 128-px images, enlarged twice, make a PNG of about 150 KB."""
    tiles = []
    for i in range(min(count, len(dataset))):
        image, target = dataset[i]
        found = {k: v.cpu() for k, v in detect(model, image[None].to(device), SHOWN_SCORE)[0].items()}
        tiles.append(drawn_detections(image, target, found, classes))
    grid = make_grid(tiles, nrow=columns, padding=4, pad_value=255)  # (3, H, W) uint8
    height, width = grid.shape[-2:]
    dpi, title = 110, 24  # dpi: what save_figures writes at; title: pixels of the strip above the grid
    plt = pyplot()
    fig = plt.figure(figsize=(width / dpi, (height + title) / dpi))
    ax = fig.add_axes((0, 0, 1, height / (height + title)))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.axis("off")
    caption = f"white: ground truth; colours: detections scoring >= {SHOWN_SCORE} (class, score)"
    fig.text(0.5, 1 - title / 2 / (height + title), caption, ha="center", va="center", fontsize=9)
    return fig

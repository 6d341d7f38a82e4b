"""The metric, defined once: COCO mAP@[.5:.95] and mAP@.5 of boxes, and of masks for models that predict them
(torchmetrics, faster-coco-eval backend).

Used by training (validation each epoch, test at the end), by `detector eval` and by the README.
"""

from __future__ import annotations

import contextlib

import torch
from torchmetrics.detection import MeanAveragePrecision

from .boxes import decode
from .model import CenterNet
from .rcnn import rcnn_detect


@torch.no_grad()
def detect(model, images: torch.Tensor, score_threshold: float = 0.05, max_detections: int = 100) -> list[dict]:
    """Any detector of the project -> per image {boxes (N, 4) xyxy pixels, scores, labels 1..K[, masks (N, H, W)]}:
    the CenterNet's maps decoded here, torchvision's R-CNNs decode themselves."""
    if isinstance(model, CenterNet):
        return decode(model(images), model.cfg.stride, max_detections, score_threshold)
    return rcnn_detect(model, images, score_threshold, max_detections)


@torch.no_grad()
def predict(model, loader, device, score_threshold: float = 0.05, max_detections: int = 100, autocast=None):
    """Yield (detections, targets) per batch: the model's detections next to the ground truth, on the CPU."""
    model.eval()
    for images, targets in loader:
        with autocast() if autocast is not None else contextlib.nullcontext():
            detections = detect(model, images.to(device), score_threshold, max_detections)
        yield [{k: v.cpu() for k, v in d.items()} for d in detections], targets


def coco_map(pairs) -> dict[str, float]:
    """mAP over (detections, targets) batches, as COCO defines it (101-point interpolation, IoU .50:.05:.95).

    Boxes always; masks too (keys mask_map, mask_map_50, mask_map_75) when the detections carry masks."""
    pairs = list(pairs)  # [(detections, targets) per batch]
    with_masks = bool(pairs) and all("masks" in d for d in pairs[0][0])
    iou_type = ("bbox", "segm") if with_masks else "bbox"
    # sync_on_compute=False: under DDP only the main process evaluates; a sync would wait for the others forever
    metric = MeanAveragePrecision(iou_type=iou_type, backend="faster_coco_eval", sync_on_compute=False)
    images = 0
    for detections, targets in pairs:
        keep = ("boxes", "labels", "masks") if with_masks else ("boxes", "labels")
        truth = [{k: t[k].bool() if k == "masks" else t[k] for k in keep} for t in targets]
        metric.update([{k: d[k] for k in ("boxes", "scores", *keep[1:])} for d in detections], truth)
        images += len(targets)
    result = metric.compute()
    prefix = "bbox_" if with_masks else ""
    metrics = {name: round(result[f"{prefix}{name}"].item(), 4) for name in ("map", "map_50", "map_75")}
    if with_masks:
        metrics |= {f"mask_{name}": round(result[f"segm_{name}"].item(), 4) for name in ("map", "map_50", "map_75")}
    return metrics | {"images": images}

"""The metric, defined once: COCO mAP@[.5:.95] and mAP@.5 of boxes (torchmetrics, faster-coco-eval backend).

Used by training (validation each epoch, test at the end), by `detector eval` and by the README.
"""

from __future__ import annotations

import torch
from torchmetrics.detection import MeanAveragePrecision

from .boxes import decode


@torch.no_grad()
def predict(model, loader, device, stride: int, score_threshold: float = 0.05, max_detections: int = 100,
            autocast=None):  # fmt: skip
    """Yield (detections, targets) per batch: the model's decoded boxes next to the ground truth, on the CPU."""
    model.eval()
    for images, targets in loader:
        images = images.to(device)
        if autocast is not None:
            with autocast():
                outputs = model(images)
        else:
            outputs = model(images)
        detections = decode(outputs, stride, max_detections, score_threshold)
        yield [{k: v.cpu() for k, v in d.items()} for d in detections], targets


def box_map(pairs) -> dict[str, float]:
    """mAP over (detections, targets) batches, as COCO defines it (101-point interpolation, IoU .50:.05:.95)."""
    # sync_on_compute=False: under DDP only the main process evaluates; a sync would wait for the others forever
    metric = MeanAveragePrecision(iou_type="bbox", backend="faster_coco_eval", sync_on_compute=False)
    images = 0
    for detections, targets in pairs:
        truth = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        metric.update(detections, truth)
        images += len(targets)
    result = metric.compute()
    return {"map": round(result["map"].item(), 4), "map_50": round(result["map_50"].item(), 4),
            "map_75": round(result["map_75"].item(), 4), "images": images}  # fmt: skip

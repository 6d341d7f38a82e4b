"""Boxes <-> CenterNet target maps, the training loss and decoding, written out (course day 14).

encode: each box becomes a Gaussian bump on its class's heatmap at the box centre (in stride-4 cells), plus the box
        size and the centre's sub-cell offset stored at that one cell.
decode: the inverse: peaks of the heatmap (a 3x3 max-pool keeps local maxima), the size and offset read there,
        then torchvision's batched NMS per class. On perfect maps decode(encode(boxes)) returns the boxes exactly.
loss:   CenterNet's penalty-reduced focal loss on the heatmap (cells near a centre are punished less for firing),
        plus L1 on size and offset at the centre cells only.
The Gaussian's spread follows TTFNet (an ellipse with sigma = 0.54 x side / 6), so long thin boxes get long bumps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

GAUSSIAN_ALPHA = 0.54
SIZE_WEIGHT, OFFSET_WEIGHT = 0.1, 1.0


def encode(targets: list[dict], num_classes: int, out_size: int, stride: int) -> dict[str, torch.Tensor]:
    """Per-image targets (boxes xyxy in pixels, labels 1..K) -> dense maps of a batch, (B, C, out, out) each."""
    B = len(targets)
    heatmap = torch.zeros(B, num_classes, out_size, out_size)
    size = torch.zeros(B, 2, out_size, out_size)
    offset = torch.zeros(B, 2, out_size, out_size)
    centre = torch.zeros(B, 1, out_size, out_size)  # 1 where an object's centre falls
    grid = torch.arange(out_size, dtype=torch.float32)
    for b, target in enumerate(targets):
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True):
            x1, y1, x2, y2 = (v / stride for v in box)  # in cells
            w, h = x2 - x1, y2 - y1
            if w <= 0 or h <= 0:
                continue
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            ix, iy = min(int(cx), out_size - 1), min(int(cy), out_size - 1)
            sx, sy = max(GAUSSIAN_ALPHA * w / 6, 0.3), max(GAUSSIAN_ALPHA * h / 6, 0.3)
            bump = torch.exp(-((grid - ix)[None, :] ** 2) / (2 * sx**2) - ((grid - iy)[:, None] ** 2) / (2 * sy**2))
            channel = heatmap[b, label - 1]
            torch.maximum(channel, bump, out=channel)  # overlapping objects: keep the stronger claim
            channel[iy, ix] = 1.0
            size[b, :, iy, ix] = torch.tensor([w, h])
            offset[b, :, iy, ix] = torch.tensor([cx - ix, cy - iy])
            centre[b, 0, iy, ix] = 1.0
    return {"heatmap": heatmap, "size": size, "offset": offset, "centre": centre}


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's focal loss, normalised by the number of objects. logits and target: (B, K, H, W)."""
    positive = target.eq(1).float()
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = log_p.exp()
    pos = -(log_not_p.exp() ** 2 * log_p * positive).sum()  # (1 - p)^2 log p at centres
    neg = -(p**2 * log_not_p * (1 - target) ** 4 * (1 - positive)).sum()  # near a centre: (1 - y)^4 softens
    return (pos + neg) / positive.sum().clamp(min=1.0)


def detection_loss(outputs: dict[str, torch.Tensor], maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    centre = maps["centre"]
    n = centre.sum().clamp(min=1.0)
    heat = focal_loss(outputs["heatmap"].float(), maps["heatmap"])
    size = (F.l1_loss(outputs["size"].float(), maps["size"], reduction="none") * centre).sum() / n
    offset = (F.l1_loss(outputs["offset"].float(), maps["offset"], reduction="none") * centre).sum() / n
    total = heat + SIZE_WEIGHT * size + OFFSET_WEIGHT * offset
    return {"loss": total, "heatmap": heat.detach(), "size": size.detach(), "offset": offset.detach()}


@torch.no_grad()
def decode(
    outputs: dict[str, torch.Tensor],
    stride: int,
    max_detections: int = 100,
    score_threshold: float = 0.05,
    nms_iou: float = 0.5,
    heatmap_is_logits: bool = True,
) -> list[dict[str, torch.Tensor]]:
    """Network maps -> per image {boxes (N, 4) xyxy pixels, scores (N,), labels (N,) in 1..K}."""
    heat = outputs["heatmap"].float()
    heat = heat.sigmoid() if heatmap_is_logits else heat
    B, K, H, W = heat.shape
    heat = heat * (heat == F.max_pool2d(heat, 3, stride=1, padding=1))  # keep local maxima only
    scores, index = heat.view(B, -1).topk(min(max_detections, K * H * W))  # (B, k)
    labels, cell = index // (H * W), index % (H * W)
    ys, xs = (cell // W).float(), (cell % W).float()
    gather = cell[:, None, :].expand(-1, 2, -1)
    size = outputs["size"].float().view(B, 2, -1).gather(2, gather)  # (B, 2, k)
    offset = outputs["offset"].float().view(B, 2, -1).gather(2, gather)
    cx, cy = (xs + offset[:, 0]) * stride, (ys + offset[:, 1]) * stride
    w, h = size[:, 0].clamp(min=0) * stride, size[:, 1].clamp(min=0) * stride
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)  # (B, k, 4)
    results = []
    for b in range(B):
        keep = scores[b] > score_threshold
        bx, sc, lb = boxes[b][keep], scores[b][keep], labels[b][keep]
        keep = batched_nms(bx, sc, lb, nms_iou)  # per class: overlapping peaks of one object
        results.append({"boxes": bx[keep], "scores": sc[keep], "labels": lb[keep] + 1})
    return results

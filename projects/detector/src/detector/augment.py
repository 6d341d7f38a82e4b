"""Label-preserving augmentations of a batch, applied in the training loop to images and boxes together.

flip:      a random horizontal mirror, right for photographs (a person mirrored is still upright).
dihedral:  any of the 8 symmetries of the square (mirrors and quarter turns), for data with no "up": the
           synthetic shapes, aerial or microscope images. Boxes map exactly, since they stay axis-aligned.
channels:  a random permutation of the RGB channels, for data whose colours carry no class (the shapes are
           painted in random colours, so a red circle and a blue one teach the same thing).
Images must be square for quarter turns; the loaders pad every image to S x S.
"""

from __future__ import annotations

import torch

KINDS = ("none", "flip", "dihedral")


def augment_batch(
    images: torch.Tensor, targets: list[dict], kind: str, shuffle_channels: bool, generator: torch.Generator
) -> torch.Tensor:
    """images (B, 3, S, S); each target's boxes (N, 4) xyxy in pixels, and masks (N, S, S) where present, are
    replaced by transformed copies."""
    if kind not in KINDS:
        raise ValueError(f"augment must be one of {KINDS}, got {kind!r}")
    B, size = images.shape[0], images.shape[-1]
    draws = torch.rand(B, 3, generator=generator) < 0.5  # (B, 3): mirror x, mirror y, transpose
    if kind != "dihedral":
        draws[:, 1:] = False
    if kind == "none":
        draws[:, 0] = False
    out = []
    for image, target, (flip_x, flip_y, swap) in zip(images, targets, draws.tolist(), strict=True):
        boxes, masks = target["boxes"].clone(), target.get("masks")
        if swap:  # transpose: (x, y) -> (y, x); with one mirror this makes the quarter turns
            image, masks = _apply(lambda t: t.transpose(-1, -2), image, masks)
            boxes = boxes[:, [1, 0, 3, 2]]
        if flip_x:
            image, masks = _apply(lambda t: t.flip(-1), image, masks)
            boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
        if flip_y:
            image, masks = _apply(lambda t: t.flip(-2), image, masks)
            boxes[:, [1, 3]] = size - boxes[:, [3, 1]]
        if shuffle_channels:
            image = image[torch.randperm(3, generator=generator)]
        target["boxes"] = boxes
        if masks is not None:
            target["masks"] = masks
        out.append(image)
    return torch.stack(out)


def _apply(op, image: torch.Tensor, masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    return op(image), None if masks is None else op(masks)

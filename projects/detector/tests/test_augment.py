"""Augmentations move boxes and masks exactly with the pixels: each object is painted, transformed, and found
again where its transformed box says."""

from __future__ import annotations

import pytest
import torch

from detector.augment import augment_batch


def painted_batch(n: int = 8, size: int = 20) -> tuple[torch.Tensor, list[dict]]:
    """n images, each with one bright rectangle in channel 0 whose box and mask are known."""
    images, targets = torch.zeros(n, 3, size, size), []
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        x1, y1 = torch.randint(0, size // 2, (2,), generator=g).tolist()
        x2, y2 = x1 + 3 + i % 5, y1 + 2 + i % 7  # not square, so a transpose shows
        images[i, 0, y1:y2, x1:x2] = 1.0
        masks = (images[i, 0] > 0).to(torch.uint8)[None]
        targets.append({"boxes": torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32), "masks": masks})
    return images, targets


def box_of(channel: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(channel > 0, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


@pytest.mark.parametrize("kind", ["none", "flip", "dihedral"])
def test_boxes_and_masks_follow_the_pixels(kind):
    images, targets = painted_batch()
    before = [t["boxes"].clone() for t in targets]
    out = augment_batch(images, targets, kind, shuffle_channels=True, generator=torch.Generator().manual_seed(1))
    changed = 0
    for image, target, old in zip(out, targets, before, strict=True):
        painted = image.sum(0)  # the rectangle is in whichever channel the shuffle put it
        assert target["boxes"][0].tolist() == box_of(painted)
        assert torch.equal(target["masks"][0].bool(), painted > 0)
        assert (image > 0).any(dim=(1, 2)).sum() == 1  # channels permuted, not mixed
        changed += not torch.equal(old, target["boxes"])
    assert changed == 0 if kind == "none" else changed > 0


def test_flip_keeps_the_vertical_axis_and_dihedral_reaches_all_eight_symmetries():
    images, targets = painted_batch(n=64)
    heights = [t["boxes"][0, 3] - t["boxes"][0, 1] for t in targets]
    augment_batch(images, targets, "flip", False, torch.Generator().manual_seed(0))
    assert [t["boxes"][0, 3] - t["boxes"][0, 1] for t in targets] == heights  # never turned

    image = torch.arange(16.0).view(1, 1, 4, 4).expand(64, 3, 4, 4).contiguous()
    empty = [{"boxes": torch.zeros(0, 4)} for _ in range(64)]
    out = augment_batch(image, empty, "dihedral", False, torch.Generator().manual_seed(0))
    assert len({tuple(o[0].flatten().tolist()) for o in out}) == 8


def test_unknown_kind_is_refused():
    images, targets = painted_batch(n=1)
    with pytest.raises(ValueError, match="augment must be one of"):
        augment_batch(images, targets, "rotate", False, torch.Generator())

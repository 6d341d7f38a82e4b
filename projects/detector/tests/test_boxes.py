"""CenterNet maps: encode/decode are inverse, the loss behaves, the model's shapes."""

from __future__ import annotations

import torch

from detector.boxes import decode, detection_loss, encode, focal_loss
from detector.model import CenterNet, DetectorConfig


def test_decode_inverts_encode():
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 50.0, 40.0], [60.0, 64.0, 100.0, 120.0]]),
            "labels": torch.tensor([1, 3]),
        },
        {"boxes": torch.tensor([[3.0, 5.0, 20.0, 17.0]]), "labels": torch.tensor([2])},
    ]
    maps = encode(targets, num_classes=3, out_size=32, stride=4)
    assert maps["centre"].sum() == 3 and maps["heatmap"].max() == 1.0
    decoded = decode(maps, stride=4, heatmap_is_logits=False, score_threshold=0.5)
    for got, want in zip(decoded, targets, strict=True):
        order = got["labels"].argsort()
        torch.testing.assert_close(got["boxes"][order], want["boxes"][want["labels"].argsort()])
        assert got["labels"][order].tolist() == sorted(want["labels"].tolist())
        assert torch.all(got["scores"] == 1.0)


def test_focal_loss_rewards_the_right_peak():
    target = torch.zeros(1, 1, 8, 8)
    target[0, 0, 3, 4] = 1.0
    right, wrong = torch.full_like(target, -8.0), torch.full_like(target, -8.0)
    right[0, 0, 3, 4] = 8.0
    wrong[0, 0, 6, 1] = 8.0
    assert focal_loss(right, target) < 0.01 < focal_loss(wrong, target)


def test_model_maps_have_stride_4_and_the_loss_backpropagates():
    torch.manual_seed(0)
    model = CenterNet(DetectorConfig(num_classes=3))
    out = model(torch.rand(2, 3, 128, 128))
    assert out["heatmap"].shape == (2, 3, 32, 32) and out["size"].shape == out["offset"].shape == (
        2,
        2,
        32,
        32,
    )
    # the 1% prior: an untrained model scores every cell near 0.01
    assert abs(out["heatmap"].sigmoid().mean().item() - 0.01) < 0.005
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([2])}] * 2
    losses = detection_loss(out, encode(targets, 3, 32, 4))
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())

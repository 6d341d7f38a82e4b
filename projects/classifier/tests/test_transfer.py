"""Transfer learning plumbing on torchvision/timm backbones, offline (weights=None)."""

from __future__ import annotations

import pytest
import torch

from classifier.model import build_model
from classifier.transfer import parameter_groups, set_backbone_trainable
from dlshared.cli import UserError


@pytest.mark.parametrize(
    "backbone, head",
    [("resnet18", "backbone.fc"), ("mobilenet_v3_small", "backbone.classifier.3"), ("timm/resnet10t", "backbone.fc")],
)
def test_named_backbones_get_a_new_head_and_freeze(backbone, head):
    model = build_model(backbone, num_classes=4, in_channels=1, mean=(0.5,), std=(0.25,))
    assert model.head == head
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 4)  # grayscale is fed to RGB backbones
    set_backbone_trainable(model, False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(head + ".") for n in trainable)
    set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())


def test_discriminative_learning_rates_and_no_decay_on_norms():
    model = build_model("resnet18", 4, 3, (0.5,) * 3, (0.25,) * 3)
    groups = parameter_groups(model, lr=1e-2, backbone_lr_scale=0.1, weight_decay=0.05)
    head_ids = {id(p) for p in model.backbone.fc.parameters()}
    for group in groups:
        is_head = all(id(p) in head_ids for p in group["params"])
        assert group["lr"] == pytest.approx(1e-2 if is_head else 1e-3)
        assert group["weight_decay"] == (0.05 if group["params"][0].ndim > 1 else 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_pretrained_weights_offline_give_a_clear_error():
    with pytest.raises(UserError, match="--no-pretrained"):
        build_model("resnet18", 4, 3, (0.5,) * 3, (0.25,) * 3, pretrained=True)

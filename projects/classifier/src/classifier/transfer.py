"""The transfer-learning tools (day 13): a pretrained torchvision or timm backbone with a new head, freezing and
unfreezing, and discriminative learning rates. `model.build_model` calls `load_backbone` for these backbones."""

from __future__ import annotations

import torch.nn as nn

from dlshared.cli import UserError

from .model import ImageClassifier


def load_backbone(name: str, num_classes: int, in_channels: int, pretrained: bool) -> tuple[nn.Module, str, bool]:
    """(network with a new `num_classes` head, the head's module name, whether grayscale must become RGB) for a
    torchvision classifier name or timm/<name>; `pretrained` loads ImageNet weights (a download, then cached)."""
    if name.startswith("timm/"):  # timm adapts the stem to in_channels itself
        return (*_timm_backbone(name.removeprefix("timm/"), num_classes, in_channels, pretrained), False)
    return (*_torchvision_backbone(name, num_classes, pretrained), in_channels == 1)


def _torchvision_backbone(name: str, num_classes: int, pretrained: bool) -> tuple[nn.Module, str]:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise UserError(f"unknown backbone {name!r}: use resnet-small, timm/<name> or a torchvision classifier")
    try:
        net = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None)
    except Exception as err:  # no network, proxy, or corrupt cache: say what to do instead of a urllib trace
        raise UserError(f"could not load pretrained weights for {name} ({err}); use --no-pretrained offline") from None
    # the classification layer is the last Linear of every torchvision classifier (fc, classifier[-1], heads.head)
    head, last = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
    net.set_submodule(head, nn.Linear(last.in_features, num_classes))
    return net, head


def _timm_backbone(name: str, num_classes: int, in_channels: int, pretrained: bool) -> tuple[nn.Module, str]:
    import timm

    if not timm.list_models(name) and not timm.is_model(name):
        raise UserError(f"unknown timm model {name!r}")
    try:
        net = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels)
    except Exception as err:
        raise UserError(f"could not create timm/{name} ({err}); use --no-pretrained offline") from None
    return net, net.default_cfg.get("classifier", "fc")


def set_backbone_trainable(model: ImageClassifier, trainable: bool) -> None:
    """Freeze (or unfreeze) everything but the head. Frozen BatchNorm layers still update running stats in
    train mode; that is the usual choice for fine-tuning on a new domain."""
    for name, param in model.named_parameters():
        if not name.startswith(model.head + "."):
            param.requires_grad_(trainable)


def parameter_groups(model: ImageClassifier, lr: float, backbone_lr_scale: float, weight_decay: float) -> list[dict]:
    """Head at `lr`, backbone at `lr * backbone_lr_scale`; no weight decay on norms and biases (1-D tensors)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        is_head = name.startswith(model.head + ".")
        groups.setdefault((is_head, param.ndim > 1), []).append(param)
    return [
        {
            "params": params,
            "lr": lr if is_head else lr * backbone_lr_scale,
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (is_head, decays), params in sorted(groups.items())
    ]

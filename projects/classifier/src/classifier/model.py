"""Models: a small ResNet written out (the lesson of days 11-12), the wrapper every backbone is served in, and
`Classifier`, that wrapper as the Hugging Face Hub saves and loads it (`Classifier.from_pretrained`).

A residual block learns a correction F(x) that is added to its input, y = relu(F(x) + shortcut(x)), so the
identity is the easy default and gradients reach early layers through the shortcut. BatchNorm after each conv
keeps activations in range so a high learning rate trains stably (and is why the first epochs look noisy: the
running statistics used at evaluation lag behind the weights).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from huggingface_hub import PyTorchModelHubMixin


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C_in, H, W]
        out = torch.relu(self.bn1(self.conv1(x)))  # [B, C_out, H/s, W/s]
        out = self.bn2(self.conv2(out))  # [B, C_out, H/s, W/s]
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """stem conv -> stages of residual blocks (each stage after the first halves H, W) -> global pool -> linear."""

    def __init__(self, in_channels: int, num_classes: int, widths=(32, 64, 128), blocks=(1, 1, 1)):
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError(f"widths {widths} and blocks {blocks} must have one entry per stage")
        self.widths, self.blocks = tuple(widths), tuple(blocks)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        layers, channels = [], widths[0]
        for stage, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            for i in range(n):
                layers.append(ResidualBlock(channels, width, stride=2 if stage > 0 and i == 0 else 1))
                channels = width
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, H, W]
        x = self.stages(self.stem(x))  # [B, widths[-1], H / 2^(stages-1), W / 2^(stages-1)]
        return self.fc(self.pool(x).flatten(1))  # [B, num_classes]

    def receptive_field(self) -> int:
        """Input pixels one output of the last stage can see along each axis (the longest, all-3x3 path).

        Each 3x3 conv widens the field by 2 * jump, where jump is the product of the strides before it.
        """
        field, jump = 1 + 2, 1  # the stem conv
        for stage, n in enumerate(self.blocks):
            for i in range(n):
                field += 2 * jump  # conv1 (its stride applies after it)
                jump *= 2 if stage > 0 and i == 0 else 1
                field += 2 * jump  # conv2
        return field


class ImageClassifier(nn.Module):
    """Any backbone behind input normalisation: it takes [0, 1] pixels, so exports and the demo need no
    preprocessing constants. Grayscale input is repeated to 3 channels for backbones built for RGB.

    `head` names the backbone's classification layer (transfer learning trains it apart from the rest).
    """

    def __init__(self, backbone: nn.Module, mean, std, head: str = "fc", expand_to_rgb: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = f"backbone.{head}"  # the prefix of the head's parameter names
        self.expand_to_rgb = expand_to_rgb
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # images: [B, C, H, W] in [0, 1]
        x = (images - self.mean) / self.std
        if self.expand_to_rgb:
            x = x.expand(-1, 3, -1, -1)
        return self.backbone(x)  # [B, num_classes]


def build_model(
    backbone: str,
    num_classes: int,
    in_channels: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    widths: tuple[int, ...] = (32, 64, 128),
    blocks: tuple[int, ...] = (1, 1, 1),
    pretrained: bool = False,
) -> ImageClassifier:
    """The model a run names: "resnet-small" (the ResNet above), or a torchvision / timm backbone with a new
    classification layer (transfer.py, day 13)."""
    net, head, expand_to_rgb = build_backbone(backbone, num_classes, in_channels, widths, blocks, pretrained)
    return ImageClassifier(net, mean, std, head=head, expand_to_rgb=expand_to_rgb)


def build_backbone(
    name: str, num_classes: int, in_channels: int, widths, blocks, pretrained: bool = False
) -> tuple[nn.Module, str, bool]:
    """(network, its head's module name, whether grayscale input must be repeated to RGB) for a backbone name."""
    if name == "resnet-small":
        return SmallResNet(in_channels, num_classes, widths, blocks), "fc", False
    from .transfer import load_backbone  # torchvision / timm, imported only when a run asks for them

    return load_backbone(name, num_classes, in_channels, pretrained)


class Classifier(
    ImageClassifier,
    PyTorchModelHubMixin,
    tags=["image-classification", "pytorch-capstones"],
):
    """An ImageClassifier built from JSON values only, so huggingface_hub can save and rebuild it:
    `save_pretrained(folder)` writes model.safetensors + config.json (these arguments), and
    `Classifier.from_pretrained(folder or Hub repo id)` rebuilds the network and loads the weights. `classes` and
    `image_size` ride along so a user of the folder knows what the logits mean and what size to feed.

    The backbone is always built without pretrained weights: the saved weights replace them anyway.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        in_channels: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        widths: tuple[int, ...] = (32, 64, 128),
        blocks: tuple[int, ...] = (1, 1, 1),
        classes: list[str] | None = None,
        image_size: int | None = None,
    ):
        net, head, expand_to_rgb = build_backbone(backbone, num_classes, in_channels, widths, blocks)
        super().__init__(net, mean, std, head=head, expand_to_rgb=expand_to_rgb)
        self.classes, self.image_size = classes, image_size

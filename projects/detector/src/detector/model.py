"""A compact anchor-free detector in the CenterNet style ("Objects as Points", Zhou et al. 2019), written out:
the lesson of course day 14.

    image (B, 3, S, S) -> backbone: strides 4, 8, 16 -> light FPN: one stride-4 map -> three heads:
      heatmap  (B, K, S/4, S/4)  one channel per class, a peak at each object's centre
      size     (B, 2, S/4, S/4)  box width and height, in stride-4 cells, read at the peak
      offset   (B, 2, S/4, S/4)  where in its cell the exact centre lies (quantisation error), read at the peak

No anchors, no box matching: training is dense regression against maps drawn from the boxes (boxes.py), and
decoding is a 3x3 max-pool peak search plus torchvision's NMS. nn.Modules and `build_detector`, the factory of
every detector the project trains; no I/O here (rcnn.py fetches torchvision's weights when asked).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin

# No `from __future__ import annotations` here: PyTorchModelHubMixin reads CenterNet.__init__'s annotations to
# rebuild its DetectorConfig from config.json, and it needs them as types, not strings.


@dataclass
class DetectorConfig:
    num_classes: int = 3
    widths: tuple[int, ...] = (32, 64, 128)
    """Channels at strides 4, 8 and 16."""
    depths: tuple[int, ...] = (1, 3, 3)
    """Residual blocks at strides 4, 8 and 16. Depth goes where it is cheap (the coarse maps): (1, 2, 2) confused
    small circles and squares; the heads on the stride-4 map cost more than the whole backbone anyway."""
    fpn_width: int = 64
    """Channels of the merged stride-4 map the heads read."""
    stride: int = 4
    """Output stride: one heatmap cell per 4 x 4 input pixels."""

    def __post_init__(self):  # read back from JSON (card.json, the Hub's config.json), tuples arrive as lists
        self.widths, self.depths = tuple(self.widths), tuple(self.depths)


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """Two 3x3 convolutions and a shortcut (a 1x1 projection where the shape changes), as in ResNet."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        first = conv_bn(c_in, c_out, stride)  # built first: parameters are initialised in this order
        self.body = nn.Sequential(first, nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class CenterNet(nn.Module, PyTorchModelHubMixin, tags=["object-detection", "centernet", "pytorch-capstones"]):
    """The detector. With huggingface_hub's mixin, `save_pretrained(folder)` writes model.safetensors and a
    config.json of these arguments, and `CenterNet.from_pretrained(folder or Hub repo id)` rebuilds it; `classes`
    and `image_size` ride along so a user of the folder knows what the heatmap channels mean and what to feed."""

    def __init__(self, cfg: DetectorConfig, classes: list[str] | None = None, image_size: int | None = None):
        super().__init__()
        self.cfg, self.classes, self.image_size = cfg, classes, image_size
        w4, w8, w16 = cfg.widths
        d4, d8, d16 = cfg.depths
        # stride 4; the extra convolution at stride 2 keeps the corners of 10-pixel shapes through the downsampling
        self.stem = nn.Sequential(conv_bn(3, w4 // 2, 2), conv_bn(w4 // 2, w4 // 2), conv_bn(w4 // 2, w4, 2))
        self.stage4 = nn.Sequential(*(Residual(w4, w4, 1) for _ in range(d4)))
        self.stage8 = nn.Sequential(Residual(w4, w8, 2), *(Residual(w8, w8, 1) for _ in range(d8 - 1)))
        self.stage16 = nn.Sequential(Residual(w8, w16, 2), *(Residual(w16, w16, 1) for _ in range(d16 - 1)))
        f = cfg.fpn_width
        self.lateral = nn.ModuleList(nn.Conv2d(w, f, 1) for w in (w4, w8, w16))
        self.smooth = conv_bn(f, f)
        self.heatmap = self._head(cfg.num_classes)
        self.size = self._head(2)
        self.offset = self._head(2)
        # start every class at a 1% prior: the focal loss is then not swamped by easy negatives at step 0
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - 0.01) / 0.01))

    def _head(self, channels: int) -> nn.Sequential:
        f = self.cfg.fpn_width
        return nn.Sequential(nn.Conv2d(f, f, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(f, channels, 1))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        c4 = self.stage4(self.stem(images))  # (B, w4, S/4, S/4)
        c8 = self.stage8(c4)  # (B, w8, S/8, S/8)
        c16 = self.stage16(c8)  # (B, w16, S/16, S/16)
        # top-down path: coarse, semantic features upsampled and added to finer ones (FPN)
        p = self.lateral[2](c16)
        p = self.lateral[1](c8) + F.interpolate(p, size=c8.shape[-2:], mode="nearest")
        p = self.lateral[0](c4) + F.interpolate(p, size=c4.shape[-2:], mode="nearest")
        p = self.smooth(p)  # (B, f, S/4, S/4)
        return {"heatmap": self.heatmap(p), "size": self.size(p), "offset": self.offset(p)}  # logits, raw


def build_detector(arch: str, cfg: DetectorConfig, image_size: int, pretrained: bool = False) -> nn.Module:
    """The model `train --model ARCH` trains: this file's CenterNet, shaped by `cfg`, or one of torchvision's
    R-CNNs (rcnn.py) for cfg.num_classes object classes, which adds the background class R-CNNs predict."""
    from dlshared.cli import UserError

    if arch != "centernet":
        from .rcnn import build_rcnn

        return build_rcnn(arch, cfg.num_classes + 1, image_size, pretrained)
    if pretrained:
        raise UserError("--pretrained applies to the torchvision R-CNNs; the CenterNet trains from scratch")
    return CenterNet(cfg)

"""Networks only (no I/O): the class-conditional U-Net (diffusers' UNet2DModel, configured here) and the judge,
a small CNN classifier whose verdicts and features score every generator of this project.

The VAE lives in autoencoder.py and the DCGAN in gan.py, each beside its own loss.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers import UNet2DModel


def build_unet(
    image_size: int,
    channels: int,
    num_classes: int,
    block_out_channels: tuple[int, ...] = (32, 64, 64),
    attention_levels: tuple[bool, ...] = (False, False, True),
    layers_per_block: int = 1,
) -> UNet2DModel:
    """A UNet2DModel predicting noise (or v) for x_t [B, C, S, S], t [B] and a class label [B].

    Labels 0..K-1 are the classes and label K is "no class": training drops labels to K at random, so one network
    learns both the conditional and the unconditional model that classifier-free guidance mixes.
    """
    if len(attention_levels) != len(block_out_channels):
        raise ValueError("--attention-levels needs one entry per --block-out-channels entry")
    groups = 32 if all(c % 32 == 0 for c in block_out_channels) else 8  # GroupNorm groups must divide the channels
    down = tuple("AttnDownBlock2D" if attend else "DownBlock2D" for attend in attention_levels)
    up = tuple("AttnUpBlock2D" if attend else "UpBlock2D" for attend in reversed(attention_levels))
    return UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=block_out_channels,
        layers_per_block=layers_per_block,
        norm_num_groups=groups,
        attention_head_dim=8,
        num_class_embeds=num_classes + 1,  # + the "no class" label of classifier-free guidance
    )


class Judge(nn.Module):
    """A digits classifier trained apart from every generator, on the real training split.

    Its verdict on a sample ("is this the digit that was asked for?") and its penultimate features (for FID/KID
    in place of Inception's, which knows nothing of 16x16 digits) are the project's quality metrics.
    """

    def __init__(self, num_classes: int, channels: int = 1, width: int = 32, features: int = 128):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            )

        self.body = nn.Sequential(
            block(channels, width),
            nn.MaxPool2d(2),  # [B, w, S/2, S/2]
            block(width, 2 * width),
            nn.MaxPool2d(2),  # [B, 2w, S/4, S/4]
            block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # [B, 4w]
            nn.Linear(4 * width, features),
            nn.ReLU(),  # [B, features]
        )
        self.head = nn.Linear(features, num_classes)
        self.num_features = features  # read by torchmetrics' FID/KID

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] in [-1, 1] -> [B, features]."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] in [-1, 1] -> logits [B, num_classes]."""
        return self.head(self.features(images))

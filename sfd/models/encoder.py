"""The two encoder paths: a feature pyramid of the source, and the global code behind the descriptors.

The pyramid is needed only for the source face, once per request; every driving frame needs only
its descriptors. Keeping them apart lets the descriptor path read a smaller copy of the frame
(`descriptor_size`), which is what makes a driving frame cheap (DESIGN.md, "Cost").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvLayer, EqualConv2d, ResBlock


def channel_schedule(channel_base: int, max_channels: int, resolutions: list[int]) -> dict[int, int]:
    """StyleGAN2's width rule: `min(max_channels, channel_base / resolution)` channels per resolution."""
    return {r: max(1, min(max_channels, channel_base // r)) for r in resolutions}


def resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased resize of a square batch to `size` (a no-op when it already has that size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class FeatureEncoder(nn.Module):
    """Residual down-sampling trunk returning the source's feature maps from size/2 down to 8."""

    def __init__(self, size: int, channels: dict[int, int]):
        super().__init__()
        self.size = size
        self.stem = ConvLayer(3, channels[size], 1)
        levels = [2 ** i for i in range(int(math.log2(size)), 3, -1)]  # size, size/2, ..., 16
        self.blocks = nn.ModuleList(ResBlock(channels[r], channels[r // 2]) for r in levels)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class DescriptorEncoder(nn.Module):
    """Residual trunk down to 4x4 and a 4x4 conv to the global code h in R^D."""

    def __init__(self, size: int, channels: dict[int, int], latent_dim: int):
        super().__init__()
        self.size = size
        self.stem = ConvLayer(3, channels[size], 1)
        levels = [2 ** i for i in range(int(math.log2(size)), 2, -1)]  # size, ..., 8
        self.blocks = nn.Sequential(*(ResBlock(channels[r], channels[r // 2]) for r in levels))
        self.to_code = EqualConv2d(channels[4], latent_dim, 4, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(resize_to(images, self.size)))
        return self.to_code(x).flatten(1)

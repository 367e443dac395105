"""StyleGAN2 residual discriminator with a minibatch standard-deviation feature (for training)."""

from __future__ import annotations

import math

import torch
from torch import nn

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from .encoder import channel_schedule
from .layers import ConvLayer, EqualLinear, ResBlock


class Discriminator(ModelMixin, ConfigMixin):
    """Scores images (B, 3, size, size) in [-1, 1]; higher means more real."""

    @register_to_config
    def __init__(self, size: int = 256, channel_base: int = 16384, max_channels: int = 512,
                 stddev_group: int = 4):
        super().__init__()
        resolutions = [2 ** i for i in range(2, int(math.log2(size)) + 1)]
        ch = channel_schedule(channel_base, max_channels, resolutions)
        self.stem = ConvLayer(3, ch[size], 1)
        self.blocks = nn.Sequential(*(ResBlock(ch[r], ch[r // 2]) for r in reversed(resolutions[1:])))
        self.stddev_group = stddev_group
        self.final_conv = ConvLayer(ch[4] + 1, ch[4], 3)
        self.final = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activate=True), EqualLinear(ch[4], 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(images))
        b, c, h, w = x.shape
        group = min(b, self.stddev_group)
        while b % group:  # the group must divide the batch
            group -= 1
        std = x.view(group, -1, c, h, w).var(dim=0, unbiased=False).add(1e-8).sqrt()
        std = std.mean(dim=(1, 2, 3), keepdim=True).repeat(group, 1, h, w)
        x = self.final_conv(torch.cat([x, std], dim=1))
        return self.final(x.flatten(1)).squeeze(1)

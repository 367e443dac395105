"""Flow-warping generator: a StyleGAN2 synthesis network styled by the latent z that, at every
resolution, predicts a flow field and an occlusion mask, warps the source's features with them
and fuses the result into its own activations (LIA's design). Flows accumulate across scales.

Our addition (DESIGN.md, 5.): at full resolution the source *image* is warped with the final flow
and blended with the rendered image through a learned mask. The flow heads start at zero and the
blend starts towards the warped image, so the untrained generator already reproduces the source.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ModulatedToImage, StyledConv

# Initial mask logits: features lean towards the warped source (sigmoid(2) ~ 0.88), the final
# image towards the warped source image (sigmoid(5) ~ 0.993).
FEATURE_MASK_INIT = 2.0
IMAGE_MASK_INIT = 5.0


def pixel_centres(size: int, device: torch.device) -> torch.Tensor:
    """The centres of `size` pixels along an axis in grid_sample's [-1, 1] units (`align_corners=False`)."""
    return (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1


def identity_grid(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The sampling grid of the identity warp, (1, size, size, 2) in grid_sample's [-1, 1] units."""
    axis = pixel_centres(size, device)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack((gx, gy), dim=-1)[None].to(dtype)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp `image` by `flow` (B, 2, H, W), an offset in grid_sample's [-1, 1] units."""
    # The grid in float32 whatever the compute dtype: bfloat16 resolves [-1, 1] only to 1/128, a
    # quarter pixel at 64 px, which would blur every warp and the motion losses read through it.
    grid = identity_grid(flow.shape[-1], flow.device, torch.float32) + flow.float().permute(0, 2, 3, 1)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(image.dtype)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling (for the few-channel flow and RGB skips)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class FlowHead(nn.Module):
    """Predicts a flow increment and a mask logit from the generator's activations (zero flow at init)."""

    def __init__(self, channels: int, style_dim: int, mask_init: float):
        super().__init__()
        self.proj = ModulatedToImage(channels, 3, style_dim, zero_init=True,
                                     bias_init=torch.tensor([0.0, 0.0, mask_init]))

    def forward(self, x: torch.Tensor, style: torch.Tensor, flow: torch.Tensor | None):
        out = self.proj(x, style)
        delta, mask_logit = out[:, :2], out[:, 2:]
        flow = delta if flow is None else upsample2x(flow) + delta
        return flow, torch.sigmoid(mask_logit)


class FlowGenerator(nn.Module):
    """Decodes a latent z and the source's feature pyramid into an image."""

    def __init__(self, size: int, channels: dict[int, int], latent_dim: int, image_warp: bool = True):
        super().__init__()
        self.size = size
        self.image_warp = image_warp
        self.input = nn.Parameter(torch.randn(1, channels[4], 4, 4))
        self.conv_in = StyledConv(channels[4], channels[4], 3, latent_dim)
        self.rgb_in = ModulatedToImage(channels[4], 3, latent_dim)
        self.resolutions = [2 ** i for i in range(3, int(math.log2(size)) + 1)]  # 8, ..., size
        self.up_convs = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.flow_heads = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for r in self.resolutions:
            self.up_convs.append(StyledConv(channels[r // 2], channels[r], 3, latent_dim, upsample=True))
            self.convs.append(StyledConv(channels[r], channels[r], 3, latent_dim))
            # Below full size the flow warps features; at full size it warps the image (if enabled).
            if r < size or image_warp:
                mask_init = FEATURE_MASK_INIT if r < size else IMAGE_MASK_INIT
                self.flow_heads.append(FlowHead(channels[r], latent_dim, mask_init))
            self.to_rgbs.append(ModulatedToImage(channels[r], 3, latent_dim))

    def forward(self, latent: torch.Tensor, features: tuple[torch.Tensor, ...] | list[torch.Tensor],
                return_flow: bool = False):
        """`features[0]` is the source image (size x size), `features[1:]` its maps from size/2 to 8.

        With `return_flow`, also returns the final flow (B, 2, size/2 or size, ...) for analysis.
        """
        rgb, flow, _ = self.decode(latent, features)
        return (rgb, flow) if return_flow else rgb

    def decode(self, latent: torch.Tensor, features: tuple[torch.Tensor, ...] | list[torch.Tensor]):
        """`(rgb, flow, image_mask)`: the image, the final flow and, with the image-level warp, the
        blend weight of the warped source image (B, 1, size, size; else None)."""
        image, pyramid = features[0], features[1:]
        by_resolution = {f.shape[-1]: f for f in pyramid}
        batch = latent.shape[0]
        if image.shape[0] != batch:  # one cached source animated by a batch of latents
            image = image.expand(batch, -1, -1, -1)
        x = self.conv_in(self.input.expand(batch, -1, -1, -1).to(latent.dtype), latent)
        rgb = self.rgb_in(x, latent)
        flow = None
        for i, r in enumerate(self.resolutions):
            x = self.up_convs[i](x, latent)
            x = self.convs[i](x, latent)
            if r < self.size:
                flow, mask = self.flow_heads[i](x, latent, flow)
                source = by_resolution[r]
                if source.shape[0] != batch:
                    source = source.expand(batch, -1, -1, -1)
                warped = warp(source, flow)
                x = torch.lerp(x, warped, mask)  # warped * mask + x * (1 - mask)
            rgb = upsample2x(rgb) + self.to_rgbs[i](x, latent)
        image_mask = None
        if self.image_warp:
            flow, image_mask = self.flow_heads[-1](x, latent, flow)
            rgb = torch.lerp(rgb, warp(image, flow), image_mask)
        return rgb, flow, image_mask

"""`ColorJitter`: random brightness, contrast, saturation and hue changes of images in [-1, 1].

One implementation serves two purposes: the dataset's augmentation (one draw applied to both
frames of a pair, so the pair still differs only by motion) and the appearance-consistency loss
(a fresh draw per image: motion descriptors must not move when only colours do). It works on
batches, on any device, and draws from a given `torch.Generator` for reproducibility.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Rec. 601 luma weights, and the RGB <-> YIQ pair in which a hue shift is a rotation of (I, Q).
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of RGB images; weights as Python numbers, so no small tensor is copied to a GPU per call."""
    return x[:, 0:1] * _LUMA[0] + x[:, 1:2] * _LUMA[1] + x[:, 2:3] * _LUMA[2]


@dataclass
class JitterFactors:
    """Per-image factors, each (B,): brightness/contrast/saturation multipliers, hue angle in radians
    (None when hue jitter is off: no (I, Q) rotation at all)."""

    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor | None


class ColorJitter:
    """Random photometric changes; each strength s draws a factor in [1 - s, 1 + s] (hue: +- s * pi).

    A strength of 0 turns that change off.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.03):
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} strength must lie in [0, 1), got {value}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue strength must lie in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    @property
    def enabled(self) -> bool:
        return any(s > 0 for s in (self.brightness, self.contrast, self.saturation, self.hue))

    def sample(self, batch: int, generator: torch.Generator | None = None, device=None) -> JitterFactors:
        """Draw factors for `batch` images (on the generator's device, then moved to `device`)."""
        gen_device = generator.device if generator is not None else "cpu"

        def uniform(strength: float, centre: float) -> torch.Tensor:
            u = torch.rand(batch, generator=generator, device=gen_device) * 2 - 1
            return (centre + strength * u).to(device or gen_device)

        return JitterFactors(brightness=uniform(self.brightness, 1.0), contrast=uniform(self.contrast, 1.0),
                             saturation=uniform(self.saturation, 1.0),
                             hue=uniform(self.hue * math.pi, 0.0) if self.hue > 0 else None)

    @staticmethod
    def apply(images: torch.Tensor, factors: JitterFactors) -> torch.Tensor:
        """Apply `factors` (one set per image) to images (B, 3, H, W) in [-1, 1]; result clamped to [-1, 1]."""
        dtype = images.dtype
        x = (images.float() + 1) * 0.5
        view = (-1, 1, 1, 1)
        x = x * factors.brightness.view(view)
        gray = _luma(x)
        x = (x - gray.mean(dim=(2, 3), keepdim=True)) * factors.contrast.view(view) + gray.mean(dim=(2, 3), keepdim=True)
        gray = _luma(x)
        x = gray + (x - gray) * factors.saturation.view(view)
        if factors.hue is not None:  # decided on the host: no device sync
            cos, sin = torch.cos(factors.hue), torch.sin(factors.hue)
            one, zero = torch.ones_like(cos), torch.zeros_like(cos)
            rotation = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, cos, -sin], -1),
                                    torch.stack([zero, sin, cos], -1)], -2)  # (B, 3, 3) in YIQ
            matrix = _YIQ_TO_RGB.to(x.device) @ rotation @ _RGB_TO_YIQ.to(x.device)
            x = torch.einsum("bij,bjhw->bihw", matrix, x)
        return (x.clamp(0, 1) * 2 - 1).to(dtype)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Jitter each image of a batch with its own random factors."""
        if not self.enabled:
            return images
        factors = self.sample(images.shape[0], generator=generator, device=images.device)
        return self.apply(images, factors)

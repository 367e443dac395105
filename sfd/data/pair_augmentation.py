"""`PairAugmentation`: the same random flip and colour change for both frames of a training pair."""

from __future__ import annotations

import torch

from .color_jitter import ColorJitter


class PairAugmentation:
    """Augments a (source, driving) pair with one draw for both frames.

    The two frames must keep differing only by motion, which is what the model learns to
    transfer: a flip or colour change applied to one frame alone would be "motion" to explain.

    Args:
        flip_prob: probability of mirroring both frames left-right.
        brightness, contrast, saturation, hue: `ColorJitter` strengths (0 turns one off).
    """

    def __init__(self, flip_prob: float = 0.5, brightness: float = 0.1, contrast: float = 0.1,
                 saturation: float = 0.1, hue: float = 0.0):
        if not 0 <= flip_prob <= 1:
            raise ValueError(f"flip_prob must lie in [0, 1], got {flip_prob}")
        self.flip_prob = flip_prob
        self.jitter = ColorJitter(brightness, contrast, saturation, hue)

    def __call__(self, source: torch.Tensor, driving: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames (3, H, W) in [-1, 1] -> the augmented pair."""
        return self.apply(source, driving, generator)[:2]

    def apply(self, source: torch.Tensor, driving: torch.Tensor, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The augmented pair and whether it was mirrored (points on the frames must be mirrored too)."""
        pair = torch.stack([source, driving])
        flipped = self.flip_prob > 0 and torch.rand((), generator=generator).item() < self.flip_prob
        if flipped:
            pair = pair.flip(-1)
        if self.jitter.enabled:
            factors = self.jitter.sample(1, generator=generator)
            factors = type(factors)(**{k: None if v is None else v.expand(2) for k, v in vars(factors).items()})
            pair = self.jitter.apply(pair, factors)
        return pair[0], pair[1], flipped

"""Temporal smoothing of driving motion descriptors (removes frame-to-frame jitter)."""

from __future__ import annotations

import torch


class MotionSmoother:
    """Exponential moving average over a stream of motion descriptors.

    `strength` in [0, 1): 0 passes descriptors through unchanged; 0.5 averages over about three
    frames; 0.9 over about twenty. Streaming: state is one vector, whatever the video length.
    """

    def __init__(self, strength: float = 0.0):
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"motion smoothing strength must lie in [0, 1), got {strength}")
        self.strength = strength
        self.state: torch.Tensor | None = None

    def __call__(self, motion: torch.Tensor) -> torch.Tensor:
        """Smooth a batch (T, N) of consecutive frames' descriptors, continuing from earlier batches."""
        if self.strength == 0.0:
            return motion
        out = torch.empty_like(motion)
        state = self.state
        for t in range(motion.shape[0]):
            state = motion[t] if state is None else torch.lerp(motion[t], state, self.strength)
            out[t] = state
        self.state = state
        return out

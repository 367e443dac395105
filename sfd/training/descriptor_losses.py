"""The two descriptor losses that give the subspaces their meaning (DESIGN.md, "Training").

* identity consistency, ``|a_id(s) - a_id(d)|^2``: two frames of one video show one person, so
  their identity descriptors must agree; what changes between them (motion) is left to a_m.
* appearance consistency, ``|a_m(x) - a_m(jitter(x))|^2``: a colour change is not motion, so the
  motion descriptors must not move with it.

Both are divided by the spread of the same descriptors over the batch (their variance across
samples, averaged over the coefficients), which makes them scale-invariant. As plain squared
distances they could be lowered by shrinking every descriptor towards zero, and they were: with
weight 1 a 600-step run of the tiny preset ended with motion descriptors that barely varied
between frames (mean distance 0.006, against 0.48 with the losses off) and a generator that
ignored the driving frame. Relative to the spread, shrinking gains nothing; only agreement does
(after 300 steps: 0.09 against 0.011 as plain distances and 0.50 without the losses; they still
slow motion down early, so short runs on little data may switch them off).
"""

from __future__ import annotations

import torch

SPREAD_EPS = 1e-8


def _relative_squared_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean of (a - b)^2 over the mean per-coefficient variance of a and b across the batch."""
    a, b = a.float(), b.float()
    spread = torch.cat((a, b)).var(dim=0, correction=0).mean()
    return (a - b).square().mean() / (spread + SPREAD_EPS)


def identity_consistency_loss(source_identity: torch.Tensor, driving_identity: torch.Tensor) -> torch.Tensor:
    """Squared difference of the identity descriptors of two frames of one video, relative to the
    spread of identity descriptors in the batch (0: they agree; 2: no better than unrelated faces)."""
    return _relative_squared_difference(source_identity, driving_identity)


def appearance_consistency_loss(motion: torch.Tensor, jittered_motion: torch.Tensor) -> torch.Tensor:
    """Squared difference of the motion descriptors of a frame and its colour-jittered copy,
    relative to the spread of motion descriptors in the batch."""
    return _relative_squared_difference(motion, jittered_motion)

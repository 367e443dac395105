"""The two descriptor losses that give the subspaces their meaning (DESIGN.md, "Training").

* identity consistency, ``|a_id(s) - a_id(d)|^2``: two frames of one video show one person, so
  their identity descriptors must agree; what changes between them (motion) is left to a_m.
* appearance consistency, ``|a_m(x) - a_m(jitter(x))|^2``: a colour change is not motion, so the
  motion descriptors must not move with it.

Both are means over the batch and the coefficients, so the weights do not depend on D or N.
"""

from __future__ import annotations

import torch


def identity_consistency_loss(source_identity: torch.Tensor, driving_identity: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the identity descriptors of two frames of the same video."""
    return (source_identity.float() - driving_identity.float()).square().mean()


def appearance_consistency_loss(motion: torch.Tensor, jittered_motion: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the motion descriptors of a frame and its colour-jittered copy."""
    return (motion.float() - jittered_motion.float()).square().mean()

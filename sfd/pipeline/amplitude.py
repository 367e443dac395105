"""The driver's expression amplitude kept on another face: the expression strength that makes this
source's mouth move as widely, for its size, as the driver's moves for its own.

One motion change does not open every face's mouth alike. On the bundled weights, driven by one
talking clip, a closed-mouthed portrait's mouth moved a tenth as widely as the driver's (dlib's
spread over the clip), another speaker's 0.6 of it, the driver's own first frame 0.35; at twice
the expression strength 0.14, 1.2 and 0.94. So the strength that keeps the amplitude depends on
the pair, and it is measured on the pair, once, from the driver's first frames:

1. the face mesh's mouth opening (inner-lip gap over inter-ocular distance: each face's own
   size is the unit) on up to `SAMPLE_FRAMES` of the driver's face crops, and its spread;
2. the same on the source rendered as it will be shown (the source's detail moved in, at the
   same size: a blurred 64 px face reads as less open to the mesh than a sharp one) with those
   frames' motion at each of `GAINS` (times the user's strength, within the control's range),
   through the atlas's expression map (the head's motion unchanged);
3. the first gain whose rendered spread reaches the driver's, else the one that came closest.

A driver whose mouth barely moves over those frames (spread under `MIN_DRIVER_SPREAD`) keeps the
user's strength: there is nothing to match.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..expression_strength import MAX_EXPRESSION_STRENGTH
from ..semantics.face_measures import MEASURE_INDEX, measure_faces

GAINS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
CALIBRATION_FRAMES = 48  # driver frames (from its first face) the strength is measured on
MEASURE_SIDE = 128  # both faces are measured at this size: the rendered one with its detail, as shown
SAMPLE_FRAMES = 16  # of which this many, evenly spaced, are rendered and measured
MIN_DRIVER_SPREAD = 0.01  # inner-lip gap / inter-ocular: below this the driver's mouth is still


@dataclass
class AmplitudeMatch:
    """What the pipeline needs to match a pair's amplitude, and what it chose (`strength`, once known)."""

    atlas: object  # the weights' `Atlas`
    user_strength: float = 1.0
    strength: float | None = None


def mouth_spread(faces: torch.Tensor) -> float:
    """The standard deviation over frames of the mesh's mouth opening of aligned faces (N, 3, S, S)
    in [-1, 1]."""
    opening = measure_faces(faces)[:, MEASURE_INDEX["mouth_open"]]
    return float(opening.std()) if len(opening) > 1 else 0.0


@torch.no_grad()
def matched_strength(render, reference: torch.Tensor, motion: torch.Tensor, driver_faces: torch.Tensor, atlas,
                     strength: float = 1.0) -> float:
    """The expression strength for this pair (module doc).

    render: motion (K, N) -> the source's faces (K, 3, S, S) in [-1, 1], as they will be shown
    (detail included), at the size of `driver_faces`; reference: (1, N) the driver's reference
    motion; motion: (K, N) the motion of driver frames whose crops are `driver_faces` (K, 3, S,
    S) in [-1, 1]; atlas: the weights' `Atlas`; strength: the user's.
    """
    pick = np.unique(np.linspace(0, len(motion) - 1, min(SAMPLE_FRAMES, len(motion))).round().astype(int))
    motion, driver_faces = motion[pick], driver_faces[pick]
    target = mouth_spread(driver_faces)
    if target < MIN_DRIVER_SPREAD:
        return strength
    candidates = sorted({min(MAX_EXPRESSION_STRENGTH, strength * gain) for gain in GAINS})
    spreads = []
    for candidate in candidates:
        mapped = torch.as_tensor(atlas.expression_strength_map(candidate), dtype=motion.dtype, device=motion.device)
        spreads.append(mouth_spread(render(reference + (motion - reference) @ mapped.T)))
        if spreads[-1] >= target:
            return candidate
    return candidates[int(np.argmax(spreads))]

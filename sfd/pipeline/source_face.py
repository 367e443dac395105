"""A source face prepared once per request: its crop, crop box and encoded descriptors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face import CropBox
from ..models import Descriptors
from .detail_transfer import DetailLayer


@dataclass
class SourceFace:
    """Everything about a source portrait that animation and editing reuse.

    image:       the full source image, RGB uint8 (H, W, 3), as loaded (possibly downscaled).
    box:         the square crop box of the face in `image` (the whole image, padded to a
                 square, when cropping was off).
    crop:        the model-size crop, RGB uint8 (size, size, 3).
    descriptors: the encoded crop (identity, motion and the generator's source features).
    detector:    which face detector found the box ("none" when cropping was off).
    detail:      the face's fine detail, at the working side and above it up to the crop's own
                 side (see `detail_transfer`), or None when the face is no larger than the
                 model's crop or detail transfer is off.
    rest_flow:   the generator's flow (2, h, w, in crop sides) of the face drawn as it is: the
                 paste-back moves the image around an animated face by its flow's change from
                 this (`sfd.face.paste.move_surroundings`); None when cropping was off.
    """

    image: np.ndarray
    box: CropBox
    crop: np.ndarray
    descriptors: Descriptors
    detector: str
    detail: DetailLayer | None = None
    rest_flow: np.ndarray | None = None

    @property
    def identity(self) -> np.ndarray:
        """The identity descriptors (D - N,) as float32."""
        return self.descriptors.identity[0].float().cpu().numpy()

    @property
    def motion(self) -> np.ndarray:
        """The motion descriptors (N,) as float32."""
        return self.descriptors.motion[0].float().cpu().numpy()

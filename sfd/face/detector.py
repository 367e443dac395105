"""`FaceDetector`: the interface every face detector in sfd implements.

A detector takes an RGB uint8 image (H x W x 3; H x W grayscale is accepted too) and
returns the faces it found, largest first. `name` says which detector ran, so that an
app can tell the user when a fallback (MTCNN, Haar) was used instead of RetinaFace.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType

import cv2
import numpy as np

from sfd.errors import ImageError, NoFaceError
from sfd.face.face import Face, sort_faces


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Return `image` as a contiguous H x W x 3 uint8 array.

    Grayscale (H x W or H x W x 1) is repeated to three channels and an alpha channel
    (H x W x 4) is dropped, so callers may pass what an image reader gave them.
    Raises ImageError for anything else (wrong dtype, empty, other shapes).
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"Expected an image as a numpy array, got {type(image).__name__}.")
    if image.dtype != np.uint8:
        raise ImageError(f"Expected an 8-bit image (uint8), got dtype {image.dtype}.")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"Expected an H x W x 3 RGB image, got shape {image.shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"The image is empty (shape {image.shape}).")
    return np.ascontiguousarray(image)


def downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink `image` so its longer side is at most `max_side`.

    Returns the (possibly unchanged) image and the factor that maps its coordinates back
    to the original ones. Detectors run on the small copy: portrait faces are large, and
    the cost of every detector here grows with the pixel count.
    """
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image, 1.0
    f = max_side / max(h, w)
    small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    # The exact factor per axis differs by rounding; use the mean so boxes stay square-ish.
    back = 0.5 * (w / small.shape[1] + h / small.shape[0])
    return small, back


class FaceDetector(ABC):
    """Base class: subclasses implement `_detect` on an RGB uint8 image.

    Attributes:
        name: short id of the detector ("retinaface", "mtcnn", "haar").
        fallback_reasons: set by `load_face_detector`: for each better detector that was
            skipped, why (empty when this is the detector that was asked for).
    """

    name: str = "detector"
    fallback_reasons: Mapping[str, str] = MappingProxyType({})

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in `image` (RGB uint8, H x W x 3 or H x W), largest first."""
        return sort_faces(self._detect(as_rgb(image)))

    def detect_single(self, image: np.ndarray) -> Face:
        """The main (largest) face in `image`; raises NoFaceError when there is none."""
        faces = self.detect(image)
        if not faces:
            h, w = np.asarray(image).shape[:2]
            raise NoFaceError(
                f"No face was found in the image ({w}x{h} px, detector: {self.name}). "
                "Use a picture where one face is clearly visible and faces the camera."
            )
        return faces[0]

    @abstractmethod
    def _detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 H x W x 3 image, in any order."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

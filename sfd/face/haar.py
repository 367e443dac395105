"""`HaarCascadeDetector`: OpenCV's frontal-face Haar cascade, the last-resort fallback.

Its model ships inside opencv-python(-headless) (`cv2.data.haarcascades`), so it works with
no download at all. It is the least precise detector here (no landmarks, boxes that move
more from frame to frame, and it can fire on animal or cartoon faces) and is used only when
neither RetinaFace weights nor facenet-pytorch's MTCNN are available.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sfd.errors import WeightsError
from sfd.face.detector import FaceDetector, downscale
from sfd.face.face import Face

CASCADE_FILE = "haarcascade_frontalface_default.xml"

# The cascade's square boxes reach from mid-forehead to below the chin and past the cheeks.
# MTCNN and RetinaFace give a taller, narrower box (brows to chin, cheek to cheek). To get
# the same crop whichever detector ran, the square is reshaped to that convention, with
# factors measured against MTCNN on 21 portraits of the shared face set (centre offsets were
# under 1% of the side, so the centre is kept): width 0.80, height 1.07 of the square side.
_WIDTH_FACTOR = 0.80
_HEIGHT_FACTOR = 1.07


class HaarCascadeDetector(FaceDetector):
    """Frontal-face Haar cascade from OpenCV.

    Args:
        cascade: path of a cascade XML file; default: OpenCV's frontal-face cascade.
        max_side: the image is shrunk to this longer side before detection (speed; the
            cascade finds large portrait faces as well at this size).
        min_face: smallest face side to report, as a fraction of the image's shorter side.
        min_neighbors: OpenCV's vote count; higher gives fewer false faces.
        min_score: drop detections whose cascade level weight is below this (false
            positives on textures tend to have low weights).

    The defaults (8 neighbours, level weight >= 3) were chosen on the shared face set:
    the main face was found on 21 of 22 human portraits (not on a curly-haired man with
    glasses) and a face was reported on 1 of 12 animal pictures (a monkey), where
    settings of 5 neighbours and weight >= 1 fired on 3 of them.
    """

    name = "haar"

    def __init__(
        self,
        cascade: str | Path | None = None,
        max_side: int = 640,
        min_face: float = 0.08,
        min_neighbors: int = 8,
        min_score: float = 3.0,
    ):
        if not hasattr(cv2, "CascadeClassifier"):
            raise WeightsError(
                "This OpenCV build has no CascadeClassifier (it was removed in OpenCV 5); install opencv<5."
            )
        if cascade is None:
            cascade = Path(cv2.data.haarcascades) / CASCADE_FILE
        self.cascade_path = Path(cascade)
        if not self.cascade_path.is_file():
            raise WeightsError(f"Haar cascade file not found: {self.cascade_path}")
        self._cascade = cv2.CascadeClassifier(str(self.cascade_path))
        if self._cascade.empty():
            raise WeightsError(f"OpenCV could not load the Haar cascade {self.cascade_path}")
        self.max_side = max_side
        self.min_face = min_face
        self.min_neighbors = min_neighbors
        self.min_score = min_score

    def _detect(self, image: np.ndarray) -> list[Face]:
        small, back = downscale(image, self.max_side)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        # Histogram equalisation makes the cascade less sensitive to exposure.
        gray = cv2.equalizeHist(gray)
        min_side = max(20, int(self.min_face * min(gray.shape)))
        rects, _levels, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=1.1,
            minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
            outputRejectLevels=True,
        )
        faces = []
        for (x, y, w, h), score in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1), strict=True):
            if score < self.min_score:
                continue
            cx, cy = x + w / 2.0, y + h / 2.0
            hw, hh = _WIDTH_FACTOR * w / 2.0, _HEIGHT_FACTOR * h / 2.0
            box = (cx - hw, cy - hh, cx + hw, cy + hh)
            faces.append(Face(box=box, score=float(score)).scaled(back))
        return faces

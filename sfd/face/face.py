"""`Face`: one detected face (box, score, optional 5 landmarks) and box helpers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One face found in an image, in that image's pixel coordinates.

    Attributes:
        box: ``(x0, y0, x1, y1)`` as floats; x grows to the right, y downwards, and
            ``x1 - x0`` is the width in pixels.
        score: the detector's confidence. Its scale depends on the detector: a
            probability in [0, 1] for RetinaFace and MTCNN, a positive level weight
            for the Haar cascade. Compare scores only within one detector.
        landmarks: ``(5, 2)`` float array of (x, y) points, in the order left eye,
            right eye, nose tip, left mouth corner, right mouth corner ("left" as
            seen in the image), or ``None`` when the detector gives none (Haar).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)

    def scaled(self, factor: float) -> Face:
        """This face with every coordinate multiplied by `factor` (to undo a resize)."""
        box = tuple(float(v) * factor for v in self.box)
        lm = None if self.landmarks is None else self.landmarks * factor
        return Face(box=box, score=self.score, landmarks=lm)  # type: ignore[arg-type]


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def sort_faces(faces: list[Face]) -> list[Face]:
    """Largest face first, ties broken by score: in a portrait the subject is the biggest face."""
    return sorted(faces, key=lambda f: (f.area, f.score), reverse=True)

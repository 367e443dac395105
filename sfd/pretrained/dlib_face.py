"""dlib's own face networks, for evaluation metrics: the HOG frontal face detector, the 68-point
landmark predictor and the 128-d face descriptor (through `import dlib`, package `dlib-bin`).

Licences: dlib itself is under the Boost Software License. The model files come from the
package `face_recognition_models` (Davis King's dlib-models, released into the public domain;
the package ships them under CC0). The 68-point predictor, however, was trained on iBUG 300-W,
whose licence excludes commercial use, and one of the dataset's creators asked that the trained
model not be used in a commercial product (dlib-models' README): use `DlibFace` for metrics (AKD, AED, mouth/eye/pose statistics) only, never
inside a product or a training loss that ships. The descriptor network has no such restriction
(its torch port for losses is `face_recognition_resnet`).

Landmarks are dlib's 68 points in image pixels (x, y), 0-based: jaw 0-16, brows 17-26, nose
27-35, eyes 36-47 (36 and 45 the outer corners), outer lips 48-59, inner lips 60-67 (62 the
middle of the upper inner lip, 66 of the lower).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .files import dlib_file

NUM_LANDMARKS = 68
DESCRIPTOR_SIZE = 128
SAME_PERSON_THRESHOLD = 0.6  # dlib's descriptor distance below which two faces are one person
CHIP_PADDING = 0.25  # dlib's default margin around the face for the descriptor
# The HOG detector misses faces under about 80 px. When it finds nothing, a small frame is searched
# again upsampled (x2, then x4) as long as the upsampled frame's longer side stays under this:
# head crops of 256 px are searched at x1 and x2, 64 px generated frames up to x4.
UPSAMPLED_SIDE_LIMIT = 800
MAX_UPSAMPLE = 2
DETECT_SIDE = 512  # frames larger than this are searched for faces on a copy this size

OUTER_EYE_CORNERS = (36, 45)
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # (upper, lower) inner-lip points
# (corner, corner, upper lid points, lower lid points) of each eye, lids paired top to bottom
_EYES = ((36, 39, (37, 38), (41, 40)), (42, 45, (43, 44), (47, 46)))


@dataclass
class FaceMeasurements:
    """What `DlibFace.measure` finds per frame; NaN rows where no face was found.

    boxes: (N, 4) float (left, top, right, bottom) pixels, the box the landmarks were predicted in;
    detected: (N,) bool, whether the detector found that box (False where it was tracked or given);
    landmarks: (N, 68, 2) float (x, y) pixels; descriptors: (N, 128) float or None when not asked.
    """

    boxes: np.ndarray
    detected: np.ndarray
    landmarks: np.ndarray
    descriptors: np.ndarray | None


class DlibFace:
    """dlib's face detector, 68-point landmarks and face descriptor over batches of frames.

    Frames are RGB uint8 arrays (H, W, 3); a batch is an array (N, H, W, 3) or any sequence or
    iterable of frames (sizes may differ). One face per frame: the largest the detector finds.

    Detection is the slow part, and fails on some generated frames, so within one call (one video)
    a box that follows the face is kept: the last detected box, moved with the centroid of the
    latest landmarks.
    - `detect_every=1` (default) detects on every frame; `k` on every k-th frame only, the frames
      between use the tracked box; `0` detects until a face is found once, then only tracks.
    - `track=True` (default): a frame whose detection finds nothing uses the tracked box; with
      `track=False` it gives NaN (and detection starts again on the next frame).
    A tracked face whose landmark centroid leaves the frame is dropped (NaN), detection resumes.

    `upsample`: how many times the detector doubles the frame; None (default) searches the frame
    as it is and, only when that finds nothing, small frames doubled (see UPSAMPLED_SIDE_LIMIT).

    For metrics only (the 68-point model's training data excludes commercial use; see the module
    docstring).
    """

    def __init__(self, upsample: int | None = None, detect_every: int = 1, track: bool = True):
        import dlib

        if detect_every < 0:
            raise ValueError(f"detect_every must be >= 0, got {detect_every}")
        self.upsample = upsample
        self.detect_every = detect_every
        self.track = track
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_file("landmarks68")))
        self._descriptor_net = None  # loaded on first use: 22 MB

    # -- single frames ---------------------------------------------------------------------------

    def detect(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """The largest face's box (left, top, right, bottom) in pixels, or None."""
        frame = _rgb_uint8(frame)
        side = max(frame.shape[:2])
        if side > DETECT_SIDE:
            # HOG detection costs grow with the pixels; faces in large frames are large: find them on a
            # smaller copy and scale the box back (the landmarks still read the full frame).
            import cv2

            scale = side / DETECT_SIDE
            small = cv2.resize(frame, (round(frame.shape[1] / scale), round(frame.shape[0] / scale)),
                               interpolation=cv2.INTER_AREA)
            box = self.detect(small)
            return None if box is None else tuple(int(round(v * scale)) for v in box)
        if self.upsample is not None:
            rects = self._detector(frame, self.upsample)
        else:  # cheapest first: most faces are found at the frame's own scale
            rects, upsample, side = self._detector(frame, 0), 0, max(frame.shape[:2])
            while len(rects) == 0 and upsample < MAX_UPSAMPLE and side * 2 ** (upsample + 1) < UPSAMPLED_SIDE_LIMIT:
                upsample += 1
                rects = self._detector(frame, upsample)
        if len(rects) == 0:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        return rect.left(), rect.top(), rect.right(), rect.bottom()

    def _shape(self, frame: np.ndarray, box) -> object:
        left, top, right, bottom = (int(round(v)) for v in box)
        return self._predictor(frame, self._dlib.rectangle(left, top, right, bottom))

    # -- batches ---------------------------------------------------------------------------------

    def measure(self, frames: np.ndarray | Iterable[np.ndarray], boxes: np.ndarray | Sequence | None = None,
                descriptors: bool = True) -> FaceMeasurements:
        """Boxes, 68 landmarks and (with `descriptors`) the 128-d descriptor of every frame, in one
        pass (the descriptor uses the shape just predicted). `boxes`: one box (4,) for all frames or
        (N, 4) per frame (NaN rows: no face) instead of detecting."""
        _refuse_single_frame(frames)
        given = None if boxes is None else np.asarray(boxes, dtype=np.float64)
        out_boxes, detected, landmarks, codes = [], [], [], []
        box, box_offset = None, None  # tracked box, and its centre minus the landmark centroid
        for i, frame in enumerate(frames):
            frame = _rgb_uint8(frame)
            found = False
            if given is not None:
                use = given if given.ndim == 1 else given[i]
            else:
                use = None
                detecting = box is None or bool(self.detect_every and i % self.detect_every == 0)
                if detecting:
                    hit = self.detect(frame)
                    if hit is not None:
                        use, found = np.array(hit, dtype=np.float64), True
                if use is None and box is not None and (self.track or not detecting):
                    use = box
            if use is None or not np.all(np.isfinite(use)):
                out_boxes.append(np.full(4, np.nan))
                detected.append(False)
                landmarks.append(np.full((NUM_LANDMARKS, 2), np.nan))
                codes.append(np.full(DESCRIPTOR_SIZE, np.nan))
                box = None
                continue
            shape = self._shape(frame, use)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            centroid = points.mean(0)
            height, width = frame.shape[:2]
            if not found and given is None and not (0 <= centroid[0] < width and 0 <= centroid[1] < height):
                points[:] = np.nan  # the tracked face left the frame
                box = None
            else:
                centre = (use[:2] + use[2:]) / 2
                if found or box_offset is None:
                    box_offset = centre - centroid
                half = (use[2:] - use[:2]) / 2
                box = np.concatenate([centroid + box_offset - half, centroid + box_offset + half])
            out_boxes.append(np.asarray(use, dtype=np.float64))
            detected.append(found)
            landmarks.append(points)
            if descriptors:
                codes.append(self._describe(frame, shape) if np.isfinite(points).all()
                              else np.full(DESCRIPTOR_SIZE, np.nan))
        n = len(landmarks)
        return FaceMeasurements(
            boxes=np.array(out_boxes).reshape(n, 4), detected=np.array(detected, dtype=bool),
            landmarks=np.array(landmarks).reshape(n, NUM_LANDMARKS, 2),
            descriptors=np.array(codes).reshape(n, DESCRIPTOR_SIZE) if descriptors else None)

    def landmarks(self, frames: np.ndarray | Iterable[np.ndarray], boxes: np.ndarray | Sequence | None = None
                  ) -> np.ndarray:
        """(N, 68, 2) float (x, y) pixels; NaN rows where no face was found."""
        return self.measure(frames, boxes, descriptors=False).landmarks

    def descriptors(self, frames: np.ndarray | Iterable[np.ndarray], landmarks: np.ndarray | None = None
                    ) -> np.ndarray:
        """(N, 128) float dlib face descriptors; NaN rows where no face was found. With `landmarks`
        (N, 68, 2) (e.g. from `landmarks`), no detection runs."""
        if landmarks is None:
            return self.measure(frames).descriptors
        _refuse_single_frame(frames)
        landmarks = np.asarray(landmarks, dtype=np.float64)
        codes = []
        for frame, points in zip(frames, landmarks, strict=True):
            if not np.isfinite(points).all():
                codes.append(np.full(DESCRIPTOR_SIZE, np.nan))
                continue
            codes.append(self._describe(_rgb_uint8(frame), self._shape_from_points(points)))
        return np.array(codes).reshape(len(codes), DESCRIPTOR_SIZE)

    def _shape_from_points(self, points: np.ndarray):
        dlib = self._dlib
        parts = dlib.points()
        for x, y in np.rint(points).astype(int):
            parts.append(dlib.point(int(x), int(y)))
        low, high = np.rint(points.min(0)).astype(int), np.rint(points.max(0)).astype(int)
        return dlib.full_object_detection(dlib.rectangle(*map(int, low), *map(int, high)), parts)

    def _describe(self, frame: np.ndarray, shape) -> np.ndarray:
        if self._descriptor_net is None:
            self._descriptor_net = self._dlib.face_recognition_model_v1(str(dlib_file("descriptor")))
        return np.array(self._descriptor_net.compute_face_descriptor(frame, shape, 0, CHIP_PADDING))


def _refuse_single_frame(frames) -> None:
    if isinstance(frames, np.ndarray) and frames.ndim == 3:
        raise ValueError(f"expected a batch of frames (N, H, W, 3), got one frame {frames.shape}: pass frame[None]")


def _rgb_uint8(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


# -- measures on landmarks and descriptors --------------------------------------------------------

def descriptor_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Euclidean distance of dlib descriptors along the last axis (broadcasts; NaN stays NaN).
    Same person typically 0.3-0.5, different people about 0.8; `SAME_PERSON_THRESHOLD` is 0.6."""
    distance = np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), axis=-1)
    return float(distance) if distance.ndim == 0 else distance


def inter_ocular_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners (36, 45), per face: (..., 68, 2) -> (...)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return np.linalg.norm(landmarks[..., OUTER_EYE_CORNERS[1], :] - landmarks[..., OUTER_EYE_CORNERS[0], :], axis=-1)


def mouth_gap(landmarks: np.ndarray, normalise: bool = True) -> np.ndarray:
    """Opening of the mouth: mean distance of the three inner-lip pairs (61-67, 62-66, 63-65),
    divided by the inter-ocular distance when `normalise` (so it does not depend on the face's size)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    gap = np.mean([np.linalg.norm(landmarks[..., lower, :] - landmarks[..., upper, :], axis=-1)
                   for upper, lower in INNER_LIP_PAIRS], axis=0)
    return gap / inter_ocular_distance(landmarks) if normalise else gap


def eye_openness(landmarks: np.ndarray) -> np.ndarray:
    """Mean over both eyes of the lid distance over the eye's width (the eye aspect ratio):
    about 0.25-0.35 open, below 0.15 closed."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    ratios = []
    for corner_a, corner_b, upper, lower in _EYES:
        lids = sum(np.linalg.norm(landmarks[..., u, :] - landmarks[..., d, :], axis=-1) for u, d in zip(upper, lower))
        width = np.linalg.norm(landmarks[..., corner_b, :] - landmarks[..., corner_a, :], axis=-1)
        ratios.append(lids / (2 * width))
    return (ratios[0] + ratios[1]) / 2

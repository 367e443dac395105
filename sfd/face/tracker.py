"""`FaceTracker`: the crop box for each frame of a video, streaming, one frame at a time.

It runs the face detector on every `every`-th frame, turns the main face into a crop box
(`CropBox.from_face`) and smooths the boxes over time (`BoxSmoother`). For clips that are
already face crops (VoxCeleb-style driving videos) use ``mode="full"``: no detection, the
whole frame is the crop. Memory does not grow with the length of the video.
"""

from __future__ import annotations

import numpy as np

from sfd.errors import NoFaceError
from sfd.face.crop import DEFAULT_OFFSET_X, DEFAULT_OFFSET_Y, DEFAULT_SCALE, CropBox
from sfd.face.detector import FaceDetector
from sfd.face.smoother import BoxSmoother

TRACK_MODES = ("smooth", "fixed", "raw", "full")


class FaceTracker:
    """Crop boxes for consecutive video frames.

    Args:
        detector: the face detector; may be ``None`` only with ``mode="full"``.
        mode: ``"smooth"`` (detect and smooth, default), ``"fixed"`` (the box of the first
            frame for the whole clip; detects once), ``"raw"`` (detect, no smoothing) or
            ``"full"`` (no detection: the whole frame, for already-cropped clips).
        every: detect on every `every`-th frame only (1 = every frame); the frames in
            between reuse the last detection, which the smoother glides towards.
        scale, offset_x, offset_y: crop framing, as in `CropBox.from_face`.
        smoother: a `BoxSmoother` to use instead of the default one for `mode`.

    Call the tracker with each frame, in order; `reset()` before a new clip.
    """

    def __init__(
        self,
        detector: FaceDetector | None,
        mode: str = "smooth",
        every: int = 1,
        scale: float = DEFAULT_SCALE,
        offset_x: float = DEFAULT_OFFSET_X,
        offset_y: float = DEFAULT_OFFSET_Y,
        smoother: BoxSmoother | None = None,
    ):
        if mode not in TRACK_MODES:
            raise ValueError(f"mode must be one of {', '.join(TRACK_MODES)}, got {mode!r}.")
        if mode != "full" and detector is None:
            raise ValueError(f"mode {mode!r} needs a face detector; use mode='full' for already-cropped clips.")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        self.detector = detector
        self.mode = mode
        self.every = every
        self.scale, self.offset_x, self.offset_y = scale, offset_x, offset_y
        self.smoother = smoother or BoxSmoother(mode="smooth" if mode == "full" else mode)
        self.reset()

    def reset(self) -> None:
        """Start a new clip."""
        self.smoother.reset()
        self.frame_index = 0
        self.detections = 0  # how many frames the detector ran on (for reports and tests)
        self._have_box = False

    def __call__(self, frame: np.ndarray) -> CropBox:
        """The crop box for the next frame of the clip.

        Raises NoFaceError when no face has been found yet (on the first frames); a face
        lost later keeps the last box.
        """
        i = self.frame_index
        self.frame_index += 1
        if self.mode == "full":
            h, w = np.asarray(frame).shape[:2]
            return CropBox.full_frame(h, w)
        # Detect on schedule, and on every frame until a face has been found; "fixed"
        # keeps its first box, so it stops detecting once it has one.
        due = not self._have_box or (self.mode != "fixed" and i % self.every == 0)
        box = None
        if due:
            self.detections += 1
            faces = self.detector.detect(frame)  # type: ignore[union-attr]
            if faces:
                box = CropBox.from_face(faces[0], self.scale, self.offset_x, self.offset_y)
                self._have_box = True
        try:
            return self.smoother.update(box)
        except ValueError:
            h, w = np.asarray(frame).shape[:2]
            raise NoFaceError(
                f"No face was found in frame {i} of the video ({w}x{h} px, detector: {self.detector.name}); "  # type: ignore[union-attr]
                "the first frame must show a face, or use mode='full' for already-cropped clips."
            ) from None

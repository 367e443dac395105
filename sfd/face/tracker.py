"""`FaceTracker`: the crop box for each frame of a video, streaming, one frame at a time.

It runs the face detector on every `every`-th frame, turns the main face into a crop box
(`CropBox.from_face`) and smooths the boxes over time (`BoxSmoother`). For clips that are
already face crops (VoxCeleb-style driving videos) use ``mode="full"``: no detection, the
whole frame is the crop. Memory does not grow with the length of the video.

`find_first_face` finds where a clip's face first appears (clips that open on a title card or a
fade-in), so that the frames before it can be given that face's box.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sfd.errors import NoFaceError
from sfd.face.crop import DEFAULT_OFFSET_X, DEFAULT_OFFSET_Y, DEFAULT_SCALE, CropBox
from sfd.face.detector import FaceDetector
from sfd.face.smoother import BoxSmoother

TRACK_MODES = ("smooth", "fixed", "raw", "full")
WATCH_EVERY = 25  # "fixed": look for the face every 25th frame (1 s at 25 fps) to see that it stays in its box


@dataclass
class FirstFace:
    """The first frame of a clip that shows a face: its index, the frame and its crop box."""

    index: int
    frame: np.ndarray
    box: CropBox


def find_first_face(detector: FaceDetector, frames: Iterable[np.ndarray], scale: float = DEFAULT_SCALE,
                    offset_x: float = DEFAULT_OFFSET_X, offset_y: float = DEFAULT_OFFSET_Y) -> FirstFace | None:
    """The first of `frames` in which `detector` finds a face (None when none has one).

    Reads no further than that frame, so a caller can go on with the rest of a stream. The box
    is the main face's, framed as `FaceTracker` frames it.
    """
    for index, frame in enumerate(frames):
        faces = detector.detect(frame)
        if faces:
            return FirstFace(index, frame, CropBox.from_face(faces[0], scale, offset_x, offset_y))
    return None


class FaceTracker:
    """Crop boxes for consecutive video frames.

    Args:
        detector: the face detector; may be ``None`` only with ``mode="full"``.
        mode: ``"smooth"`` (detect and smooth, default), ``"fixed"`` (the box of the first
            frame for the whole clip; afterwards it only looks for the face every `WATCH_EVERY`-th
            frame, to count where it has left that box), ``"raw"`` (detect, no smoothing) or
            ``"full"`` (no detection: the whole frame, for already-cropped clips).
        every: detect on every `every`-th frame only (1 = every frame); the frames in
            between reuse the last detection, which the smoother glides towards.
        scale, offset_x, offset_y: crop framing, as in `CropBox.from_face`.
        smoother: a `BoxSmoother` to use instead of the default one for `mode`.

    Call the tracker with each frame, in order; `reset()` before a new clip. `faceless_frames`
    counts the frames the detector found no face in: once it misses, it runs on every frame until
    the face is back, so that count covers every frame of the gap. In ``"fixed"`` mode the face is
    only looked for on every `WATCH_EVERY`-th frame after the first box: `watched_frames` counts
    those looks, `drifted_frames` those where the face was found out of the first box (the head
    has left the crop: track it instead), `missed_frames` those where no face was found.
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
        self.faceless_frames = 0
        self.watched_frames = 0
        self.drifted_frames = 0
        self.missed_frames = 0
        self._first_index = 0
        self._have_box = False
        self._face_lost = False
        self._known_box: CropBox | None = None

    def start_from(self, box: CropBox) -> None:
        """The box of the next frame, found already (by `find_first_face`): no second detection."""
        self._known_box = box

    def _detect(self, frame: np.ndarray) -> list:
        self.detections += 1
        return self.detector.detect(frame)  # type: ignore[union-attr]

    def _watch(self, frame: np.ndarray, first: CropBox) -> None:
        """One look, in "fixed" mode, at whether the face is still inside its `first` box."""
        self.watched_frames += 1
        faces = self._detect(frame)
        if not faces:
            self.missed_frames += 1
            return
        x0, y0, x1, y1 = faces[0].box
        self.drifted_frames += x0 < first.x0 or y0 < first.y0 or x1 > first.x1 or y1 > first.y1

    def __call__(self, frame: np.ndarray) -> CropBox:
        """The crop box for the next frame of the clip.

        Raises NoFaceError when no face has been found yet (on the first frames: see
        `find_first_face` for clips that open without one); a face lost later keeps the last box.
        """
        i = self.frame_index
        self.frame_index += 1
        if self.mode == "full":
            h, w = np.asarray(frame).shape[:2]
            return CropBox.full_frame(h, w)
        box, self._known_box = self._known_box, None
        if box is not None:
            if not self._have_box:
                self._first_index = i
            self._have_box = True
        elif self.mode == "fixed" and self._have_box:  # the first box for good; only watch the face
            first = self.smoother.update(None)
            if (i - self._first_index) % WATCH_EVERY == 0:
                self._watch(frame, first)
            return first
        # Detect on schedule, and on every frame until a face has been found or while it is lost.
        elif not self._have_box or self._face_lost or i % self.every == 0:
            faces = self._detect(frame)
            if faces:
                box = CropBox.from_face(faces[0], self.scale, self.offset_x, self.offset_y)
                if not self._have_box:
                    self._first_index = i
                self._have_box = True
            else:
                self.faceless_frames += 1
            self._face_lost = not faces
        try:
            return self.smoother.update(box)
        except ValueError:
            h, w = np.asarray(frame).shape[:2]
            raise NoFaceError(
                f"No face was found in frame {i} of the video ({w}x{h} px, detector: {self.detector.name}); "  # type: ignore[union-attr]
                "the first frame must show a face, or use mode='full' for already-cropped clips."
            ) from None

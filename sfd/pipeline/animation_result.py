"""`AnimationResult`: what `SFDPipeline.animate` wrote, and how much of the driver showed a face."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AnimationResult:
    """The animated video and what happened on the way.

    path:             the animated video (mp4).
    frame_count:      frames written, one per driving frame.
    faceless_frames:  driving frames in which no face was found (0 when the driver is taken whole).
                      Frames before the first face hold its pose; later ones keep the last crop box.
                      With one box, only the frames before the first face (see missed_frames).
    first_face_frame: the first driving frame with a face: the reference of relative motion.
    tracked:          whether the face was followed through the driver (`driver_box="track"`);
                      with one fixed box, the face is only looked for every 25th frame after it:
    watched_frames:   those looks;
    drifted_frames:   the looks that found the face out of its first box: the head left the crop
                      there, and the tracked box would serve that driver better;
    missed_frames:    the looks that found no face.
    side_by_side:     the driver | source | result video, when one was asked for.
    expression_strength: the strength the driver's expression changes were scaled by (the one
                      chosen for the pair when the amplitude was matched).

    It is path-like (`os.fspath`, `str`), since `animate` used to return the video's `Path`.
    """

    path: Path
    frame_count: int
    faceless_frames: int = 0
    first_face_frame: int = 0
    tracked: bool = False
    watched_frames: int = 0
    drifted_frames: int = 0
    missed_frames: int = 0
    side_by_side: Path | None = None
    expression_strength: float = 1.0

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return os.fspath(self.path)

    def face_summary(self) -> str:
        """One phrase on the driver's face, for status lines: says how many frames had none and,
        with one box, whether the face stayed in it."""
        if not self.faceless_frames:
            text = ("a face in every driving frame" if self.tracked
                    else "one crop box for the driver, from its first frame's face")
        else:
            text = f"no face in {self.faceless_frames} of {self.frame_count} driving frames"
            if self.first_face_frame:
                text += f" (the first face is in frame {self.first_face_frame}; the frames before it hold its pose"
                text += ")" if self.tracked else "; the later ones are cropped with its box)"
        if self.missed_frames:
            text += f"; no face in {self.missed_frames} of {self.watched_frames} later frames checked"
        if self.drifted_frames:
            text += (f"; the face had left that box in {self.drifted_frames} of {self.watched_frames} frames "
                     "checked (a driver box that follows the face suits this video better)")
        return text

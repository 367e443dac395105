"""`FrameFolderClip`: a video stored as a folder of frame images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sfd.errors import VideoError
from sfd.face import CropBox, crop
from sfd.media import load_image

from .layout import frame_files


def fit_square(frame: np.ndarray, size: int) -> np.ndarray:
    """The whole frame as a `size` x `size` crop (a non-square frame is padded, never cut).

    Both frames of a pair go through this same full-frame box, so they share one crop.
    """
    h, w = frame.shape[:2]
    if h == w == size:
        return frame
    return crop(frame, CropBox.full_frame(h, w), size)


class FrameFolderClip:
    """Frames of one video as image files; frames are read on demand (nothing is cached)."""

    def __init__(self, path: str | Path, size: int):
        self.path = Path(path)
        self.size = int(size)
        self._files: list[Path] | None = None

    @property
    def files(self) -> list[Path]:
        if self._files is None:  # listed lazily: a big dataset's init should not touch every folder
            self._files = frame_files(self.path)
            if not self._files:
                raise VideoError(f"{self.path} holds no frame images.")
        return self._files

    def __len__(self) -> int:
        return len(self.files)

    def frames(self, indices: list[int]) -> list[np.ndarray]:
        """RGB uint8 frames (size, size, 3) at `indices`."""
        return [fit_square(load_image(self.files[i]), self.size) for i in indices]

"""`TestVideo`: one video of an evaluation split, as a video file or a folder of frames.

Layout (FOMM's): ``DATA_ROOT/SPLIT/`` holds one entry per video, either a video file
(`.mp4`, `.mov`, ...) or a folder of frames (`.png`, `.jpg`, ... in name order). Videos are
taken in name order, so runs are repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SFDError, VideoError
from ..media import VideoReader, load_image

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif"}
FRAME_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@dataclass(frozen=True)
class TestVideo:
    """A test video: its name and where its frames are (a file or a folder of frames)."""

    __test__ = False  # not a pytest test class, whatever its name says

    name: str
    path: Path

    @property
    def is_frame_folder(self) -> bool:
        return self.path.is_dir()

    def frame_paths(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)

    def batches(self, batch_size: int = 8, max_frames: int | None = None) -> Iterator[np.ndarray]:
        """RGB uint8 frames (n, H, W, 3), streaming, at most `max_frames` in all."""
        remaining = max_frames if max_frames is not None else float("inf")
        if self.is_frame_folder:
            paths = self.frame_paths()[: max_frames if max_frames is not None else None]
            if not paths:
                raise VideoError(f"test video {self.name}: the folder {self.path} holds no frames")
            for start in range(0, len(paths), batch_size):
                frames = [load_image(p) for p in paths[start:start + batch_size]]
                if len({f.shape for f in frames}) > 1:
                    raise VideoError(f"test video {self.name}: its frames differ in size")
                yield np.stack(frames)
            return
        with VideoReader(self.path, batch_size=batch_size) as reader:
            for batch in reader:
                if remaining <= 0:
                    break
                batch = batch[: int(min(len(batch), remaining))]
                remaining -= len(batch)
                yield batch

    def first_frame(self) -> np.ndarray:
        return next(iter(self.batches(batch_size=1, max_frames=1)))[0]


def find_test_videos(data_root: str | Path, split: str = "test", max_videos: int | None = None) -> list[TestVideo]:
    """The videos of `data_root/split` in name order (the first `max_videos`); SFDError when none."""
    folder = Path(data_root).expanduser() / split
    if not folder.is_dir():
        raise SFDError(f"no {split!r} split in {data_root}: expected the folder {folder} with one video file "
                       "or one folder of frames per test video")
    videos = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(TestVideo(entry.stem, entry))
        elif entry.is_dir() and any(p.suffix.lower() in FRAME_SUFFIXES for p in entry.iterdir()):
            videos.append(TestVideo(entry.name, entry))
    if not videos:
        raise SFDError(f"{folder} holds no test videos (video files {', '.join(sorted(VIDEO_SUFFIXES))} "
                       "or folders of frames)")
    return videos[:max_videos] if max_videos is not None else videos

"""What a training data folder looks like on disk, and how its clips are found.

A data root holds one folder per split (``train/``, ``test/``); a split holds one entry per video:

* a folder of frames (``.png``/``.jpg``/...), sorted by the numbers in their names, as the
  benchmarks ship them (VoxCeleb ``vox-png``, HDTF, CelebV-HQ after preprocessing, and what
  ``python -m sfd.data.preprocess`` writes), or
* a video file (``.mp4``/``.mov``/...), already cropped to the face.

Folders may be named like files (``id10001#abc.mp4/``): a directory is always a frame folder.
"""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv"})


def natural_key(name: str) -> tuple:
    """Sort key that puts ``frame2.png`` before ``frame10.png``."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder, in frame order (hidden files ignored)."""
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def find_clips(split_dir: Path) -> list[Path]:
    """Every clip (frame folder or video file) directly inside `split_dir`, sorted by name.

    Hidden entries (``.partial``, ``.DS_Store``) are ignored: the preprocess command keeps its
    unfinished work in hidden folders.
    """
    clips = [p for p in split_dir.iterdir()
             if not p.name.startswith(".") and (p.is_dir() or is_video_file(p))]
    return sorted(clips, key=lambda p: natural_key(p.name))

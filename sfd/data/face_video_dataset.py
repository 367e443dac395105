"""`FaceVideoDataset`: pairs of frames (source, driving) of one face video, for training and evaluation."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sfd.errors import SFDError

from .frame_cache import FrameCache
from .frame_folder_clip import FrameFolderClip
from .layout import find_clips
from .pair_augmentation import PairAugmentation
from .video_file_clip import VideoFileClip

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 512 * 2**20
MAX_BAD_CLIP_RETRIES = 10


class FaceVideoDataset(Dataset):
    """Two frames of one video per sample, both with the same (full-frame) crop.

    Args:
        root: the data root (holding ``train/``, ``test/``), or a split folder itself when
            `split` is None. See `sfd.data.layout` for what a clip may be.
        split: ``"train"``, ``"test"``, ... or None.
        size: side of the returned frames (the model's ``size``).
        augmentation: a `PairAugmentation`, or None for the frames as they are (evaluation).
        pairs_per_clip: samples per clip and pass: the dataset has ``clips * pairs_per_clip``
            items, item i reading clip ``i % clips`` (small datasets need > 1 to fill batches).
        seed: None draws frames from torch's global RNG (seeded per DataLoader worker); an int
            makes the frames and augmentation of item i fixed, e.g. for evaluation pairs.
        min_frame_gap: the two frames are at least this many frames apart when the clip allows.
        cache_bytes: memory for decoded video-file clips, per process (see `VideoFileClip`).
        decode: ``"auto"``, ``"cache"`` or ``"seek"``: how video files are read.

    An item is a dict: ``source``, ``driving`` (3, size, size) float32 in [-1, 1], ``clip`` (index
    of the clip), ``frames`` (the two frame indices). A clip that cannot be read is logged and
    replaced by another, so one broken file does not stop a long run.
    """

    def __init__(self, root: str | Path, split: str | None = "train", size: int = 256,
                 augmentation: PairAugmentation | None = None, pairs_per_clip: int = 1, seed: int | None = None,
                 min_frame_gap: int = 0, cache_bytes: int = DEFAULT_CACHE_BYTES, decode: str = "auto"):
        self.root = Path(root)
        directory = self.root if split is None else self.root / split
        if not directory.is_dir():
            raise SFDError(f"no data folder at {directory}" + (f" (expected a {split}/ split folder under "
                                                               f"{self.root})" if split else ""))
        self.split = split
        self.size = int(size)
        self.augmentation = augmentation
        self.pairs_per_clip = max(1, int(pairs_per_clip))
        self.seed = seed
        self.min_frame_gap = int(min_frame_gap)
        self.cache = FrameCache(cache_bytes)
        paths = find_clips(directory)
        if not paths:
            raise SFDError(f"{directory} holds no clips (frame folders or video files)")
        self.clips = [FrameFolderClip(p, self.size) if p.is_dir()
                      else VideoFileClip(p, self.size, self.cache, decode, dataset_clips=len(paths)) for p in paths]
        self._bad: set[int] = set()

    @property
    def clip_paths(self) -> list[Path]:
        return [clip.path for clip in self.clips]

    def __len__(self) -> int:
        return len(self.clips) * self.pairs_per_clip

    def _generator(self, index: int) -> torch.Generator | None:
        if self.seed is None:
            return None
        # A stable hash (Python's hash() of a tuple differs between processes for strings).
        digest = hashlib.sha1(f"{self.seed}:{index}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))

    def frame_pair(self, n_frames: int, generator: torch.Generator | None) -> tuple[int, int]:
        """Two frame indices of a clip of `n_frames`, distinct (and `min_frame_gap` apart) when possible."""
        if n_frames < 2:
            return 0, 0
        gap = min(max(self.min_frame_gap, 1), n_frames - 1)
        while True:
            i, j = torch.randint(0, n_frames, (2,), generator=generator).tolist()
            if abs(i - j) >= gap:
                return i, j

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        generator = self._generator(index)
        clip_index = index % len(self.clips)
        for _ in range(MAX_BAD_CLIP_RETRIES + 1):
            if clip_index not in self._bad:
                clip = self.clips[clip_index]
                try:
                    i, j = self.frame_pair(len(clip), generator)
                    source, driving = clip.frames([i, j])
                    break
                except (SFDError, OSError) as error:
                    log.warning("skipping unreadable clip %s: %s", clip.path, error)
                    self._bad.add(clip_index)
            clip_index = (clip_index + 1) % len(self.clips)
        else:
            raise SFDError(f"no readable clip found near item {index} of {self.root} "
                           f"({len(self._bad)} unreadable clips so far; see the warnings)")
        source, driving = to_tensor(source), to_tensor(driving)
        if self.augmentation is not None:
            source, driving = self.augmentation(source, driving, generator=generator)
        return {"source": source, "driving": driving, "clip": clip_index, "frames": torch.tensor([i, j])}


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1]."""
    if not frame.flags.writeable:  # cached frames are read-only views; torch wants to own writable memory
        frame = frame.copy()
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)

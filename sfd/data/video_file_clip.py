"""`VideoFileClip`: random access to the frames of a (face-cropped) video file.

Two ways to get frame i, chosen per clip (``decode="auto"``):

* **cache**: decode the whole clip once, resized to the training size, into a `FrameCache`; every
  later pair of that clip is a memory read. Chosen when the clip takes at most a quarter of the
  cache and the dataset's clips, if all like this one, would fit in it (small datasets).
* **seek**: one short ffmpeg run per frame, ``ffmpeg -ss t -i clip -frames:v 1`` (input seeking:
  ffmpeg jumps to the keyframe before t and decodes up to t), about 20-60 ms a frame whatever
  the clip length. Chosen for big datasets, where whole-clip decoding would rarely be reused.
  Frames are found by timestamp, so on variable-frame-rate files index i may be off by a frame.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from sfd.errors import VideoError
from sfd.media import VideoReader, ffmpeg_exe, probe_video

from .frame_cache import FrameCache
from .frame_folder_clip import fit_square

DECODE_MODES = ("auto", "cache", "seek")
SEEK_TIMEOUT = 60.0


class VideoFileClip:
    """Frames of one video file, resized to `size` x `size` (full frame, padded to a square)."""

    def __init__(self, path: str | Path, size: int, cache: FrameCache | None = None, decode: str = "auto",
                 dataset_clips: int = 1):
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, got {decode!r}")
        if decode == "cache" and cache is None:
            raise ValueError("decode='cache' needs a FrameCache")
        self.path = Path(path)
        self.size = int(size)
        self.cache = cache
        self.decode = decode
        self.dataset_clips = max(1, int(dataset_clips))
        self._info = None
        self._decoded_count: int | None = None

    @property
    def info(self):
        if self._info is None:  # probed lazily, once per process
            self._info = probe_video(self.path)
        return self._info

    def __len__(self) -> int:
        if self._decoded_count is not None:  # what decoding really gave beats the container's count
            return self._decoded_count
        return max(1, self.info.frame_count)

    @property
    def decoded_bytes(self) -> int:
        """Memory the whole clip takes decoded at the training size."""
        return len(self) * self.size * self.size * 3

    def uses_cache(self) -> bool:
        if self.decode != "auto":
            return self.decode == "cache"
        if self.cache is None:
            return False
        size = self.decoded_bytes
        return size <= self.cache.max_bytes // 4 and size * self.dataset_clips <= self.cache.max_bytes

    def frames(self, indices: list[int]) -> list[np.ndarray]:
        """RGB uint8 frames (size, size, 3) at `indices` (clamped to the clip)."""
        if self.uses_cache():
            frames = self._cached_frames()
            return [frames[min(i, len(frames) - 1)] for i in indices]
        return [self._seek_frame(min(i, len(self) - 1)) for i in indices]

    # ------------------------------------------------------------------ whole-clip decoding
    def _cached_frames(self) -> np.ndarray:
        key = str(self.path)
        frames = self.cache.get(key)
        if frames is None:
            frames = self.decode_all()
            self.cache.put(key, frames)
        return frames

    def decode_all(self) -> np.ndarray:
        """Every frame of the clip at the training size, (N, size, size, 3) uint8."""
        out = []
        with VideoReader(self.path, batch_size=32, info=self.info) as reader:
            for batch in reader:
                out.extend(fit_square(frame, self.size) for frame in batch)
        frames = np.stack(out)
        self._decoded_count = len(frames)
        return frames

    # ------------------------------------------------------------------ seeking
    def _seek_frame(self, index: int) -> np.ndarray:
        # Containers may over-count their frames; then fall back to earlier ones rather than fail.
        for candidate in dict.fromkeys((index, index - 1, index * 3 // 4, index // 2, 0)):
            if candidate < 0:
                continue
            frame, error = self._try_seek(candidate)
            if frame is not None:
                return fit_square(frame, self.size)
        raise VideoError(f"{self.path.name}: cannot read frame {index} ({error}).")

    def _try_seek(self, index: int) -> tuple[np.ndarray | None, str]:
        info = self.info
        # A quarter frame early: ffmpeg keeps the first frame at or after t, which is then frame `index`.
        t = max(0.0, (index - 0.25) / info.fps)
        cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-ss", f"{t:.6f}", "-i", str(self.path), "-map", "0:V:0",
               "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        try:
            run = subprocess.run(cmd, capture_output=True, timeout=SEEK_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return None, f"ffmpeg took over {SEEK_TIMEOUT:.0f} s"
        frame_bytes = info.width * info.height * 3
        if len(run.stdout) < frame_bytes:
            lines = run.stderr.decode(errors="replace").strip().splitlines()
            return None, lines[-1] if lines else "no frame decoded"
        return np.frombuffer(run.stdout[:frame_bytes], np.uint8).reshape(info.height, info.width, 3), ""

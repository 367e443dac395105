"""Streaming RGB uint8 frames out of a video in batches (:class:`VideoReader`), so memory does not
grow with the length of the video; ffmpeg decodes in a subprocess that is always reaped."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from sfd.errors import VideoError

from .probe import VideoInfo, _fps_arg, _fps_fraction, _last_error, _reap, probe_video

log = logging.getLogger(__name__)


#: Seconds VideoReader waits for the next frame before it kills ffmpeg.
STALL_TIMEOUT = 60.0


class VideoReader:
    """Stream the frames of a video as RGB ``uint8`` arrays, a batch at a time.

    Example::

        with VideoReader("driving.mp4", batch_size=16, max_side=512) as reader:
            print(reader.info.fps, reader.width, reader.height)
            for batch in reader:            # (n, H, W, 3) uint8, n <= 16
                ...

    ffmpeg decodes in a subprocess and converts every pixel format (yuv444p,
    yuv420p10le, gray, ...) to rgb24; frames are read from its pipe as they are
    needed, so memory stays at about one batch whatever the video length. The
    rotation metadata is applied (frames come out upright).

    Iterating again restarts from the first frame. Leaving a ``with`` block,
    ``break``-ing out of the loop, an exception, or :meth:`close` stops ffmpeg
    and waits for it to exit. If ffmpeg produces no frame for
    ``stall_timeout`` seconds it is killed and :class:`VideoError` raised, so
    a pathological file cannot hang the caller.

    A truncated file yields the frames that can be decoded (a warning is
    logged when clearly fewer frames come out than the container lists, or
    ffmpeg exits with an error); if none can, :class:`VideoError` is raised,
    by :func:`probe_video` already in most cases. ffmpeg errors in the middle
    of decoding (a partial last frame, a failing decoder) also raise
    :class:`VideoError`.

    Args:
        path: the video (see :func:`probe_video`).
        batch_size: frames per batch.
        size: ``(width, height)`` to resize every frame to, or None.
        max_side: shrink (never enlarge) so the longer side is at most this,
            keeping the aspect ratio; ignored when ``size`` is given.
        fps: resample to this frame rate (frames are dropped or repeated, as
            ffmpeg's ``fps`` filter does); None keeps the video's rate.
        max_duration: refuse videos longer than this many seconds.
        stall_timeout: seconds to wait for one frame before giving up.
        info: an already computed :func:`probe_video` result, to skip probing.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        batch_size: int = 16,
        *,
        size: tuple[int, int] | None = None,
        max_side: int | None = None,
        fps: float | None = None,
        max_duration: float | None = None,
        stall_timeout: float = STALL_TIMEOUT,
        info: VideoInfo | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.path = Path(path)
        self.batch_size = int(batch_size)
        self.stall_timeout = float(stall_timeout)
        self.info = info if info is not None else probe_video(self.path, max_duration=max_duration)
        if info is not None and max_duration is not None and info.duration > max_duration + 1e-3:
            raise VideoError(
                f"{self.path.name} is {info.duration:.1f} s long; the limit is {max_duration:g} s."
            )

        self.width, self.height = _target_size(self.info.width, self.info.height, size, max_side)
        self.fps = float(_fps_fraction(fps)) if fps else self.info.fps
        self.frames_read = 0
        self._filters: list[str] = []
        if (self.width, self.height) != (self.info.width, self.info.height):
            self._filters.append(f"scale={self.width}:{self.height}:flags=bicubic")
        if fps:
            self._filters.append(f"fps={_fps_arg(fps)}")
        self._active: Iterator[np.ndarray] | None = None

    @property
    def frame_count(self) -> int:
        """Expected number of frames (an estimate when ``fps`` resamples)."""
        if self.fps == self.info.fps:
            return self.info.frame_count
        return max(1, round(self.info.duration * self.fps))

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        self.close()  # one decoding run at a time; a new loop starts over
        self._active = self._batches()
        return self._active

    def frames(self) -> Iterator[np.ndarray]:
        """Yield single ``(H, W, 3)`` frames (still decoded batch-wise)."""
        for batch in self:
            yield from batch

    def read_all(self, max_frames: int | None = None) -> np.ndarray:
        """Read the whole video (or its first ``max_frames``) into one array.

        Only for short clips: this holds every frame in memory.
        """
        out, total = [], 0
        for batch in self:
            if max_frames is not None and total + len(batch) >= max_frames:
                out.append(batch[: max_frames - total])
                break
            out.append(batch)
            total += len(batch)
        self.close()
        return np.concatenate(out) if out else np.empty((0, self.height, self.width, 3), np.uint8)

    def close(self) -> None:
        """Stop decoding; ffmpeg is stopped and reaped. Safe to call twice."""
        active, self._active = self._active, None
        if active is not None:
            active.close()  # runs the finally block of _batches

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _batches(self) -> Iterator[np.ndarray]:
        stream = _DecodeStream(self.path, self._filters, self.stall_timeout)
        name = self.path.name
        self.frames_read = 0
        try:
            w, h = stream.start()
            if (w, h) != (self.width, self.height):
                # Should not happen; trust what ffmpeg actually sends.
                log.warning("%s: expected %dx%d frames, ffmpeg sends %dx%d", name, self.width, self.height, w, h)
                self.width, self.height = w, h
            frame_bytes = w * h * 3
            while True:
                batch = np.empty((self.batch_size, h, w, 3), dtype=np.uint8)
                n = 0
                while n < self.batch_size:
                    data = stream.next_frame()
                    if data is None:
                        break
                    if len(data) != frame_bytes:
                        raise VideoError(f"{name}: ffmpeg sent a frame of the wrong size.")
                    batch[n] = np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)
                    n += 1
                self.frames_read += n
                if n:
                    yield batch if n == self.batch_size else batch[:n]
                if n < self.batch_size:
                    break
            if self.frames_read == 0:
                raise VideoError(f"{name} contains no decodable video frames; it may be truncated or corrupt.")
            stream.finish()
            expected = self.info.frame_count
            if self.info.frame_count_exact and self.fps == self.info.fps and self.frames_read < 0.9 * expected:
                log.warning("%s: only %d of %d frames could be decoded; the file may be truncated",
                            name, self.frames_read, expected)
        finally:
            stream.close()


class _DropResizeWarning(logging.Filter):
    """Hide imageio-ffmpeg's warning that the output size differs from the
    source size: with resizing or rotation that is exactly what we asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("The frame size for reading")


def _quiet_resize_warning() -> None:
    logger = logging.getLogger("imageio_ffmpeg")
    if not any(isinstance(f, _DropResizeWarning) for f in logger.filters):
        logger.addFilter(_DropResizeWarning())


class _DecodeStream:
    """One ffmpeg decoding run through ``imageio_ffmpeg.read_frames``.

    read_frames handles the pipes and stops ffmpeg when its generator is
    closed; around it this class adds a stall watchdog, turns ffmpeg's errors
    into VideoError, and reaps the process so no zombie is left.
    """

    def __init__(self, path: Path, filters: list[str], stall_timeout: float) -> None:
        self.path = path
        self.filters = filters
        self.stall_timeout = stall_timeout
        self._gen = None
        self._proc: subprocess.Popen | None = None
        self._waiting_since: float | None = None
        self._stalled = False
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def start(self) -> tuple[int, int]:
        import imageio_ffmpeg

        out = ["-map", "0:V:0", "-an", "-sn", "-dn"]
        if self.filters:
            out += ["-vf", ",".join(self.filters)]
        _quiet_resize_warning()
        self._gen = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24", output_params=out)
        meta = self._next()  # read_frames itself gives up after 10 s without a header
        if meta is None:
            raise VideoError(f"{self.path.name}: ffmpeg stopped before sending any frame.")
        # read_frames keeps the Popen object to itself; take it from the
        # generator's frame (CPython) so we can kill a stalled ffmpeg and
        # reap it. Without it everything still works, minus the watchdog.
        frame = getattr(self._gen, "gi_frame", None)
        proc = frame.f_locals.get("process") if frame is not None else None
        if isinstance(proc, subprocess.Popen):
            self._proc = proc
            self._watchdog = threading.Thread(target=self._watch, name="sfd-video-watchdog", daemon=True)
            self._watchdog.start()
        w, h = meta["size"]
        return int(w), int(h)

    def next_frame(self) -> bytes | None:
        """The next frame's raw RGB bytes, or None at the end of the video."""
        return self._next()

    def _next(self):
        self._waiting_since = time.monotonic()
        try:
            return next(self._gen)
        except StopIteration:
            return None
        except (RuntimeError, OSError) as exc:
            if self._stalled:
                raise VideoError(
                    f"{self.path.name}: ffmpeg produced no frame for {self.stall_timeout:g} s and was stopped."
                ) from None
            # A partial last frame or a failing decoder: the file is damaged.
            reason = _last_error(str(exc)) or str(exc).splitlines()[0]
            raise VideoError(f"{self.path.name} could not be decoded; it may be truncated or corrupt ({reason}).") from None
        finally:
            self._waiting_since = None

    def _watch(self) -> None:
        # Only time spent *waiting for ffmpeg* counts; a slow consumer between
        # frames is not a stall.
        while not self._stop.wait(0.25):
            since = self._waiting_since
            if since is not None and time.monotonic() - since > self.stall_timeout:
                self._stalled = True
                proc = self._proc
                if proc is not None and proc.poll() is None:
                    proc.kill()
                return

    def finish(self) -> None:
        """After the last frame: log ffmpeg errors (frames may be missing)."""
        if self._stalled:
            raise VideoError(
                f"{self.path.name}: ffmpeg produced no frame for {self.stall_timeout:g} s and was stopped."
            )
        proc = self._proc
        if proc is not None:
            try:
                rc = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                return
            if rc != 0:
                log.warning("%s: ffmpeg exited with code %s; the video may be truncated", self.path.name, rc)

    def close(self) -> None:
        self._stop.set()
        gen, self._gen = self._gen, None
        if gen is not None:
            try:
                gen.close()  # read_frames closes the pipes and stops ffmpeg
            except Exception:
                pass
        proc, self._proc = self._proc, None
        if proc is not None:
            _reap(proc)


def _target_size(w: int, h: int, size, max_side) -> tuple[int, int]:
    if size is not None:
        tw, th = (int(v) for v in size)
        if tw < 1 or th < 1:
            raise ValueError(f"size must be (width, height) with positive values, not {size!r}")
        return tw, th
    if max_side is not None:
        if max_side < 1:
            raise ValueError(f"max_side must be positive, not {max_side!r}")
        if max(w, h) > max_side:
            scale = max_side / max(w, h)
            return max(1, round(w * scale)), max(1, round(h * scale))
    return w, h


def read_video(path: str | os.PathLike, max_frames: int | None = None, **reader_kwargs) -> tuple[np.ndarray, VideoInfo]:
    """Read a short video into one ``(N, H, W, 3)`` array; returns (frames, info).

    Keyword arguments go to :class:`VideoReader`. Use the reader directly for
    long videos.
    """
    with VideoReader(path, **reader_kwargs) as reader:
        return reader.read_all(max_frames), reader.info


# --------------------------------------------------------------------------
# writing

"""Probing, streaming and writing videos with the ffmpeg binary that imageio-ffmpeg ships.

* :func:`probe_video` checks a file and describes it (:class:`VideoInfo`),
  raising :class:`sfd.errors.VideoError` with a user-facing message when the
  file is missing, not a video, truncated, empty or too long.
* :class:`VideoReader` streams RGB ``uint8`` frames in batches, so memory does
  not grow with the length of the video.
* :class:`VideoWriter` streams frames into a browser-friendly H.264 mp4 and can
  carry over the audio track of a source video.

Only numpy and imageio-ffmpeg are needed; ffmpeg runs as a subprocess, and
every subprocess started here is waited for (with a timeout) or killed, so a
broken file can neither hang the caller nor leave zombie processes.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from sfd.errors import VideoError

__all__ = [
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "ffmpeg_exe",
    "probe_video",
    "read_video",
    "write_video",
]

log = logging.getLogger(__name__)

#: Seconds one probing ffmpeg call may take before it is killed.
PROBE_TIMEOUT = 60.0
#: Seconds VideoReader waits for the next frame before it kills ffmpeg.
STALL_TIMEOUT = 60.0

# Frame rates that ffmpeg prints rounded ("29.97") but that are really
# n*1000/1001; snapping back to the exact value keeps timestamps exact.
_NTSC_RATES = tuple(Fraction(n * 1000, 1001) for n in (15, 24, 30, 48, 60, 120))


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (or IMAGEIO_FFMPEG_EXE)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# --------------------------------------------------------------------------
# probing


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found out about a video file.

    Attributes:
        path: the file.
        width, height: frame size as displayed, i.e. *after* the rotation
            metadata is applied (a phone video shot upright has height > width).
            :class:`VideoReader` delivers frames of this size (unless resized).
        fps: frames per second (exact for the NTSC rates such as 30000/1001).
        frame_count: number of video frames: counted from the container's
            packets (cheap, nothing is decoded), or estimated as
            ``duration * fps`` when counting was skipped or failed; see
            ``frame_count_exact``. For variable-frame-rate files the number of
            frames :class:`VideoReader` yields can differ slightly.
        duration: seconds (container duration; estimated from the frame count
            when the container does not give one).
        has_audio: whether there is at least one audio stream.
        codec: video codec name as ffmpeg calls it (``h264``, ``vp9``, ...).
        pix_fmt: pixel format of the stored frames (``yuv420p``, ``gray``, ...).
        rotation: counter-clockwise degrees (0, 90, 180, 270) the player turns
            the stored frames by; already accounted for in width/height.
        audio_codec: codec of the first audio stream, or ``None``.
        frame_count_exact: True when ``frame_count`` was counted, not estimated.
    """

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    has_audio: bool
    codec: str
    pix_fmt: str
    rotation: int = 0
    audio_codec: str | None = None
    frame_count_exact: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.width, self.height


@dataclass
class _Stream:
    index: str  # "0:1"
    kind: str  # "Video", "Audio", ...
    codec: str
    details: list[str]
    attached_pic: bool
    rotation: float = 0.0


@dataclass
class _Header:
    duration: float | None
    streams: list[_Stream]
    error: str  # last error-looking line ffmpeg printed, for messages


def probe_video(
    path: str | os.PathLike,
    *,
    max_duration: float | None = None,
    count_frames: bool = True,
    timeout: float = PROBE_TIMEOUT,
) -> VideoInfo:
    """Check that ``path`` is a readable video and describe it.

    Runs ffmpeg (there is no ffprobe) once to read the header and decode the
    first frame, and, with ``count_frames``, once more to count the video
    packets without decoding them (fast: the 65 s test clip takes ~20 ms).

    Args:
        path: the video file. Any container ffmpeg reads works (mp4, mov, avi,
            webm, mkv, ...); a still image is accepted as a 1-frame video.
        max_duration: if given, refuse videos longer than this many seconds.
        count_frames: count packets for an exact ``frame_count``; if False the
            count is estimated as ``duration * fps``.
        timeout: seconds each ffmpeg call may run before it is killed.

    Raises:
        VideoError: the file is missing, empty or not a regular file; ffmpeg
            cannot read it; it has no video stream; not even its first frame
            can be decoded (truncated or corrupt); or it is longer than
            ``max_duration``. The message names the file.
    """
    path = Path(path)
    name = _check_file(path)

    # One ffmpeg run gives the header (on stderr) and proves a frame decodes.
    # 0:V:0 = first video stream that is not cover art.
    rc, err = _run_ffmpeg(
        ["-i", str(path), "-map", "0:V:0", "-frames:v", "1", "-f", "null", "-"], timeout, name
    )
    header = _parse_header(err)
    if header is None:
        reason = f" ({_last_error(err)})" if _last_error(err) else ""
        raise VideoError(f"{name} is not a video ffmpeg can read{reason}.")
    video = next((s for s in header.streams if s.kind == "Video" and not s.attached_pic), None)
    if video is None:
        hint = "; it looks like an audio file" if any(s.kind == "Audio" for s in header.streams) else ""
        raise VideoError(f"{name} has no video stream{hint}.")
    if _stats_frames(err) < 1:
        reason = f" ({_last_error(err)})" if _last_error(err) else ""
        raise VideoError(
            f"{name} contains no decodable video frames; it may be truncated or corrupt{reason}."
        )

    width, height = _stream_size(video, name)
    rotation = int(round(video.rotation)) % 360
    if rotation in (90, 270):
        width, height = height, width
    fps = _stream_fps(video)
    duration = header.duration

    if max_duration is not None and duration is not None and duration > max_duration + 1e-3:
        raise VideoError(
            f"{name} is {duration:.1f} s long; the limit is {max_duration:g} s. "
            "Use a shorter clip or trim it."
        )

    frame_count, exact = 0, False
    if count_frames:
        rc, err = _run_ffmpeg(["-i", str(path), "-map", "0:V:0", "-c", "copy", "-f", "null", "-"], timeout, name)
        frame_count = _stats_frames(err)
        exact = frame_count > 0
    if fps is None:
        fps = float(frame_count / duration) if exact and duration else 25.0
        log.warning("%s does not state its frame rate; assuming %.3f fps", name, fps)
    if not exact:
        frame_count = max(1, round((duration or 0.0) * fps))
    if duration is None:
        duration = frame_count / fps
        if max_duration is not None and duration > max_duration + 1e-3:
            raise VideoError(
                f"{name} is about {duration:.1f} s long; the limit is {max_duration:g} s. "
                "Use a shorter clip or trim it."
            )

    audio = next((s for s in header.streams if s.kind == "Audio"), None)
    return VideoInfo(
        path=path,
        width=width,
        height=height,
        fps=fps,
        frame_count=frame_count,
        duration=duration,
        has_audio=audio is not None,
        codec=video.codec,
        pix_fmt=_stream_pix_fmt(video),
        rotation=rotation,
        audio_codec=audio.codec if audio else None,
        frame_count_exact=exact,
    )


def _check_file(path: Path) -> str:
    """Basic checks before ffmpeg sees the file; returns the name used in messages."""
    name = path.name or str(path)
    if not path.exists():
        raise VideoError(f"Video file {str(path)!r} was not found.")
    if not path.is_file():
        # Also refuses FIFOs and devices, on which ffmpeg could block forever.
        raise VideoError(f"{name} is not a regular file.")
    if path.stat().st_size == 0:
        raise VideoError(f"{name} is empty (0 bytes); it is not a video.")
    return name


def _run_ffmpeg(args: Sequence[str], timeout: float, name: str) -> tuple[int, str]:
    """Run ffmpeg to completion and return (exit code, stderr text)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    try:
        # subprocess.run kills and reaps the child on timeout.
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VideoError(f"Reading {name} took longer than {timeout:g} s; the file may be damaged.") from None
    return res.returncode, res.stderr.decode("utf-8", "replace")


_STREAM_RE = re.compile(r"^\s*Stream #(\d+:\d+)[^:]*:\s*(Video|Audio|Subtitle|Data|Attachment):\s*(.*)$")
_ROTATION_RE = re.compile(r"rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_ROTATE_TAG_RE = re.compile(r"^\s*rotate\s*:\s*(-?\d+)")
_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


def _parse_header(text: str) -> _Header | None:
    """Parse the ``Input #0`` part of ffmpeg's stderr; None if there is none."""
    lines = text.replace("\r", "\n").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Input #0"))
    except StopIteration:
        return None
    duration = None
    streams: list[_Stream] = []
    for line in lines[start + 1:]:
        if line.startswith(("Output #", "Stream mapping:", "Input #1", "Press [q]")):
            break
        if not line.startswith(" "):
            continue  # log lines ("[h264 @ ...] ...") can be interleaved
        m = _DURATION_RE.search(line)
        if m and duration is None:
            h, mi, s = m.groups()
            duration = int(h) * 3600 + int(mi) * 60 + float(s)
            continue
        m = _STREAM_RE.match(line)
        if m:
            index, kind, rest = m.groups()
            parts = _split_top_level(rest)
            codec = parts[0].split()[0] if parts and parts[0].split() else "unknown"
            streams.append(_Stream(index, kind, codec, parts, "(attached pic)" in rest))
            continue
        if streams:
            m = _ROTATION_RE.search(line) or _ROTATE_TAG_RE.match(line)
            if m:
                # Older ffmpeg printed a clockwise "rotate" tag; newer ones the
                # display matrix's counter-clockwise angle. Either way only
                # whether width and height swap matters here.
                angle = float(m.group(1))
                streams[-1].rotation = angle if _ROTATION_RE.search(line) else -angle
    return _Header(duration, streams, _last_error(text))


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses or brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def _stream_size(stream: _Stream, name: str) -> tuple[int, int]:
    for part in stream.details[1:]:
        m = re.match(r"^(\d+)x(\d+)\b", part)
        if m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
            return int(m.group(1)), int(m.group(2))
    raise VideoError(f"{name} does not state a frame size; it may be corrupt.")


def _stream_pix_fmt(stream: _Stream) -> str:
    if len(stream.details) > 1 and not re.match(r"^\d+x\d+", stream.details[1]):
        return stream.details[1].split("(")[0].strip()
    return "unknown"


def _stream_fps(stream: _Stream) -> float | None:
    rates = {}
    for part in stream.details:
        m = re.match(r"^([\d.]+)(k?) (fps|tbr)$", part)
        if m:
            rates[m.group(3)] = float(m.group(1)) * (1000 if m.group(2) else 1)
    fps = rates.get("fps") or rates.get("tbr")
    if not fps or not math.isfinite(fps):
        return None
    for exact in _NTSC_RATES:
        if abs(fps - float(exact)) < 0.006:
            return float(exact)
    return fps


def _stats_frames(text: str) -> int:
    """The frame count of ffmpeg's last progress line (0 if there is none)."""
    found = re.findall(r"frame=\s*(\d+)", text)
    return int(found[-1]) if found else 0


def _last_error(text: str) -> str:
    """A short reason from ffmpeg's stderr, e.g. 'moov atom not found'."""
    keep = []
    for line in text.replace("\r", "\n").splitlines():
        low = line.lower()
        if any(w in low for w in ("error", "invalid", "not found", "truncat", "corrupt", "no such", "moov")):
            keep.append(re.sub(r"^\[[^\]]*\]\s*", "", line.strip()))
    # The first such line is usually the specific cause, later ones are generic.
    return keep[0][:200].rstrip(". ") if keep else ""


# --------------------------------------------------------------------------
# reading


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


def _reap(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Make sure a child process is gone and waited for (no zombie), pipes closed."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    # read_frames leaves the pipes open when ffmpeg had already exited by itself.
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


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


def _fps_fraction(fps) -> Fraction:
    """Frame rate as an exact fraction; 29.97 and friends become n*1000/1001."""
    if isinstance(fps, str):
        try:
            value = Fraction(fps)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"fps {fps!r} is not a number or a fraction like '30000/1001'") from None
    else:
        if not isinstance(fps, (int, float, Fraction)) or not math.isfinite(float(fps)):
            raise ValueError(f"fps must be a positive number, not {fps!r}")
        value = Fraction(fps)
    if value <= 0:
        raise ValueError(f"fps must be positive, not {fps!r}")
    for exact in _NTSC_RATES:
        if abs(float(value) - float(exact)) < 0.006:
            return exact
    return value.limit_denominator(1001)


def _even(v: int, mode: str) -> int:
    """yuv420p needs even sides: drop or add one pixel (a side of 1 is always padded)."""
    if v % 2 == 0:
        return v
    return v - 1 if mode == "crop" and v > 1 else v + 1


def _fps_arg(fps) -> str:
    f = _fps_fraction(fps)
    return f"{f.numerator}/{f.denominator}"


class VideoWriter:
    """Write frames to a browser-playable H.264 mp4, optionally with audio.

    Example::

        with VideoWriter("out.mp4", fps=25, audio_source="driving.mp4") as writer:
            for batch in batches:
                writer.write(batch)         # (H, W, 3) or (n, H, W, 3) uint8
        # out.mp4 exists only now, complete

    Output: libx264, ``yuv420p`` (BT.709, limited range, tagged as such),
    ``-movflags +faststart`` so browsers can start playing before the whole
    file has loaded, frame rate exactly ``fps`` (29.97 is stored as 30000/1001).

    Odd sizes: yuv420p needs even width and height. With
    ``odd_size="crop"`` (default) the last column/row is dropped; with
    ``"pad"`` one column/row copying the edge pixels is added. A side of 1
    pixel is always padded.

    Audio: if ``audio_source`` (any file with an audio stream, usually the
    driving video) has audio and ``keep_audio`` is true, its first audio track
    is muxed in as AAC (copied when it already is AAC), cut to the length of
    the video; if the audio is shorter, the rest of the video is silent. No
    audio source, a source without audio or ``keep_audio=False`` gives a silent
    video. If muxing fails the silent video is kept and a warning logged
    (``audio_muxed`` tells).

    Atomic output: everything is written to hidden temporary files next to
    ``path`` and renamed onto ``path`` only when complete. An exception inside
    the ``with`` block (or :meth:`abort`) stops ffmpeg and deletes the
    temporary files; a failure in :meth:`close` deletes them too. No temporary
    file is left either way.

    Frames must all have the same size; ``uint8`` is written as is, other
    dtypes are converted (floats taken as 0..1).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float | str | Fraction,
        *,
        audio_source: str | os.PathLike | None = None,
        keep_audio: bool = True,
        crf: int = 18,
        preset: str = "medium",
        odd_size: str = "crop",
        finish_timeout: float = 600.0,
    ) -> None:
        if odd_size not in ("crop", "pad"):
            raise ValueError(f"odd_size must be 'crop' or 'pad', not {odd_size!r}")
        self.path = Path(path)
        self.fps = _fps_fraction(fps)
        self.crf = int(crf)
        self.preset = preset
        self.odd_size = odd_size
        self.finish_timeout = finish_timeout
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # output (width, height), even
        self.audio_muxed = False
        self._input_size: tuple[int, int] | None = None
        self._proc: subprocess.Popen | None = None
        self._stderr: deque[str] = deque(maxlen=40)
        self._stderr_thread: threading.Thread | None = None
        self._tmp_files: list[Path] = []
        self._closed = False

        # Check the audio source now, not after minutes of rendering.
        self._audio_source: Path | None = None
        self._audio_codec: str | None = None
        if audio_source is not None and keep_audio:
            src = Path(audio_source)
            name = _check_file(src)
            _, err = _run_ffmpeg(["-i", str(src)], PROBE_TIMEOUT, name)
            header = _parse_header(err)
            if header is None:
                raise VideoError(f"{name} (the audio source) is not a file ffmpeg can read.")
            audio = next((s for s in header.streams if s.kind == "Audio"), None)
            if audio is not None:
                self._audio_source = src
                self._audio_codec = audio.codec

        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def will_have_audio(self) -> bool:
        """Whether an audio track will be muxed in (if muxing succeeds)."""
        return self._audio_source is not None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.abort()
            return False
        self.close()
        return False

    def write(self, frames: np.ndarray) -> None:
        """Append one frame ``(H, W, 3)`` or a batch ``(n, H, W, 3)``."""
        if self._closed:
            raise VideoError(f"Cannot write to {self.path.name}: the writer is already closed.")
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise VideoError(f"Frames must have shape (H, W, 3) or (n, H, W, 3), not {np.shape(frames)}.")
        if arr.shape[0] == 0:
            return
        if arr.shape[1] == 0 or arr.shape[2] == 0:
            raise VideoError(f"Frames must not be empty (shape {arr.shape}).")
        if arr.dtype != np.uint8:
            from sfd.errors import ImageError
            from sfd.media.image import _to_uint8

            try:
                arr = _to_uint8(arr, "The frame")
            except ImageError as exc:
                raise VideoError(str(exc)) from None
        h, w = arr.shape[1:3]
        if self._proc is None:
            self._start(w, h)
        elif (w, h) != self._input_size:
            iw, ih = self._input_size
            raise VideoError(f"All frames must have the same size: got {w}x{h} after {iw}x{ih}.")
        try:
            self._proc.stdin.write(memoryview(np.ascontiguousarray(arr)).cast("B"))
        except (BrokenPipeError, OSError, ValueError):
            self._wait_quietly()
            raise VideoError(f"ffmpeg stopped while writing {self.path.name}: {self._stderr_text()}") from None
        self.frames_written += arr.shape[0]

    def close(self) -> Path:
        """Finish encoding, mux the audio, and move the file into place.

        Returns the path. Raises :class:`VideoError` if no frame was written or
        ffmpeg failed; no file is left behind then.
        """
        if self._closed:
            return self.path
        self._closed = True
        try:
            if self._proc is None:
                raise VideoError(f"No frames were written, so {self.path.name} was not created.")
            proc = self._proc
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                rc = proc.wait(timeout=self.finish_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise VideoError(f"Encoding {self.path.name} took longer than {self.finish_timeout:g} s.") from None
            finally:
                if self._stderr_thread is not None:
                    self._stderr_thread.join(timeout=5)
            if rc != 0:
                raise VideoError(f"ffmpeg failed to encode {self.path.name} (exit code {rc}): {self._stderr_text()}")
            result = self._video_tmp
            if self._audio_source is not None:
                result = self._mux_audio(self._video_tmp) or self._video_tmp
            os.replace(result, self.path)
            return self.path
        finally:
            self._proc = None
            self._cleanup()

    def abort(self) -> None:
        """Stop without producing a file (used on exceptions). Safe to call twice."""
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.kill()
            except OSError:
                pass
            for pipe in (proc.stdin,):
                try:
                    pipe.close()
                except (OSError, BrokenPipeError):
                    pass
            proc.wait()
        self._cleanup()

    def __del__(self) -> None:
        # A writer dropped without close(): do not leave ffmpeg or temp files.
        if not getattr(self, "_closed", True):
            try:
                self.abort()
            except Exception:
                pass

    # -- internals

    def _new_tmp(self, tag: str) -> Path:
        # Hidden, unique, in the target folder: os.replace is then an atomic rename.
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=f".{tag}.part.mp4")
        os.close(fd)
        tmp = Path(name)
        self._tmp_files.append(tmp)
        return tmp

    def _cleanup(self) -> None:
        for tmp in self._tmp_files:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # pragma: no cover - e.g. permissions changed meanwhile
                log.warning("could not remove temporary file %s: %s", tmp, exc)
        self._tmp_files.clear()

    def _start(self, w: int, h: int) -> None:
        self._input_size = (w, h)
        ow, oh = _even(w, self.odd_size), _even(h, self.odd_size)
        self.size = (ow, oh)
        filters = []
        cw, ch = min(ow, w), min(oh, h)
        if (cw, ch) != (w, h):
            filters.append(f"crop={cw}:{ch}:0:0")
        if (ow, oh) != (cw, ch):
            # pad, then copy the edge pixels into the new column/row (no black line)
            filters.append(f"pad={ow}:{oh}:0:0")
            filters.append(f"fillborders=right={ow - cw}:bottom={oh - ch}:mode=smear")
        # RGB -> YUV with the BT.709 matrix, and tag the file so: players then
        # convert back with the same matrix and colours stay true.
        filters.append("scale=out_color_matrix=bt709:out_range=tv:flags=bicubic+accurate_rnd")
        filters.append("format=yuv420p")

        self._video_tmp = self._new_tmp("video")
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{w}x{h}",
            "-framerate", _fps_arg(self.fps), "-i", "pipe:0",
            "-map", "0:v:0", "-vf", ",".join(filters),
            "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
            "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
        ]
        if self._audio_source is None:
            cmd += ["-movflags", "+faststart"]  # final file: make it streamable now
        cmd += ["-f", "mp4", str(self._video_tmp)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Drain stderr in the background: a full pipe would block ffmpeg.
        self._stderr_thread = threading.Thread(target=self._drain_stderr, args=(self._proc.stderr,), daemon=True)
        self._stderr_thread.start()

    def _drain_stderr(self, pipe) -> None:
        try:
            for line in pipe:
                self._stderr.append(line.decode("utf-8", "replace").rstrip())
        except (OSError, ValueError):
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def _stderr_text(self) -> str:
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2)
        text = " | ".join(line for line in self._stderr if line)
        return text[-600:] or "no message"

    def _wait_quietly(self) -> None:
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _mux_audio(self, video: Path) -> Path | None:
        """Second pass: video stream copied, first audio track of the source added."""
        out = self._new_tmp("mux")
        duration = float(Fraction(self.frames_written) / self.fps)
        audio_codec = ["-c:a", "copy"] if self._audio_codec == "aac" else ["-c:a", "aac", "-b:a", "160k"]
        args = [
            "-loglevel", "error", "-y", "-i", str(video), "-i", str(self._audio_source),
            "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *audio_codec,
            # Cut the audio at the video's end (-t rather than -shortest, which
            # would also cut the *video* when the audio is shorter).
            "-t", f"{duration:.6f}", "-movflags", "+faststart", "-f", "mp4", str(out),
        ]
        rc, err = _run_ffmpeg(args, self.finish_timeout, self.path.name)
        if rc != 0:
            log.warning("Could not add the audio of %s to %s; writing it silent. ffmpeg said: %s",
                        self._audio_source.name, self.path.name, err.strip()[-400:])
            return None
        self.audio_muxed = True
        return out


def write_video(
    path: str | os.PathLike,
    frames,
    fps: float | str | Fraction,
    **writer_kwargs,
) -> Path:
    """Write an array ``(n, H, W, 3)`` or an iterable of frames/batches to ``path``.

    Keyword arguments go to :class:`VideoWriter`. Returns the path.
    """
    with VideoWriter(path, fps, **writer_kwargs) as writer:
        if isinstance(frames, np.ndarray):
            writer.write(frames)
        else:
            for item in frames:
                writer.write(item)
    return writer.path

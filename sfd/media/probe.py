"""Probing videos with the ffmpeg binary that imageio-ffmpeg ships, and the helpers every ffmpeg call shares.

:func:`probe_video` checks a file and describes it (:class:`VideoInfo`), raising
:class:`sfd.errors.VideoError` with a user-facing message when the file is missing, not a video,
truncated, empty or too long. ffmpeg runs as a subprocess; every subprocess started here is waited
for (with a timeout) or killed, so a broken file can neither hang the caller nor leave zombies.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from sfd.errors import VideoError

log = logging.getLogger(__name__)


#: Seconds one probing ffmpeg call may take before it is killed.
PROBE_TIMEOUT = 60.0
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


def _fps_arg(fps) -> str:
    f = _fps_fraction(fps)
    return f"{f.numerator}/{f.denominator}"

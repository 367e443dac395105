"""Streaming frames into a browser-friendly H.264 mp4 (:class:`VideoWriter`), optionally with the
audio track of a source video; the output appears only when it is complete."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np

from sfd.errors import VideoError

from .probe import (
    PROBE_TIMEOUT,
    _check_file,
    _fps_arg,
    _fps_fraction,
    _parse_header,
    _run_ffmpeg,
    ffmpeg_exe,
)

log = logging.getLogger(__name__)


def _even(v: int, mode: str) -> int:
    """yuv420p needs even sides: drop or add one pixel (a side of 1 is always padded)."""
    if v % 2 == 0:
        return v
    return v - 1 if mode == "crop" and v > 1 else v + 1


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

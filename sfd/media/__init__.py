"""Media input/output: images and videos as RGB uint8 numpy arrays.

* :func:`load_image` / :func:`save_image` -- still images (any mode Pillow
  reads, EXIF orientation, 16-bit, alpha, decompression-bomb check).
* :func:`probe_video` (``probe.py``), :class:`VideoReader` (``video_reader.py``),
  :class:`VideoWriter` (``video_writer.py``) -- videos through the ffmpeg binary that
  imageio-ffmpeg ships.

Bad input raises :class:`sfd.errors.ImageError` or :class:`sfd.errors.VideoError`.
"""

from sfd.media.image import DEFAULT_MAX_PIXELS, load_image, save_image, to_rgb_uint8
from sfd.media.probe import VideoInfo, ffmpeg_exe, probe_video
from sfd.media.video_reader import VideoReader, read_video
from sfd.media.video_writer import VideoWriter, write_video

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "ffmpeg_exe",
    "load_image",
    "probe_video",
    "read_video",
    "save_image",
    "to_rgb_uint8",
    "write_video",
]

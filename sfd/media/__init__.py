"""Media input/output: images and videos as RGB uint8 numpy arrays.

* :func:`load_image` / :func:`save_image` -- still images (any mode Pillow
  reads, EXIF orientation, 16-bit, alpha, decompression-bomb check).
* :func:`probe_video`, :class:`VideoReader`, :class:`VideoWriter` -- videos
  through the ffmpeg binary that imageio-ffmpeg ships.

Bad input raises :class:`sfd.errors.ImageError` or :class:`sfd.errors.VideoError`.
"""

from sfd.media.image import DEFAULT_MAX_PIXELS, load_image, save_image, to_rgb_uint8
from sfd.media.video import (
    VideoInfo,
    VideoReader,
    VideoWriter,
    ffmpeg_exe,
    probe_video,
    read_video,
    write_video,
)

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

"""`FaceSampler`: aligned face crops from a folder of portraits and videos.

Statistics over faces (calibration) and measurements on faces (the direction atlas) need many
crops framed exactly as the pipeline frames a source: the same face detector, the same
`CropBox.from_face` defaults and the same model size. Files that give no face are skipped and
the reason is logged and kept in `skipped`, so that one bad file never stops a long run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SFDError
from ..face import CropBox, FaceDetector, crop
from ..media import VideoReader, load_image, probe_video

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif"})
# The pipeline's own limit for sources: the crop is the model's size anyway.
MAX_SIDE = 2048


@dataclass
class FaceCrop:
    """One aligned face: `pixels` (size, size, 3) RGB uint8, and where it came from (`name`)."""

    name: str
    pixels: np.ndarray


class FaceSampler:
    """Yields aligned face crops from images, videos and folders of both.

    Args:
        detector: finds the face to crop; may be None when `crop_faces` is off.
        size: side of the crops (the model's size).
        frames_per_video: how many frames to take from each video, spread evenly over its length.
        crop_faces: detect and crop the main face (as the pipeline does for a source); off, each
            image is taken whole (padded to a square), for data that is already face crops.
    """

    def __init__(self, detector: FaceDetector | None, size: int, frames_per_video: int = 8, crop_faces: bool = True):
        if crop_faces and detector is None:
            raise ValueError("a face detector is needed to crop faces")
        if frames_per_video < 1:
            raise ValueError(f"frames_per_video must be at least 1, got {frames_per_video}")
        self.detector = detector
        self.size = int(size)
        self.frames_per_video = int(frames_per_video)
        self.crop_faces = crop_faces
        self.skipped: list[tuple[str, str]] = []  # (file or frame, why), in the order met

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def media_files(folder: str | os.PathLike) -> list[Path]:
        """Image and video files under `folder` (recursively, sorted, hidden ones left out)."""
        root = Path(folder)
        files = []
        for path in sorted(root.rglob("*")):
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            if path.is_file() and not hidden and path.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
                files.append(path)
        return files

    def crops(self, data, max_faces: int | None = None) -> Iterator[FaceCrop]:
        """Face crops from `data`: a folder, a file, or an iterable of images (paths, arrays, PIL images).

        Stops after `max_faces` crops. Videos give `frames_per_video` frames each.
        """
        if max_faces is not None and max_faces < 1:
            return
        count = 0
        for name, frame in self._frames(data):
            face = self._crop(name, frame)
            if face is None:
                continue
            yield face
            count += 1
            if max_faces is not None and count >= max_faces:
                return

    def _frames(self, data) -> Iterator[tuple[str, np.ndarray]]:
        """(name, RGB frame) for every image and sampled video frame of `data`."""
        if isinstance(data, (str, os.PathLike)):
            path = Path(data)
            if path.is_dir():
                files = self.media_files(path)
                if not files:
                    raise SFDError(f"{path} holds no image or video files "
                                   f"({', '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))})")
                items: Iterable = files
            elif path.exists():
                items = [path]
            else:
                raise SFDError(f"face data {path} does not exist")
        else:
            items = data
        for i, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                yield from self._file_frames(Path(item))
            else:
                yield from self._single(f"image {i}", item)

    def _single(self, name: str, image) -> Iterator[tuple[str, np.ndarray]]:
        try:
            pixels = load_image(image, max_side=MAX_SIDE)
        except SFDError as error:
            self._skip(name, str(error), logging.WARNING)
            return
        yield name, pixels

    def _file_frames(self, path: Path) -> Iterator[tuple[str, np.ndarray]]:
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            yield from self._single(path.name, path)
            return
        try:
            frames = self.video_frames(path, self.frames_per_video)
        except SFDError as error:
            self._skip(path.name, str(error), logging.WARNING)
            return
        for index, frame in enumerate(frames):
            yield f"{path.name} frame {index + 1}/{len(frames)}", frame

    @staticmethod
    def video_frames(path: str | os.PathLike, count: int) -> np.ndarray:
        """`count` frames spread evenly over a video (all of them when it has fewer), (n, H, W, 3).

        ffmpeg's fps filter does the picking, so only the chosen frames are converted and piped.
        """
        info = probe_video(path)
        if info.frame_count <= count or info.duration <= 0:
            return VideoReader(path, batch_size=count, max_side=MAX_SIDE, info=info).read_all(count)
        # Frames at t = 0, D/count, 2 D/count, ...: `count` of them, evenly spaced (a frame per 1000 s at
        # the least, which ffmpeg's frame rate fractions can still express).
        fps = max(count / info.duration, 1e-3)
        reader = VideoReader(path, batch_size=count, max_side=MAX_SIDE, fps=fps, info=info)
        return reader.read_all(count)

    # ------------------------------------------------------------------ cropping
    def _crop(self, name: str, image: np.ndarray) -> FaceCrop | None:
        height, width = image.shape[:2]
        if not self.crop_faces:
            return FaceCrop(name, crop(image, CropBox.full_frame(height, width), self.size))
        faces = self.detector.detect(image)
        if not faces:
            self._skip(name, f"no face found by the {self.detector.name} detector", logging.INFO)
            return None
        return FaceCrop(name, crop(image, CropBox.from_face(faces[0]), self.size))

    def _skip(self, name: str, reason: str, level: int) -> None:
        self.skipped.append((name, reason))
        log.log(level, "skipping %s: %s", name, reason)


def add_weights_and_face_arguments(parser, faces: str) -> None:
    """The options `pipeline_and_sampler` reads (except --frames-per-video, whose default differs);
    `faces` names the command's face input in the help of --no-crop."""
    parser.add_argument("weights", help="SFD weights: a local folder or a Hub repo id")
    parser.add_argument("--no-crop", action="store_true", help=f"the {faces} are already aligned face crops")
    parser.add_argument("--detector", default="auto", help="face detector: auto, retinaface, mtcnn or haar")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--revision", default=None, help="Hub revision of the weights")


def pipeline_and_sampler(args):
    """The pipeline of the weights and a face sampler, from the options the semantics commands share
    (weights, revision, device, detector, frames_per_video, no_crop)."""
    from ..pipeline import SFDPipeline

    pipeline = SFDPipeline.from_pretrained(args.weights, revision=args.revision, device=args.device,
                                           detector=args.detector)
    return pipeline, FaceSampler(pipeline.face_detector, pipeline.size, args.frames_per_video,
                                 crop_faces=not args.no_crop)

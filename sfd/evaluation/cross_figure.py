"""A picture of one clip driving other people's faces: the driver's row, then a row per face.

    python -m sfd.evaluation.cross_figure WEIGHTS CLIP SOURCE [SOURCE ...] --out FIGURE.png
        [--max-frames 150] [--height 160] [--match-amplitude]

A SOURCE is a picture, or a clip whose first frame is taken. The columns are the driver's first
frame (the reference of relative motion, so each face's own picture sits under it), then the
driver's frames where, by dlib's 68 points, its mouth is widest open, its eyes most nearly
closed and its face furthest to the side of where it started: frames chosen by what the driver
does, never by how an output looks. Each face is animated as the app does it (face crop,
relative motion, paste-back), and every picture is shown cropped to its face (the crop the
model sees, at the figure's height), so that faces small in their frames can be compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from ..data.layout import is_video_file
from ..errors import SFDError, run_command
from ..face import crop as crop_image
from ..media import load_image, read_video
from ..pipeline.amplitude import CALIBRATION_FRAMES
from ..semantics import Atlas
from . import face_motion
from .evaluator import as_pipeline
from .face_judges import FaceJudges

COLUMNS = ("reference", "mouth widest", "eyes closing", "head aside")


def telling_frames(points: np.ndarray) -> list[int]:
    """Frame indices of `COLUMNS` from the driver's (N, 68, 2) landmarks: 0, then the frames of the
    widest mouth, the least open eyes and the face centre furthest sideways from frame 0's (a
    frame without a face is never chosen). SFDError when the first frame has no face."""
    measures = face_motion.face_measures(points)
    if not np.isfinite(measures["mouth"][0]):
        raise SFDError("the driver's first frame has no face: it is the reference of the motion")

    def pick(values: np.ndarray) -> int:
        values = np.where(np.isfinite(values), values, -np.inf)
        values[0] = -np.inf  # the reference has its own column
        return int(np.argmax(values)) if len(values) > 1 else 0

    sideways = np.abs(measures["centre_x"] - measures["centre_x"][0])
    return [0, pick(measures["mouth"]), pick(-measures["eyes"]), pick(sideways)]


def figure_rows(rows: list[list[np.ndarray]], labels: list[str], height: int = 160, gap: int = 4,
                header: int = 22) -> np.ndarray:
    """uint8 RGB grid of `rows` of images (each scaled to `height`, rows padded to one width) under a
    header line naming the columns."""
    def scaled(image: np.ndarray) -> Image.Image:
        image = Image.fromarray(np.ascontiguousarray(image))
        return image.resize((max(1, round(image.width * height / image.height)), height), Image.Resampling.LANCZOS)

    tiles = [[scaled(image) for image in row] for row in rows]
    widths = [max(row[k].width for row in tiles) for k in range(len(tiles[0]))]
    canvas = Image.new("RGB", (sum(widths) + gap * (len(widths) - 1), header + len(rows) * (height + gap) - gap),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for k, width in enumerate(widths):
        draw.text((x + 4, 4), labels[k], fill=(0, 0, 0))
        for r, row in enumerate(tiles):
            canvas.paste(row[k], (x + (width - row[k].width) // 2, header + r * (height + gap)))
        x += width + gap
    return np.asarray(canvas)


def cross_identity_figure(pipeline, clip: str | Path, sources: list[np.ndarray], max_frames: int = 150,
                          judges: FaceJudges | None = None, height: int = 160,
                          atlas=None) -> tuple[np.ndarray, list[int]]:
    """The figure (module doc) and the driver frame indices of its columns; with the weights'
    `atlas`, each face's amplitude matched to the driver's, as the app does."""
    frames = read_video(clip, max_frames=max_frames)[0]
    judges = judges or FaceJudges.default(lpips=False)
    columns = telling_frames(judges.face.landmarks(frames))
    last = max(columns) + 1  # relative motion needs every frame up to the last shown (smoothing)
    if atlas is not None:  # the amplitude is matched on the driver's first faces, as the app does
        last = min(len(frames), max(last, CALIBRATION_FRAMES))
    driver = pipeline.prepare_source(frames[0])  # its box, on the frame as prepare_source scaled it
    scaled = [frames[i] if driver.image.shape == frames[i].shape
              else cv2.resize(frames[i], driver.image.shape[1::-1], interpolation=cv2.INTER_AREA) for i in columns]
    rows = [[crop_image(frame, driver.box, height) for frame in scaled]]
    for image in sources:
        source = pipeline.prepare_source(image)
        batches = [frames[i:i + 8] for i in range(0, last, 8)]
        output = np.concatenate(list(pipeline.iter_animate(source, batches, atlas=atlas,
                                                           match_amplitude=atlas is not None)))
        shown = [source.image] + [output[i] for i in columns[1:]]  # outputs are pasted into source.image
        rows.append([crop_image(picture, source.box, height) for picture in shown])
    labels = [f"{name} ({index})" if k else "first frame / the face" for k, (name, index)
              in enumerate(zip(COLUMNS, columns))]
    return figure_rows(rows, labels, height), columns


def _source_image(path: Path) -> np.ndarray:
    if is_video_file(path):
        return read_video(path, max_frames=1)[0][0]
    return load_image(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfd.evaluation.cross_figure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights")
    parser.add_argument("clip", help="the driving clip")
    parser.add_argument("sources", nargs="+", help="the faces to drive: pictures, or clips (their first frame)")
    parser.add_argument("--out", required=True, help="where the PNG goes")
    parser.add_argument("--max-frames", type=int, default=150, help="look for the telling frames among these")
    parser.add_argument("--height", type=int, default=160, help="each picture's height in the figure")
    parser.add_argument("--match-amplitude", action="store_true",
                        help="match each face's mouth amplitude to the driver's, as the app does (needs the atlas)")
    args = parser.parse_args(argv)

    def run() -> str:
        pipeline, _ = as_pipeline(args.weights, crop=True)
        atlas = Atlas.load(args.weights) if args.match_amplitude else None
        figure, columns = cross_identity_figure(pipeline, args.clip, [_source_image(Path(s)) for s in args.sources],
                                                args.max_frames, height=args.height, atlas=atlas)
        Image.fromarray(figure).save(args.out)
        return f"wrote {args.out}: driver frames {columns} ({', '.join(COLUMNS)})"

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())

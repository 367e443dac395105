"""Same-identity reconstruction over whole frames, as a user sees it, against the do-nothing baseline.

The first frame of a clip is the source and the whole clip drives it, with everything the app
does: face crop, relative motion, paste-back into the full frame. Each output frame is compared
with the real frame over the whole picture, and so is the do-nothing baseline (every output
frame = the source frame). A model is useful only where it beats that baseline.

    python -m sfd.evaluation.full_frame WEIGHTS VIDEO [VIDEO ...] [--max-frames N] [--json OUT]
        [--figure OUT.png --figure-frames 24 48 72]

`--figure` saves, for chosen frames of the first clip, a row each of source | driving frame |
output: the picture of a reenactment that goes into a model card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..errors import SFDError, run_command
from ..media import VideoReader, read_video
from .evaluator import as_pipeline
from .metrics import l1, psnr


def full_frame_reconstruction(pipeline, video: str | Path, max_frames: int | None = None,
                              batch_size: int = 8, crop: bool = True, keep_frames: Sequence[int] = ()) -> dict:
    """L1 and PSNR (on [0, 1], whole frames) of the pipeline and of the do-nothing baseline.

    `keep_frames`: frame indices whose (driving frame, output) pairs are returned under "kept"
    (with the source frame under "source"), for a figure.
    """
    first = read_video(video, max_frames=1)[0][0]
    source = pipeline.prepare_source(first, crop=crop)
    scores = {"l1": [], "psnr": [], "baseline_l1": [], "baseline_psnr": []}
    seen = 0

    def driving():
        nonlocal seen
        with VideoReader(video, batch_size=batch_size) as reader:
            for frames in reader:
                if max_frames is not None and seen >= max_frames:
                    return
                frames = frames[: None if max_frames is None else max_frames - seen]
                seen += len(frames)
                real.append(frames)
                yield frames

    real: list[np.ndarray] = []
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    done = 0
    for output in pipeline.iter_animate(source, driving(), relative=True, crop_driving=crop, paste_back=True):
        target = real.pop(0)
        h, w = target.shape[1:3]
        output = output[:, :h, :w]
        for index in keep_frames:
            if done <= index < done + len(target):
                kept[index] = (target[index - done], output[index - done])
        done += len(target)
        baseline = np.broadcast_to(source.image[:h, :w], target.shape)
        scores["l1"].extend(np.atleast_1d(l1(output, target)))
        scores["psnr"].extend(np.atleast_1d(psnr(output, target)))
        scores["baseline_l1"].extend(np.atleast_1d(l1(baseline, target)))
        scores["baseline_psnr"].extend(np.atleast_1d(psnr(baseline, target)))
    # The first frame is the source itself: scoring it would flatter both sides.
    result = {key: float(np.mean(values[1:])) for key, values in scores.items() if len(values) > 1}
    result["frames"] = max(0, seen - 1)
    result["video"] = Path(video).name
    if keep_frames:
        missing = sorted(set(keep_frames) - set(kept))
        if missing:
            raise SFDError(f"{Path(video).name} has no frame {missing[0]} among the {seen} evaluated")
        result["source"] = source.image
        result["kept"] = [kept[i] for i in keep_frames]
    return result


def reenactment_figure(source: np.ndarray, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                       height: int = 256, gap: int = 4) -> np.ndarray:
    """Rows of source | driving frame | output (uint8 RGB), each image scaled to `height`."""
    def scaled(image: np.ndarray) -> np.ndarray:
        image = Image.fromarray(np.ascontiguousarray(image))
        width = max(1, round(image.width * height / image.height))
        return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))

    rows = []
    for driving, output in pairs:
        tiles = [scaled(source), scaled(driving), scaled(output)]
        spacer = np.full((height, gap, 3), 255, np.uint8)
        rows.append(np.concatenate([tiles[0], spacer, tiles[1], spacer, tiles[2]], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    spacer = np.full((gap, width, 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, spacer)][:-1], axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfd.evaluation.full_frame", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights")
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--no-crop", action="store_true", help="take whole frames (already-cropped clips)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--no-detail", action="store_true",
                        help="paste back without the source's fine detail (the model-size face upsampled)")
    parser.add_argument("--figure", default=None, help="save source | driver | output rows of the first clip here")
    parser.add_argument("--figure-frames", type=int, nargs="+", default=[24, 48, 72],
                        help="frames of the first clip shown in --figure")
    args = parser.parse_args(argv)

    def run() -> str:
        pipeline, _ = as_pipeline(args.weights, crop=not args.no_crop)
        if args.no_detail:
            pipeline.detail_transfer = False
        rows = [full_frame_reconstruction(pipeline, v, args.max_frames, crop=not args.no_crop,
                                          keep_frames=args.figure_frames if args.figure and i == 0 else ())
                for i, v in enumerate(args.videos)]
        if args.figure:
            figure = reenactment_figure(rows[0].pop("source"), rows[0].pop("kept"))
            Image.fromarray(figure).save(args.figure)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return "\n".join(["| clip | frames | L1 | baseline L1 | PSNR | baseline PSNR |",
                          "| --- | ---: | ---: | ---: | ---: | ---: |"]
                         + [f"| {r['video']} | {r['frames']} | {r['l1']:.4f} | {r['baseline_l1']:.4f} | "
                            f"{r['psnr']:.2f} | {r['baseline_psnr']:.2f} |" for r in rows])

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())

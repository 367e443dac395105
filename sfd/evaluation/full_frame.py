"""Same-identity reconstruction over whole frames, as a user sees it, against the do-nothing baseline.

The first frame of a clip is the source and the whole clip drives it, with everything the app
does: face crop, relative motion, paste-back into the full frame. Each output frame is compared
with the real frame over the whole picture, and so is the do-nothing baseline (every output
frame = the source frame). A model is useful only where it beats that baseline.

    python -m sfd.evaluation.full_frame WEIGHTS VIDEO [VIDEO ...] [--max-frames N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import run_command
from ..media import VideoReader, read_video
from .evaluator import as_pipeline
from .metrics import l1, psnr


def full_frame_reconstruction(pipeline, video: str | Path, max_frames: int | None = None,
                              batch_size: int = 8, crop: bool = True) -> dict:
    """L1 and PSNR (on [0, 1], whole frames) of the pipeline and of the do-nothing baseline."""
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
    for output in pipeline.iter_animate(source, driving(), relative=True, crop_driving=crop, paste_back=True):
        target = real.pop(0)
        h, w = target.shape[1:3]
        output = output[:, :h, :w]
        baseline = np.broadcast_to(source.image[:h, :w], target.shape)
        scores["l1"].extend(np.atleast_1d(l1(output, target)))
        scores["psnr"].extend(np.atleast_1d(psnr(output, target)))
        scores["baseline_l1"].extend(np.atleast_1d(l1(baseline, target)))
        scores["baseline_psnr"].extend(np.atleast_1d(psnr(baseline, target)))
    # The first frame is the source itself: scoring it would flatter both sides.
    result = {key: float(np.mean(values[1:])) for key, values in scores.items() if len(values) > 1}
    result["frames"] = max(0, seen - 1)
    result["video"] = Path(video).name
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfd.evaluation.full_frame", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights")
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--no-crop", action="store_true", help="take whole frames (already-cropped clips)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    def run() -> str:
        pipeline, _ = as_pipeline(args.weights, crop=not args.no_crop)
        rows = [full_frame_reconstruction(pipeline, v, args.max_frames, crop=not args.no_crop) for v in args.videos]
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return "\n".join(["| clip | frames | L1 | baseline L1 | PSNR | baseline PSNR |",
                          "| --- | ---: | ---: | ---: | ---: | ---: |"]
                         + [f"| {r['video']} | {r['frames']} | {r['l1']:.4f} | {r['baseline_l1']:.4f} | "
                            f"{r['psnr']:.2f} | {r['baseline_psnr']:.2f} |" for r in rows])

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())

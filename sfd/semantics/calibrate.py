"""`python -m sfd.semantics.calibrate WEIGHTS DATA`: descriptor statistics for the sliders.

Encodes the faces found in DATA (a folder of portraits and/or videos; frames are taken evenly
from each video) and writes the per-coefficient mean and std of the motion and identity
descriptors to WEIGHTS/calibration.json (see `sfd.semantics.calibration`). The programmatic
entry point is `sfd.semantics.calibration.calibrate`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..errors import run_command
from .calibration import CALIBRATION_FILENAME, calibrate
from .face_samples import add_weights_and_face_arguments, pipeline_and_sampler
from .weights_files import local_weights_folder

DEFAULT_MAX_FACES = 1000
DEFAULT_FRAMES_PER_VIDEO = 8


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sfd.semantics.calibrate",
        description="Measure the mean and spread of every descriptor coefficient over a set of faces "
                    "(slider ranges and identity slider order), saved with the weights.")
    add_weights_and_face_arguments(parser, "data")
    parser.add_argument("data", help="a folder of face images and/or videos (searched recursively), or one file")
    parser.add_argument("--max-faces", type=int, default=DEFAULT_MAX_FACES,
                        help=f"use at most this many faces (default {DEFAULT_MAX_FACES})")
    parser.add_argument("--frames-per-video", type=int, default=DEFAULT_FRAMES_PER_VIDEO,
                        help=f"frames taken evenly from each video (default {DEFAULT_FRAMES_PER_VIDEO})")
    parser.add_argument("--out", default=None, help=f"output file (default: WEIGHTS/{CALIBRATION_FILENAME})")
    parser.add_argument("--batch-size", type=int, default=16)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()

    def run() -> str:
        # --out may name the file or a folder to put calibration.json in.
        out = args.out if args.out is not None else local_weights_folder(args.weights)
        pipeline, sampler = pipeline_and_sampler(args)
        calibration = calibrate(pipeline, args.data, max_faces=args.max_faces, batch_size=args.batch_size,
                                sampler=sampler)
        path = calibration.save(out)
        return (f"wrote {path}: {calibration.num_faces} faces, {len(sampler.skipped)} files or frames skipped, "
                f"in {time.perf_counter() - start:.1f} s; face detector: {pipeline.face_detector.name}")

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())

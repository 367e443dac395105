"""`python -m sfd.semantics.atlas WEIGHTS --faces DATA`: name every motion direction by measuring it.

Moves a few faces from DATA along each motion direction, measures on the rendered faces what it
does to the mouth, eyes, brows and head (see `sfd.semantics.face_measures`; the generator's flow
is measured too, as a second opinion) and writes WEIGHTS/atlas.json with a name, group and
measurements per direction, plus a preview strip per direction in WEIGHTS/atlas/. Steps follow
WEIGHTS/calibration.json when it is there (run `python -m sfd.semantics.calibrate` first).
The programmatic entry point is `sfd.semantics.build_atlas`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ..errors import SFDError, run_command
from .calibration import Calibration
from .direction_atlas import DEFAULT_K_STD, DEFAULT_PREVIEW_SIZE, DEFAULT_PREVIEW_STEPS, build_atlas
from .face_samples import add_weights_and_face_arguments, pipeline_and_sampler
from .weights_files import local_weights_folder

DEFAULT_MAX_FACES = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sfd.semantics.atlas",
        description="Measure and name each motion direction of SFD weights (yaw, roll, mouth open, blink, ...) "
                    "and save the names and preview strips with the weights.")
    add_weights_and_face_arguments(parser, "faces")
    parser.add_argument("--faces", default=None,
                        help="a folder of face images and/or videos (or one file) to move along each direction")
    parser.add_argument("--out", default=None, help="output folder (default: WEIGHTS)")
    parser.add_argument("--max-faces", type=int, default=DEFAULT_MAX_FACES,
                        help=f"faces to measure on (default {DEFAULT_MAX_FACES})")
    parser.add_argument("--frames-per-video", type=int, default=1, help="frames taken evenly from each video")
    parser.add_argument("--k-std", type=float, default=DEFAULT_K_STD,
                        help=f"move faces to +-K standard deviations of each coefficient (default {DEFAULT_K_STD:g})")
    parser.add_argument("--preview-steps", type=int, default=DEFAULT_PREVIEW_STEPS, help="frames per preview strip")
    parser.add_argument("--preview-size", type=int, default=DEFAULT_PREVIEW_SIZE, help="side of a preview frame in px")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()

    def run() -> str:
        if args.faces is None:
            raise SFDError("no faces to measure the directions on: pass --faces DATA (a folder of portraits "
                           "or videos, e.g. the calibration data)")
        out = Path(args.out) if args.out is not None else local_weights_folder(args.weights)
        pipeline, sampler = pipeline_and_sampler(args)
        faces = list(sampler.crops(args.faces, max_faces=args.max_faces))
        if not faces:
            raise SFDError(f"no face found in {args.faces}")
        calibration = Calibration.load(args.weights, revision=args.revision)
        atlas = build_atlas(pipeline.model, faces, calibration, k_std=args.k_std,
                            preview_steps=args.preview_steps, preview_size=args.preview_size)
        path = atlas.save(out)
        lines = [f"{d.index:3d}  {atlas.label(d.index):<16s} {d.group:<6s} {d.info}  [flow: {d.flow_name}]"
                 for d in atlas.directions]
        clean = sum(d.name not in ("mixed", "subtle") for d in atlas.directions)
        lines.append(f"{clean} of {len(atlas)} directions have a clean name")
        lines.append(f"wrote {path} and {len(atlas.previews)} previews in {out / 'atlas'}: {len(faces)} faces, "
                     f"steps from the {atlas.spread}, in {time.perf_counter() - start:.1f} s")
        return "\n".join(lines)

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m sfd.evaluation WEIGHTS DATA_ROOT`: the paper protocol, printed and written as markdown + JSON."""

from __future__ import annotations

import argparse
import sys

from ..errors import run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sfd.evaluation",
        description="Evaluate SFD weights with the FOMM/LIA protocol: same-identity reconstruction (L1, PSNR, "
                    "SSIM, LPIPS, AKD, AED) and cross-identity animation (ID similarity, motion error).")
    p.add_argument("weights", help="weights folder, training checkpoint folder or Hub repo id")
    p.add_argument("data_root", help="dataset root: DATA_ROOT/SPLIT holds one video file or frame folder per video")
    p.add_argument("--split", default="test", help="split folder under DATA_ROOT (default: test)")
    p.add_argument("--out", default=None, help="folder to write evaluation.json and evaluation.md to")
    p.add_argument("--max-videos", type=int, default=None, help="evaluate only the first N videos")
    p.add_argument("--max-frames", type=int, default=None, help="use only the first N frames of each video")
    p.add_argument("--lpips-weights", default=None, help="LPIPS AlexNet + heads (.safetensors)")
    p.add_argument("--landmark-weights", default=None, help="facexlib FAN landmark network (.safetensors), for AKD")
    p.add_argument("--identity-weights", default=None, help="facexlib ArcFace network (.safetensors), for AED/ID-sim")
    p.add_argument("--cross-identity-pairs", type=int, default=None,
                   help="cross-identity (source, driver) pairs (default: one per video; 0: none)")
    p.add_argument("--crop", action="store_true", help="face-crop the frames (for datasets that are not cropped)")
    p.add_argument("--name", default=None, help="the method's name in the table (default: SFD (weights name))")
    p.add_argument("--dataset-name", default=None, help="the dataset's name in the table (default: DATA_ROOT's name)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .evaluator import evaluate
    from .report import markdown_table, write_report

    def run() -> None:
        results = evaluate(args.weights, args.data_root, split=args.split, max_videos=args.max_videos,
                           max_frames=args.max_frames, crop=args.crop, lpips_weights=args.lpips_weights,
                           landmark_weights=args.landmark_weights, identity_weights=args.identity_weights,
                           cross_identity_pairs=args.cross_identity_pairs, batch_size=args.batch_size,
                           device=args.device, name=args.name, dataset_name=args.dataset_name,
                           progress=lambda message: print(message, file=sys.stderr, flush=True))
        print(markdown_table(results), end="")
        if args.out:
            json_path, md_path = write_report(results, args.out)
            print(f"wrote {json_path} and {md_path}", file=sys.stderr)

    return run_command(run)

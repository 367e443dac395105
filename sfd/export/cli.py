"""`python -m sfd.export CHECKPOINT OUT_DIR`: a Hub-ready weights folder with its model card, optionally pushed."""

from __future__ import annotations

import argparse

from ..errors import run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sfd.export",
                                description="Export SFD weights (a weights folder or training checkpoint) as a "
                                            "Hub-ready folder: config + safetensors (+ fp16), detector, calibration "
                                            "and a model card; optionally upload it.")
    p.add_argument("checkpoint", help="weights folder (SFDModel.save_pretrained) or training checkpoint folder")
    p.add_argument("out_dir", help="the folder to write (must be new or empty, unless --overwrite)")
    p.add_argument("--push", metavar="REPO_ID", default=None, help="upload to this Hugging Face Hub model repo")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--eval-json", default=None, help="evaluation.json from python -m sfd.evaluation")
    p.add_argument("--detector-weights", default=None, help="RetinaFace weights (.safetensors)")
    p.add_argument("--calibration", default=None, help="descriptor calibration (.json)")
    p.add_argument("--license", default="apache-2.0", help="Hub licence id of the weights (default: apache-2.0)")
    p.add_argument("--datasets", nargs="*", default=[], metavar="NAME[=LICENCE]", help="training datasets")
    p.add_argument("--name", default=None, help="model name in the card (default: repo or folder name)")
    p.add_argument("--atlas", default=None, help="atlas.json from python -m sfd atlas (its previews beside it)")
    p.add_argument("--no-fp16", action="store_true", help="skip the float16 variant")
    p.add_argument("--fp16-only", action="store_true", help="store only the float16 variant (half the size)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    p.add_argument("--notes", default=None, help="markdown file about these weights, shown near the top of the card")
    p.add_argument("--card-template", default=None, help="another model card template (Jinja2 markdown)")
    p.add_argument("--max-shard-size", default=None, metavar="SIZE",
                   help="split each weights file into shards of at most SIZE (e.g. 15MB), for transfers that cap a file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .exporter import export

    def run() -> str:
        out = export(args.checkpoint, args.out_dir, eval_json=args.eval_json, detector_weights=args.detector_weights,
                     calibration=args.calibration, license=args.license, datasets=args.datasets,
                     model_name=args.name, fp16=not args.no_fp16, overwrite=args.overwrite, push=args.push,
                     private=args.private or None, card_template=args.card_template, notes=args.notes,
                     fp16_only=args.fp16_only, atlas=args.atlas, max_shard_size=args.max_shard_size)
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        return f"wrote {out}: {', '.join(files)}" + (f"; uploaded to {args.push}" if args.push else "")

    return run_command(run)

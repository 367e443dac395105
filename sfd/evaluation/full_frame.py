"""Reenactment over whole frames, as a user sees it, against the do-nothing baseline.

Same identity: the first frame of a clip is the source and the whole clip drives it, with
everything the app does: face crop (the driver's as `--driver-box` says, one box by default, as
the app), relative motion, paste-back into the full frame. Each output
frame is compared with the real frame, and so is the do-nothing baseline (every output frame =
the source frame). A model is useful only where it beats that baseline. Measured: L1 and PSNR
over the whole picture, and with the pretrained judges (`FaceJudges`): LPIPS (AlexNet), AKD
from dlib's 68 landmarks (in the driver's inter-ocular distances and in pixels at 256 wide), the
dlib identity distance to the driver, and whether the face follows the driver (correlation over
time of mouth opening, eye opening and head pose, see `face_motion`).

Cross identity (`--cross-stills N`): each clip drives N stills of other people; measured are the
correlations and the identity distance to the still. `--cross-frames N`: each clip drives the
first frames of clips of N other people of the same split instead: with `--split test`, faces
no training saw in any role (the corpus's stills are all in its training split).

`--ceiling` scores, instead of a model, the driving frame's own face at the model's size pasted
back as the app pastes (same identity, one box): what a perfect model of that size would get,
i.e. how far these measures can go at that resolution.

    python -m sfd.evaluation.full_frame WEIGHTS [VIDEO ...] [--data ROOT --split test]
        [--cross-stills 5 | --cross-frames 3] [--max-frames N] [--driver-box fixed|track] [--ceiling]
        [--no-blinks] [--no-mouth] [--no-head] [--json OUT]
        [--expression-strength S] [--match-amplitude]
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

from ..errors import NoFaceError, SFDError, run_command
from ..face import crop as crop_image
from ..face import paste_back
from ..media import VideoReader, load_image, read_video
from ..pipeline import DRIVER_BOXES
from ..semantics import Atlas
from .evaluator import as_pipeline
from .face_judges import FaceJudges
from .metrics import l1, psnr


def check_ceiling(crop: bool, driver_box: str, cross_identity: bool, expression_strength: float = 1.0) -> None:
    """The ceiling pastes the driver's face into its own first frame with that frame's box: it
    needs the same identity, cropping and one driver box, and has no model to scale expressions."""
    if cross_identity or not crop or driver_box != "fixed" or expression_strength != 1.0:
        raise SFDError("--ceiling scores the same identity with one crop box and no model: "
                       "drop --cross-stills, --no-crop, --driver-box track and --expression-strength")


def full_frame_reconstruction(pipeline, video: str | Path, max_frames: int | None = None,
                              batch_size: int = 8, crop: bool = True, keep_frames: Sequence[int] = (),
                              judges: FaceJudges | None = None, source_image: np.ndarray | None = None,
                              driver_box: str = "fixed", ceiling: bool = False, expression_strength: float = 1.0,
                              atlas=None, match_amplitude: bool = False, blinks: bool = True,
                              mouth: bool = True, head: bool = True) -> dict:
    """L1 and PSNR (on [0, 1], whole frames) of the pipeline and of the do-nothing baseline; with
    `judges`, also LPIPS, AKD, identity distance and the motion-following correlations (each with
    the baseline's value under `baseline_<key>`).

    `driver_box`: the driver's crop box, as for `SFDPipeline.iter_animate`. `source_image`:
    animate this portrait instead of the clip's first frame (cross-identity: then
    only the measures that do not need the driver's own face, i.e. not L1/PSNR/LPIPS/AKD, mean
    anything; the identity distance is to the source). `keep_frames`: frame indices whose
    (driving frame, output) pairs are returned under "kept" (with the source frame under
    "source"), for a figure. `ceiling`: the output is the driving frame cropped with the source's
    box at the model's size and pasted back, without the model (same identity only).
    `expression_strength`, `match_amplitude` (with the weights' `atlas`), `blinks`, `mouth`, `head`: as
    for `SFDPipeline.animate`.
    """
    if ceiling:
        check_ceiling(crop, driver_box, cross_identity=source_image is not None,
                      expression_strength=expression_strength)
    if source_image is None:
        source_image = read_video(video, max_frames=1)[0][0]
        same_identity = True
    else:
        same_identity = False
    source = pipeline.prepare_source(source_image, crop=crop)
    scores = {"l1": [], "psnr": [], "baseline_l1": [], "baseline_psnr": []}
    faces = judges.new_clip(source.image) if judges is not None else None
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
    if ceiling:  # the source is the clip's first face, so its box is the driver's one box
        outputs = (np.stack([paste_back(source.image, crop_image(frame, source.box, pipeline.size), source.box)
                             for frame in frames]) for frames in driving())
    else:
        outputs = pipeline.iter_animate(source, driving(), relative=True, crop_driving=crop, paste_back=True,
                                        driver_box=driver_box, expression_strength=expression_strength, atlas=atlas,
                                        match_amplitude=match_amplitude, blinks=blinks, mouth=mouth, head=head)
    done = 0
    for output in outputs:
        target = real.pop(0)
        h, w = target.shape[1:3]
        if same_identity:
            output = output[:, :h, :w]
        for index in keep_frames:
            if done <= index < done + len(target):
                kept[index] = (target[index - done], output[index - done])
        done += len(target)
        if faces is not None:
            faces.add(output, target)
        if not same_identity:
            continue  # another person's face: pixel distances to the driver mean nothing
        baseline = np.broadcast_to(source.image[:h, :w], target.shape)
        scores["l1"].extend(np.atleast_1d(l1(output, target)))
        scores["psnr"].extend(np.atleast_1d(psnr(output, target)))
        scores["baseline_l1"].extend(np.atleast_1d(l1(baseline, target)))
        scores["baseline_psnr"].extend(np.atleast_1d(psnr(baseline, target)))
    # The first frame is the source itself (or, cross-identity, the reference of relative motion):
    # scoring it would flatter both sides.
    result = {key: float(np.mean(values[1:])) for key, values in scores.items() if len(values) > 1}
    if faces is not None:
        result.update(faces.scores(skip=1, same_identity=same_identity))
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


SAME_IDENTITY_COLUMNS = (("l1", "L1", 4), ("psnr", "PSNR", 2), ("lpips", "LPIPS", 3), ("akd_iod", "AKD/IOD", 3),
                         ("akd_px256", "AKD px", 2), ("akd_centred_iod", "AKD centred", 3),
                         ("mouth_corr", "mouth r", 2), ("mouth_amplitude", "mouth amp", 2),
                         ("eye_corr", "eyes r", 2), ("pose_corr", "pose r", 2), ("id_dist", "ID dist", 3),
                         ("detail", "face detail", 2))
CROSS_IDENTITY_COLUMNS = (("mouth_corr", "mouth r", 2), ("mouth_amplitude", "mouth amp", 2),
                          ("eye_corr", "eyes r", 2), ("pose_corr", "pose r", 2),
                          ("id_dist_source", "ID dist to source", 3), ("detail", "face detail", 2))


def _cell(row: dict, key: str, decimals: int) -> str:
    value = row.get(key)
    if value is None or not np.isfinite(value):
        return "-"
    base = row.get(f"baseline_{key}")
    text = f"{value:.{decimals}f}"
    return text if base is None or not np.isfinite(base) else f"{text} ({base:.{decimals}f})"


def mean_row(rows: list[dict], name: str = "mean") -> dict:
    """The mean of every numeric value over rows (NaN-aware), as one more row."""
    keys = {k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    mean = {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) if any(np.isfinite(r.get(k, np.nan)) for r in rows)
            else float("nan") for k in sorted(keys)}
    mean["frames"] = int(sum(r.get("frames", 0) for r in rows))
    mean["video"] = name
    return mean


def table(rows: list[dict], columns=SAME_IDENTITY_COLUMNS, first: str = "clip") -> str:
    """Markdown: one row per clip and a mean row; the do-nothing baseline's value in brackets."""
    present = [c for c in columns if any(k == c[0] and r.get(k) is not None for r in rows for k in r)]
    rows = rows + [mean_row(rows)] if len(rows) > 1 else rows
    lines = [f"| {first} | frames | " + " | ".join(label for _, label, _ in present) + " |",
             "| --- | ---: |" + " ---: |" * len(present)]
    for r in rows:
        name = r["video"] if "source_name" not in r else f"{r['source_name']} <- {r['video']}"
        lines.append(f"| {name} | {r['frames']} | " + " | ".join(_cell(r, k, d) for k, _, d in present) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfd.evaluation.full_frame", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights")
    parser.add_argument("videos", nargs="*", help="driving clips (their first frame is the source)")
    parser.add_argument("--data", default=None,
                        help="a dataset folder with manifest.csv: take the video clips of --split from it")
    parser.add_argument("--split", default="test", help="manifest split for --data (default: test)")
    parser.add_argument("--cross-stills", type=int, default=0,
                        help="also drive this many stills of other people (from --data's manifest) with each clip")
    parser.add_argument("--cross-frames", type=int, default=0,
                        help="also drive the first frames of this many other people's clips with each clip")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--no-crop", action="store_true", help="take whole frames (already-cropped clips)")
    parser.add_argument("--no-judges", action="store_true",
                        help="L1/PSNR only: skip LPIPS, dlib landmarks and descriptors")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--no-detail", action="store_true",
                        help="paste back without the source's fine detail (the model-size face upsampled)")
    parser.add_argument("--no-blinks", action="store_true",
                        help="do not close (or widen) the portrait's eyelids where the driver's close (or open "
                             "wider than usual): blink transfer")
    parser.add_argument("--no-mouth", action="store_true",
                        help="do not open or close the portrait's mouth where the model draws it more or less open "
                             "than the driver's (mouth transfer)")
    parser.add_argument("--no-head", action="store_true",
                        help="do not move the portrait's head by what the model left out of the driver's head "
                             "motion (head-pose transfer)")
    parser.add_argument("--driver-box", choices=DRIVER_BOXES, default="fixed",
                        help="the driver's crop: its first face's box (default, as the app) or follow the face")
    parser.add_argument("--ceiling", action="store_true",
                        help="score the driver's own face at the model's size pasted back (no model): "
                             "how far the measures can go at that size")
    parser.add_argument("--match-amplitude", action="store_true",
                        help="scale each pair's expression so the source's mouth moves as widely as the driver's")
    parser.add_argument("--expression-strength", type=float, default=1.0,
                        help="scale the driver's expression changes, head pose unchanged (needs the weights' atlas)")
    parser.add_argument("--figure", default=None, help="save source | driver | output rows of the first clip here")
    parser.add_argument("--figure-frames", type=int, nargs="+", default=[24, 48, 72],
                        help="frames of the first clip shown in --figure")
    args = parser.parse_args(argv)

    def run() -> str:
        videos, stills = list(args.videos), []
        person = {v: Path(v).name for v in videos}  # a clip without a manifest is a person of its own
        if args.cross_stills and args.cross_frames:
            raise SFDError("--cross-stills and --cross-frames are two protocols: give one")
        if args.data:
            from ..data.manifest import Manifest

            root = Path(args.data).expanduser()
            entries = Manifest.load(root / "manifest.csv").entries
            split = [e for e in entries if e.kind == "video" and e.split == args.split]
            videos += [str(root / e.file) for e in split]
            person.update({str(root / e.file): e.identity for e in split})
            if args.cross_stills:
                stills = [root / e.file for e in entries if e.kind == "still"]
        if not videos:
            raise SFDError("no driving clips: give video files or --data with a manifest")
        if args.ceiling:  # before any weights load
            check_ceiling(not args.no_crop, args.driver_box, cross_identity=bool(args.cross_stills),
                          expression_strength=args.expression_strength)
        pipeline, _ = as_pipeline(args.weights, crop=not args.no_crop)
        if args.no_detail:
            pipeline.detail_transfer = False
        atlas = Atlas.load(args.weights) if args.expression_strength != 1.0 or args.match_amplitude else None
        strength = dict(expression_strength=args.expression_strength, atlas=atlas,
                        match_amplitude=args.match_amplitude, blinks=not args.no_blinks,
                        mouth=not args.no_mouth, head=not args.no_head)
        judges = None if args.no_judges else FaceJudges.default()
        rows = [full_frame_reconstruction(pipeline, v, args.max_frames, crop=not args.no_crop, judges=judges,
                                          driver_box=args.driver_box, ceiling=args.ceiling, **strength,
                                          keep_frames=args.figure_frames if args.figure and i == 0 else ())
                for i, v in enumerate(videos)]
        cross, faceless = [], set()
        for i, video in enumerate(videos if stills or args.cross_frames else []):
            if stills:
                sources = [(still.name, lambda still=still: load_image(still))
                           for still in cross_stills(stills, i, args.cross_stills)]
            else:
                sources = [(Path(clip).name, lambda clip=clip: read_video(clip, max_frames=1)[0][0])
                           for clip in cross_clips(videos, person, i, args.cross_frames)]
            for name, image in sources:
                try:
                    row = full_frame_reconstruction(pipeline, video, args.max_frames, crop=not args.no_crop,
                                                    judges=judges, source_image=image(),
                                                    driver_box=args.driver_box, **strength)
                except NoFaceError:  # a still the detector misses cannot be a source: say so, go on
                    faceless.add(name)
                    continue
                row["source_name"] = name
                cross.append(row)
        if args.figure:
            figure = reenactment_figure(rows[0].pop("source"), rows[0].pop("kept"))
            Image.fromarray(figure).save(args.figure)
        if args.json:
            Path(args.json).write_text(json.dumps({"driver_box": args.driver_box, "ceiling": args.ceiling,
                                                   "expression_strength": args.expression_strength,
                                                   "match_amplitude": args.match_amplitude,
                                                   "blinks": not args.no_blinks, "mouth": not args.no_mouth,
                                                   "head": not args.no_head,
                                                   "same_identity": rows + [mean_row(rows)],
                                                   "cross_identity": cross + ([mean_row(cross)] if cross else [])},
                                                  indent=2))
        text = ["Same identity (first frame = source; the do-nothing baseline in brackets):", table(rows)]
        if cross:
            text += ["", "Cross identity (stills of other people driven by each clip):",
                     table(cross, CROSS_IDENTITY_COLUMNS, "still <- clip")]
        if faceless:
            text += ["", f"Skipped {len(faceless)} still(s) where no face was found: {', '.join(sorted(faceless))}"]
        return "\n".join(text)

    return run_command(run)


def cross_stills(stills: list, clip_index: int, count: int) -> list:
    """`count` stills for clip `clip_index`, spread over the list so that clips get different people."""
    if not stills:
        return []
    step = max(1, len(stills) // max(1, count))
    return [stills[(clip_index * 7 + k * step) % len(stills)] for k in range(min(count, len(stills)))]


def cross_clips(videos: list[str], person: dict[str, str], clip_index: int, count: int) -> list[str]:
    """`count` clips of other people than clip `clip_index`'s, one per person, their first clips,
    the people taken in turn from the one after it so that clips get different people."""
    firsts: dict[str, str] = {}
    for video in videos:
        firsts.setdefault(person[video], video)
    people = list(firsts)
    own = people.index(person[videos[clip_index]])
    others = [people[(own + k) % len(people)] for k in range(1, len(people))]
    shift = clip_index % len(others) if others else 0
    return [firsts[p] for p in (others[shift:] + others[:shift])[:count]]


if __name__ == "__main__":
    sys.exit(main())

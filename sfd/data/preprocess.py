"""Crop raw face videos into the training layout: ``OUT/{train,test}/<video>/000000.png ...``.

    python -m sfd.data.preprocess RAW_DIR OUT_DIR --size 256 [--workers N] [--split-test 0.1]
        [--manifest RAW_DIR/manifest.csv] [--only-split train] [--stills] [--exclude 'PATTERN']

Every video under RAW_DIR (searched recursively) is read frame by frame and cropped with
`FaceTracker` as the pipeline crops a driver (by default one box per clip, its first face's, so
the head's shifts stay in the crops as motion) and each crop is written as an image.
With ``--stills`` every photo under RAW_DIR becomes a one-frame folder, cropped as the pipeline
crops a source portrait (`SFDPipeline.prepare_source`: the main face, `CropBox.from_face`).

* Resumable: a video is finished when its folder exists under a split folder. Frames are first
  written to ``OUT/.partial/<video>/`` and the folder is renamed into place at the end (a rename
  is atomic), so an interrupted run leaves no half-written clip where the dataset looks.
* A video without a face (or that cannot be read) is skipped, not a crash: the reason is logged
  and kept in ``OUT/.skipped/<video>.txt``, so a rerun skips it too (``--retry-skipped`` to retry).
* Splits: a ``--manifest`` CSV's ``split`` column decides for the files it lists (see
  `sfd.data.manifest`); else RAW_DIR's own ``train/`` and ``test/`` folders are kept when it has
  them; otherwise ``--split-test`` of the videos go to ``test/``, chosen by a hash of the video's
  path, so the choice is the same on every run and with any number of workers. ``--only-split``
  writes one split alone (e.g. the test clips into an evaluation root of their own).
* ``--exclude`` drops files whose path under RAW_DIR (or name) matches a glob, e.g. held-out clips.
* Folder names are the video's path under RAW_DIR with ``/`` replaced by ``#`` (unique, and the
  origin stays readable), as in VoxCeleb's ``id10001#abc#00001.mp4`` folders.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sfd.errors import NoFaceError, SFDError, run_command
from sfd.face import CropBox, FaceTracker, crop, load_face_detector
from sfd.media import VideoReader, load_image, probe_video, save_image

from .layout import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, natural_key
from .manifest import Manifest

log = logging.getLogger("sfd.data.preprocess")

SPLITS = ("train", "test")
PARTIAL_DIR = ".partial"
SKIPPED_DIR = ".skipped"
META_FILE = "meta.json"


@dataclass
class PreprocessOptions:
    """How each video is cropped (see `preprocess_videos`)."""

    size: int = 256
    track: str = "fixed"
    detect_every: int = 1
    fps: float | None = None
    max_frames: int | None = None
    max_search_frames: int = 150
    image_format: str = "png"
    detector_weights: str | None = None


@dataclass
class PreprocessReport:
    """What a run did: videos `written` now, `already_done` before, `skipped` (with reasons)."""

    written: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    frames_written: int = 0


@dataclass
class _Job:
    video: Path  # the raw file, a video or (kind "still") a photo
    name: str
    split: str
    kind: str = "video"


# --------------------------------------------------------------------------- finding the videos
def video_name(relative: Path) -> str:
    """Folder name of a video: its path under the raw folder with ``/`` as ``#``."""
    return "#".join(relative.parts)


def hashed_split(name: str, test_fraction: float) -> str:
    """``"test"`` for about `test_fraction` of names, fixed by the name alone."""
    value = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big") / 2**64
    return "test" if value < test_fraction else "train"


def find_jobs(raw_dir: Path, test_fraction: float, stills: bool = False, manifest: Manifest | None = None,
              exclude: tuple[str, ...] = (), only_split: str | None = None) -> list[_Job]:
    """Every video (and with `stills`, every photo) under `raw_dir` with its output name and split.

    A file the `manifest` lists takes its split from there; `exclude` globs are matched against
    the path under `raw_dir` and the file name; `only_split` keeps the jobs of that split alone.
    """
    own_splits = [s for s in SPLITS if (raw_dir / s).is_dir()]
    roots = [(raw_dir / s, s) for s in own_splits] if own_splits else [(raw_dir, None)]
    kinds = {ext: "video" for ext in VIDEO_EXTENSIONS} | ({ext: "still" for ext in IMAGE_EXTENSIONS} if stills else {})
    jobs = []
    for root, split in roots:
        for path in sorted(root.rglob("*"), key=lambda p: natural_key(str(p))):
            kind = kinds.get(path.suffix.lower())
            if kind is None or not path.is_file():
                continue
            relative = path.relative_to(root)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if any(fnmatch.fnmatch(relative.as_posix(), pattern) or fnmatch.fnmatch(path.name, pattern)
                   for pattern in exclude):
                continue
            name = video_name(relative)
            entry = manifest.lookup(name) if manifest is not None else None
            job_split = entry.split if entry is not None else split or hashed_split(name, test_fraction)
            if only_split is None or job_split == only_split:
                jobs.append(_Job(path, name, job_split, kind))
    return jobs


def is_done(out_dir: Path, name: str) -> bool:
    return any((out_dir / split / name).is_dir() for split in SPLITS)


# --------------------------------------------------------------------------- one video
_DETECTOR = None  # one per worker process, loaded by `_init_worker`


def _init_worker(options: PreprocessOptions) -> None:
    global _DETECTOR
    import torch

    torch.set_num_threads(1)  # parallelism comes from the worker processes
    _DETECTOR = None if options.track == "full" else load_face_detector(options.detector_weights)


def crop_video(job: _Job, out_dir: Path, options: PreprocessOptions) -> tuple[str, str, int, str]:
    """Crop one video into ``out_dir/<split>/<name>/``; returns (name, status, frames, reason).

    status is ``"written"`` or ``"skipped"`` (no face, unreadable) or ``"failed"`` (an unexpected
    error: logged with its traceback, not marked, so a rerun tries again).
    """
    partial = out_dir / PARTIAL_DIR / job.name
    try:
        shutil.rmtree(partial, ignore_errors=True)  # leftovers of an interrupted run
        partial.mkdir(parents=True)
        frames, meta = (_crop_still if job.kind == "still" else _crop_frames)(job, partial, options)
        (partial / META_FILE).write_text(json.dumps(meta, indent=1))
        final = out_dir / job.split / job.name
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)  # atomic: the clip appears complete or not at all
        return job.name, "written", frames, ""
    except (SFDError, OSError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        reason = str(error) or type(error).__name__
        _mark_skipped(out_dir, job.name, reason)
        return job.name, "skipped", 0, reason
    except Exception as error:  # noqa: BLE001 - one odd file must not stop a run over thousands
        shutil.rmtree(partial, ignore_errors=True)
        log.exception("unexpected error on %s", job.video)
        return job.name, "failed", 0, f"{type(error).__name__}: {error}"


def _crop_frames(job: _Job, folder: Path, options: PreprocessOptions) -> tuple[int, dict]:
    info = probe_video(job.video)
    detector = _DETECTOR
    tracker = FaceTracker(detector, mode=options.track, every=options.detect_every)
    written = searched = 0
    with VideoReader(job.video, batch_size=16, fps=options.fps, info=info) as reader:
        for frame in reader.frames():
            try:
                box = tracker(frame)
            except NoFaceError:
                # Frames before the first face are dropped; give up when none shows for long.
                searched += 1
                if searched >= options.max_search_frames:
                    raise NoFaceError(f"no face in the first {searched} frames of {job.video.name} "
                                      f"(detector: {detector.name})") from None
                continue
            save_image(crop(frame, box, options.size), folder / f"{written:06d}.{options.image_format}")
            written += 1
            if options.max_frames and written >= options.max_frames:
                break
    if written == 0:
        raise NoFaceError(f"no face in any of the {searched} frames of {job.video.name} "
                          f"(detector: {detector.name if detector else 'none'})")
    if written < 2:
        raise NoFaceError(f"only {written} frame of {job.video.name} shows a face; a clip needs two")
    meta = {"source": str(job.video), "kind": "video", "frames": written, "dropped_before_face": searched,
            "fps": options.fps or info.fps, "size": options.size, "track": options.track,
            "detector": detector.name if detector else None}
    if options.track == "fixed":  # how often the face was found out of its one box: such clips train badly
        meta.update(watched_frames=tracker.watched_frames, drifted_frames=tracker.drifted_frames,
                    missed_frames=tracker.missed_frames)
        if tracker.drifted_frames:
            log.warning("%s: the face left its crop box in %d of %d frames checked", job.name,
                        tracker.drifted_frames, tracker.watched_frames)
    return written, meta


def _crop_still(job: _Job, folder: Path, options: PreprocessOptions) -> tuple[int, dict]:
    """A photo as a one-frame folder, cropped as the pipeline crops a source portrait."""
    from sfd.pipeline.sfd_pipeline import MAX_SOURCE_SIDE  # imported here: it loads the model code

    pixels = load_image(job.video, max_side=MAX_SOURCE_SIDE)
    if options.track == "full":
        box = CropBox.full_frame(*pixels.shape[:2])
    else:
        box = CropBox.from_face(_DETECTOR.detect_single(pixels))
    save_image(crop(pixels, box, options.size), folder / f"{0:06d}.{options.image_format}")
    meta = {"source": str(job.video), "kind": "still", "frames": 1, "size": options.size, "track": options.track,
            "box": [float(v) for v in box.box], "detector": _DETECTOR.name if _DETECTOR else None}
    return 1, meta


def _mark_skipped(out_dir: Path, name: str, reason: str) -> None:
    marker = out_dir / SKIPPED_DIR / f"{name}.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(reason + "\n")
    os.replace(tmp, marker)


def _worker(args) -> tuple[str, str, int, str]:
    job, out_dir, options = args
    return crop_video(job, out_dir, options)


# --------------------------------------------------------------------------- the whole folder
def preprocess_videos(raw_dir: str | Path, out_dir: str | Path, size: int = 256, workers: int = 1,
                      split_test: float = 0.0, track: str = "fixed", detect_every: int = 1,
                      fps: float | None = None, max_frames: int | None = None, max_search_frames: int = 150,
                      image_format: str = "png", detector_weights: str | None = None,
                      retry_skipped: bool = False, progress: bool = True, stills: bool = False,
                      manifest: str | Path | list | None = None, exclude: tuple[str, ...] | list[str] = (),
                      only_split: str | None = None) -> PreprocessReport:
    """Crop every video under `raw_dir` into `out_dir`'s split layout (see the module doc).

    Args:
        size: side of the square crops (the model size, or larger to resize at train time).
        workers: processes working on different videos at once.
        split_test: fraction of videos for ``test/`` when `raw_dir` has no split folders.
        track: `FaceTracker` mode: ``"fixed"`` (default), ``"smooth"``, ``"raw"``, or ``"full"``
            for videos that are already face crops (no detection).
        detect_every: with ``track="smooth"`` or ``"raw"``, run the detector on every k-th frame
            (the tracker glides in between).
        fps: resample videos to this frame rate (None keeps theirs); max_frames: frames per video.
        max_search_frames: frames to search for a first face before skipping the video.
        image_format: ``"png"`` (lossless) or ``"jpg"`` (quality 95, about 5x smaller).
        detector_weights: RetinaFace weights (folder, Hub repo or file); None uses the next best
            detector available (see `sfd.face.load_face_detector`).
        retry_skipped: try videos skipped by an earlier run again.
        stills: also crop every photo under `raw_dir` into a one-frame folder.
        manifest: CSV file(s) (`sfd.data.manifest`) whose ``split`` column decides the split of
            the files they list.
        exclude: globs of files to leave out, matched against the path under `raw_dir` and the name.
        only_split: write the files of this split alone.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise SFDError(f"no folder of raw videos at {raw_dir}")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be png or jpg, got {image_format!r}")
    if not 0 <= split_test < 1:
        raise ValueError(f"split_test must lie in [0, 1), got {split_test}")
    if only_split is not None and only_split not in SPLITS:
        raise ValueError(f"only_split must be one of {', '.join(SPLITS)}, got {only_split!r}")
    manifest_rows = Manifest.load(manifest) if manifest else None
    options = PreprocessOptions(size=size, track=track, detect_every=detect_every, fps=fps, max_frames=max_frames,
                                max_search_frames=max_search_frames, image_format=image_format,
                                detector_weights=detector_weights)
    report = PreprocessReport()
    todo = []
    for job in find_jobs(raw_dir, split_test, stills=stills, manifest=manifest_rows, exclude=tuple(exclude),
                         only_split=only_split):
        marker = out_dir / SKIPPED_DIR / f"{job.name}.txt"
        if is_done(out_dir, job.name):
            report.already_done.append(job.name)
        elif marker.exists() and not retry_skipped:
            report.skipped[job.name] = marker.read_text().strip()
        else:
            todo.append(job)
    if report.already_done or report.skipped:
        log.info("%d videos already done, %d skipped before; %d to do",
                 len(report.already_done), len(report.skipped), len(todo))
    out_dir.mkdir(parents=True, exist_ok=True)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), unit="video", desc="preprocess", disable=not progress)
    tasks = [(job, out_dir, options) for job in todo]
    pool = None
    if not todo:
        results = iter(())
    elif workers <= 1 or len(todo) == 1:
        _init_worker(options)
        results = map(_worker, tasks)
    else:
        # spawn: a fresh interpreter per worker (no forked torch/OpenMP state, works on every OS).
        pool = multiprocessing.get_context("spawn").Pool(min(workers, len(todo)), _init_worker, (options,))
        results = pool.imap_unordered(_worker, tasks)
    try:
        for name, status, frames, reason in results:
            if status == "written":
                report.written.append(name)
                report.frames_written += frames
            else:
                report.skipped[name] = reason
                log.warning("skipped %s: %s", name, reason)
            bar.update(1)
            bar.set_postfix(written=len(report.written), skipped=len(report.skipped), refresh=False)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        try:
            (out_dir / PARTIAL_DIR).rmdir()  # only when empty: nothing left half-done
        except OSError:
            pass
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfd.data.preprocess", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw_dir", type=Path, help="folder of raw videos (searched recursively)")
    parser.add_argument("out_dir", type=Path, help="output data root (gets train/ and test/)")
    parser.add_argument("--size", type=int, default=256, help="side of the face crops in pixels (default 256)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="parallel processes (default: CPU cores - 1)")
    parser.add_argument("--split-test", type=float, default=0.0,
                        help="fraction of videos for test/ when RAW_DIR has no train/ test/ folders")
    parser.add_argument("--track", default="fixed", choices=("fixed", "smooth", "raw", "full"),
                        help="crop box: 'fixed' (one per clip, as the pipeline crops a driver), 'smooth' (follow "
                             "the face), 'raw', or 'full' for videos that are already face crops")
    parser.add_argument("--detect-every", type=int, default=1,
                        help="with --track smooth or raw: run the detector every k frames")
    parser.add_argument("--fps", type=float, default=None, help="resample to this frame rate")
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames per video")
    parser.add_argument("--max-search-frames", type=int, default=150,
                        help="skip a video when none of its first N frames shows a face")
    parser.add_argument("--format", dest="image_format", default="png", choices=("png", "jpg"))
    parser.add_argument("--detector-weights", default=None,
                        help="RetinaFace weights (folder, Hub repo or .safetensors); default: best available")
    parser.add_argument("--retry-skipped", action="store_true", help="retry videos an earlier run skipped")
    parser.add_argument("--stills", action="store_true",
                        help="also crop the photos under RAW_DIR, each into a one-frame folder")
    parser.add_argument("--manifest", type=Path, action="append", default=None,
                        help="manifest.csv whose split column decides the split of the files it lists (repeatable)")
    parser.add_argument("--only-split", choices=SPLITS, default=None, help="write this split alone")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="leave out files whose path under RAW_DIR or name matches (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    def run() -> str:
        report = preprocess_videos(args.raw_dir, args.out_dir, size=args.size, workers=args.workers,
                                   split_test=args.split_test, track=args.track, detect_every=args.detect_every,
                                   fps=args.fps, max_frames=args.max_frames,
                                   max_search_frames=args.max_search_frames, image_format=args.image_format,
                                   detector_weights=args.detector_weights, retry_skipped=args.retry_skipped,
                                   progress=not args.quiet, stills=args.stills, manifest=args.manifest,
                                   exclude=args.exclude, only_split=args.only_split)
        lines = [f"{len(report.written)} videos written ({report.frames_written} frames), "
                 f"{len(report.already_done)} already done, {len(report.skipped)} skipped"]
        lines += [f"  skipped {name}: {reason}" for name, reason in sorted(report.skipped.items())]
        return "\n".join(lines)

    return run_command(run, errors=(SFDError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())

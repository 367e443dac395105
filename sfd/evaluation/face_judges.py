"""`FaceJudges`: the pretrained networks that score a reenacted clip against its driver.

dlib's 68 landmarks (AKD and the motion-following correlations of `face_motion`), dlib's
128-d face descriptor (identity distance) and LPIPS (AlexNet), each also for the do-nothing
baseline (every output frame = the source image), whose landmarks and descriptor are computed
once per clip.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from .face_motion import clip_scores, following
from .metrics import face_detail

LPIPS_SIDE = 256  # whole frames are compared with the longer side scaled to this
DESCRIPTOR_EVERY = 3  # identity descriptors on every 3rd frame: identity does not change frame to frame


class FaceJudges:
    """Holds the networks; `new_clip` starts the scoring of one clip.

    Args:
        face: a `sfd.pretrained.dlib_face.DlibFace` (landmarks + descriptors) or None.
        lpips: a `sfd.pretrained.lpips.LPIPS` or None.
        descriptor_every: identity descriptors on every k-th frame only.
    """

    def __init__(self, face=None, lpips=None, descriptor_every: int = DESCRIPTOR_EVERY):
        self.face = face
        self.lpips = lpips
        self.descriptor_every = descriptor_every
        # Driving clips are scored again for every model compared (an ablation, the baseline):
        # their landmarks and descriptors are kept, keyed by the frames' bytes.
        self._driver_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def measure(self, frames: np.ndarray, first_index: int, cache: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (n, 68, 2) and descriptors (n, 128; NaN but every `descriptor_every`-th frame,
        counted from the clip's start, as the descriptor costs ~10x the landmarks) of uint8 frames."""
        key = None
        if cache:
            key = (hashlib.blake2b(np.ascontiguousarray(frames).data, digest_size=16).digest(),
                   first_index % self.descriptor_every)
            if key in self._driver_cache:
                return self._driver_cache[key]
        marks = self.face.landmarks(frames)
        descriptors = np.full((len(frames), 128), np.nan)
        chosen = [i for i in range(len(frames)) if (first_index + i) % self.descriptor_every == 0]
        if chosen:
            descriptors[chosen] = self.face.descriptors(frames[chosen], marks[chosen])
        if key is not None:
            self._driver_cache[key] = (marks, descriptors)
        return marks, descriptors

    @classmethod
    def default(cls, lpips: bool = True) -> "FaceJudges":
        """The evaluation's default networks (dlib's, LPIPS-AlexNet); WeightsError when missing."""
        from .evaluator import default_dlib_face
        from .lpips_network import default_lpips

        return cls(default_dlib_face(), default_lpips() if lpips else None)

    def new_clip(self, source_image: np.ndarray) -> "ClipJudge":
        return ClipJudge(self, source_image)


class ClipJudge:
    """Collects per-frame landmarks, descriptors and LPIPS of one clip's outputs and driving frames."""

    def __init__(self, judges: FaceJudges, source_image: np.ndarray):
        self.judges = judges
        self.source = np.ascontiguousarray(source_image)
        self.marks: dict[str, list[np.ndarray]] = {"output": [], "driver": []}
        self.descriptors: dict[str, list[np.ndarray]] = {"output": [], "driver": []}
        self.detail: dict[str, list[np.ndarray]] = {"output": [], "driver": []}
        self.lpips: dict[str, list[np.ndarray]] = {"output": [], "baseline": []}
        self.frames = 0
        if judges.face is not None:
            self.source_marks, descriptor = judges.measure(self.source[None], 0)
            self.source_descriptor = descriptor[0]
            self.source_detail = face_detail(self.source, self.source_marks[0])

    def add(self, outputs: np.ndarray, drivers: np.ndarray) -> None:
        """One batch of output frames and the driving frames they answer (uint8, (n, H, W, 3))."""
        if self.judges.face is not None:
            for key, frames in (("output", outputs), ("driver", drivers)):
                marks, descriptors = self.judges.measure(frames, self.frames, cache=key == "driver")
                self.marks[key].append(marks)
                self.descriptors[key].append(descriptors)
                self.detail[key].append(face_detail(frames, marks))
        self.frames += len(outputs)
        if self.judges.lpips is not None and outputs.shape == drivers.shape:
            baseline = np.broadcast_to(self.source, drivers.shape) if self.source.shape == drivers.shape[1:] else None
            self.lpips["output"].append(self._lpips(outputs, drivers))
            if baseline is not None:
                self.lpips["baseline"].append(self._lpips(baseline, drivers))

    @torch.inference_mode()
    def _lpips(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        network = self.judges.lpips
        device = next(network.parameters()).device

        def tensor(frames: np.ndarray) -> torch.Tensor:
            x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
            scale = LPIPS_SIDE / max(x.shape[-2:])
            if scale < 1:
                x = F.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
            return x

        return network(tensor(a), tensor(b)).float().cpu().numpy()

    def scores(self, skip: int = 1, same_identity: bool = True) -> dict[str, float | int]:
        """Means over the clip's frames after the first `skip` ones, with `baseline_` twins.

        Same identity: LPIPS, AKD (`akd_iod`, `akd_px256`), identity distance to the driver
        (`id_dist`) and the correlations. Cross identity: the correlations and the identity
        distance to the source (`id_dist_source`). Both: `detail`, the face's fine detail
        (`metrics.face_detail`) over the real frames' (same identity) or the source's (cross).
        """
        result: dict[str, float | int] = {}
        if same_identity and self.lpips["output"]:
            result["lpips"] = float(np.concatenate(self.lpips["output"])[skip:].mean())
            if self.lpips["baseline"]:
                result["baseline_lpips"] = float(np.concatenate(self.lpips["baseline"])[skip:].mean())
        if self.judges.face is None or not self.marks["output"]:
            return result
        out, drv = (np.concatenate(self.marks[k])[skip:] for k in ("output", "driver"))
        out_id, drv_id = (np.concatenate(self.descriptors[k])[skip:] for k in ("output", "driver"))
        width = self.source.shape[1]
        baseline = np.broadcast_to(self.source_marks, drv.shape)
        out_detail = _finite_mean(np.concatenate(self.detail["output"])[skip:])
        if same_identity:
            ours, theirs = clip_scores(out, drv, width), clip_scores(baseline, drv, width)
            result["id_dist"] = _mean_distance(out_id, drv_id)
            result["baseline_id_dist"] = _mean_distance(np.broadcast_to(self.source_descriptor, drv_id.shape), drv_id)
            reference = _finite_mean(np.concatenate(self.detail["driver"])[skip:])  # the real frames'
        else:
            ours, theirs = following(out, drv), following(baseline, drv)
            ours["face_frames"] = int(np.isfinite(out[:, 0, 0] + drv[:, 0, 0]).sum())
            result["id_dist_source"] = _mean_distance(out_id, np.broadcast_to(self.source_descriptor, out_id.shape))
            reference = self.source_detail
        result["detail"] = _ratio(out_detail, reference)
        result["baseline_detail"] = _ratio(self.source_detail, reference)
        result.update(ours)
        result.update({f"baseline_{k}": v for k, v in theirs.items() if k != "face_frames"})
        return result


def _ratio(value: float, reference: float) -> float:
    """value / reference; NaN where the reference is missing (no face) or zero (a flat face)."""
    return value / reference if np.isfinite(reference) and reference > 0 else float("nan")


def _finite_mean(values: np.ndarray) -> float:
    """The mean over the frames that have a value (a face); NaN where none has."""
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def _mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    return _finite_mean(np.linalg.norm(a - b, axis=-1))

"""`Calibration`: how far each descriptor coefficient ranges over real faces.

The encoder's coefficients have no natural unit: one motion coefficient may span +-0.1 over
real faces and another +-5. Sliders therefore take their range from statistics over a set of
faces (mean +- 3 standard deviations per coefficient), and identity sliders are ordered by how
much faces differ along them (largest variance first). `calibrate` computes the statistics;
they are stored with the weights as `calibration.json`:

    {"version": 1, "num_faces": K,
     "motion":   {"mean": [N floats], "std": [N floats]},
     "identity": {"mean": [D-N floats], "std": [D-N floats], "order": [indices, largest variance first]}}

Standard deviations are sample standard deviations (divisor K - 1).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SFDError, WeightsError
from ..models import SFDModel
from .face_samples import FaceSampler
from .weights_files import read_weights_json, write_json_atomically

log = logging.getLogger(__name__)

CALIBRATION_FILENAME = "calibration.json"
CALIBRATION_VERSION = 1
# Sliders span mean +- SLIDER_STDS standard deviations: nearly every real face lies inside.
SLIDER_STDS = 3.0
KINDS = ("motion", "identity")


@dataclass
class Calibration:
    """Per-coefficient mean and standard deviation of the motion and identity descriptors.

    `identity_order` lists identity coefficient indices by variance, largest first; it is
    derived from `identity_std` when not given.
    """

    num_faces: int
    motion_mean: np.ndarray
    motion_std: np.ndarray
    identity_mean: np.ndarray
    identity_std: np.ndarray
    identity_order: list[int] | None = None

    def __post_init__(self):
        for kind in KINDS:
            mean = np.asarray(getattr(self, f"{kind}_mean"), dtype=np.float64)
            std = np.asarray(getattr(self, f"{kind}_std"), dtype=np.float64)
            if mean.ndim != 1 or mean.shape != std.shape or mean.size == 0:
                raise ValueError(f"{kind} mean and std must be two equally long non-empty lists, "
                                 f"got shapes {mean.shape} and {std.shape}")
            if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std < 0).any():
                raise ValueError(f"{kind} statistics must be finite, with non-negative standard deviations")
            setattr(self, f"{kind}_mean", mean)
            setattr(self, f"{kind}_std", std)
        if self.identity_order is None:
            # Stable sort: equal variances keep the encoder's order.
            self.identity_order = np.argsort(-self.identity_std, kind="stable").tolist()
        else:
            self.identity_order = [int(i) for i in self.identity_order]
            if sorted(self.identity_order) != list(range(self.identity_std.size)):
                raise ValueError(f"identity order must list each of the {self.identity_std.size} "
                                 "identity coefficients once")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_descriptors(cls, motion, identity) -> "Calibration":
        """Statistics of descriptor arrays: `motion` (K, N) and `identity` (K, D - N), K >= 2 faces."""
        motion = _as_matrix(motion)
        identity = _as_matrix(identity)
        if motion.shape[0] != identity.shape[0]:
            raise ValueError(f"motion and identity descriptors of different face counts: "
                             f"{motion.shape[0]} and {identity.shape[0]}")
        if motion.shape[0] < 2:
            raise SFDError(f"calibration needs at least 2 faces, got {motion.shape[0]}")
        return cls(num_faces=motion.shape[0],
                   motion_mean=motion.mean(0), motion_std=motion.std(0, ddof=1),
                   identity_mean=identity.mean(0), identity_std=identity.std(0, ddof=1))

    # ------------------------------------------------------------------ queries
    @property
    def motion_dim(self) -> int:
        return self.motion_mean.size

    @property
    def identity_dim(self) -> int:
        return self.identity_mean.size

    def statistics(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """`(mean, std)` of the "motion" or "identity" coefficients."""
        if kind not in KINDS:
            raise ValueError(f"kind must be 'motion' or 'identity', got {kind!r}")
        return getattr(self, f"{kind}_mean"), getattr(self, f"{kind}_std")

    def slider_range(self, kind: str, index: int) -> tuple[float, float]:
        """`(mean - 3 std, mean + 3 std)` of one "motion" or "identity" coefficient."""
        mean, std = self.statistics(kind)
        if not 0 <= index < mean.size:
            raise IndexError(f"{kind} coefficient {index} does not exist: the calibration has {mean.size}")
        return float(mean[index] - SLIDER_STDS * std[index]), float(mean[index] + SLIDER_STDS * std[index])

    def fits(self, model: SFDModel) -> bool:
        """Whether these statistics were made for a model with the descriptor sizes of `model`."""
        return self.motion_dim == model.config.motion_dim and self.identity_dim == model.identity_dim

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {
            "version": CALIBRATION_VERSION,
            "num_faces": int(self.num_faces),
            "motion": {"mean": self.motion_mean.tolist(), "std": self.motion_std.tolist()},
            "identity": {"mean": self.identity_mean.tolist(), "std": self.identity_std.tolist(),
                         "order": list(self.identity_order)},
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "calibration") -> "Calibration":
        """Parse the `calibration.json` format; WeightsError names what is wrong."""
        if data.get("version") != CALIBRATION_VERSION:
            raise WeightsError(f"{source}: unsupported calibration version {data.get('version')!r} "
                               f"(this sfd reads version {CALIBRATION_VERSION})")
        try:
            return cls(num_faces=int(data["num_faces"]),
                       motion_mean=data["motion"]["mean"], motion_std=data["motion"]["std"],
                       identity_mean=data["identity"]["mean"], identity_std=data["identity"]["std"],
                       identity_order=data["identity"]["order"])
        except (KeyError, TypeError, ValueError) as error:
            raise WeightsError(f"{source} is not a valid calibration: {type(error).__name__}: {error}") from error

    def save(self, path: str | os.PathLike) -> str:
        """Write `calibration.json` into the folder `path` (or to `path` itself when it ends in .json)."""
        target = os.fspath(path)
        if not target.endswith(".json"):
            target = os.path.join(target, CALIBRATION_FILENAME)
        return str(write_json_atomically(self.to_dict(), target))

    @classmethod
    def load(cls, weights: str | os.PathLike, revision: str | None = None) -> "Calibration | None":
        """The calibration stored with a weights folder or Hub repo (or a .json path); None if it has none.

        Raises WeightsError for a file that exists but is malformed.
        """
        found = read_weights_json(weights, CALIBRATION_FILENAME, revision)
        if found is None:
            return None
        data, path = found
        return cls.from_dict(data, source=str(path))


def _as_matrix(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"descriptors must be a (faces, coefficients) array, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise SFDError("the encoder gave non-finite descriptors; the weights may be broken")
    return matrix


def calibrate(pipeline_or_model, images, *, max_faces: int | None = None, frames_per_video: int = 8,
              crop_faces: bool = True, batch_size: int = 16, sampler: FaceSampler | None = None) -> Calibration:
    """Descriptor statistics over the faces in `images`.

    Args:
        pipeline_or_model: an `SFDPipeline` (its model, device and face detector are used) or an
            `SFDModel` (with the default face detector when faces are to be cropped).
        images: a folder of images and/or videos, one file, an iterable of images (paths, arrays,
            PIL images), or a float tensor (K, 3, size, size) in [-1, 1] of ready face crops.
        max_faces: stop after this many faces.
        frames_per_video: frames taken from each video, spread evenly over it.
        crop_faces: crop each image around its main face, as the pipeline crops a source.
        sampler: a `FaceSampler` to use instead of a new one (its `skipped` then tells what was left out).

    Files without a face are skipped with a logged reason. Raises SFDError when fewer than two
    faces remain.
    """
    ready_crops = isinstance(images, torch.Tensor)
    model, detector = _model_and_detector(pipeline_or_model, crop_faces and sampler is None and not ready_crops)
    parameter = next(model.parameters())
    motions, identities = [], []

    def encode(batch: torch.Tensor) -> None:
        # No autocast (unlike the pipeline): these numbers become slider ranges; statistics in float64.
        with torch.inference_mode():
            desc = model.encode(batch.to(device=parameter.device, dtype=parameter.dtype), with_features=False)
        motions.append(desc.motion.float().cpu().numpy())
        identities.append(desc.identity.float().cpu().numpy())

    if ready_crops:
        crops = images[:max_faces] if max_faces is not None else images
        for start in range(0, crops.shape[0], batch_size):
            encode(crops[start:start + batch_size])
    else:
        sampler = sampler or FaceSampler(detector, model.config.size, frames_per_video, crop_faces)
        pending = []
        for face in sampler.crops(images, max_faces=max_faces):
            pending.append(face.pixels)
            if len(pending) == batch_size:
                encode(_to_tensor(pending))
                pending = []
        if pending:
            encode(_to_tensor(pending))
        if sampler.skipped:
            log.info("calibration skipped %d file(s) or frame(s) without a usable face", len(sampler.skipped))
    if not motions:
        raise SFDError("no faces found for calibration")
    calibration = Calibration.from_descriptors(np.concatenate(motions), np.concatenate(identities))
    log.info("calibrated on %d faces", calibration.num_faces)
    return calibration


def _model_and_detector(pipeline_or_model, need_detector: bool):
    """The model and (when faces are to be cropped) the face detector behind a pipeline or model."""
    if isinstance(pipeline_or_model, SFDModel):
        model, detector = pipeline_or_model, None
    elif isinstance(getattr(pipeline_or_model, "model", None), SFDModel):
        model, detector = pipeline_or_model.model, getattr(pipeline_or_model, "face_detector", None)
    else:
        raise TypeError(f"expected an SFDPipeline or SFDModel, got {type(pipeline_or_model).__name__}")
    if need_detector and detector is None:
        from ..face import default_face_detector

        detector = default_face_detector()
    return model, detector


def _to_tensor(crops: list[np.ndarray]) -> torch.Tensor:
    """uint8 crops (n of (size, size, 3)) -> float (n, 3, size, size) in [-1, 1]."""
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    return batch.div_(127.5).sub_(1.0)

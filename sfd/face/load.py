"""`load_face_detector`: pick the best face detector available here; `find_face`: the main face.

Order of preference ("auto"): RetinaFace when its safetensors weights are found (most
precise, 5 landmarks), else facenet-pytorch's MTCNN when installed (weights ship in its
wheel, 5 landmarks), else OpenCV's Haar cascade (ships with OpenCV, boxes only). The
returned detector's ``name`` says which one runs, and its ``fallback_reasons`` why the
better ones were skipped, so an app can tell the user.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from sfd.errors import SFDError, WeightsError
from sfd.face.detector import FaceDetector
from sfd.face.face import Face

log = logging.getLogger(__name__)

#: Detector names, best first.
DETECTORS = ("retinaface", "mtcnn", "haar")


def _make(name: str, weights: str | Path | None, device, revision) -> FaceDetector:
    if name == "retinaface":
        if weights is None:
            raise WeightsError("no RetinaFace weights were given (a weights folder, Hub repo or .safetensors file)")
        from sfd.face.retinaface import RetinaFaceDetector

        return RetinaFaceDetector(weights, device=device, revision=revision)
    if name == "mtcnn":
        from sfd.face.mtcnn import MTCNNDetector

        return MTCNNDetector(device=device)
    if name == "haar":
        from sfd.face.haar import HaarCascadeDetector

        return HaarCascadeDetector()
    raise ValueError(f"Unknown face detector {name!r}; choose from {', '.join(DETECTORS)} or 'auto'.")


def load_face_detector(
    weights_dir_or_repo: str | Path | None = None,
    prefer: str | Sequence[str] = "auto",
    device: str | torch.device | None = None,
    revision: str | None = None,
) -> FaceDetector:
    """Load a face detector.

    Args:
        weights_dir_or_repo: where RetinaFace's weights are: a weights folder or Hub repo
            holding ``detector/retinaface_resnet50.safetensors``, or that file's path.
            ``None``: RetinaFace is skipped.
        prefer: ``"auto"`` (RetinaFace, MTCNN, Haar: the first that loads), one detector
            name (that one or an error), or a sequence of names tried in order.
        device: torch device for RetinaFace/MTCNN.
        revision: Hub revision for the RetinaFace file.

    Returns:
        The detector. ``.name`` tells which detector it is and ``.fallback_reasons`` maps
        each better detector that was skipped to the reason.

    Raises:
        WeightsError: the one requested detector (or every one of a sequence) failed to load.
    """
    if isinstance(prefer, str):
        if prefer == "auto":
            order: tuple[str, ...] = DETECTORS
        else:
            if prefer not in DETECTORS:
                raise ValueError(f"Unknown face detector {prefer!r}; choose from {', '.join(DETECTORS)} or 'auto'.")
            return _make(prefer, weights_dir_or_repo, device, revision)
    else:
        order = tuple(prefer)
    reasons: dict[str, str] = {}
    for name in order:
        try:
            det = _make(name, weights_dir_or_repo, device, revision)
        except SFDError as exc:  # WeightsError (missing package / file), ImageError...
            reasons[name] = str(exc)
            log.info("face detector %s not used: %s", name, exc)
            continue
        det.fallback_reasons = reasons
        if reasons:
            # Not finding weights that nobody asked for is normal; a failure to use the
            # weights that were given deserves a warning.
            level = logging.INFO if weights_dir_or_repo is None else logging.WARNING
            why = "; ".join(f"{k}: {v}" for k, v in reasons.items())
            log.log(level, "using the %s face detector (%s)", det.name, why)
        return det
    raise WeightsError("No face detector could be loaded: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()))


@lru_cache(maxsize=1)
def default_face_detector() -> FaceDetector:
    """The best detector that needs no weights folder (MTCNN, else Haar), loaded once."""
    return load_face_detector(None)


def find_face(image: np.ndarray, detector: FaceDetector | None = None) -> Face:
    """The main (largest) face in `image`; raises NoFaceError when none is found.

    `detector` defaults to `default_face_detector()`.
    """
    return (detector or default_face_detector()).detect_single(image)

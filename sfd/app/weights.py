"""Which weights the app runs: SFD_WEIGHTS when they load, else the bundled default.

`load_weights` is the one place that decides.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import WeightsError
from ..face import load_face_detector
from ..models import SFDModel
from ..pipeline import SFDPipeline
from ..models import BUNDLED_WEIGHTS
from ..pipeline.sfd_pipeline import default_device
from ..semantics.calibration import Calibration
from ..semantics.direction_atlas import Atlas

log = logging.getLogger(__name__)

BUNDLED_PRESET = "tiny"
BUNDLED_SEED = 0  # the untrained default is the same model on every start and machine
BUNDLED_NAME = "untrained tiny preset: no trained weights are bundled yet; faces will barely move"
BUNDLED_TRAINED_NAME = ("bundled demo model sfd-demo64: a small 64 px model trained for 4 hours on a CPU and "
                        "9 minutes on a GPU, not the paper's; on new faces it follows head motion and most of "
                        "the mouth, not the eyes (non-commercial research demo)")


@dataclass
class LoadedWeights:
    """The pipeline the app runs and what the page says about it.

    name:        what is loaded, in words for the page.
    trained:     False for the untrained bundled default.
    problem:     why the requested weights (SFD_WEIGHTS) are not the ones running, or None.
    calibration: slider statistics stored with the weights, or None.
    calibration_problem: why a calibration file that exists was not used, or None.
    """

    pipeline: SFDPipeline
    name: str
    trained: bool
    problem: str | None = None
    calibration: Calibration | None = None
    calibration_problem: str | None = None
    atlas: Atlas | None = None  # names and groups of the motion directions, when the weights have one


def _looks_like_a_path(weights: str | os.PathLike) -> bool:
    """A local folder rather than a Hub repo id ("org/name")."""
    text = os.fspath(weights)
    return os.path.isabs(text) or text.startswith((".", "~")) or Path(text).exists()


def _model_summary(model: SFDModel) -> str:
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return f"{model.config.size} px, {params:.1f} M parameters"


def bundled_default(device: torch.device | str | None = None) -> LoadedWeights:
    """The weights that ship with the package: the small trained demo model when it is there,
    else (a source checkout without it) the tiny preset, seeded and untrained."""
    device = torch.device(device) if device is not None else default_device()
    if BUNDLED_WEIGHTS.is_dir():
        pipeline = SFDPipeline.from_pretrained(device=device)
        weights = str(BUNDLED_WEIGHTS)
        return LoadedWeights(pipeline=pipeline, name=f"{BUNDLED_TRAINED_NAME} ({_model_summary(pipeline.model)})",
                             trained=True, calibration=_load_calibration(weights, None, pipeline.model)[0],
                             atlas=_load_atlas(weights, None, pipeline.model))
    # A private RNG stream: building the model neither depends on nor disturbs the global seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUNDLED_SEED)
        model = SFDModel.from_preset(BUNDLED_PRESET)
    # The detector loads now, not on the first request, and the page can name it.
    pipeline = SFDPipeline(model, face_detector=load_face_detector(None, device=device), device=device)
    return LoadedWeights(pipeline=pipeline, name=f"{BUNDLED_NAME} ({_model_summary(model)})", trained=False)


def _load_calibration(weights: str, revision: str | None, model: SFDModel) -> tuple[Calibration | None, str | None]:
    try:
        calibration = Calibration.load(weights, revision)
    except WeightsError as error:
        log.warning("ignoring the calibration of %s: %s", weights, error)
        return None, f"the calibration file of these weights was ignored: {error}"
    if calibration is not None and not calibration.fits(model):
        problem = (f"the calibration file of these weights was ignored: it has {calibration.motion_dim} motion and "
                   f"{calibration.identity_dim} identity coefficients, the model {model.config.motion_dim} and "
                   f"{model.identity_dim}")
        log.warning("%s", problem)
        return None, problem
    return calibration, None


def _load_atlas(weights: str, revision: str | None, model: SFDModel) -> Atlas | None:
    try:
        atlas = Atlas.load(weights, revision)
    except WeightsError as error:
        log.warning("ignoring the direction atlas of %s: %s", weights, error)
        return None
    if atlas is not None and len(atlas) != model.config.motion_dim:
        log.warning("ignoring the direction atlas of %s: %d directions for %d motion coefficients",
                    weights, len(atlas), model.config.motion_dim)
        return None
    return atlas


def load_weights(weights: str | os.PathLike | None = None, revision: str | None = None,
                 device: torch.device | str | None = None) -> LoadedWeights:
    """Load `weights` (Hub repo id or local folder), falling back to the bundled default.

    Never raises for bad weights: the app must start anyway, and `problem` says what went wrong
    (no network, a missing folder, a file that does not fit the model, ...).
    """
    if not weights:
        return bundled_default(device)
    label = f"{weights}" + (f" @ {revision}" if revision else "")
    try:
        if _looks_like_a_path(weights) and not Path(weights).expanduser().is_dir():
            raise WeightsError(f"there is no folder {weights}")  # the Hub client would blame the network
        pipeline = SFDPipeline.from_pretrained(Path(weights).expanduser() if _looks_like_a_path(weights) else weights,
                                               revision=revision, device=device)
    except Exception as error:  # WeightsError, OSError from the Hub client when offline, ...
        log.warning("could not load SFD_WEIGHTS=%s: %s", label, error, exc_info=not isinstance(error, WeightsError))
        loaded = bundled_default(device)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not _looks_like_a_path(weights) and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            reason += " HF_HUB_OFFLINE is set: only the local Hub cache was searched"
        loaded.problem = f"SFD_WEIGHTS={label} could not be loaded ({reason}); running the bundled default instead"
        return loaded
    calibration, calibration_problem = _load_calibration(str(weights), revision, pipeline.model)
    return LoadedWeights(pipeline=pipeline, name=f"{label} ({_model_summary(pipeline.model)})", trained=True,
                         calibration=calibration, calibration_problem=calibration_problem,
                         atlas=_load_atlas(str(weights), revision, pipeline.model))

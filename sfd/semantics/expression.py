"""Expression controls in physical units: "open this mouth by 0.3", "turn this head 10 degrees left".

No motion direction of the model is "the mouth" alone, so a control does not move one coefficient:
it solves for the motion-descriptor offsets that make the change, on the face at hand.

Controls (`EXPRESSION_CONTROLS`), each a change of one quantity of `face_measures`:

    mouth_open   inner-lip gap / inter-ocular distance (0.3: the lips part by 0.3 eye distances)
    smile        mouth-corner distance / inter-ocular distance
    eye_left, eye_right   lid gap / eye width (the subject's own left and right)
    brows        brow height / inter-ocular distance
    yaw, pitch, roll      degrees (yaw > 0: the nose turns to the image's right; pitch > 0: up;
                 roll > 0: counter-clockwise in the image)

The solve (`ExpressionSolver.solve`):

1. Targets: the asked changes, and "no change" for every other measured quantity (held with a
   lower weight, `HOLD_WEIGHT`, so that e.g. a head turn may shift the face a little). Each
   residual is divided by the quantity's natural spread, so degrees and ratios weigh alike.
2. A first guess by bounded least squares through the atlas's effect matrix (measured on the
   calibration faces, quantity change per coefficient unit); without an atlas, through this
   face's own matrix. Offsets stay within +-`MAX_STDS` calibration std of each coefficient (the
   sliders' range) and a small ridge keeps them unique.
3. `refine_steps` Gauss-Newton steps on this face: render with the offsets, measure with the
   mesh, and solve for the rest of the change through this face's own matrix (central finite
   differences of the rendered, measured face: 2 x directions renders, once per face). Of all
   the offsets rendered on the way, the one whose measures came closest is kept: a step can
   overshoot where the face responds far from linearly.

A face's matrix and its unmoved measures are computed once (`ExpressionSolver` holds them), so a
slider move costs `refine_steps` + 1 renders and meshes of one face: a few tens of ms on a CPU
for the 64 px model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SFDError
from .face_measures import FACE_MEASURES, MEASURE_INDEX, NATURAL_SPREAD, face_mesh, measure_faces

MAX_STDS = 3.0  # offsets stay within the calibrated slider range
HOLD_WEIGHT = 0.3  # weight of "keep this quantity" against the asked changes
RIDGE = 1e-3  # per (coefficient std)^2, in squared natural spreads
JACOBIAN_STEP_STDS = 1.0  # finite-difference step of the face's own matrix
# 3, not 2: on an earlier build of the bundled weights a +10 degree yaw on the astronaut
# portrait nodded the head 9 degrees after two steps; the third step's render turned it (6.9
# yaw, 2.1 pitch).
DEFAULT_REFINE_STEPS = 3
REACHED_FRACTION = 0.5  # strict solves fail when less than this share of a change is reached


@dataclass(frozen=True)
class ExpressionControl:
    """One control: the quantity it changes, its unit and what a sensible change is."""

    key: str  # the control's name, as the API, CLI and app take it
    measure: str  # the FACE_MEASURES quantity it changes
    label: str
    unit: str
    limit: float  # larger changes (either sign) are refused as impossible
    floor: float | None = None  # the quantity cannot go below this (a mouth closes at 0)


EXPRESSION_CONTROLS: dict[str, ExpressionControl] = {c.key: c for c in (
    ExpressionControl("mouth_open", "mouth_open", "Mouth opening", "inner-lip gap / inter-ocular", 1.0, 0.0),
    ExpressionControl("smile", "mouth_width", "Smile (mouth width)", "mouth width / inter-ocular", 0.5, 0.2),
    ExpressionControl("eye_left", "eye_left", "Left eye opening", "lid gap / eye width", 0.6, 0.0),
    ExpressionControl("eye_right", "eye_right", "Right eye opening", "lid gap / eye width", 0.6, 0.0),
    ExpressionControl("brows", "brows", "Brows", "brow height / inter-ocular", 0.2),
    ExpressionControl("yaw", "yaw", "Yaw (turn)", "degrees, > 0 nose to the image's right", 60.0),
    ExpressionControl("pitch", "pitch", "Pitch (nod)", "degrees, > 0 up", 45.0),
    ExpressionControl("roll", "roll", "Roll (tilt)", "degrees, > 0 counter-clockwise", 45.0),
)}


def check_targets(targets: Mapping[str, float], current: np.ndarray | None = None) -> dict[str, float]:
    """The non-zero targets as floats; SFDError for an unknown control or an impossible value
    (not finite, beyond the control's limit, or, given the face's `current` measures, past a
    floor such as a mouth closing further than closed)."""
    checked = {}
    for key, value in targets.items():
        control = EXPRESSION_CONTROLS.get(key)
        if control is None:
            raise SFDError(f"unknown expression control {key!r}: use one of {', '.join(EXPRESSION_CONTROLS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value):
            raise SFDError(f"expression {key} must be a finite number, got {value!r}")
        value = float(value)
        if abs(value) > control.limit:
            raise SFDError(f"expression {key} {value:+g} is impossible: changes of {control.label.lower()} "
                           f"go up to +-{control.limit:g} ({control.unit})")
        if current is not None and control.floor is not None:
            now = float(current[MEASURE_INDEX[control.measure]])
            if now + value < control.floor - 1e-9:
                raise SFDError(f"expression {key} {value:+g} is impossible on this face: it is at {now:.3g} "
                               f"and cannot go below {control.floor:g} ({control.unit})")
        if value:
            checked[key] = value
    return checked


def parse_expression(pairs) -> dict[str, float]:
    """`["mouth_open=0.3", "yaw=-10"]` (or a {name: value} mapping) -> {name: value}; SFDError when malformed."""
    if isinstance(pairs, Mapping):
        return check_targets(pairs)
    targets = {}
    for pair in pairs or []:
        key, sep, value = str(pair).partition("=")
        try:
            if not sep:
                raise ValueError
            targets[key.strip()] = float(value)
        except ValueError:
            raise SFDError(f"expression controls are NAME=VALUE pairs such as mouth_open=0.3, got {pair!r}") from None
    return check_targets(targets)


@dataclass
class ExpressionResult:
    """What a solve found: motion offsets {index: offset}, and the change of every measured
    quantity (its units) that was asked, predicted by the last linear solve, and measured on the render."""

    offsets: dict[int, float]
    targets: dict[str, float]
    predicted: dict[str, float]
    achieved: dict[str, float] | None

    def reached(self) -> dict[str, float]:
        """The change of each asked control, measured when the solve rendered (else predicted)."""
        changes = self.achieved if self.achieved is not None else self.predicted
        return {key: changes[EXPRESSION_CONTROLS[key].measure] for key in self.targets}

    def summary(self) -> str:
        parts = [f"{key} {value:+.3g} (asked {self.targets[key]:+.3g})" for key, value in self.reached().items()]
        return "reached " + ", ".join(parts) if parts else "no expression change"


class ExpressionSolver:
    """Expression controls for one face: its unmoved measures and (once needed) its own effect matrix.

    Args:
        model: the SFD model.
        descriptors: the face's `Descriptors` (batch of 1, with features), e.g. `SourceFace.descriptors`.
        atlas: the weights' atlas; its effect matrix gives the first guess and its std the step
            sizes. Without one (or a version 1 atlas) this face's own matrix is used for both.
        motion_std: per-coefficient std (a calibration's), used when the atlas has none.
        mesh: the face mesh (default: `face_mesh()` on the model's device).
    """

    def __init__(self, model, descriptors, atlas=None, motion_std: np.ndarray | None = None, mesh=None):
        self.model = model
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.descriptors = descriptors
        self.mesh = mesh if mesh is not None else face_mesh(self.device)
        motion_dim = int(model.config.motion_dim)
        self.atlas_matrix = atlas.effect_matrix() if atlas is not None and len(atlas) == motion_dim else None
        if self.atlas_matrix is not None:
            std = atlas.motion_std()
        elif motion_std is not None and len(motion_std) == motion_dim and (np.asarray(motion_std) > 0).all():
            std = np.asarray(motion_std, dtype=np.float64)
        else:  # the typical size of this face's coefficients
            values = descriptors.motion.detach().double().cpu().numpy().ravel()
            std = np.full(motion_dim, float(np.sqrt(np.mean(values ** 2))) or 1.0)
        self.std = np.asarray(std, dtype=np.float64)
        self.base = self.measure(np.zeros(motion_dim))[0]
        self._face_matrix: np.ndarray | None = None

    # ------------------------------------------------------------------ rendering and measuring
    def render(self, offsets: np.ndarray) -> torch.Tensor:
        """The face with these motion offsets, (B, 3, S, S) in [-1, 1], for offsets (N,) or (B, N)."""
        offsets = torch.as_tensor(np.atleast_2d(offsets), dtype=self.dtype, device=self.device)
        d = self.descriptors
        count = offsets.shape[0]
        with torch.inference_mode():
            motion = d.motion.to(self.dtype) + offsets
            identity = d.identity.expand(count, -1)
            features = tuple(f.expand(count, *f.shape[1:]) for f in d.features)
            return self.model.generate(self.model.compose(identity, motion), features)

    def measure(self, offsets: np.ndarray, batch: int = 16) -> np.ndarray:
        """Measures (B, len(FACE_MEASURES)) of the face rendered with each row of offsets."""
        offsets = np.atleast_2d(offsets)
        rows = []
        with torch.inference_mode():
            for start in range(0, len(offsets), batch):
                rows.append(measure_faces(self.render(offsets[start:start + batch]), self.mesh).double().cpu().numpy())
        return np.concatenate(rows)

    def face_matrix(self) -> np.ndarray:
        """(len(FACE_MEASURES), N): this face's change of each quantity per coefficient unit (computed once)."""
        if self._face_matrix is None:
            steps = np.diag(JACOBIAN_STEP_STDS * self.std)
            measured = self.measure(np.concatenate([steps, -steps]))
            n = len(self.std)
            self._face_matrix = ((measured[:n] - measured[n:]) / (2 * JACOBIAN_STEP_STDS * self.std[:, None])).T
        return self._face_matrix

    # ------------------------------------------------------------------ solving
    def _least_squares(self, matrix: np.ndarray, wanted: np.ndarray, weights: np.ndarray,
                       start: np.ndarray) -> np.ndarray:
        """Offsets `start + x` with matrix @ x ~ wanted (weighted), within +-MAX_STDS std in total."""
        from scipy.optimize import lsq_linear

        scaled = matrix * self.std[None, :]  # unknowns in std units: well conditioned
        rows = (weights / NATURAL_SPREAD)[:, None]
        a = np.vstack([rows * scaled, math.sqrt(RIDGE) * np.eye(len(self.std))])
        b = np.concatenate([rows[:, 0] * wanted, -math.sqrt(RIDGE) * start / self.std])
        low, high = -MAX_STDS - start / self.std, MAX_STDS - start / self.std
        solution = lsq_linear(a, b, bounds=(np.minimum(low, 0), np.maximum(high, 0)), method="bvls")
        return start + solution.x * self.std

    def solve(self, targets: Mapping[str, float], refine_steps: int = DEFAULT_REFINE_STEPS,
              strict: bool = True) -> ExpressionResult:
        """Motion offsets that change this face's measured quantities by `targets` ({control: change}).

        refine_steps: Gauss-Newton steps through the generator and the mesh on this face (0: the
            atlas's linear answer only, no render). strict: raise SFDError when less than half of
            an asked change is reached within the calibrated range (else return the best reach).
        """
        targets = check_targets(targets, self.base)
        n = len(self.std)
        if not targets:
            zeros = dict.fromkeys((m.key for m in FACE_MEASURES), 0.0)
            return ExpressionResult({}, {}, zeros, None)
        wanted = np.zeros(len(FACE_MEASURES))
        weights = np.full(len(FACE_MEASURES), HOLD_WEIGHT)
        for key, value in targets.items():
            index = MEASURE_INDEX[EXPRESSION_CONTROLS[key].measure]
            wanted[index], weights[index] = value, 1.0
        first = self.atlas_matrix if self.atlas_matrix is not None else self.face_matrix()
        offsets = self._least_squares(first, wanted, weights, np.zeros(n))
        predicted = first @ offsets
        achieved = None
        tried = []  # (offsets, predicted, measured) of every render
        for _ in range(max(0, refine_steps)):
            achieved = self.measure(offsets)[0] - self.base
            tried.append((offsets, predicted, achieved))
            matrix = self.face_matrix()
            step_from = offsets
            offsets = self._least_squares(matrix, wanted - achieved, weights, step_from)
            predicted = achieved + matrix @ (offsets - step_from)
        if refine_steps > 0:  # what the final offsets really do
            tried.append((offsets, predicted, self.measure(offsets)[0] - self.base))
            # A Gauss-Newton step can overshoot where the face responds far from linearly (a head
            # turn that also nods): keep the rendered offsets that came closest, at no extra render.
            offsets, predicted, achieved = min(
                tried, key=lambda t: float(np.sum((weights * (t[2] - wanted) / NATURAL_SPREAD) ** 2)))
        keys = [m.key for m in FACE_MEASURES]
        result = ExpressionResult(offsets={i: float(v) for i, v in enumerate(offsets) if abs(v) > 1e-9},
                                  targets=targets, predicted=dict(zip(keys, map(float, predicted))),
                                  achieved=None if achieved is None else dict(zip(keys, map(float, achieved))))
        if strict:
            short = {k: v for k, v in result.reached().items()
                     if v * np.sign(targets[k]) < REACHED_FRACTION * abs(targets[k])}
            if short:
                text = ", ".join(f"{k} {targets[k]:+g} (reaches {v:+.3g})" for k, v in short.items())
                raise SFDError(f"this model cannot make {text} on this face within its calibrated range "
                               f"(+-{MAX_STDS:g} std per motion coefficient)")
        return result


def solve_expression(pipeline_or_model, source_face, targets: Mapping[str, float], atlas=None, *,
                     motion_std: np.ndarray | None = None, refine_steps: int = DEFAULT_REFINE_STEPS,
                     strict: bool = True) -> ExpressionResult:
    """Motion offsets (`result.offsets`, {index: offset}) that make the asked expression change on this face.

    pipeline_or_model: an `SFDPipeline` or `SFDModel`; source_face: a `SourceFace` (from
    `SFDPipeline.prepare_source`) or the face's `Descriptors`; targets: {control: change}, see
    `EXPRESSION_CONTROLS`; atlas: the weights' `Atlas` (its measured effects give the first guess).
    For repeated solves on one face, keep an `ExpressionSolver` instead (it measures the face once).
    """
    model = getattr(pipeline_or_model, "model", pipeline_or_model)
    descriptors = getattr(source_face, "descriptors", source_face)
    solver = ExpressionSolver(model, descriptors, atlas, motion_std=motion_std)
    return solver.solve(targets, refine_steps=refine_steps, strict=strict)

"""Which coefficients get a slider, and each slider's range.

A slider's value is an *offset* added to the face's own coefficient (0 = the face as it is).
With a calibration, a slider spans the coefficient's usual values, mean +- 3 std, so its ends
are the calibrated extremes whatever the face's own value; identity sliders go to the
coefficients of largest variance. Without one, every slider of a kind spans
+- 3 * (spread of this face's coefficients of that kind) and identity sliders go to the first
coefficients in index order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..semantics.calibration import Calibration
from ..semantics.direction_atlas import Atlas

SIGMAS = 3.0
# Smallest spread a range is built from: a face whose coefficients are (near) equal still gets
# sliders that move it.
SPREAD_FLOOR = 0.1
STEP = 0.01


@dataclass(frozen=True)
class SliderSpec:
    """One slider: the coefficient it moves and the range of its offset."""

    kind: str  # "motion" or "identity"
    index: int  # the coefficient's index in its descriptor
    minimum: float
    maximum: float
    name: str | None = None  # what the direction does, measured by the weights' atlas
    info: str | None = None  # the measured effects behind the name (the slider's tooltip)

    @property
    def label(self) -> str:
        return slider_label(self.kind, self.index, self.name)

    def widened_to(self, value: float) -> "SliderSpec":
        """This slider, its range stretched to hold `value` (an offset set from JSON or a preset)."""
        return SliderSpec(self.kind, self.index, min(self.minimum, _floor(value)), max(self.maximum, _ceil(value)),
                          self.name, self.info)


def slider_label(kind: str, index: int, name: str | None = None) -> str:
    """`motion 3`, or `mouth open (motion 3)` when the atlas has named the direction."""
    return f"{name} ({kind} {index})" if name else f"{kind} {index}"


@dataclass(frozen=True)
class SliderLayout:
    """The sliders of one face: all motion coefficients, then the chosen identity coefficients."""

    motion: tuple[SliderSpec, ...]
    identity: tuple[SliderSpec, ...]
    calibrated: bool

    @property
    def identity_indices(self) -> list[int]:
        return [s.index for s in self.identity]

    def describe(self) -> str:
        if self.calibrated:
            return ("Slider ranges come from the weights' calibration (each coefficient's mean +- 3 std); "
                    "identity sliders are the coefficients of largest variance.")
        return ("No calibration comes with these weights, so slider ranges come from this face: +- 3 x the "
                "spread of its coefficients; identity sliders are the first coefficients.")


def _floor(value: float) -> float:
    return round(math.floor(value / STEP + 1e-9) * STEP, 6)


def _ceil(value: float) -> float:
    return round(math.ceil(value / STEP - 1e-9) * STEP, 6)


def identity_order(identity_dim: int, count: int, calibration: Calibration | None) -> list[int]:
    """The identity coefficients that get a slider, in slider order."""
    count = min(count, identity_dim)
    if calibration is None:
        return list(range(count))
    return [int(i) for i in calibration.identity_order[:count]]


def _calibrated(kind: str, indices, values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> list[SliderSpec]:
    specs = []
    for i in indices:
        low = mean[i] - SIGMAS * std[i] - values[i]
        high = mean[i] + SIGMAS * std[i] - values[i]
        # 0 (the face itself) is always reachable, even for a face outside the usual range.
        specs.append(SliderSpec(kind, int(i), _floor(min(low, 0.0)), _ceil(max(high, 0.0))))
    return specs


def _from_spread(kind: str, indices, values: np.ndarray) -> list[SliderSpec]:
    half = SIGMAS * max(float(np.std(values)), SPREAD_FLOOR)
    return [SliderSpec(kind, int(i), _floor(-half), _ceil(half)) for i in indices]


def motion_groups(motion_dim: int, atlas: Atlas | None) -> list[tuple[str, list[int]]]:
    """The motion sliders' sections: the atlas's groups (Head, Mouth, Eyes, Brows, Other) or one section."""
    if atlas is None or len(atlas) != motion_dim:
        return [("Motion descriptors", list(range(motion_dim)))]
    return list(atlas.groups().items())


def slider_layout(motion: np.ndarray, identity: np.ndarray, calibration: Calibration | None,
                  identity_count: int, atlas: Atlas | None = None) -> SliderLayout:
    """The sliders for a face with these motion (N,) and identity (D - N,) coefficients."""
    motion = np.asarray(motion, dtype=np.float64)
    identity = np.asarray(identity, dtype=np.float64)
    id_indices = identity_order(identity.size, identity_count, calibration)
    if calibration is not None:
        m = _calibrated("motion", range(motion.size), motion, *calibration.statistics("motion"))
        i = _calibrated("identity", id_indices, identity, *calibration.statistics("identity"))
    else:
        m = _from_spread("motion", range(motion.size), motion)
        i = _from_spread("identity", id_indices, identity)
    if atlas is not None and len(atlas) == motion.size:
        m = [SliderSpec(x.kind, x.index, x.minimum, x.maximum, atlas.label(x.index), atlas.info(x.index) or None)
             for x in m]
    return SliderLayout(motion=tuple(m), identity=tuple(i), calibrated=calibration is not None)


def place_offsets(layout: SliderLayout, motion: Mapping[int, float], identity: Mapping[int, float]
                  ) -> tuple[SliderLayout, list[float], list[float], dict[int, float]]:
    """Slider values for the given offsets, the layout widened to hold them, and the identity
    offsets that have no slider (kept so that they still apply)."""
    motion_values = [float(motion.get(s.index, 0.0)) for s in layout.motion]
    identity_values = [float(identity.get(s.index, 0.0)) for s in layout.identity]
    shown = set(layout.identity_indices)
    hidden = {i: float(v) for i, v in identity.items() if i not in shown and v}
    widened = SliderLayout(
        motion=tuple(s.widened_to(v) for s, v in zip(layout.motion, motion_values)),
        identity=tuple(s.widened_to(v) for s, v in zip(layout.identity, identity_values)),
        calibrated=layout.calibrated,
    )
    return widened, motion_values, identity_values, hidden


@dataclass(frozen=True)
class ExpressionSliderSpec:
    """A slider of the Expression group: a change of one measured quantity, in its physical unit."""

    key: str  # an EXPRESSION_CONTROLS name
    label: str
    info: str
    limit: float  # the slider spans -limit..limit
    step: float


# Ranges that real faces span (a few natural spreads of face_measures), not the controls' hard limits.
EXPRESSION_SLIDERS = (
    ExpressionSliderSpec("mouth_open", "Mouth opening", "inner-lip gap / inter-ocular distance", 0.4, 0.005),
    ExpressionSliderSpec("smile", "Smile", "mouth width / inter-ocular distance", 0.2, 0.005),
    ExpressionSliderSpec("eye_left", "Left eye", "lid gap / eye width (the subject's left)", 0.2, 0.005),
    ExpressionSliderSpec("eye_right", "Right eye", "lid gap / eye width (the subject's right)", 0.2, 0.005),
    ExpressionSliderSpec("brows", "Brows", "brow height / inter-ocular distance", 0.08, 0.002),
    ExpressionSliderSpec("yaw", "Yaw", "degrees; > 0 turns the nose to the image's right", 30.0, 0.5),
    ExpressionSliderSpec("pitch", "Pitch", "degrees; > 0 looks up", 20.0, 0.5),
    ExpressionSliderSpec("roll", "Roll", "degrees; > 0 turns the face counter-clockwise", 20.0, 0.5),
)

"""What a face looks like, in numbers a person can read: mouth, eyes, brows and head pose from the mesh.

`FACE_MEASURES` lists the quantities the direction atlas and the expression controls use, each
measured on aligned face crops with MediaPipe's face mesh (`sfd.pretrained.face_mesh_regions`):

    mouth_open   inner-lip gap / inter-ocular distance          (mouth_opening)
    mouth_width  mouth-corner distance / inter-ocular distance  (mouth_width: a smile widens it)
    eye_left     lid gap / eye width, the subject's left eye    (eye_opening)
    eye_right    the same, the subject's right eye
    brows        brow-to-eye distance / inter-ocular distance, mean of both brows (brow_height)
    yaw, pitch, roll   head pose in degrees (head_pose: yaw > 0 turns the nose to the image's
                 right, i.e. the subject's left; pitch > 0 looks up; roll > 0 turns the face
                 counter-clockwise in the image, its top towards the subject's right)
    move_x, move_y     face-oval centre in crop sides (> 0: right, down in the image)
    zoom         log of the face-oval size (0.01 = 1 % larger)

Comparable effects. A motion direction may change yaw by 2 degrees and the mouth opening by 0.01:
which is the bigger effect? Each quantity is divided by its *natural spread* (`MeasureSpec.spread`),
the standard deviation of that quantity over real faces: measured with this mesh on 400 frames
(8 each from 50 clips of different people, VoxCeleb-style 128 px crops of /work/data/crops128)
and rounded. So "0.1" means a tenth of how much real faces differ in that respect, whatever
the quantity. These are fixed constants (not refitted per model), so atlases of different
models are comparable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from ..pretrained import face_mesh_regions as regions


@dataclass(frozen=True)
class MeasureSpec:
    key: str
    unit: str
    spread: float  # natural spread over real faces, in `unit` (see the module docstring)
    group: str  # the slider group a direction with this dominant effect goes to
    positive: str  # the name of a direction that increases the quantity
    negative: str  # ... and of one that decreases it


FACE_MEASURES: tuple[MeasureSpec, ...] = (
    MeasureSpec("mouth_open", "inner-lip gap / inter-ocular", 0.068, "Mouth", "mouth open", "mouth close"),
    MeasureSpec("mouth_width", "mouth width / inter-ocular", 0.047, "Mouth", "smile", "mouth narrow"),
    MeasureSpec("eye_left", "lid gap / eye width", 0.054, "Eyes", "open left eye", "blink left"),
    MeasureSpec("eye_right", "lid gap / eye width", 0.053, "Eyes", "open right eye", "blink right"),
    MeasureSpec("brows", "brow height / inter-ocular", 0.017, "Brows", "brows up", "brows down"),
    MeasureSpec("yaw", "degrees", 11.5, "Head", "turn left", "turn right"),
    MeasureSpec("pitch", "degrees", 9.0, "Head", "nod up", "nod down"),
    MeasureSpec("roll", "degrees", 4.0, "Head", "tilt right", "tilt left"),
    MeasureSpec("move_x", "crop sides", 0.015, "Head", "move right", "move left"),
    MeasureSpec("move_y", "crop sides", 0.015, "Head", "move down", "move up"),
    MeasureSpec("zoom", "log size", 0.025, "Head", "zoom in", "zoom out"),
)
MEASURE_KEYS = tuple(m.key for m in FACE_MEASURES)
MEASURE_INDEX = {key: i for i, key in enumerate(MEASURE_KEYS)}
NATURAL_SPREAD = np.array([m.spread for m in FACE_MEASURES])
# Both eyes moving together are one effect ("blink"), not two competing ones.
BOTH_EYES = ("eye_left", "eye_right")
BOTH_EYES_NAMES = ("eyes wide", "blink")
GROUP_ORDER = ("Head", "Mouth", "Eyes", "Brows", "Other")

# Naming rules, on effects in natural spreads per calibration std:
DOMINANCE = 1.5  # the strongest effect must be this many times the runner-up, else "mixed"
SUBTLE = 0.01  # a strongest effect under this is "subtle": +-3 std moves the face < 3 % of a spread


def measure_points(points: torch.Tensor, side: float) -> torch.Tensor:
    """(N, len(FACE_MEASURES)) measures of mesh points (N, 468, 3) in the pixels of a `side` px crop;
    differentiable."""
    eye_left, eye_right = regions.eye_opening(points)
    brow_left, brow_right = regions.brow_height(points)
    pose = regions.head_pose(points)
    centre = regions.face_centre(points) / side
    return torch.stack([regions.mouth_opening(points), regions.mouth_width(points), eye_left, eye_right,
                        (brow_left + brow_right) / 2, pose[:, 0], pose[:, 1], pose[:, 2],
                        centre[:, 0], centre[:, 1], torch.log(regions.face_scale(points))], dim=1)


_MESHES: dict[str, torch.nn.Module] = {}
_MESH_LOCK = threading.Lock()


def face_mesh(device: torch.device | str = "cpu") -> torch.nn.Module:
    """The converted MediaPipe face mesh on `device`, loaded once per process."""
    key = str(torch.device(device))
    with _MESH_LOCK:
        if key not in _MESHES:
            from ..pretrained.face_mesh import FaceMesh

            _MESHES[key] = FaceMesh.from_pretrained(device=device)
        return _MESHES[key]


def measure_faces(images: torch.Tensor, mesh: torch.nn.Module | None = None) -> torch.Tensor:
    """(N, len(FACE_MEASURES)) measures of whole aligned face crops (N, 3, S, S) in [-1, 1]
    (model outputs or real crops); differentiable when grad is on."""
    mesh = mesh if mesh is not None else face_mesh(images.device)
    points = mesh.on_aligned(images.float()).points
    return measure_points(points, float(images.shape[-1]))


def effect_phrase(key: str, value: float) -> str:
    """'turn left 0.12': what a signed effect (natural spreads) does, by name."""
    spec = FACE_MEASURES[MEASURE_INDEX[key]]
    return f"{spec.positive if value >= 0 else spec.negative} {abs(value):.3g}"


def name_effects(effects: np.ndarray | dict) -> tuple[str, str, str]:
    """Name, group and tooltip of a direction from its effects (natural spreads per calibration std,
    one per FACE_MEASURES entry, or a {key: value} dict).

    The strongest effect names it ("mouth open", "turn left", ...) when it is at least DOMINANCE
    times the runner-up; both eyes moving the same way count as one effect ("blink", "eyes wide").
    Otherwise it is "mixed" (group: the two contenders' shared group, else Other), and its tooltip
    names its two largest effects. A strongest effect under SUBTLE is "subtle" (Other).
    """
    if isinstance(effects, dict):
        effects = np.array([float(effects.get(k, 0.0)) for k in MEASURE_KEYS])
    effects = np.asarray(effects, dtype=np.float64)
    if effects.shape != (len(FACE_MEASURES),) or not np.isfinite(effects).all():
        raise ValueError(f"expected {len(FACE_MEASURES)} finite effects, got {effects}")
    # candidates: (strength, signed value, name, group, phrase)
    candidates = []
    left, right = (effects[MEASURE_INDEX[k]] for k in BOTH_EYES)
    eyes_together = left * right > 0 and min(abs(left), abs(right)) >= max(abs(left), abs(right)) / DOMINANCE
    for spec, value in zip(FACE_MEASURES, effects):
        if eyes_together and spec.key in BOTH_EYES:
            continue
        name = spec.positive if value >= 0 else spec.negative
        candidates.append((abs(value), name, spec.group, effect_phrase(spec.key, value)))
    if eyes_together:
        both = (left + right) / 2
        name = BOTH_EYES_NAMES[0] if both >= 0 else BOTH_EYES_NAMES[1]
        candidates.append((abs(both), name, "Eyes", f"{name} {abs(both):.3g}"))
    candidates.sort(key=lambda c: -c[0])
    (top, name, group, phrase), (second, _, second_group, second_phrase) = candidates[0], candidates[1]
    effects_text = f"{phrase}, {second_phrase} (natural spreads per calibration std)"
    if top < SUBTLE:
        return "subtle", "Other", f"barely moves the face: {effects_text}"
    if top >= DOMINANCE * second:
        return name, group, f"{phrase} (next: {second_phrase}; natural spreads per calibration std)"
    return "mixed", group if group == second_group else "Other", f"mixed: {effects_text}"

"""`Atlas`: a measured name, group and preview for every motion direction of a model.

LIA-X labels its sliders by hand; here each motion direction is moved and measured instead, on
the rendered faces themselves. For direction i, a few calibration faces are moved to
+-k/2 and +-k standard deviations of coefficient i (the calibration's std when `calibration.json`
is there, else the faces' own spread) and rendered; the face mesh measures mouth opening and
width, each eye's opening, brow height, yaw / pitch / roll, face position and size
(`sfd.semantics.face_measures`) on every render. The effect of the direction on each quantity
is the least-squares slope of (measure - measure of the unmoved render) over the step, averaged
over the faces: quantity units per calibration std. Divided by each quantity's natural spread
over real faces the effects are comparable, and the strongest names the direction
(`name_effects`: "mouth open", "turn left", "blink", ..., "mixed" with its two largest effects
in the tooltip when none dominates). The generator's flow at +-k std is measured too
(`classify_flow`) and kept as a second opinion. A preview strip shows the first face from -k to
+k std. Stored with the weights as `atlas.json`:

    {"version": 2, "k_std": 2.0, "num_faces": F, "size": S, "spread": "calibration" | "faces",
     "measures": {"mouth_open": {"unit": "...", "spread": 0.068}, ...},
     "directions": [{"index": i, "name": "turn left", "group": "Head", "info": "turn left 0.12 (next: ...)",
                     "offset": k * std_i, "std": std_i,
                     "effects": {"mouth_open": ..., ...},         # quantity units per calibration std
                     "effects_spread": {"mouth_open": ..., ...},  # the same over the natural spreads
                     "flow_name": "yaw", "flow_group": "Head",
                     "measurements": {...FlowMeasurements...}, "preview": "atlas/direction_00.png"}]}

and the previews as `atlas/direction_XX.png` (one strip per direction) next to it. Version 1
files (flow names only) still load: they have no effects, so no tooltips and no expression
controls from the atlas.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import SFDError, WeightsError
from ..expression_strength import check_expression_strength
from ..media import save_image
from ..models import SFDModel
from .calibration import Calibration
from .face_measures import FACE_MEASURES, GROUP_ORDER, MEASURE_KEYS, NATURAL_SPREAD, face_mesh, measure_faces, name_effects
from .flow_classifier import classify_flow
from .weights_files import read_weights_json, write_json_atomically

log = logging.getLogger(__name__)

ATLAS_FILENAME = "atlas.json"
ATLAS_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: flow names only
PREVIEW_FOLDER = "atlas"
DEFAULT_K_STD = 2.0
DEFAULT_PREVIEW_STEPS = 5
DEFAULT_PREVIEW_SIZE = 80
# Steps along a direction, as fractions of k_std (both signs): two sizes show whether it is linear.
STEP_FRACTIONS = (1.0, 0.5)  # +-k first: the flow is read there


@dataclass
class AtlasDirection:
    """One motion direction: its name, group, what it does and its preview (a path relative to the atlas).

    `effects`: quantity units per calibration std for each of FACE_MEASURES (empty in a version 1
    atlas); `measurements`: the flow's (a second opinion, named `flow_name`); `info`: the tooltip.
    """

    index: int
    name: str
    group: str
    measurements: dict[str, float]
    offset: float = 0.0
    preview: str | None = None
    effects: dict[str, float] = field(default_factory=dict)
    std: float = 0.0
    info: str = ""
    flow_name: str | None = None
    flow_group: str | None = None

    @property
    def effects_spread(self) -> dict[str, float]:
        """The effects in natural spreads per calibration std (comparable across quantities)."""
        return {m.key: self.effects[m.key] / m.spread for m in FACE_MEASURES if m.key in self.effects}

    def to_dict(self) -> dict:
        data = {"index": self.index, "name": self.name, "group": self.group, "offset": self.offset}
        if self.effects:
            data.update(info=self.info, std=self.std, effects=dict(self.effects),
                        effects_spread={k: round(v, 6) for k, v in self.effects_spread.items()})
        if self.flow_name is not None:
            data.update(flow_name=self.flow_name, flow_group=self.flow_group)
        data["measurements"] = dict(self.measurements)
        if self.preview is not None:
            data["preview"] = self.preview
        return data


@dataclass
class Atlas:
    """Names, groups, measured effects and previews of a model's motion directions (one per index).

    `previews` holds preview strips (RGB uint8) made by `build_atlas` and not yet saved; `root`
    is the folder the atlas was loaded from or saved to (where its preview files are).
    """

    directions: list[AtlasDirection]
    k_std: float = DEFAULT_K_STD
    num_faces: int = 0
    size: int = 0
    spread: str = "faces"
    previews: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    root: Path | None = None

    def __post_init__(self):
        indices = [d.index for d in self.directions]
        if indices != list(range(len(indices))):
            raise ValueError(f"atlas directions must be indexed 0..{len(indices) - 1} in order, got {indices}")

    def __len__(self) -> int:
        return len(self.directions)

    def direction(self, index: int) -> AtlasDirection:
        if not 0 <= index < len(self.directions):
            raise IndexError(f"motion direction {index} is not in the atlas (it has {len(self.directions)})")
        return self.directions[index]

    def label(self, index: int) -> str:
        """A slider label: the direction's name, numbered when an earlier direction has the same name ("yaw 2")."""
        name = self.direction(index).name
        same = sum(1 for d in self.directions[:index] if d.name == name)
        return name if same == 0 else f"{name} {same + 1}"

    def info(self, index: int) -> str:
        """The slider's tooltip: the measured effects behind the name ("" for a version 1 atlas)."""
        return self.direction(index).info

    def group(self, index: int) -> str:
        """Head, Mouth, Eyes, Brows or Other."""
        return self.direction(index).group

    def groups(self) -> dict[str, list[int]]:
        """Direction indices per group, groups in the order Head, Mouth, Eyes, Brows, Other (empty ones left out)."""
        found: dict[str, list[int]] = {g: [] for g in GROUP_ORDER}
        for d in self.directions:
            found.setdefault(d.group, []).append(d.index)
        return {g: found[g] for g in found if found[g]}

    @property
    def has_effects(self) -> bool:
        """Whether the directions were measured on the faces (version 2), not only on the flow."""
        return bool(self.directions) and all(d.effects and d.std > 0 for d in self.directions)

    def effect_matrix(self) -> np.ndarray | None:
        """(len(FACE_MEASURES), directions): change of each quantity (its units) per unit of each motion
        coefficient, as measured on the atlas's faces; None without measured effects."""
        if not self.has_effects:
            return None
        return np.array([[d.effects.get(key, 0.0) / d.std for d in self.directions] for key in MEASURE_KEYS])

    def expression_strength_map(self, strength: float) -> np.ndarray:
        """(N, N) linear map of a motion change that scales what it does to the face's expression
        by `strength` and leaves what it does to head pose and position (the "Head" measures) as it
        was, to first order through the measured effects.

        The change splits into its part in the row space of the Head effects (all that moves
        yaw, pitch, roll, position or size) and the rest, which moves none of them; the rest is
        scaled. The coefficients are those of an orthonormal basis, so the split is orthogonal
        in the latent too. 1 is the identity map; 0 keeps only the part that moves the head. The
        measures are the mesh's: a dropping jaw changes its pitch and face oval too, so part of a
        mouth's motion counts as the head's and stays unscaled.
        """
        check_expression_strength(strength)
        matrix = self.effect_matrix()
        if matrix is None:
            raise SFDError("expression strength needs the direction atlas's measured effects (atlas.json version 2); "
                           "build one with: python -m sfd atlas WEIGHTS --faces DATA")
        head = matrix[[i for i, m in enumerate(FACE_MEASURES) if m.group == "Head"]]
        u, singular, _ = np.linalg.svd(head.T, full_matrices=False)
        pose = u[:, singular > singular.max() * 1e-6]  # orthonormal basis of the head row space
        keep_rest = np.eye(len(self)) - pose @ pose.T
        return np.eye(len(self)) + (strength - 1.0) * keep_rest

    def motion_std(self) -> np.ndarray | None:
        """The step std of each direction (the calibration's when the atlas was built with one)."""
        return np.array([d.std for d in self.directions]) if self.has_effects else None

    def preview_path(self, index: int) -> Path | None:
        """The preview strip file of a direction, when the atlas came from (or went to) a folder that has it."""
        preview = self.direction(index).preview
        if preview is None or self.root is None:
            return None
        path = self.root / preview
        return path if path.is_file() else None

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        data = {"version": ATLAS_VERSION, "k_std": self.k_std, "num_faces": self.num_faces, "size": self.size,
                "spread": self.spread}
        if self.has_effects:
            data["measures"] = {m.key: {"unit": m.unit, "spread": m.spread} for m in FACE_MEASURES}
        data["directions"] = [d.to_dict() for d in self.directions]
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = "atlas") -> "Atlas":
        if data.get("version") not in READABLE_VERSIONS:
            raise WeightsError(f"{source}: unsupported atlas version {data.get('version')!r} "
                               f"(this sfd reads versions {', '.join(map(str, READABLE_VERSIONS))})")
        try:
            directions = [AtlasDirection(index=int(d["index"]), name=str(d["name"]), group=str(d["group"]),
                                         measurements={k: float(v) for k, v in d.get("measurements", {}).items()},
                                         offset=float(d.get("offset", 0.0)), preview=d.get("preview"),
                                         effects={k: float(v) for k, v in d.get("effects", {}).items()},
                                         std=float(d.get("std", 0.0)), info=str(d.get("info", "")),
                                         flow_name=d.get("flow_name"), flow_group=d.get("flow_group"))
                          for d in data["directions"]]
            directions.sort(key=lambda d: d.index)
            return cls(directions, k_std=float(data.get("k_std", DEFAULT_K_STD)),
                       num_faces=int(data.get("num_faces", 0)), size=int(data.get("size", 0)),
                       spread=str(data.get("spread", "faces")))
        except (KeyError, TypeError, ValueError) as error:
            raise WeightsError(f"{source} is not a valid direction atlas: {type(error).__name__}: {error}") from error

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `atlas.json` and the preview strips (`atlas/direction_XX.png`) into `folder`."""
        folder = Path(folder)
        for index, strip in self.previews.items():
            relative = f"{PREVIEW_FOLDER}/direction_{index:02d}.png"
            save_image(strip, folder / relative)
            self.directions[index].preview = relative
        path = write_json_atomically(self.to_dict(), folder / ATLAS_FILENAME)
        self.root = folder
        return path

    @classmethod
    def load(cls, weights: str | os.PathLike, revision: str | None = None) -> "Atlas | None":
        """The atlas stored with a weights folder or Hub repo (or an atlas.json path); None if it has none.

        Raises WeightsError for a file that exists but is malformed.
        """
        found = read_weights_json(weights, ATLAS_FILENAME, revision)
        if found is None:
            return None
        data, path = found
        atlas = cls.from_dict(data, source=str(path))
        atlas.root = path.parent
        return atlas


def build_atlas(model: SFDModel, faces, calibration: Calibration | None = None, *, k_std: float = DEFAULT_K_STD,
                preview_steps: int = DEFAULT_PREVIEW_STEPS, preview_size: int = DEFAULT_PREVIEW_SIZE,
                mesh: torch.nn.Module | None = None) -> Atlas:
    """Measure and name every motion direction of `model` on `faces`.

    Args:
        model: the SFD model (its generator must return flows).
        faces: aligned face crops: RGB uint8 (F, H, W, 3), a list of (H, W, 3) arrays or of
            `FaceCrop`s (resized to the model's size when needed), or a float tensor
            (F, 3, size, size) in [-1, 1]. A few (4-8) are enough: the effects are averaged over them.
        calibration: its motion std sets the step of each direction; without it (or when it was made
            for another model) the faces' own spread is used.
        k_std: faces are moved to +-k_std/2 and +-k_std standard deviations of each coefficient.
        preview_steps, preview_size: frames per preview strip (from -k to +k std) and their side in px.
        mesh: the face mesh to measure with (default: `face_mesh()`, MediaPipe's, converted).

    Returns the atlas with its previews in memory; `atlas.save(folder)` writes both.
    """
    if not (math.isfinite(k_std) and k_std > 0):
        raise ValueError(f"k_std must be a positive number, got {k_std}")
    if preview_steps < 1 or preview_size < 8:
        raise ValueError(f"need at least 1 preview step of at least 8 px, got {preview_steps} of {preview_size} px")
    parameter = next(model.parameters())
    size = model.config.size
    images = _face_tensor(faces, size).to(device=parameter.device, dtype=parameter.dtype)
    mesh = mesh if mesh is not None else face_mesh(parameter.device)
    steps = [sign * fraction * k_std for fraction in STEP_FRACTIONS for sign in (1.0, -1.0)]
    step_column = torch.tensor(steps, dtype=torch.float64, device=images.device).repeat_interleave(images.shape[0])[:, None]
    with torch.inference_mode():
        source = model.encode(images, with_features=True)
        spread, spread_source = _motion_spread(model, calibration, source.motion)
        count = images.shape[0]
        unmoved = model.generate(model.compose(source.identity, source.motion), source.features)
        unmoved_measures = measure_faces(unmoved, mesh).double()
        first = source.select(slice(0, 1))
        preview_at = torch.tensor(np.linspace(-k_std, k_std, preview_steps), dtype=source.motion.dtype,
                                  device=source.motion.device)
        # One batch per direction: all faces at every step (step-major), plus the first face's preview.
        repeats = len(steps)
        batch_identity = torch.cat([source.identity.repeat(repeats, 1), first.identity.expand(preview_steps, -1)])
        batch_features = tuple(torch.cat([f.repeat(repeats, *[1] * (f.ndim - 1)),
                                          f[:1].expand(preview_steps, *f.shape[1:])]) for f in source.features)
        baseline = unmoved_measures.repeat(repeats, 1)
        directions, previews = [], {}
        for index in range(model.config.motion_dim):
            std = float(spread[index])
            motion = torch.cat([source.motion.repeat(repeats, 1), first.motion.expand(preview_steps, -1)])
            motion[:repeats * count, index] += (step_column.squeeze(1) * std).to(motion)
            motion[repeats * count:, index] += preview_at * std
            generated, flow = model.generator(model.compose(batch_identity, motion), batch_features, return_flow=True)
            measured = measure_faces(generated[:repeats * count], mesh).double()
            # least-squares slope through the unmoved face, per face, then over the faces
            change = measured - baseline
            slope = (step_column * change).view(repeats, count, -1).sum(0) / float(np.sum(np.square(steps)))
            effects = dict(zip(MEASURE_KEYS, (round(float(v), 7) for v in slope.mean(0).cpu())))
            name, group, info = name_effects(np.array(list(effects.values())) / NATURAL_SPREAD)
            # the flow at +-k std (the first two steps) as a second opinion
            response = (flow[:count] - flow[count:2 * count]).float() / 2
            flow_name, flow_group, measurements = classify_flow(response, size)
            directions.append(AtlasDirection(index, name, group, measurements, offset=round(k_std * std, 6),
                                             effects=effects, std=round(std, 7), info=info,
                                             flow_name=flow_name, flow_group=flow_group))
            previews[index] = _preview_strip(generated[repeats * count:], preview_size)
            log.info("motion direction %d: %s (%s; flow: %s)", index, name, info, flow_name)
    return Atlas(directions, k_std=k_std, num_faces=count, size=size, spread=spread_source, previews=previews)


def _face_tensor(faces, size: int) -> torch.Tensor:
    """Face crops as a float tensor (F, 3, size, size) in [-1, 1]."""
    if isinstance(faces, torch.Tensor):
        images = faces.float()
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected face crops (F, 3, H, W), got shape {tuple(images.shape)}")
        if images.shape[-1] != size or images.shape[-2] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                                     antialias=True, align_corners=False)
        return images
    if isinstance(faces, np.ndarray):
        crops = list(faces) if faces.ndim == 4 else [faces]
    else:  # arrays, or FaceCrop objects from a FaceSampler
        crops = [np.asarray(getattr(f, "pixels", f)) for f in faces]
    if not crops:
        raise SFDError("no faces to build the atlas on")
    resized = []
    for crop in crops:
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 face crops (H, W, 3), got {crop.dtype} {crop.shape}")
        if crop.shape[:2] != (size, size):
            shrink = crop.shape[0] > size
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        resized.append(crop)
    batch = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()
    return batch.div_(127.5).sub_(1.0)


def _motion_spread(model: SFDModel, calibration: Calibration | None, motion: torch.Tensor) -> tuple[np.ndarray, str]:
    """The std of each motion coefficient: the calibration's, else the faces' own (never zero)."""
    if calibration is not None and calibration.fits(model) and (calibration.motion_std > 0).all():
        return calibration.motion_std.copy(), "calibration"
    if calibration is not None:
        log.warning("the calibration does not fit this model (or has a zero std); using the faces' own spread")
    values = motion.double().cpu().numpy()
    spread = values.std(0) if values.shape[0] > 1 else np.zeros(values.shape[1])
    # A coefficient the faces do not vary along gets the typical size of a coefficient instead.
    fallback = float(np.sqrt((values ** 2).mean())) or 1.0
    return np.where(spread > 1e-6 * fallback, spread, fallback), "faces"


def _preview_strip(images: torch.Tensor, side: int) -> np.ndarray:
    """Generated images (n, 3, size, size) in [-1, 1] side by side, each `side` px, RGB uint8."""
    frames = images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    interpolation = cv2.INTER_AREA if frames.shape[1] > side else cv2.INTER_LINEAR
    return np.hstack([cv2.resize(f, (side, side), interpolation=interpolation) for f in frames])

"""`classify_flow`: measure and name what a change of the generator's flow does to a face.

The input is a flow difference in grid_sample units, as `FlowGenerator` returns flows: a
backward field (output pixel p samples the source at p + flow(p)). A small change `delta` of it
moves the image content by about `-delta`, so everything here is measured on the content motion
`m = -delta * size / 2`, in pixels of the aligned crop (1 grid unit = size / 2 px). A field given
for a batch of faces is averaged over the batch first.

Measurement
-----------
1. `m` is smoothed with a Gaussian (sigma = 1/64 of the side): pixel noise goes, motion of
   facial parts (eyelids, lips: several percent of the side) stays.
2. Global part. Over the rigid part of the face (FACE_REGION minus the eye and mouth bands, so
   that lips and eyelids do not pull the fit) a least-squares model is fitted:

       m_x = shift_x + a_u u + a_v v + yaw   (1 - u^2)
       m_y = shift_y + b_u u + b_v v + pitch (1 - v^2)

   with u, v the position relative to the face region's centre, 1 at its edges. The linear
   terms give the similarity part, zoom (mean of the diagonal) and roll (antisymmetric part,
   an angle), plus the rest of the affine (stretch, shear). `yaw` and `pitch` are the proxies
   for turning the head: a turning head is a rotating cylinder, whose centre moves further than
   its sides (dx ~ cos of the horizontal angle); a translation moves all of it alike. So `yaw`
   is how much more the face's centre moves sideways than its left and right edges (`pitch`:
   up/down versus its top and bottom), in pixels.
3. Local part. The residual `m - model` in the mouth band and the eye band (fixed fractions of
   the crop, below): its RMS, and for the mouth how far the lower half moves down relative to
   the upper half (`mouth_open_px`, > 0: the lips part).

Naming
------
Each candidate gets a strength in pixels: |shift_x|, |shift_y|, |yaw|, |pitch|, the
displacement at the face's side edge of the roll and the zoom (angle or scale times the face
half-width), and the RMS residual of each band. The strongest names the direction when it is at
least `DOMINANCE` times the runner-up; otherwise it is "mixed" (group: the two contenders'
group when they share one, else Other). A strongest motion under `SUBTLE_FRACTION` of the side is
"subtle" (Other). The mouth is "mouth open" when the opening is at least `MOUTH_OPEN_SHARE` of
its RMS, else "mouth" (a smile, pursed lips); the eyes are "blink" when vertical motion carries
at least `BLINK_VERTICAL_SHARE` of their motion energy, else "eyes" (gaze).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class CropRegion:
    """A rectangle of the aligned crop in fractions of its side: rows top..bottom, columns left..right."""

    top: float
    bottom: float
    left: float
    right: float

    def mask(self, height: int, width: int) -> np.ndarray:
        """Boolean (height, width) mask of the grid cells whose centres fall inside."""
        rows = (np.arange(height) + 0.5) / height
        cols = (np.arange(width) + 0.5) / width
        return ((rows >= self.top) & (rows < self.bottom))[:, None] & ((cols >= self.left) & (cols < self.right))[None]


# Where the default crop (CropBox.from_face: scale 2.0, offset_y -0.05) puts the face. Measured
# with MTCNN on the 22 shared portraits with a face: face box x 0.28-0.72, y 0.26-0.84; eyes at
# y 0.49 (x 0.40, 0.60); nose tip y 0.61; mouth corners y 0.71 (x 0.42, 0.58); all +-0.03.
FACE_REGION = CropRegion(top=0.22, bottom=0.90, left=0.25, right=0.75)   # forehead to chin
EYE_BAND = CropRegion(top=0.40, bottom=0.56, left=0.30, right=0.70)      # brows to lower lids
MOUTH_BAND = CropRegion(top=0.64, bottom=0.86, left=0.36, right=0.64)    # below the nose to the chin

SMOOTHING = 1 / 64          # Gaussian sigma, as a fraction of the side
SUBTLE_FRACTION = 0.004     # strongest motion under this fraction of the side: "subtle" (1 px at 256)
DOMINANCE = 1.5             # the winner must be this many times the runner-up, else "mixed"
MOUTH_OPEN_SHARE = 0.5      # |opening| / mouth RMS from which the mouth motion is "mouth open"
BLINK_VERTICAL_SHARE = 0.6  # share of vertical motion energy in the eye band from which it is "blink"

GROUPS = {
    "roll": "Head", "yaw": "Head", "pitch": "Head", "shift x": "Head", "shift y": "Head", "zoom": "Head",
    "mouth open": "Mouth", "mouth": "Mouth", "blink": "Eyes", "eyes": "Eyes", "mixed": "Other", "subtle": "Other",
}


@dataclass
class FlowMeasurements:
    """What a flow change does to the face, in pixels of the aligned crop unless the name says.

    Signs: shift_x > 0 moves the face right, shift_y > 0 down; zoom > 0 enlarges it; roll > 0
    turns it clockwise on screen; yaw > 0 moves its centre right relative to its sides; pitch > 0
    moves its centre down relative to its top and bottom; mouth_open > 0 parts the lips;
    mouth_width > 0 widens the mouth; eyes_vertical > 0 moves the eye band down (lids closing).
    """

    shift_x_px: float
    shift_y_px: float
    zoom_percent: float
    zoom_px: float
    roll_deg: float
    roll_px: float
    yaw_px: float
    pitch_px: float
    stretch_px: float          # anisotropic scale (wider vs taller), at the face's edge
    shear_px: float
    mouth_px: float            # RMS local motion in the mouth band
    mouth_open_px: float
    mouth_width_px: float
    eyes_px: float             # RMS local motion in the eye band
    eyes_vertical_px: float
    eyes_vertical_share: float  # share of the eye band's local motion energy that is vertical
    fit_residual_px: float     # RMS of what the global model leaves unexplained on the rigid face
    face_motion_px: float      # RMS motion over the whole face region

    def as_dict(self, decimals: int = 5) -> dict[str, float]:
        return {key: round(float(value), decimals) for key, value in asdict(self).items()}

    def strengths(self) -> dict[str, float]:
        """The candidate names and how strongly (px) the flow does each."""
        return {
            "roll": abs(self.roll_px), "yaw": abs(self.yaw_px), "pitch": abs(self.pitch_px),
            "shift x": abs(self.shift_x_px), "shift y": abs(self.shift_y_px), "zoom": abs(self.zoom_px),
            "mouth": self.mouth_px, "eyes": self.eyes_px,
        }


def content_motion(flow_delta, size: int) -> np.ndarray:
    """The content motion (2, H, W) in crop pixels of a flow difference (2, H, W) or (B, 2, H, W)."""
    if isinstance(flow_delta, torch.Tensor):
        flow_delta = flow_delta.detach().float().cpu().numpy()
    delta = np.asarray(flow_delta, dtype=np.float64)
    if delta.ndim == 4:
        delta = delta.mean(0)
    if delta.ndim != 3 or delta.shape[0] != 2:
        raise ValueError(f"expected a flow field (2, H, W) or (B, 2, H, W), got shape {np.shape(flow_delta)}")
    if min(delta.shape[1:]) < 16:
        raise ValueError(f"the flow field is too coarse to measure ({delta.shape[1]}x{delta.shape[2]}); "
                         "need 16x16 or more")
    if not np.isfinite(delta).all():
        raise ValueError("the flow field holds non-finite values")
    return -delta * (size / 2.0)


def measure_flow(flow_delta, size: int) -> FlowMeasurements:
    """Global (similarity, yaw/pitch proxies) and local (mouth, eyes) motion of a flow change.

    `flow_delta`: a flow difference in grid_sample units; `size`: the side of the crop in pixels
    (the flow grid may be coarser, e.g. size/2).
    """
    motion = content_motion(flow_delta, size)
    height, width = motion.shape[1:]
    sigma = SMOOTHING * width
    motion = np.stack([cv2.GaussianBlur(c, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE) for c in motion])

    # Cell centres in crop pixels, then relative to the face region (u, v = +-1 at its edges).
    x = (np.arange(width) + 0.5) * size / width
    y = (np.arange(height) + 0.5) * size / height
    cx, cy = (FACE_REGION.left + FACE_REGION.right) / 2 * size, (FACE_REGION.top + FACE_REGION.bottom) / 2 * size
    rx, ry = (FACE_REGION.right - FACE_REGION.left) / 2 * size, (FACE_REGION.bottom - FACE_REGION.top) / 2 * size
    v, u = np.meshgrid((y - cy) / ry, (x - cx) / rx, indexing="ij")
    ones = np.ones_like(u)
    design_x = np.stack([ones, u, v, 1 - u ** 2])
    design_y = np.stack([ones, u, v, 1 - v ** 2])

    face = FACE_REGION.mask(height, width)
    eyes = EYE_BAND.mask(height, width)
    mouth = MOUTH_BAND.mask(height, width)
    rigid = face & ~eyes & ~mouth
    coef_x = np.linalg.lstsq(design_x[:, rigid].T, motion[0][rigid], rcond=None)[0]
    coef_y = np.linalg.lstsq(design_y[:, rigid].T, motion[1][rigid], rcond=None)[0]
    residual = motion - np.stack([np.tensordot(coef_x, design_x, 1), np.tensordot(coef_y, design_y, 1)])

    shift_x, a_u, a_v, yaw = coef_x
    shift_y, b_u, b_v, pitch = coef_y
    # The affine part per pixel: d m_x / dx, d m_x / dy, d m_y / dx, d m_y / dy.
    sxx, sxy, syx, syy = a_u / rx, a_v / ry, b_u / rx, b_v / ry
    scale, angle = (sxx + syy) / 2, (syx - sxy) / 2  # a small rotation by angle: m = angle * (-dy, dx)
    reach = rx  # lever arm of rotation and zoom: the face's half-width

    mouth_open = _mean(residual[1], _lower_half(mouth)) - _mean(residual[1], mouth & ~_lower_half(mouth))
    mouth_width = _mean(residual[0], _right_half(mouth)) - _mean(residual[0], mouth & ~_right_half(mouth))
    eye_energy = (residual[:, eyes] ** 2).sum()
    return FlowMeasurements(
        shift_x_px=shift_x, shift_y_px=shift_y,
        zoom_percent=100 * scale, zoom_px=scale * reach,
        roll_deg=float(np.degrees(angle)), roll_px=angle * reach,
        yaw_px=yaw, pitch_px=pitch,
        stretch_px=(sxx - syy) / 2 * reach, shear_px=(sxy + syx) / 2 * reach,
        mouth_px=_rms(residual, mouth), mouth_open_px=mouth_open, mouth_width_px=mouth_width,
        eyes_px=_rms(residual, eyes), eyes_vertical_px=_mean(residual[1], eyes),
        eyes_vertical_share=float((residual[1][eyes] ** 2).sum() / eye_energy) if eye_energy > 1e-12 else 0.0,
        fit_residual_px=_rms(residual, rigid), face_motion_px=_rms(motion, face),
    )


def name_motion(measurements: FlowMeasurements, size: int) -> tuple[str, str]:
    """`(name, group)` of measured motion, by the rules in this module's docstring."""
    ranked = sorted(measurements.strengths().items(), key=lambda item: -item[1])
    (best, strength), (runner_up, second) = ranked[0], ranked[1]
    if strength < SUBTLE_FRACTION * size:
        return "subtle", GROUPS["subtle"]
    if strength < DOMINANCE * second:
        shared = GROUPS[best] if GROUPS[best] == GROUPS[runner_up] else "Other"
        return "mixed", shared
    if best == "mouth":
        opens = abs(measurements.mouth_open_px) >= MOUTH_OPEN_SHARE * measurements.mouth_px
        best = "mouth open" if opens else "mouth"
    elif best == "eyes":
        best = "blink" if measurements.eyes_vertical_share >= BLINK_VERTICAL_SHARE else "eyes"
    return best, GROUPS[best]


def classify_flow(flow_delta, size: int) -> tuple[str, str, dict[str, float]]:
    """Name a flow change: `(name, group, measurements)`.

    `flow_delta` (2, H, W) or (B, 2, H, W), numpy or torch, in grid_sample units (the difference
    between the flow of a moved and of the unmoved face); `size`: the crop side in pixels.
    Names: roll, yaw, pitch, shift x, shift y, zoom (group Head); mouth open, mouth (Mouth);
    blink, eyes (Eyes); mixed, subtle (Other, or the contenders' shared group for mixed).
    """
    measurements = measure_flow(flow_delta, size)
    name, group = name_motion(measurements, size)
    return name, group, measurements.as_dict()


def _rms(field: np.ndarray, mask: np.ndarray) -> float:
    return float(np.sqrt((field[:, mask] ** 2).sum(0).mean())) if mask.any() else 0.0


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else 0.0


def _lower_half(mask: np.ndarray) -> np.ndarray:
    rows = np.nonzero(mask.any(1))[0]
    middle = (rows[0] + rows[-1] + 1) / 2
    return mask & (np.arange(mask.shape[0]) >= middle)[:, None]


def _right_half(mask: np.ndarray) -> np.ndarray:
    cols = np.nonzero(mask.any(0))[0]
    middle = (cols[0] + cols[-1] + 1) / 2
    return mask & (np.arange(mask.shape[1]) >= middle)[None]

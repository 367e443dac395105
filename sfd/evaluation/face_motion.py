"""Does the output follow the driver? Measures from dlib's 68 landmarks, and scores over a clip.

AKD alone hides a model that does not move: an output that keeps the source's expression can sit
close to the driver's landmarks when the driver moves little. So beside AKD we score *motion
following*: the correlation over time, output vs driver, of

- the inner-mouth opening (mean gap of the three inner-lip point pairs),
- the eye opening (lid gap over eye width, both eyes averaged),
- head pose: the face centre (x and y) and roll (the angle of the line through the eye centres),
  averaged over the three.

Openings are in units of the frame's inter-ocular distance (outer eye corners), so face size does
not enter; the centre is in units of the series' median inter-ocular distance, one length for
the whole clip. Divided frame by frame, a position would move with every reading of the eye
corners (dlib moves them by a few per cent when the lids shut), by as much as the face is far
from the image's corner: on the same person's 19 test clips that noise took the pose r of a
perfect 64 px model from 0.91 to 0.82. The do-nothing baseline (every output frame = the source)
has constant measures: its correlations are 0 by definition here, and a perfect copy scores ~1. Beside them, how wide the
mouth moves (`mouth_amplitude`: the output's spread of the mouth opening over the driver's; doing
nothing 0, a copy 1), which a correlation cannot see.

Points follow the iBUG 68-point layout, 0-based: jaw 0-16, brows 17-26, nose 27-35, eyes 36-41
(the image's left eye) and 42-47, outer lips 48-59, inner lips 60-67.
"""

from __future__ import annotations

import numpy as np

from ..pretrained.dlib_face import eye_openness, mouth_gap, inter_ocular_distance as inter_ocular

MIN_FRAMES = 3  # a correlation over fewer frames means nothing
STILL_FRACTION = 0.02  # an output series whose spread is under 2 % of the driver's counts as not moving


def face_measures(points) -> dict[str, np.ndarray]:
    """Per-frame mouth opening, eye opening, face centre x / y and roll (degrees) of (N, 68, 2) landmarks
    of one clip (the centre's unit is the clip's median inter-ocular distance: module doc).

    Rows that are NaN (no face found) give NaN measures.
    """
    p = np.asarray(points, np.float64)
    if p.ndim != 3 or p.shape[1:] != (68, 2):
        raise ValueError(f"expected (N, 68, 2) landmarks, got shape {p.shape}")
    iod = inter_ocular(p)
    mouth, eyes = mouth_gap(p), eye_openness(p)
    left, right = p[:, 36:42].mean(axis=1), p[:, 42:48].mean(axis=1)
    roll = np.degrees(np.arctan2(right[:, 1] - left[:, 1], right[:, 0] - left[:, 0]))
    centre = p.mean(axis=1)
    unit = np.nanmedian(iod) if np.isfinite(iod).any() else np.nan
    return {"mouth": mouth, "eyes": eyes, "centre_x": centre[:, 0] / unit, "centre_y": centre[:, 1] / unit,
            "roll": roll}


def _centred_pair(output, driver) -> tuple[np.ndarray, np.ndarray] | None:
    """Both series over the frames where both are finite, each minus its mean; None when there are
    too few such frames or the driver's series is constant there (nothing to follow)."""
    output, driver = np.asarray(output, np.float64), np.asarray(driver, np.float64)
    both = np.isfinite(output) & np.isfinite(driver)
    if both.sum() < MIN_FRAMES:
        return None
    d = driver[both] - driver[both].mean()
    if np.sqrt((d * d).sum()) <= 1e-9 * max(1.0, np.abs(driver[both]).max()):
        return None
    return output[both] - output[both].mean(), d


def correlation(output: np.ndarray, driver: np.ndarray) -> float:
    """Pearson correlation over the frames where both are finite.

    NaN when the driver's series is constant or too short (nothing to follow); 0 when the output's
    moves less than `STILL_FRACTION` as much as the driver's (it does not follow: the correlation of
    numerical noise with the driver would be a random number).
    """
    pair = _centred_pair(output, driver)
    if pair is None:
        return float("nan")
    o, d = pair
    d_norm, o_norm = np.sqrt((d * d).sum()), np.sqrt((o * o).sum())
    if o_norm <= STILL_FRACTION * d_norm:
        return 0.0
    return float((o * d).sum() / (o_norm * d_norm))


def spread_ratio(output: np.ndarray, driver: np.ndarray) -> float:
    """How much the output's series moves against the driver's: the ratio of their standard
    deviations over the frames where both are finite (1: as much, 0: still). A correlation cannot
    tell a mouth that opens a third as wide from one that opens fully; this can. NaN when the
    driver's series is constant or too short."""
    pair = _centred_pair(output, driver)
    if pair is None:
        return float("nan")
    o, d = pair
    return float(np.sqrt((o * o).sum() / (d * d).sum()))


def following(output_points, driver_points) -> dict[str, float]:
    """Mouth, eye and pose correlations of output vs driver landmarks (N, 68, 2), and how wide the
    output's mouth moves against the driver's (`mouth_amplitude`, `spread_ratio`)."""
    out, drv = face_measures(output_points), face_measures(driver_points)
    pose = [correlation(out[k], drv[k]) for k in ("centre_x", "centre_y", "roll")]
    pose = [c for c in pose if np.isfinite(c)]
    return {"mouth_corr": correlation(out["mouth"], drv["mouth"]),
            "mouth_amplitude": spread_ratio(out["mouth"], drv["mouth"]),
            "eye_corr": correlation(out["eyes"], drv["eyes"]),
            "pose_corr": float(np.mean(pose)) if pose else float("nan")}


def keypoint_distance(output_points, driver_points) -> np.ndarray:
    """Per frame: mean distance over the 68 points (pixels), NaN where either has no face."""
    o, d = np.asarray(output_points, np.float64), np.asarray(driver_points, np.float64)
    if o.shape != d.shape:
        raise ValueError(f"landmark sets differ in shape: {o.shape} vs {d.shape}")
    return np.linalg.norm(o - d, axis=-1).mean(axis=-1)


def clip_scores(output_points, driver_points, frame_width: int) -> dict[str, float]:
    """AKD (in driver inter-ocular distances, and in pixels with the frame scaled to 256 wide), AKD of
    the centred landmarks (`akd_centred_iod`: position in the frame taken out) and the correlations,
    over the frames where both faces were found; `face_frames` counts those."""
    o, d = np.asarray(output_points, np.float64), np.asarray(driver_points, np.float64)
    distance = keypoint_distance(o, d)
    # The same with each landmark set centred: what is left once the face's position in the frame
    # (which a face-following crop hides from the model) is taken out.
    centred = keypoint_distance(o - o.mean(axis=-2, keepdims=True), d - d.mean(axis=-2, keepdims=True))
    found = np.isfinite(distance)
    iod = inter_ocular(d)
    scores = {
        "akd_iod": float(np.mean(distance[found] / iod[found])) if found.any() else float("nan"),
        "akd_px256": float(np.mean(distance[found]) * 256 / frame_width) if found.any() else float("nan"),
        "akd_centred_iod": float(np.mean(centred[found] / iod[found])) if found.any() else float("nan"),
        "face_frames": int(found.sum()),
    }
    scores.update(following(o, d))
    return scores

"""How a face's mesh moves: the head's similarity, the non-rigid rest, and both carried to another face.

Points are (B, K, 2) mesh points in any pixel units (MediaPipe's 468, `HEAD_POINTS` naming the
ones that move with the skull). A similarity is the complex factor `a` (B, 2) (re, im: rotation
and scale) with the centres it turns about, ``p -> a * (p - from_centre) + to_centre``. Used by
training (cross-identity targets) and by the pipeline (head-pose transfer), so that both read a
driver's motion the same way.
"""

from __future__ import annotations

import torch

from .face_mesh_regions import HEAD_POINTS


def fit_similarity(from_points: torch.Tensor, to_points: torch.Tensor, index=None):
    """The least-squares similarity (rotation, scale, shift) taking `from_points` (B, K, 2) onto
    `to_points`, fitted on the points at `index` (default all): ``(a, from_centre, to_centre)``
    with `a` (B, 2) the complex factor (re, im) and the centres (B, 1, 2) of the fitted points, so
    that ``p -> a * (p - from_centre) + to_centre``."""
    f, t = from_points.float(), to_points.float()
    if index is not None:
        f, t = f[:, index], t[:, index]
    f_mean, t_mean = f.mean(1, keepdim=True), t.mean(1, keepdim=True)
    f0, t0 = f - f_mean, t - t_mean
    # As complex numbers the similarity is one factor a = sum(conj(f) t) / sum(|f|^2).
    norm = f0.pow(2).sum(dim=(1, 2)).clamp(min=1e-8)
    re = (f0 * t0).sum(dim=(1, 2)) / norm
    im = (f0[..., 0] * t0[..., 1] - f0[..., 1] * t0[..., 0]).sum(1) / norm
    return torch.stack((re, im), -1), f_mean, t_mean


def rotate_scale(a: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """`points` (B, K, 2) multiplied, as complex numbers, by `a` (B, 2): rotated and scaled about 0."""
    re, im = a[:, None, 0], a[:, None, 1]
    return torch.stack((re * points[..., 0] - im * points[..., 1], im * points[..., 0] + re * points[..., 1]), -1)


def face_size(points: torch.Tensor) -> torch.Tensor:
    """(B,) the root-mean-square distance of the head points (B, 468, 2) from their centre."""
    head = points.float()[:, HEAD_POINTS]
    return (head - head.mean(1, keepdim=True)).pow(2).sum(-1).mean(-1).sqrt()


def retarget_head(source_points: torch.Tensor, driver_points: torch.Tensor,
                  reference_points: torch.Tensor) -> torch.Tensor:
    """Where the source's mesh points (B, 468, 2) go when its head makes the driver's head move from
    its reference frame (same person as the driver) to the driver frame: the similarity fitted on
    the head points from reference to driver, the source turning and scaling about its own head
    centre and shifting by the driver's shift times the ratio of the source's face size to the
    reference's. Lips, lids and brows keep their places on the head."""
    source, driver, reference = (p.float() for p in (source_points, driver_points, reference_points))
    a, reference_centre, driver_centre = fit_similarity(reference, driver, HEAD_POINTS)
    ratio = (face_size(source) / face_size(reference).clamp(min=1e-6))[:, None, None]
    source_centre = source[:, HEAD_POINTS].mean(1, keepdim=True)
    return rotate_scale(a, source - source_centre) + source_centre + (driver_centre - reference_centre) * ratio


def retarget_points(source_points: torch.Tensor, driver_points: torch.Tensor,
                    reference_points: torch.Tensor) -> torch.Tensor:
    """`retarget_head`, plus the driver's non-rigid motion (what the head's similarity leaves of its
    points: mouth, lids, brows) at each point, times the same face-size ratio. A driver that only
    moves its head gives a similarity of the source's points; a driver lip moved by d moves the
    source's lip by d times that ratio."""
    driver, reference = driver_points.float(), reference_points.float()
    a, reference_centre, driver_centre = fit_similarity(reference, driver, HEAD_POINTS)
    non_rigid = driver - (rotate_scale(a, reference - reference_centre) + driver_centre)
    ratio = (face_size(source_points) / face_size(reference).clamp(min=1e-6))[:, None, None]
    return retarget_head(source_points, driver, reference) + ratio * non_rigid

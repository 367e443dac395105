"""Losses that name the driver's geometry directly, so the motion descriptors must carry it.

Reconstruction alone lets a small model on little data sit at "copy the source" (the zero-init
flows start at the identity warp). These terms give motion a signal of its own; each works on
face-mesh points of the source and driver crops, precomputed once per frame (`sfd.data`), in
grid_sample's [-1, 1] units of the model-size crop.

- `keypoint_flow_loss`: the generator's final backward flow, read at each driver point, must point
  at the same mesh point on the source (where the output pixel should take its colour from).
- `warp_flow_loss`: for a driver that is a synthetic warp of its source (stills), the whole flow
  field is known: the warp's own sampling grid.
- `MotionReadout`: a linear map from a_m(d) - a_m(s) to the driver's point offsets from the source.
- `landmark_loss`: mesh points of the *output* against the driver's (through the differentiable
  mesh network), mouth and eyes weighted up.
- `region_weighted_l1`: L1 with mouth and eye pixels weighted up.
- `point_weights`: the per-point weights of the point losses (lips and eyes up, each its own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.mesh_points import NUM_POINTS
from ..models.generator import identity_grid
from ..pretrained.face_mesh_regions import REGIONS
from ..pretrained.mesh_motion import fit_similarity, rotate_scale

# The read-out heads are training-time only: a checkpoint keeps them beside its weights in these files.
READOUT_FILE = "readout.safetensors"
EXPRESSION_READOUT_FILE = "expression_readout.safetensors"  # the non-rigid twin


def sample_at(field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Values of `field` (B, C, H, W) at `points` (B, K, 2) in [-1, 1] units -> (B, K, C)."""
    values = F.grid_sample(field, points[:, :, None, :].to(field.dtype), mode="bilinear",
                           padding_mode="border", align_corners=False)
    return values[..., 0].permute(0, 2, 1)


def point_weights(lips: float, eyes: float | None = None) -> torch.Tensor:
    """(NUM_POINTS,) weights of the point losses: 1 for every mesh point but the lips' and the eyes'
    (eyes None: the lips' weight)."""
    eyes = lips if eyes is None else eyes
    weights = torch.ones(NUM_POINTS)
    for region, weight in (("outer_lips", lips), ("inner_lips", lips), ("left_eye", eyes), ("right_eye", eyes)):
        weights[REGIONS[region]] = weight
    return weights


def keypoint_flow_loss(flow: torch.Tensor, source_points: torch.Tensor, driver_points: torch.Tensor,
                       weights: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean weighted L1 (in [-1, 1] units) between where the flow samples the source at each driver point
    and where that point is on the source.

    flow: (B, 2, H, W) backward offsets; points: (B, K, 2); weights: (K,); valid: (B,) pairs that have
    points (a frame where the mesh found no face has none).
    """
    return point_error(driver_points + sample_at(flow.float(), driver_points), source_points, weights, valid)


def point_error(points: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over pairs (the `valid` ones) of the weighted mean over K points of the L1 distance, (B, K, 2)."""
    error = (points - target).abs().sum(-1)  # (B, K)
    w = torch.ones(error.shape[1], device=error.device) if weights is None else weights.to(error.device)
    per_pair = (error * w).sum(-1) / w.sum()
    if valid is not None:
        valid = valid.to(per_pair.dtype)
        return (per_pair * valid).sum() / valid.sum().clamp(min=1)
    return per_pair.mean()


def warp_flow_loss(flow: torch.Tensor, warp: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1 between the generator's sampling grid (identity + flow) and the 2x3 warp (B, 2, 3) that
    made the driver from the source (affine_grid convention: driver(p) = source(warp @ [p, 1]))."""
    b, _, h, w = flow.shape
    target = F.affine_grid(warp.float(), (b, 2, h, w), align_corners=False)  # (B, H, W, 2)
    reached = identity_grid(h, flow.device, torch.float32) + flow.float().permute(0, 2, 3, 1)
    error = (reached - target).abs().sum(-1).mean(dim=(1, 2))
    if valid is not None:
        valid = valid.to(error.dtype)
        return (error * valid).sum() / valid.sum().clamp(min=1)
    return error.mean()


class MotionReadout(nn.Module):
    """Linear read-out from the change of motion descriptors to the change of face-mesh points.

    `forward(a_m(d) - a_m(s))` -> (B, K, 2) predicted offsets d - s. Its loss back-propagates into
    the encoder, so the N motion coefficients must span the face's pose and expression. It is a
    training-time head: the exported model does not carry it.
    """

    def __init__(self, motion_dim: int, points: int):
        super().__init__()
        self.points = points
        self.linear = nn.Linear(motion_dim, points * 2)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, motion_change: torch.Tensor) -> torch.Tensor:
        return self.linear(motion_change.float()).view(-1, self.points, 2)


def non_rigid_offsets(source_points: torch.Tensor, driver_points: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) what is left of the driver's points (B, K, 2) once the similarity transform that best
    maps them onto the source's (least squares: rotation, scale, shift) is undone: mouth, eyes, brows."""
    a, d_centre, s_centre = fit_similarity(driver_points, source_points)
    return rotate_scale(a, driver_points.float() - d_centre) + s_centre - source_points.float()


def readout_loss(predicted: torch.Tensor, source_points: torch.Tensor, driver_points: torch.Tensor,
                 scale: float = 0.05, valid: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                 target: torch.Tensor | None = None) -> torch.Tensor:
    """MSE of predicted vs true offsets (`target`, default driver - source points), in units of `scale`
    (a typical offset, [-1, 1] units), points weighted by `weights` (K,)."""
    target = driver_points - source_points if target is None else target
    error = ((predicted - target) / scale).pow(2).sum(-1)  # (B, K)
    w = torch.ones(error.shape[1], device=error.device) if weights is None else weights.to(error.device)
    error = (error * w).sum(-1) / (2 * w.sum())  # as the plain mean over K points and 2 coordinates
    if valid is not None:
        valid = valid.to(error.dtype)
        return (error * valid).sum() / valid.sum().clamp(min=1)
    return error.mean()


def landmark_loss(mesh, output: torch.Tensor, driver_points: torch.Tensor, weights: torch.Tensor | None = None,
                  valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean weighted L1 (in [-1, 1] units) between the face mesh of `output` (B, 3, S, S, whole aligned
    faces in [-1, 1]) and the driver's points (B, K, 2); gradients reach `output` through the mesh."""
    size = output.shape[-1]
    found = mesh.on_aligned(output.float()).points[..., :2] / size * 2 - 1
    return point_error(found, driver_points, weights, valid)


def region_weighted_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, boost: float) -> torch.Tensor:
    """L1 where pixels inside `mask` (B, 1, H, W in [0, 1]) weigh `1 + boost`; normalised by the weights."""
    weight = 1 + boost * mask.to(output.dtype)
    return ((output - target).abs() * weight).sum() / (weight.sum() * output.shape[1])

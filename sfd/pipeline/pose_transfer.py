"""Head-pose transfer: the shown head tilts and shifts in the image as the driver's did since its
reference frame, where the model's drawing falls short.

Why outside the model: the bundled weights move the head the right way but not consistently; on
the test clips the output's face centre and roll (dlib) follow the driver's at r 0.64 on the same
person and 0.47 on other people's stills. The rigid part of the motion is the easiest to read and
to apply, so what the model leaves out of it is added in the image, after the model (LivePortrait
moves its keypoints' pose explicitly too):

1. The driver's head motion since its reference frame is the similarity (rotation, scale, shift)
   fitted on the face mesh's head points (`mesh_motion.retarget_head`); the shown face's target
   is its own mesh at the reference (the source drawn at the reference motion) moved by that
   similarity about its head centre, the shift scaled by the ratio of the face sizes.
2. The residual is the similarity from the face as drawn (its mesh) to that target, less its
   scale: a 2-D fit reads a head turning away (yaw) as a zoom out, which the model draws as a
   turn; forcing that zoom on the drawn face cost pose r on a clip with large turns (0.80 -> 0.61)
   and gained nothing on average. Residuals under the mesh's jitter (`DEAD_ZONE`) are left alone,
   and larger ones are capped (`MAX_TURN`, `MAX_SHIFT`): a misread mesh must not throw the face about.
3. The image is warped (bicubic) by the residual in full over the face and, towards the crop's edges
   (`EDGE_SHARE` of the side), by less and less, to nothing at the edge, where the paste-back
   blends the crop into the frame; so the background at the crop's border stays where it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..pretrained.face_mesh_regions import HEAD_POINTS
from ..pretrained.mesh_motion import face_size, fit_similarity, retarget_head, rotate_scale

DEAD_ZONE = 0.01  # residual shift / face size plus its rotation (radians) under this: jitter
MAX_TURN = math.radians(15)  # the residual's rotation is capped at this ...
MAX_SHIFT = 0.5  # ... and its shift at this many face sizes
EDGE_SHARE = 0.25  # the warp fades out over this share of the crop's side at its edges


def residual_similarity(shown_points: torch.Tensor, target_points: torch.Tensor):
    """The rotation and shift `(a, from_centre, to_centre)` taking the shown faces' head points
    (B, 468, 2) to the target's, capped (module doc, step 2), and whether it is above the jitter (B,)."""
    a, shown_centre, target_centre = fit_similarity(shown_points, target_points, HEAD_POINTS)
    size = face_size(shown_points).clamp_min(1e-6)
    turn = torch.atan2(a[:, 1], a[:, 0]).clamp(-MAX_TURN, MAX_TURN)
    a = torch.stack([torch.cos(turn), torch.sin(turn)], 1)
    shift = target_centre - shown_centre
    length = shift.norm(dim=-1, keepdim=True)
    shift = shift * (MAX_SHIFT * size[:, None, None] / length.clamp_min(1e-6)).clamp(max=1)
    moves = (length[:, 0, 0] / size + turn.abs()) > DEAD_ZONE
    return a, shown_centre, shown_centre + shift, moves


@lru_cache(maxsize=8)  # a clip's crops share one side
def _still_grid(side: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixel centres of an S-sided crop in grid_sample's coordinates (1, S, S, 2), and how much
    of the warp each pixel takes (1, S, S, 1): 0 on the crop's edge, 1 beyond `EDGE_SHARE` of the
    side from it, smooth in between (module doc, step 3)."""
    centres = torch.arange(side, device=device, dtype=torch.float32) + 0.5
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    grid = (2 * torch.stack([xs, ys], -1) / side - 1)[None]
    inset = (torch.minimum(centres, side - centres) - 0.5) / (EDGE_SHARE * side)
    weight = torch.minimum(inset[:, None], inset[None, :]).clamp(0, 1)
    return grid, (weight * weight * (3 - 2 * weight))[None, :, :, None]


def move_heads(images: torch.Tensor, a: torch.Tensor, from_centre: torch.Tensor,
               to_centre: torch.Tensor, colours: bool = True) -> torch.Tensor:
    """`images` (B, C, S, S) warped so that the point p of each face shows at
    ``a * (p - from_centre) + to_centre`` (pixels of `images`; `a` (B, 2) complex factor, centres
    (B, 1, 2)), fading to no motion at the crop's edges (module doc, step 3). Colours in [-1, 1]
    are clamped to that range after the bicubic resampling; other maps (`colours=False`) are not."""
    side, device = images.shape[-1], images.device
    a = a.to(device, torch.float32)
    inverse = torch.stack([a[:, 0], -a[:, 1]], 1) / a.pow(2).sum(1, keepdim=True).clamp_min(1e-8)
    # Each pixel p samples inverse * (p - to_centre) + from_centre; in grid_sample's coordinates
    # u = p / half - 1 that is inverse * u + shift, with the shift the same for every pixel.
    half = side / 2
    shift = (rotate_scale(inverse, half - to_centre.to(device, torch.float32))
             + from_centre.to(device, torch.float32)) / half - 1  # (B, 1, 2)
    still, weight = _still_grid(side, device)
    moved = (rotate_scale(inverse, still.flatten(1, 2)) + shift).view(len(a), side, side, 2)
    grid = torch.lerp(still, moved, weight)
    # bicubic: a face moved by a fraction of a pixel stays as sharp as drawn (bilinear cost LPIPS)
    moved_images = F.grid_sample(images.float(), grid, mode="bicubic", padding_mode="border", align_corners=False)
    return (moved_images.clamp_(-1, 1) if colours else moved_images).to(images.dtype)


class PoseTransfer:
    """The driver's head motion, one clip at a time: `start` with the reference faces, then
    `apply` to each batch of shown faces."""

    def __init__(self):
        self.driver_reference: torch.Tensor | None = None
        self.shown_reference: torch.Tensor | None = None

    def start(self, driver_points: torch.Tensor, shown_points: torch.Tensor) -> None:
        """The driver's reference face's mesh (1, 468, 2) and the shown face's at that motion."""
        self.driver_reference = driver_points.float()
        self.shown_reference = shown_points.float()

    def apply(self, images: list[torch.Tensor], driver_points: torch.Tensor, driver_seen: torch.Tensor,
              shown_points: torch.Tensor, shown_seen: torch.Tensor, maps: Sequence[torch.Tensor] = ()
              ) -> list[torch.Tensor]:
        """The shown faces (each (B, C, S, S), the same faces at several sizes; `shown_points` in
        pixels of the first) moved by the residual head motion, followed by `maps` of the same
        faces that are not colours (`move_heads`), moved alike; faces where either mesh saw no
        face, or the residual is jitter, are returned as they are."""
        images, colours = [*images, *maps], [True] * len(images) + [False] * len(maps)
        if self.driver_reference is None or self.shown_reference is None:
            return images
        count = len(shown_points)
        reference = self.driver_reference.to(driver_points.device).expand(count, -1, -1)
        shown_reference = self.shown_reference.to(shown_points.device).expand(count, -1, -1)
        target = retarget_head(shown_reference, driver_points, reference)
        a, from_centre, to_centre, moves = residual_similarity(shown_points, target)
        moves = moves & driver_seen.to(moves.device) & shown_seen.to(moves.device) & torch.isfinite(a).all(1)
        if not bool(moves.any()):
            return images
        index = moves.nonzero()[:, 0]
        a, from_centre, to_centre = a[index], from_centre[index], to_centre[index]
        out = []
        for x, colour in zip(images, colours):  # only the faces that move are resampled
            scale = x.shape[-1] / images[0].shape[-1]
            at = index.to(x.device)
            x = x.clone()
            x[at] = move_heads(x[at], a, from_centre * scale, to_centre * scale, colours=colour)
            out.append(x)
        return out

"""Mouth transfer: the shown face's mouth opens and closes as far, for its size, as the driver's did.

Why outside the model: on another person's portrait the bundled weights open the mouth a fifth
as widely as the driver's (dlib's spread over a clip, 92 pairs of test clips and stills), and
asking the model for more (a larger expression strength) smears the face. So the opening the
model leaves out is added in the image, after the model, as explicit lip retargeting (LivePortrait
does it on keypoints):

1. Openings are the face mesh's inner-lip gap over its inter-ocular distance
   (`face_mesh_regions.mouth_opening`), so each face's own size is the unit.
2. The target opening of a frame is the shown face's opening at the reference (the source
   rendered with the driver's reference motion, as the model draws it) plus the driver's change
   since its reference frame, times the expression strength. A driver's reference frame is often
   caught mid-word, lips apart; the driver then mostly closes its mouth below that, which a shut
   portrait cannot follow, and its speech would open nothing. So the driver's opening is counted
   from `SHUT` (what a closed mouth reads) where its reference shows more, and the shown face's
   closed level is its reference opening less what the driver's reference showed above `SHUT`,
   never below 0. For a driver whose reference is shut the two readings are the same.
3. Where the face as drawn opens less than that by more than the mesh's jitter (`DEAD_ZONE`), the
   rest is opened by a warp: in the mouth's frame (x along the corners, y across, downwards), the
   gap between the inner lips stretches by the missing height (most at the middle, none at the
   corners), the lower lip moves down with it, the skin between lip and chin stretches so that
   the chin drops with the jaw, and the neck below the chin takes the chin's shift back. Above the
   gap and outside the jaw's width nothing moves: those pixels keep their exact values.
4. Where the face as drawn opens *more* than the target by more than the jitter, the same warp
   runs backwards: the gap is squeezed (to at most `CLOSE_SHARE` of it), the lower lip and the
   chin rise. The model opens and shuts some portraits' mouths out of step with the driver's
   (its motion ties some opening to the head and brows): on a test clip driving one still, the
   output's mouth followed the driver's at r 0.16 with opening only, 0.78 both ways. Over 92
   pairs of test clips and stills of other people (90 frames), mouth r 0.555 to 0.594
   (docs/retargeting.md).
5. Between the inner lips where the warp leaves them (`opened_inner_lips`), the inside of the
   mouth is then the driver's (`mouth_inside`): its teeth rather than stretched, shaded lip.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..pretrained.face_mesh_regions import CHIN, MOUTH_LEFT, MOUTH_RIGHT, inter_ocular, mouth_opening
from .blink_transfer import interpolate

DEAD_ZONE = 0.005  # inner-lip gap / inter-ocular: a shortfall under this is the mesh's jitter
MAX_OPENING = 0.45  # ... and no warp opens the mouth by more than this
# What a shut driver's mouth reads (inner-lip gap / inter-ocular): over 24 training clips read as
# the pipeline reads a driver, the median of each clip's 2nd percentile (they range 0.005-0.077)
SHUT = 0.02
JAW_WIDTH = 1.6  # the chin drops over this many half mouth widths either side of the middle
NECK_SHARE = 0.6  # the neck that takes the chin's shift back: this share of the lips-to-chin distance
MARGIN = 2  # px around the warped region
# The gap as it widens shows the mouth's dark inside, not stretched lip: its new rows are darkened
# by up to this share (most at the gap's middle, in proportion to how much of the gap is new).
SHADE = 0.6
# A face drawn more open than its target is closed by squeezing the gap, to at most this share of
# it (the lips never cross)
CLOSE_SHARE = 0.8

# Inner lips from the image's left corner to its right one, both through the corners.
UPPER_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]


def mouth_frame(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The mouth's frame from its corners (B, 2) on the image's left and right: the centre, x along
    the corners, y across (downwards in the image), and half the corners' distance (the unit)."""
    half = (right - left).norm(dim=1).clamp_min(1e-3) / 2
    ex = (right - left) / (2 * half[:, None])
    ey = torch.stack([-ex[:, 1], ex[:, 0]], 1)
    return (left + right) / 2, ex, ey, half


def in_mouth_frame(p: torch.Tensor, centre, ex, ey, half) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (B, K, 2) in pixels as u (along the corners), v (across) in half widths of `mouth_frame`."""
    rel = p - centre[:, None]
    return (rel * ex[:, None]).sum(-1) / half[:, None], (rel * ey[:, None]).sum(-1) / half[:, None]


def _rise(extra: torch.Tensor, half: torch.Tensor, upper, lower) -> torch.Tensor:
    """(B, 1) the opening at the middle in half widths, closing at most `CLOSE_SHARE` of the gap."""
    at_middle = torch.zeros_like(upper[0][:, :1])
    gap = interpolate(at_middle, *lower) - interpolate(at_middle, *upper)
    return torch.maximum(extra[:, None] / half[:, None], -CLOSE_SHARE * gap.clamp_min(0))  # lips never cross


def _widening(u: torch.Tensor, upper_u: torch.Tensor, rise: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
    """How far the gap (half of it: `gap`) widens at u: a lens, none at the inner corners (the upper
    inner lip's ends, `upper_u`), closing at most `CLOSE_SHARE` of it."""
    left, right = upper_u[:, :1], upper_u[:, -1:]
    across = ((2 * u - left - right) / (right - left).clamp_min(1e-3)).clamp(-1, 1)
    return torch.maximum(rise * (1 - across.square()).sqrt(), -CLOSE_SHARE * 2 * gap)


def opened_inner_lips(points: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """The inner lips (B, 22, 2: `UPPER_INNER`, then `LOWER_INNER`) where `open_mouth(images, points,
    extra)` leaves them: the upper one stays, the lower one moves with the gap."""
    points = points.float()
    extra = extra.to(points.device, torch.float32)
    centre, ex, ey, half = mouth_frame(points[:, MOUTH_RIGHT], points[:, MOUTH_LEFT])
    upper = in_mouth_frame(points[:, UPPER_INNER], centre, ex, ey, half)
    lower = in_mouth_frame(points[:, LOWER_INNER], centre, ex, ey, half)
    gap = ((lower[1] - interpolate(lower[0], *upper)) / 2).clamp_min(0.5 / half[:, None])
    moved = _widening(lower[0], upper[0], _rise(extra, half, upper, lower), gap)
    lower_points = points[:, LOWER_INNER] + (moved * half[:, None])[..., None] * ey[:, None]
    return torch.cat([points[:, UPPER_INNER], lower_points], 1)


def open_mouth(images: torch.Tensor, points: torch.Tensor, extra: torch.Tensor, shade: bool = True) -> torch.Tensor:
    """`images` (B, C, S, S) with each face's mouth opened by `extra` (B,) pixels of `images` at
    its middle, or closed where `extra` < 0 (module doc, steps 3 and 4); `points` (B, 468, 2) its
    mesh in pixels of `images`. `shade=False` moves without darkening the widened gap (for maps
    that are not colours, such as `detail_transfer.source_coordinates`)."""
    extra = extra.to(images.device, torch.float32)
    if not bool((extra != 0).any()):
        return images
    side = images.shape[-1]
    points = points.to(images.device, torch.float32)
    centre, ex, ey, half = mouth_frame(points[:, MOUTH_RIGHT], points[:, MOUTH_LEFT])

    def frame(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return in_mouth_frame(p, centre, ex, ey, half)

    upper, lower = frame(points[:, UPPER_INNER]), frame(points[:, LOWER_INNER])
    chin = frame(points[:, [CHIN]])[1]  # (B, 1)
    rise = _rise(extra, half, upper, lower)
    at_middle = torch.zeros_like(chin)
    lips_middle = (interpolate(at_middle, *upper) + interpolate(at_middle, *lower)) / 2
    neck = torch.maximum(NECK_SHARE * (chin - lips_middle), 3 * rise)
    # the region that can move: the jaw's width, from the upper inner lip to below the neck band
    reach_u = JAW_WIDTH * half
    reach_v = (chin + neck) * half[:, None]
    corners = torch.stack([centre + s * reach_u[:, None] * ex + t[:, None] * ey
                           for s in (-1, 1) for t in (upper[1].amin(1) * half - MARGIN, reach_v[:, 0])], 1)
    x0, y0 = (corners.amin((0, 1)) - MARGIN).floor().clamp(0, side).int().tolist()
    x1, y1 = (corners.amax((0, 1)) + MARGIN).ceil().clamp(0, side).int().tolist()
    if x1 <= x0 or y1 <= y0:
        return images
    ys, xs = torch.meshgrid(torch.arange(y0, y1, device=images.device, dtype=torch.float32) + 0.5,
                            torch.arange(x0, x1, device=images.device, dtype=torch.float32) + 0.5, indexing="ij")
    pixels = torch.stack([xs, ys], -1).view(1, -1, 2) - centre[:, None]  # (B, P, 2)
    u = (pixels * ex[:, None]).sum(-1) / half[:, None]
    v = (pixels * ey[:, None]).sum(-1) / half[:, None]
    top, bottom = interpolate(u, *upper), interpolate(u, *lower)
    middle = (top + bottom) / 2
    gap = ((bottom - top) / 2).clamp_min(0.5 / half[:, None])  # half the gap, at least half a pixel
    opening = _widening(u, upper[0], rise, gap)
    drop = rise * 0.5 * (1 + torch.cos(math.pi * (u.abs() / JAW_WIDTH).clamp(max=1)))  # how far the chin drops
    # Where each shown row comes from, piecewise linear down the column (shown -> source knots):
    # gap top stays; gap bottom + opening <- gap bottom; chin + drop <- chin; chin + neck stays.
    knots_shown = [middle - gap, middle + gap + opening, chin + drop, chin + neck]
    knots_source = [middle - gap, middle + gap, chin.expand_as(u), chin + neck]
    source_v = v.clone()
    for (s0, s1), (t0, t1) in zip(zip(knots_shown, knots_shown[1:]), zip(knots_source, knots_source[1:])):
        inside = (v >= s0) & (v < s1) & (s1 > s0)
        source_v = torch.where(inside, t0 + (v - s0) * (t1 - t0) / (s1 - s0).clamp_min(1e-6), source_v)
    moving = (source_v != v) & (u.abs() < JAW_WIDTH) & (rise != 0)
    moved = pixels + ((source_v - v) * half[:, None])[..., None] * ey[:, None] + centre[:, None]
    grid = (2 * moved / side - 1).view(-1, y1 - y0, x1 - x0, 2)
    sampled = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    if shade:
        shown_gap = 2 * gap + opening
        depth = ((v - middle + gap) / shown_gap).clamp(0, 1)
        darken = SHADE * torch.sin(math.pi * depth) * opening.clamp_min(0) / shown_gap  # 0 outside a widened gap
        sampled = (sampled + 1) * (1 - darken.view(-1, 1, y1 - y0, x1 - x0)) - 1
    out = images.clone()
    region = out[:, :, y0:y1, x0:x1]  # pixels that do not move keep their values exactly
    out[:, :, y0:y1, x0:x1] = torch.where(moving.view(-1, 1, y1 - y0, x1 - x0), sampled.to(out.dtype), region)
    return out


class MouthTransfer:
    """The driver's mouth opening, one clip at a time: `start` with the reference faces, then the
    opening each frame's face lacks (`shortfall`, < 0 where it shows too much), applied with `open_mouth`."""

    def __init__(self, strength: float = 1.0):
        self.strength = strength
        # the openings the driver's and the shown face's are counted from (module doc, step 2)
        self.driver_zero: float | None = None
        self.shown_zero: float | None = None

    def start(self, driver_points: torch.Tensor, shown_points: torch.Tensor) -> None:
        """The driver's reference face's mesh (1, 468, 2) and the shown face's at that motion."""
        driver, shown = float(mouth_opening(driver_points)[0]), float(mouth_opening(shown_points)[0])
        self.driver_zero = min(driver, SHUT)
        self.shown_zero = max(shown - self.strength * (driver - self.driver_zero), 0.0)

    def shortfall(self, driver_points: torch.Tensor, driver_seen: torch.Tensor, shown_points: torch.Tensor,
                  shown_seen: torch.Tensor) -> torch.Tensor:
        """(B,) pixels (of the shown faces' mesh) to open each shown face by (< 0: to close it by), 0
        where either face was not seen or the face as drawn is within the mesh's jitter of its target."""
        if self.driver_zero is None or self.shown_zero is None or self.strength <= 0:
            return torch.zeros(len(shown_points))
        target = (self.shown_zero + self.strength * (mouth_opening(driver_points) - self.driver_zero)).clamp_min(0)
        # target less drawn opening, shrunk by the mesh's jitter: > 0 opens, < 0 closes
        missing = target - mouth_opening(shown_points)
        missing = missing.sign() * (missing.abs() - DEAD_ZONE).clamp(0, MAX_OPENING)
        missing = torch.where(driver_seen & shown_seen & torch.isfinite(missing), missing, torch.zeros_like(missing))
        return missing * inter_ocular(shown_points)

"""Blink transfer: the shown face's eyelids close where the driver's close (and open wider where they do).

Why outside the model: the bundled weights' motion space has no blink. Their direction atlas
moves the eye opening (lid gap / eye width) by at most 0.03 per calibration std, always with a
head turn or tilt, while a blink takes the gap from about 0.25 to under 0.1; on the test clips that
blink, the output's eye opening followed the driver's at r 0.09. So the lids are moved in the
image, after the model, as explicit eye retargeting (LivePortrait does it on keypoints).

Per frame:

1. The driver's eye opening from MediaPipe's face mesh (`face_mesh_regions.eye_opening`, both eyes'
   mean) on its face crop, framed as MediaPipe tracks a face (the crop re-framed and levelled on
   the points of the previous face, or of a first pass on the whole crop; `face_retargeting`):
   that framing follows dlib's eye aspect ratio on the test clips at r 0.73-0.95, the whole crop
   alone at 0.35-0.89. The mesh reads a closed eye as about 0.65 of the open one (dlib: 0.3-0.5),
   so:
2. the closure is `(OPEN_RATIO - ratio) / (OPEN_RATIO - CLOSED_RATIO)` clipped to [0, 1], where
   the ratio is the opening over the driver's open level: the median of its last `HISTORY` faces
   (blinks are short). Ratios at or above `OPEN_RATIO` (1: the open level itself) close nothing;
   below it the lids follow continuously, so squints and glances down pass too (on other
   people's stills eyes r 0.19 against 0.12 starting at 0.92, the mesh's jitter on open eyes;
   on the test clips that blink 0.385 against 0.397).
3. The shown face's lids, from the mesh on it, are closed by that fraction of its own lid gap, so
   the driver's blink closes any face's eyes whatever their size or shape. In each eye's frame
   (x along the corners, y across), the upper lid's edge moves down towards the lower lid; the
   skin above it, most of the way up to the brow's lower edge (`SKIN_SHARE`), stretches down with
   it; the eyeball under the new edge stays where it was, covered rather than squeezed. Outside
   the corners nothing moves, so the warp is continuous everywhere but along the lid's new edge,
   and pixels that do not move keep their values exactly. Two things keep a shut lid looking
   like one: the lash row at the lid's edge (`LASH`) moves down whole, a thin dark line where
   the lids meet, rather than being stretched into a dark band; and the stretched skin above it
   is blurred along the eye (`LID_BLUR`), as much as the lid is closed, since anything stretched
   to twice its height (lashes, eyeliner, the crease) otherwise shows as vertical streaks. (Before,
   a shut lid showed the stretched lashes as a dark band across it, a squint, or as streaks; the
   dlib and mesh judges' numbers are in docs/experiments.md.)
4. Where the driver's eyes open wider than their open level (a ratio above `WIDE_RATIO`: past
   the mesh's jitter on open eyes), the lids open wider at the same rate, by at most `MAX_WIDEN`
   of their gap (a negative closure): the upper lid's edge rises, the skin band above it
   squeezes, and the eye between the new edge and the lower lid stretches to fill the gap. A
   source caught with its eyes half shut (its driver's first frame) then opens them where its
   driver does: on the same person the eyes r of the test clips rose from 0.29 to 0.32 (0.43 to
   0.45 on the clips that blink; docs/retargeting.md).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from ..pretrained.face_mesh_regions import LEFT_BROW, RIGHT_BROW, eye_opening

OPEN_RATIO = 1.0  # driver opening over its open level at which the lids start to close
CLOSED_RATIO = 0.65  # ... and at which they are closed
WIDE_RATIO = 1.05  # above this the lids open wider, at the same rate ...
MAX_WIDEN = 0.3  # ... by at most this share of the lid gap
HISTORY = 250  # driver faces (10 s at 25 fps) whose median opening is its open level
# The skin above the upper lid that follows it down: this share of the way from the lid to the
# brow's lower edge (the brow itself stays), within these bounds (half eye widths).
SKIN_SHARE = 0.8
SKIN_BAND = (0.3, 0.7)
LASH = 0.1  # half eye widths of lash row at the lid's edge that move whole (at most half the band)
LID_BLUR = 0.25  # half eye widths: the Gaussian's sigma along the eye over the stretched skin, when shut
MARGIN = 2  # px around an eye's warped region

# Each eye: (corner on the image's left, corner on the image's right, upper lid, lower lid, brow's
# lower edge), lids from the left corner to the right one, both through the corners.
EYE_CONTOURS = (
    (33, 133, [33, 246, 161, 160, 159, 158, 157, 173, 133], [33, 7, 163, 144, 145, 153, 154, 155, 133],
     RIGHT_BROW[5:]),
    (362, 263, [362, 398, 384, 385, 386, 387, 388, 466, 263], [362, 382, 381, 380, 374, 373, 390, 249, 263],
     LEFT_BROW[5:]),
)


def interpolate(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear f(x) per row: x (B, P), knots xp (B, K) with values fp (B, K); constant
    beyond the end knots."""
    order = xp.argsort(dim=1)
    xp, fp = xp.gather(1, order), fp.gather(1, order)
    right = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, xp.shape[1] - 1)
    left = right - 1
    x0, x1, f0, f1 = xp.gather(1, left), xp.gather(1, right), fp.gather(1, left), fp.gather(1, right)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def close_lids(images: torch.Tensor, points: torch.Tensor, closure: torch.Tensor,
               content: str = "colour") -> torch.Tensor:
    """`images` (B, C, S, S) with each face's upper lids closed by `closure` (B,) in [0, 1] of the lid
    gap (1: shut; module doc, step 3), or raised where it is negative (down to `-MAX_WIDEN`, step 4);
    `points` (B, 468, 2) its mesh in pixels of `images`. `content` says what `images` hold:
    "colour" (the stretched skin smoothed as the lid shuts), "gain" (the fine detail's gain offset,
    0 for none, as the mouth's shading leaves it: it fades where the colours are smoothed, as their
    detail is gone there) or "map" (not colours, such as `detail_transfer.source_coordinates`:
    moved only)."""
    if content not in ("colour", "gain", "map"):
        raise ValueError(f"content is 'colour', 'gain' or 'map', not {content!r}")
    closure = closure.to(images.device, torch.float32).clamp(-MAX_WIDEN, 1)
    if not bool((closure != 0).any()):
        return images
    out = images.clone()
    side = images.shape[-1]
    points = points.to(images.device, torch.float32)
    for left, right, upper, lower, brow in EYE_CONTOURS:
        a, b = points[:, left], points[:, right]
        half = (b - a).norm(dim=1).clamp_min(1e-3) / 2  # (B,)
        ex = (b - a) / (2 * half[:, None])
        ey = torch.stack([-ex[:, 1], ex[:, 0]], 1)  # across the eye, downwards in the image
        centre = (a + b) / 2

        def profile(indices):
            rel = points[:, indices] - centre[:, None]
            return (rel * ex[:, None]).sum(-1) / half[:, None], (rel * ey[:, None]).sum(-1) / half[:, None]

        lid_top = profile(upper)[1].amin(1)
        band = (SKIN_SHARE * (lid_top - profile(brow)[1].mean(1))).clamp(*SKIN_BAND)[:, None]  # (B, 1)
        # the region that can move: the eye, the skin band above it, a margin; the same for the batch
        lids = points[:, upper + lower]
        reach = (band[:, 0] * half).max()
        x0, y0 = (lids.amin((0, 1)) - reach - MARGIN).floor().clamp(0, side).int().tolist()
        x1, y1 = (lids.amax((0, 1)) + reach + MARGIN).ceil().clamp(0, side).int().tolist()
        if x1 <= x0 or y1 <= y0:
            continue
        ys, xs = torch.meshgrid(torch.arange(y0, y1, device=images.device, dtype=torch.float32) + 0.5,
                                torch.arange(x0, x1, device=images.device, dtype=torch.float32) + 0.5, indexing="ij")
        pixels = torch.stack([xs, ys], -1).view(1, -1, 2) - centre[:, None]  # (B, P, 2)
        u = (pixels * ex[:, None]).sum(-1) / half[:, None]
        v = (pixels * ey[:, None]).sum(-1) / half[:, None]
        top = interpolate(u, *profile(upper))
        bottom = interpolate(u, *profile(lower))
        gap = (bottom - top).clamp_min(0) * (u.abs() < 1)
        edge = top + closure[:, None] * gap  # the upper lid's new edge
        start = top - band
        skin = (v >= start) & (v < edge) & (gap > 0) & (closure[:, None] != 0)
        # the lash row moves with the edge; the skin above it stretches (or squeezes) over the rest
        lash = (band / 2).clamp(max=LASH)
        lashes = v >= edge - lash
        stretched = start + (v - start) * (band - lash) / (edge - lash - start).clamp_min(1e-6)
        source_v = torch.where(skin, torch.where(lashes, v - (edge - top), stretched), v)
        # widening: the eye between the raised edge and the lower lid stretches to fill the gap
        eye = (v >= edge) & (v < bottom) & (gap > 0) & (closure[:, None] < 0)
        source_v = torch.where(eye, top + (v - edge) * (bottom - top) / (bottom - edge).clamp_min(1e-6), source_v)
        moving = skin | eye
        moved = pixels + ((source_v - v) * half[:, None])[..., None] * ey[:, None] + centre[:, None]
        grid = (2 * moved / side - 1).view(-1, y1 - y0, x1 - x0, 2)
        sampled = F.grid_sample(out.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        sigma = LID_BLUR * float(half.mean())  # px; a batch's aligned faces share one size
        # how much of the blurred skin each pixel takes (maps are only moved)
        shut = None if content == "map" else (skin & ~lashes) * closure[:, None].clamp(0, 1)
        if shut is not None and sigma >= 0.5 and bool((shut > 0).any()):
            shut = shut.view(-1, 1, y1 - y0, x1 - x0)
            if content == "gain":
                sampled = (sampled + 1) * (1 - shut) - 1
            else:
                blurred = _blurred_along_x(out[:, :, y0:y1], x0, x1, sigma)  # the region of `out`
                crop_grid = 2 * (moved - moved.new_tensor([x0, y0])) / moved.new_tensor([x1 - x0, y1 - y0]) - 1
                smooth = F.grid_sample(blurred, crop_grid.view(-1, y1 - y0, x1 - x0, 2), mode="bilinear",
                                       padding_mode="border", align_corners=False)
                sampled = sampled + shut * (smooth - sampled)
        region = out[:, :, y0:y1, x0:x1]  # pixels that do not move keep their values exactly
        out[:, :, y0:y1, x0:x1] = torch.where(moving.view(-1, 1, y1 - y0, x1 - x0), sampled.to(out.dtype), region)
    return out


def _blurred_along_x(images: torch.Tensor, x0: int, x1: int, sigma: float) -> torch.Tensor:
    """Columns x0..x1 of `images` (float) blurred along x by a Gaussian of `sigma` px, the columns
    beside them read (the image's edge repeated beyond it)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    kernel = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    channels, width = images.shape[1], images.shape[-1]
    kernel = (kernel / kernel.sum()).view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    lo, hi = max(0, x0 - radius), min(width, x1 + radius)
    columns = F.pad(images[..., lo:hi].float(), (radius - (x0 - lo), radius - (hi - x1), 0, 0), mode="replicate")
    return F.conv2d(columns, kernel, groups=channels)


class BlinkTransfer:
    """The driver's blinks, one clip at a time: the closure of each driver face, in order (keeps
    the driver's open level); `close_lids` applies them to the faces shown for those frames."""

    def __init__(self):
        self.openings: deque[float] = deque(maxlen=HISTORY)

    def closures(self, points: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """(N,) closures in [-MAX_WIDEN, 1] of driver faces in order: their mesh points (N, 468, 2) and
        whether the mesh saw a face (N,) (an unseen face closes nothing and is not counted)."""
        left, right = eye_opening(points)
        opening = ((left + right) / 2).cpu().numpy()
        seen = seen.cpu().numpy() & np.isfinite(opening)
        closures = np.zeros(len(opening), np.float32)
        for i in range(len(opening)):
            if not seen[i]:
                continue
            self.openings.append(float(opening[i]))
            ratio = opening[i] / max(float(np.median(self.openings)), 1e-6)
            if ratio > WIDE_RATIO:  # wider than usual: a negative closure (module doc, step 4)
                closures[i] = -min((ratio - WIDE_RATIO) / (OPEN_RATIO - CLOSED_RATIO), MAX_WIDEN)
            else:
                closures[i] = np.clip((OPEN_RATIO - ratio) / (OPEN_RATIO - CLOSED_RATIO), 0.0, 1.0)
        return torch.from_numpy(closures)

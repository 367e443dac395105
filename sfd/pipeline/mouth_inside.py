"""The inside of the mouth from the driver's: its teeth and dark where the shown face's lips part.

Why: the mouth transfer opens a portrait's lips as far as the driver's (`mouth_transfer`), but the
gap it opens is the portrait's own lip line stretched and shaded, and the 64 px model draws what
it opens itself as a blur: a driver who grins with its teeth showing gave a portrait a dark or
lip-coloured hole. The inside of a mouth says little about who it is, and the driver shows what it
looks like at that moment, so it is taken from the driver's face crop (LivePortrait's generator
draws teeth it learned; this model has none to draw):

1. Both mouths are put in the frame of their inner lips' corners (x along the corners, y across,
   in half the corners' distance), the shown face's lips where the mouth transfer left them.
2. Each shown pixel between the inner lips is sampled from the driver's mouth at the same place
   across its width and at the same share of the way down its gap: the driver's inside scaled to
   the gap shown. On an open mouth the mesh's inner-lip line sits low (the upper one on the upper
   teeth's lower edge, the lower one on the lower lip), so the driver's gap is read
   `LIP_LINE_SHIFT` of its height higher: read where the mesh puts it, the upper teeth were lost
   and the lower lip was drawn inside the mouth.
3. It is blended in over a pixel inside the lips (their edges stay the shown face's), fades out
   near the corners, and only where the driver's own lips are apart (`DRIVER_GAP`): a driver with
   its mouth shut has only lip to give. Its colours are the driver's as they are: matching them to
   the shown face's light by the two faces' cheeks turned a dark-skinned driver's teeth into a
   glare on a pale face (skin tells its colour more than its light).
4. Where it is drawn, the fine detail of a large face (the source's lip texture) is faded out
   (`content="gain"`); maps of where the pixels came from are not changed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .blink_transfer import interpolate
from .mouth_transfer import LOWER_INNER, UPPER_INNER, in_mouth_frame, mouth_frame

# the driver's inner-lip gap, in half its inner lips' width, from which its mouth's inside is taken
# (under the first: lips meeting, or a gap the mesh's lip line cannot place; over the second: wholly)
DRIVER_GAP = (0.15, 0.35)
# On an open mouth the mesh's inner-lip line sits low: the upper one on the upper teeth's lower
# edge, the lower one on the lower lip. The driver's inside is read this share of its gap higher.
LIP_LINE_SHIFT = 0.2
FEATHER = 1.0  # px of the shown image over which the inside fades in from the inner lips' edge
CORNER_FADE = 0.2  # the inside fades out over this share of half the mouth's width at either corner
MARGIN = 2  # px around the region drawn

INNER = len(UPPER_INNER)  # lips (B, 2 * INNER, 2): `UPPER_INNER`, then `LOWER_INNER`, corner to corner


def _lips(lips: torch.Tensor):
    """The frame of inner lips (B, 22, 2) and the lips in it: frame, (u, v) upper, (u, v) lower."""
    frame = mouth_frame(lips[:, 0], lips[:, INNER - 1])
    return frame, in_mouth_frame(lips[:, :INNER], *frame), in_mouth_frame(lips[:, INNER:], *frame)


def paint_mouth_inside(images: torch.Tensor, lips: torch.Tensor, seen: torch.Tensor,
                       driver_faces: torch.Tensor, driver_points: torch.Tensor, driver_seen: torch.Tensor,
                       content: str = "colour") -> torch.Tensor:
    """`images` (B, C, S, S) with the inside of each mouth taken from the driver's face (module doc).
    `lips` (B, 22, 2): the shown faces' inner lips as they are drawn in `images` (as
    `mouth_transfer.opened_inner_lips` gives them), in pixels of `images`; `driver_faces` (B, 3,
    S', S') in [-1, 1] with `driver_points` (B, 468, 2) in their pixels; `seen`, `driver_seen`
    (B,): faces the mesh saw (others are left as they are). `content`:
    "colour", or "gain" (the fine detail's gain offset, 0 for none: it fades to -1 where the
    inside is drawn) or "map" (returned as it is)."""
    if content not in ("colour", "gain", "map"):
        raise ValueError(f"content is 'colour', 'gain' or 'map', not {content!r}")
    both = (seen & driver_seen).to(images.device)
    if content == "map" or not bool(both.any()):
        return images
    side = images.shape[-1]
    device = images.device
    lips = lips.to(device, torch.float32)
    drv = driver_points.to(device, torch.float32)
    driver_lips = torch.cat([drv[:, UPPER_INNER], drv[:, LOWER_INNER]], 1)
    (centre, ex, ey, half), upper, lower = _lips(lips)
    (d_centre, d_ex, d_ey, d_half), d_upper, d_lower = _lips(driver_lips)

    x0, y0 = (lips[both].amin((0, 1)) - MARGIN).floor().clamp(0, side).int().tolist()  # faces not seen
    x1, y1 = (lips[both].amax((0, 1)) + MARGIN).ceil().clamp(0, side).int().tolist()  # may hold any points
    if x1 <= x0 or y1 <= y0:
        return images
    ys, xs = torch.meshgrid(torch.arange(y0, y1, device=device, dtype=torch.float32) + 0.5,
                            torch.arange(x0, x1, device=device, dtype=torch.float32) + 0.5, indexing="ij")
    u, v = in_mouth_frame(torch.stack([xs, ys], -1).view(1, -1, 2).expand(len(lips), -1, -1), centre, ex, ey, half)
    top, bottom = interpolate(u, *upper), interpolate(u, *lower)
    # the same place across the driver's mouth, corner to corner
    left, right = upper[0][:, :1], upper[0][:, -1:]
    across = (2 * u - left - right) / (right - left).clamp_min(1e-3)
    d_left, d_right = d_upper[0][:, :1], d_upper[0][:, -1:]
    d_u = (d_left + d_right) / 2 + across.clamp(-1, 1) * (d_right - d_left) / 2
    d_top, d_bottom = interpolate(d_u, *d_upper), interpolate(d_u, *d_lower)
    d_gap = (d_bottom - d_top).clamp_min(0)
    # down the gap: the same share of the driver's, read higher than its mesh's lip line
    from_top, from_bottom = v - top, bottom - v
    d_v = d_top + (from_top / (bottom - top).clamp_min(1e-3) - LIP_LINE_SHIFT) * d_gap
    at = d_centre[:, None] + (d_u * d_half[:, None])[..., None] * d_ex[:, None] \
        + (d_v * d_half[:, None])[..., None] * d_ey[:, None]
    # how much of it: inside the lips, off the corners, where the driver's lips are apart
    edge = torch.minimum(from_top, from_bottom) * half[:, None] / FEATHER
    corners = (1 - across.abs()) / CORNER_FADE
    apart = (d_gap - DRIVER_GAP[0]) / (DRIVER_GAP[1] - DRIVER_GAP[0])
    weight = edge.clamp(0, 1) * corners.clamp(0, 1) * apart.clamp(0, 1) * both[:, None]
    weight = weight.view(-1, 1, y1 - y0, x1 - x0)
    if not bool((weight > 0).any()):
        return images
    out = images.clone()
    region = out[:, :, y0:y1, x0:x1].float()
    if content == "gain":
        out[:, :, y0:y1, x0:x1] = ((region + 1) * (1 - weight) - 1).to(out.dtype)
        return out
    grid = (2 * at / driver_faces.shape[-1] - 1).view(-1, y1 - y0, x1 - x0, 2)
    inside = F.grid_sample(driver_faces.to(device, torch.float32), grid, mode="bilinear",
                           padding_mode="border", align_corners=False)
    out[:, :, y0:y1, x0:x1] = torch.lerp(region, inside, weight).to(out.dtype)
    return out

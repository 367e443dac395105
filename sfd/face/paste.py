"""Paste an animated face crop back into the full-size source image without a seam.

The crop is warped back to its box with the inverse of the crop affine and blended with a
feathered mask: 1 in the middle, falling smoothly to 0 over the outer `feather` fraction
of the crop, so the animated head fades into the untouched background. Only the part of
the image under the box is computed (the rest is copied as is), which keeps a 1280x720
frame at a few milliseconds.

A fade alone leaves a seam where the crop's content moved: a head that moves aside takes
the neck, shoulders and hair at the crop's border with it, and the image outside stays, so
the fade shows two necks. Given the crop's motion (`flow`), the image around the box is moved
too (`move_surroundings`): by the crop's own motion at its border, fading to none over
`SURROUND_MARGIN` of the side beyond it, so the body and background bend instead of breaking.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from sfd.errors import ImageError
from sfd.face.crop import CropBox

DEFAULT_FEATHER = 0.1
SURROUND_MARGIN = 0.25  # the image around the box follows its border's motion over this share of its side
FLOW_DEAD_ZONE = 0.004  # motion under this share of the side (a quarter pixel of a 64 px model) is jitter
_MAP_STEP = 4  # the surroundings' motion is computed every this many pixels, then interpolated


@lru_cache(maxsize=16)
def feather_mask(size: int, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """A ``size`` x ``size`` float32 mask: 1 inside, a smoothstep ramp to 0 at the borders.

    `feather` is the width of the ramp as a fraction of `size` (0: a hard edge). The
    array is cached and read-only; copy it before changing it.
    """
    if not 0 <= feather <= 0.5:
        raise ValueError(f"feather must be in [0, 0.5], got {feather}.")
    # Distance of each pixel centre from the nearest crop border, in pixels.
    d = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size)).astype(np.float32)
    ramp = feather * size
    t = np.clip(d / ramp, 0.0, 1.0) if ramp > 0 else np.ones_like(d)
    t = t * t * (3 - 2 * t)  # smoothstep: no visible kink where the ramp starts
    mask = np.minimum(t[:, None], t[None, :])
    mask.setflags(write=False)
    return mask


def paste_back(
    source: np.ndarray,
    crop_image: np.ndarray,
    box: CropBox,
    feather: float = DEFAULT_FEATHER,
    mask: np.ndarray | None = None,
    flow: np.ndarray | None = None,
) -> np.ndarray:
    """Blend `crop_image` (the animated crop of `box`) into a copy of `source`.

    Args:
        source: the full-size image (H x W x 3 uint8; H x W grayscale works too).
        crop_image: square ``size`` x ``size`` (x 3) uint8 crop, as `crop` returned it
            for `box` and the model animated it.
        box: the crop box the crop came from; it may reach beyond the image.
        feather: width of the soft edge as a fraction of the crop side.
        mask: optional extra ``size`` x ``size`` weight in crop space (float in [0, 1]
            or uint8 0-255, e.g. a face-parsing mask), multiplied with the feather.
        flow: optional motion of the crop's content, (2, h, w) float (x, y) at any grid size:
            where each crop point's content came from in `source`, as an offset in crop sides
            (a backward flow). The image around the box is moved with it (`move_surroundings`).

    Returns:
        A new image of exactly `source`'s height and width, equal to `source` outside
        the box. A grayscale source with a colour crop gives a colour image.
    """
    source = np.asarray(source)
    crop_image = np.asarray(crop_image)
    if source.ndim not in (2, 3) or crop_image.ndim not in (2, 3):
        raise ImageError(f"Expected images, got shapes {source.shape} (source) and {crop_image.shape} (crop).")
    if crop_image.shape[0] != crop_image.shape[1] or crop_image.shape[0] == 0:
        raise ImageError(f"The crop must be square, got shape {crop_image.shape}.")
    # Gray on one side only: promote it to 3 channels so both match.
    if source.ndim != crop_image.ndim:
        if source.ndim == 2:
            source = np.repeat(source[:, :, None], crop_image.shape[2], axis=2)
        else:
            crop_image = np.repeat(crop_image[:, :, None], source.shape[2], axis=2)
    if source.ndim == 3 and source.shape[2] != crop_image.shape[2]:
        raise ImageError(f"Channel counts differ: source {source.shape}, crop {crop_image.shape}.")

    # The middle of the box, where the crop is pasted whole, need not be moved (a mask may open it).
    covered = 0.0 if mask is not None else feather
    out = source.copy() if flow is None else move_surroundings(source, box, flow, covered=covered)
    h, w = source.shape[:2]
    size = crop_image.shape[0]
    # The image region that the box covers (whole pixels), clipped to the image.
    x0, y0 = max(0, math.floor(box.x0)), max(0, math.floor(box.y0))
    x1, y1 = min(w, math.ceil(box.x1)), min(h, math.ceil(box.y1))
    if x1 <= x0 or y1 <= y0:
        return out

    weight = feather_mask(size, feather)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape[:2] != (size, size):
            raise ImageError(f"The mask must be {size}x{size} like the crop, got shape {mask.shape}.")
        extra = mask.astype(np.float32) / (255.0 if mask.dtype == np.uint8 else 1.0)
        weight = weight * extra.reshape(size, size)

    # When the box is much smaller on screen than the crop, shrink the crop first with
    # area averaging: bilinear warping alone would alias (skip pixels).
    target = max(1, round(box.side))
    if size >= 2 * target:
        crop_image = cv2.resize(crop_image, (target, target), interpolation=cv2.INTER_AREA)
        weight = cv2.resize(weight, (target, target), interpolation=cv2.INTER_AREA)
        size = target

    inv = box.inverse_matrix(size)
    inv[:, 2] -= (x0, y0)  # into the coordinates of the region only
    dsize = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(crop_image, inv, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(weight, inv, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = out[y0:y1, x0:x1].astype(np.float32)
    # OpenCV drops a single channel axis; restore the region's layout for broadcasting.
    warped = warped.reshape(region.shape)
    alpha = alpha.reshape(region.shape[:2] + (1,) * (region.ndim - 2))
    region += (warped.astype(np.float32) - region) * alpha
    out[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    return out


def move_surroundings(image: np.ndarray, box: CropBox, flow: np.ndarray,
                      margin: float = SURROUND_MARGIN, covered: float = 0.0) -> np.ndarray:
    """A copy of `image` whose pixels under and around `box` are moved as `flow` says (see
    `paste_back`): inside the box by the flow there, outside by the flow at the nearest point of
    the box's border, fading smoothly to none `margin` box sides away. Motion under
    `FLOW_DEAD_ZONE` is left out, so a face that barely moves keeps the image's own pixels, and
    nothing is drawn from beyond the image's edges (the picture stretches there instead).
    `covered`: the caller pastes over the box whole beyond this share of its side from its
    border, so that middle is left as it is (the resampling is most of the cost)."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ImageError(f"The crop's flow must be (2, h, w), got shape {flow.shape}.")
    out = image.copy()
    h, w = image.shape[:2]
    reach = margin * box.side
    x0, y0 = max(0, math.floor(box.x0 - reach)), max(0, math.floor(box.y0 - reach))
    x1, y1 = min(w, math.ceil(box.x1 + reach)), min(h, math.ceil(box.y1 + reach))
    if x1 <= x0 or y1 <= y0:
        return out
    # The motion on a coarse grid of the region (cell centres as cv2.resize places them), in box sides.
    nx, ny = -(-(x1 - x0) // _MAP_STEP), -(-(y1 - y0) // _MAP_STEP)
    cell_x = x0 + (np.arange(nx, dtype=np.float32) + 0.5) * (x1 - x0) / nx  # in image pixels
    cell_y = y0 + (np.arange(ny, dtype=np.float32) + 0.5) * (y1 - y0) / ny
    u, v = np.meshgrid((cell_x - box.x0) / box.side, (cell_y - box.y0) / box.side)
    on_box_u, on_box_v = np.clip(u, 0, 1), np.clip(v, 0, 1)  # the nearest point of the box
    fade = np.clip(1 - np.hypot(u - on_box_u, v - on_box_v) / max(margin, 1e-6), 0, 1)
    fade = fade * fade * (3 - 2 * fade)
    grid_h, grid_w = flow.shape[1:]
    at_x, at_y = on_box_u * grid_w - 0.5, on_box_v * grid_h - 0.5
    motion = np.stack([cv2.remap(np.ascontiguousarray(c), at_x, at_y, cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE) for c in flow])
    length = np.hypot(motion[0], motion[1])
    kept = np.clip(length - FLOW_DEAD_ZONE, 0, None) / np.maximum(length, 1e-12)
    motion *= kept * fade * box.side  # in pixels
    if not motion.any():
        return out
    # Near the image's edges, motion that samples beyond them (where repeating the edge pixels
    # draws streaks) fades out over twice its size, so the picture stretches there; motion that
    # samples inward is kept. (Pixels out to half a cell beyond the outer cells take those cells'
    # motion, hence the half cell.)
    ramp = 2 * np.abs(motion).max() + 1
    for axis, cells, half_cell, length in ((0, cell_x[None, :], (x1 - x0) / nx / 2, w),
                                           (1, cell_y[:, None], (y1 - y0) / ny / 2, h)):
        to_start = np.clip((cells - half_cell) / ramp, 0, 1)
        to_end = np.clip((length - 1 - cells - half_cell) / ramp, 0, 1)
        motion[axis] *= np.where(motion[axis] < 0, to_start, to_end)
    size = (x1 - x0, y1 - y0)
    map_x = cv2.resize(motion[0], size, interpolation=cv2.INTER_LINEAR) + np.arange(x0, x1, dtype=np.float32)
    map_y = cv2.resize(motion[1], size, interpolation=cv2.INTER_LINEAR) + np.arange(y0, y1, dtype=np.float32)[:, None]
    # The middle left out (2 px inside the covered part, where the crop's fade is exactly 1): the
    # ring around it is moved as four bands, above, below, left and right of it.
    inset = covered * box.side + 2
    mx0, my0 = max(x0, math.ceil(box.x0 + inset)), max(y0, math.ceil(box.y0 + inset))
    mx1, my1 = min(x1, math.floor(box.x1 - inset)), min(y1, math.floor(box.y1 - inset))
    bands = [(x0, y0, x1, y1)]
    if covered > 0 and mx0 < mx1 and my0 < my1:
        bands = [(x0, y0, x1, my0), (x0, my1, x1, y1), (x0, my0, mx0, my1), (mx1, my0, x1, my1)]
    for bx0, by0, bx1, by1 in bands:
        if bx1 <= bx0 or by1 <= by0:
            continue
        band = (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0))
        # Bicubic: the moved image stays as sharp as it was (a fraction-of-a-pixel move blurs bilinearly).
        moved = cv2.remap(image, np.ascontiguousarray(map_x[band]), np.ascontiguousarray(map_y[band]),
                          cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        out[by0:by1, bx0:bx1] = moved.reshape(out[by0:by1, bx0:bx1].shape)  # OpenCV drops a single channel axis
    return out

"""Paste an animated face crop back into the full-size source image without a seam.

The crop is warped back to its box with the inverse of the crop affine and blended with a
feathered mask: 1 in the middle, falling smoothly to 0 over the outer `feather` fraction
of the crop, so the animated head fades into the untouched background. Only the part of
the image under the box is computed (the rest is copied as is), which keeps a 1280x720
frame at a few milliseconds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from sfd.errors import ImageError
from sfd.face.crop import CropBox

DEFAULT_FEATHER = 0.1


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

    out = source.copy()
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

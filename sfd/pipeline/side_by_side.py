"""The side-by-side comparison frame: driver | source | result, each panel the height of the result."""

from __future__ import annotations

import cv2
import numpy as np


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    """`image` resampled to `height` rows, its aspect ratio kept.

    Area averaging to shrink (no aliasing), Lanczos to enlarge (the sharpest of OpenCV's filters).
    """
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, round(w * height / h))
    interpolation = cv2.INTER_AREA if height < h else cv2.INTER_LANCZOS4
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _even_width(image: np.ndarray) -> np.ndarray:
    # The video writer drops an odd last column of the whole frame: dropping it per panel
    # instead keeps the result panel aligned with the result video's own (even) width.
    return image[:, : image.shape[1] - image.shape[1] % 2]


def side_by_side(driver: np.ndarray, source: np.ndarray, result: np.ndarray) -> np.ndarray:
    """One frame of driver | source | result at the result's height (uint8 RGB)."""
    height = result.shape[0]
    return np.hstack([_even_width(fit_height(driver, height)), _even_width(fit_height(source, height)),
                      _even_width(result)])

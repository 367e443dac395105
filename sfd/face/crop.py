"""Square crop boxes around faces, and cropping with an invertible affine.

The model works on square `size` x `size` face crops framed like VoxCeleb: the whole head
with some margin, the face a little below the centre. `CropBox.from_face` builds such a box
from a detected face box:

    side   = scale * sqrt(face width * face height)
    centre = face box centre + (offset_x, offset_y) * side

Defaults ``scale=2.0, offset_y=-0.05`` (the box moves up by 5% of its side so that hair and
forehead fit) reproduce the framing of the 256 px VoxCeleb-style portraits in the shared
face set: measured with MTCNN boxes there, their crops correspond to scale 1.8-2.0 and
offset_y -0.04 to -0.06; 2.0 keeps a little more margin. Raise `scale` for more background,
lower it for a tighter face.

Coordinates: a box ``(x0, y0, x1, y1)`` has its edges on pixel borders, so that pixel
``i`` spans ``[i, i + 1)`` and ``x1 - x0`` is a width in pixels. The affines returned here
use OpenCV's convention (pixel centres at integers) so they go straight to
``cv2.warpAffine``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sfd.errors import ImageError
from sfd.face.face import Face

DEFAULT_SCALE = 2.0
DEFAULT_OFFSET_X = 0.0
DEFAULT_OFFSET_Y = -0.05

_BORDERS = {
    "edge": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,
    "constant": cv2.BORDER_CONSTANT,
}


@dataclass(frozen=True)
class CropBox:
    """A square region of an image: centre ``(cx, cy)`` and side length, in pixels.

    It may reach beyond the image; `crop` pads what lies outside.
    """

    cx: float
    cy: float
    side: float

    def __post_init__(self):
        if not (self.side > 0 and math.isfinite(self.side) and math.isfinite(self.cx) and math.isfinite(self.cy)):
            raise ValueError(f"Invalid crop box: centre ({self.cx}, {self.cy}), side {self.side}.")

    @classmethod
    def from_face(
        cls,
        face: Face | tuple[float, float, float, float],
        scale: float = DEFAULT_SCALE,
        offset_x: float = DEFAULT_OFFSET_X,
        offset_y: float = DEFAULT_OFFSET_Y,
    ) -> CropBox:
        """The crop box around a face (a `Face` or an ``(x0, y0, x1, y1)`` face box).

        Args:
            scale: crop side over the face box's size (geometric mean of its width and
                height, which is steadier than either alone across detectors).
            offset_x, offset_y: shift of the centre as fractions of the crop side;
                negative `offset_y` moves the box up (more hair, less neck).
        """
        x0, y0, x1, y1 = (float(v) for v in (face.box if isinstance(face, Face) else face))
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0:
            raise ValueError(f"Empty face box {(x0, y0, x1, y1)}.")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}.")
        side = scale * math.sqrt(w * h)
        return cls((x0 + x1) / 2 + offset_x * side, (y0 + y1) / 2 + offset_y * side, side)

    @classmethod
    def full_frame(cls, height: int, width: int) -> CropBox:
        """The whole frame as the crop (for clips that are already face crops, e.g. VoxCeleb).

        A non-square frame gets the square of its longer side, centred, so nothing is cut
        off (the short side is padded).
        """
        return cls(width / 2.0, height / 2.0, float(max(height, width)))

    @property
    def x0(self) -> float:
        return self.cx - self.side / 2

    @property
    def y0(self) -> float:
        return self.cy - self.side / 2

    @property
    def x1(self) -> float:
        return self.cx + self.side / 2

    @property
    def y1(self) -> float:
        return self.cy + self.side / 2

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)``."""
        return (self.x0, self.y0, self.x1, self.y1)

    def on_pixels(self) -> CropBox:
        """The nearest box whose side is a whole number of pixels and whose corners lie on pixel
        borders: cropped at its own side, it is the image's pixels as they are, and pasted back
        they land where they were, with no resampling (a box a fraction of a pixel off is
        interpolated twice, crop and paste, which blurs a face that did not move)."""
        side = max(1, round(self.side))
        x0, y0 = round(self.cx - side / 2), round(self.cy - side / 2)
        return CropBox(x0 + side / 2, y0 + side / 2, float(side))

    def as_array(self) -> np.ndarray:
        """``[cx, cy, side]`` as float64 (for smoothing and statistics)."""
        return np.array([self.cx, self.cy, self.side], dtype=np.float64)

    def matrix(self, size: int) -> np.ndarray:
        """2x3 affine taking image pixel coordinates to ``size`` x ``size`` crop coordinates."""
        a = size / self.side
        # u + 0.5 = a * (x + 0.5 - x0): pixel centres sit at +0.5 from the pixel borders.
        return np.array([[a, 0.0, a * (0.5 - self.x0) - 0.5], [0.0, a, a * (0.5 - self.y0) - 0.5]], dtype=np.float64)

    def inverse_matrix(self, size: int) -> np.ndarray:
        """2x3 affine taking crop coordinates back to image coordinates (inverse of `matrix`)."""
        return cv2.invertAffineTransform(self.matrix(size))

    def intersects(self, height: int, width: int) -> bool:
        """Whether the box overlaps a ``height`` x ``width`` image at all."""
        return self.x1 > 0 and self.y1 > 0 and self.x0 < width and self.y0 < height


def crop_box(
    face: Face | tuple[float, float, float, float],
    scale: float = DEFAULT_SCALE,
    offset_x: float = DEFAULT_OFFSET_X,
    offset_y: float = DEFAULT_OFFSET_Y,
) -> CropBox:
    """Shorthand for `CropBox.from_face`."""
    return CropBox.from_face(face, scale=scale, offset_x=offset_x, offset_y=offset_y)


def crop(
    image: np.ndarray,
    box: CropBox,
    size: int = 256,
    border: str = "edge",
    fill: int = 0,
) -> np.ndarray:
    """Cut `box` out of `image` and resample it to ``size`` x ``size``.

    Args:
        image: H x W x C or H x W uint8 array (any channel count OpenCV handles).
        box: the crop box; it may reach beyond the image.
        size: side of the output in pixels.
        border: how to fill what lies outside the image: ``"edge"`` (repeat the border
            pixels; the default, as it adds no false edges or mirrored features),
            ``"reflect"`` (mirror), or ``"constant"`` (`fill`).
        fill: grey value for ``border="constant"``.

    Returns:
        The crop, ``size`` x ``size`` (x C). ``box.matrix(size)`` maps image to crop
        coordinates and ``box.inverse_matrix(size)`` back, which `paste_back` uses.
    """
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {', '.join(_BORDERS)}, got {border!r}.")
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"Expected an H x W or H x W x C image, got shape {image.shape}.")
    m = box.matrix(size)
    k = int(box.side // size)
    if k >= 2:
        # Shrinking by k or more: bilinear warping would skip pixels (aliasing), so first
        # average k x k blocks of the region around the box (INTER_AREA) and warp that.
        image, m = _area_shrink(image, box, k, m)
    return cv2.warpAffine(
        image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=_BORDERS[border], borderValue=(fill,) * 4
    )


def _area_shrink(image: np.ndarray, box: CropBox, k: int, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrink the part of `image` under `box` by the integer factor `k`; adjust `m` to match."""
    h, w = image.shape[:2]
    # The box's pixel range plus a k-pixel margin for interpolation, clipped to the image.
    x0 = max(0, math.floor(box.x0) - k)
    y0 = max(0, math.floor(box.y0) - k)
    x1 = min(w, math.ceil(box.x1) + k)
    y1 = min(h, math.ceil(box.y1) + k)
    # Whole k x k blocks only: up to k-1 pixels at a clipped right/bottom image edge are
    # dropped, less than one output pixel.
    nx, ny = (x1 - x0) // k, (y1 - y0) // k
    if nx < 2 or ny < 2:  # the box barely touches the image: nothing worth shrinking
        return image, m
    roi = image[y0 : y0 + ny * k, x0 : x0 + nx * k]
    small = cv2.resize(roi, (nx, ny), interpolation=cv2.INTER_AREA)
    # Small pixel (u, v) is the mean of image pixels k*u+x0 .. k*u+x0+k-1: its centre is
    # at x = k*u + x0 + (k-1)/2. Compose: image coords of small pixels, then `m`.
    to_image = np.array([[k, 0, x0 + (k - 1) / 2], [0, k, y0 + (k - 1) / 2], [0, 0, 1]], dtype=np.float64)
    return small, m @ to_image

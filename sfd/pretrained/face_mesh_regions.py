"""Named regions of MediaPipe's 468-point face mesh, measurements on it, and region masks.

Every function takes points of shape (N, 468, 3) (or (N, 468, 2) where depth is not needed) as
`FaceMesh` gives them (x right, y down, z away from the camera, all in the same pixel units) and is
differentiable, so it can drive a landmark loss.

"Left" and "right" are the subject's own (MediaPipe's naming): in a frontal face the left eye is
on the image's right. Distances are 3-D (x, y, z) when z is given, which keeps them steady when
the head turns; ratios are divided by the inter-ocular distance (outer eye corners).

The index lists are vertex numbers of MediaPipe's canonical face mesh topology (Apache-2.0), each
written as one closed contour, in order, so that it can be drawn or filled as a polygon.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# closed contours, in drawing order (each ends next to where it starts)
OUTER_LIPS = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291,  # lower lip, left to right in the image
              409, 270, 269, 267, 0, 37, 39, 40, 185]               # upper lip, back
INNER_LIPS = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308,
              415, 310, 311, 312, 13, 82, 81, 80, 191]
RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133,     # lower lid, outer to inner corner
             173, 157, 158, 159, 160, 161, 246]            # upper lid, back
LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362,
            398, 384, 385, 386, 387, 388, 466]
RIGHT_BROW = [70, 63, 105, 66, 107,                         # upper edge, outer to inner
              55, 65, 52, 53, 46]                           # lower edge, back
LEFT_BROW = [300, 293, 334, 296, 336,
             285, 295, 282, 283, 276]
# The eye with its upper lid: the lower lid, then the brow's lower edge back. Unlike the eye
# contour, this area does not shrink to nothing when the eye closes, so a blink stays inside it.
RIGHT_EYE_AREA = RIGHT_EYE[:9] + RIGHT_BROW[5:]
LEFT_EYE_AREA = LEFT_EYE[:9] + LEFT_BROW[5:]
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]

# Points that move with the skull and not with the jaw, lids or brows: the upper face oval down to
# the ears, the eye corners, the nose. A similarity fitted on them is the head's own motion.
HEAD_POINTS = (FACE_OVAL[:9] + FACE_OVAL[28:] + [33, 133, 263, 362]
               + [168, 6, 197, 195, 5, 4, 1, 2, 98, 327])

REGIONS = {
    "outer_lips": OUTER_LIPS, "inner_lips": INNER_LIPS, "left_eye": LEFT_EYE, "right_eye": RIGHT_EYE,
    "left_brow": LEFT_BROW, "right_brow": RIGHT_BROW, "face_oval": FACE_OVAL,
    "left_eye_area": LEFT_EYE_AREA, "right_eye_area": RIGHT_EYE_AREA,
}

# single points
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_OUTER, LEFT_EYE_INNER = 33, 133, 263, 362
MOUTH_RIGHT, MOUTH_LEFT = 61, 291  # outer mouth corners
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
NOSE_TIP, NOSE_BRIDGE, CHIN, FOREHEAD = 1, 168, 152, 10
# pairs that open and close: inner lips (upper, lower) and eyelids (upper, lower), middle and either side
INNER_LIP_PAIRS = [(82, 87), (13, 14), (312, 317)]
RIGHT_LID_PAIRS = [(160, 144), (159, 145), (158, 153)]
LEFT_LID_PAIRS = [(387, 373), (386, 374), (385, 380)]
# rigid left/right pairs (subject's left first) for the head's x axis: eye corners, cheeks at the ears
_SIDE_PAIRS = [(LEFT_EYE_OUTER, RIGHT_EYE_OUTER), (LEFT_EYE_INNER, RIGHT_EYE_INNER), (454, 234), (356, 127)]
# rigid top and bottom for the head's y axis: forehead top, nose bridge; base of the nose
_TOP, _BOTTOM = [FOREHEAD, NOSE_BRIDGE], [2, 98, 327]


def _distance(points: torch.Tensor, a, b) -> torch.Tensor:
    return torch.linalg.vector_norm(points[:, a] - points[:, b], dim=-1)


def _pairs_distance(points: torch.Tensor, pairs) -> torch.Tensor:
    upper, lower = zip(*pairs)
    return _distance(points, list(upper), list(lower)).mean(-1)


def inter_ocular(points: torch.Tensor) -> torch.Tensor:
    """(N,) distance between the outer eye corners, the unit of the ratios below."""
    return _distance(points, LEFT_EYE_OUTER, RIGHT_EYE_OUTER)


def mouth_opening(points: torch.Tensor) -> torch.Tensor:
    """(N,) gap between the inner lips (mean of three vertical pairs) over the inter-ocular distance;
    about 0 for a closed mouth."""
    return _pairs_distance(points, INNER_LIP_PAIRS) / inter_ocular(points)


def mouth_width(points: torch.Tensor) -> torch.Tensor:
    """(N,) distance between the outer mouth corners over the inter-ocular distance."""
    return _distance(points, MOUTH_LEFT, MOUTH_RIGHT) / inter_ocular(points)


def eye_opening(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right), each (N,): lid gap (mean of three pairs) over that eye's corner-to-corner width."""
    left = _pairs_distance(points, LEFT_LID_PAIRS) / _distance(points, LEFT_EYE_OUTER, LEFT_EYE_INNER)
    right = _pairs_distance(points, RIGHT_LID_PAIRS) / _distance(points, RIGHT_EYE_OUTER, RIGHT_EYE_INNER)
    return left, right


def brow_height(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right), each (N,): distance from the brow's mean point to the middle of that eye's
    corners (steady when the eye blinks) over the inter-ocular distance."""
    iod = inter_ocular(points)
    result = []
    for brow, outer, inner in ((LEFT_BROW, LEFT_EYE_OUTER, LEFT_EYE_INNER),
                               (RIGHT_BROW, RIGHT_EYE_OUTER, RIGHT_EYE_INNER)):
        eye = (points[:, outer] + points[:, inner]) / 2
        result.append(torch.linalg.vector_norm(points[:, brow].mean(1) - eye, dim=-1) / iod)
    return result[0], result[1]


def face_centre(points: torch.Tensor) -> torch.Tensor:
    """(N, 2): mean x, y of the face oval."""
    return points[:, FACE_OVAL, :2].mean(1)


def face_scale(points: torch.Tensor) -> torch.Tensor:
    """(N,): root-mean-square distance of the face oval from its centre, in x, y (about half the face's
    size; follows zoom, steady under expressions)."""
    oval = points[:, FACE_OVAL, :2]
    return (oval - oval.mean(1, keepdim=True)).square().sum(-1).mean(1).sqrt()


def head_rotation(points: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotation whose columns are the head's axes in camera coordinates (x right, y down,
    z away): x from the subject's right to left side, y from the forehead down the nose, z = x cross y
    (into the head). Built from rigid points only, so expressions barely move it."""
    left, right = zip(*_SIDE_PAIRS)
    x_axis = (points[:, list(left)] - points[:, list(right)]).mean(1)
    y_axis = points[:, _BOTTOM].mean(1) - points[:, _TOP].mean(1)
    x_axis = F.normalize(x_axis, dim=-1)
    y_axis = F.normalize(y_axis - (y_axis * x_axis).sum(-1, keepdim=True) * x_axis, dim=-1)
    z_axis = torch.cross(x_axis, y_axis, dim=-1)
    return torch.stack([x_axis, y_axis, z_axis], -1)


# The forehead-to-nose line leans back from the camera's vertical when a face looks into the camera;
# this lean (degrees) is the median over the first frames of 33 frontal talking-head clips (MEAD
# front camera, HDTF-style interviews; spread about +-8), so that pitch is about 0 for such faces.
PITCH_OFFSET_DEGREES = 8.0


def head_pose(points: torch.Tensor) -> torch.Tensor:
    """(N, 3) yaw, pitch, roll in degrees, from the 3-D points.

    yaw > 0: the face turns towards the image's right (its nose points right); pitch > 0: the face
    looks up; roll > 0: the face is turned counter-clockwise in the image (its left eye, on the
    image's right, higher). Decomposed as R = Ry(-yaw) Rx(-pitch) Rz(-roll) in camera axes, so that
    a mirrored image negates yaw and roll.
    """
    r = head_rotation(points)
    yaw = torch.atan2(-r[:, 0, 2], r[:, 2, 2])
    pitch = torch.asin(r[:, 1, 2].clamp(-1.0, 1.0))
    roll = torch.atan2(-r[:, 1, 0], r[:, 1, 1])
    degrees = torch.stack([yaw, pitch, roll], -1) * (180.0 / math.pi)
    return degrees - degrees.new_tensor([0.0, PITCH_OFFSET_DEGREES, 0.0])


# ---------------------------------------------------------------- masks


def polygon_mask(polygons: torch.Tensor, size: int | tuple[int, int], softness: float = 0.0) -> torch.Tensor:
    """(N, 1, H, W) masks of closed polygons (N, K, 2) given in that mask's pixels (pixel i spans
    [i, i + 1)).

    softness 0: hard 0/1 (even-odd rule, no gradient); > 0: sigmoid of the signed distance to the
    outline in pixels over `softness`, differentiable w.r.t. the points. A repeated vertex (a
    zero-length edge) changes nothing, so polygons of different lengths can share a batch padded.
    """
    height, width = (size, size) if isinstance(size, int) else size
    n, k, _ = polygons.shape
    py = (torch.arange(height, dtype=polygons.dtype, device=polygons.device) + 0.5).view(1, 1, -1, 1)
    px = (torch.arange(width, dtype=polygons.dtype, device=polygons.device) + 0.5).view(1, 1, 1, -1)
    a, b = polygons, polygons.roll(-1, dims=1)  # edge i runs from vertex i to vertex i + 1
    ax, ay, bx, by = (t[..., None, None] for t in (a[..., 0], a[..., 1], b[..., 0], b[..., 1]))  # (N, K, 1, 1)
    # Edges in chunks: all at once is a few dozen operations instead of a dozen per edge (what a
    # GPU step pays for), and the chunks bound the memory at about 2^24 pixels x edges.
    chunk = max(1, min(k, 2**24 // max(1, n * height * width)))
    crossings = torch.zeros(n, height, width, dtype=torch.int32, device=polygons.device)
    nearest = None
    for i in range(0, k, chunk):
        e = slice(i, i + chunk)
        crosses = (ay[:, e] > py) != (by[:, e] > py)  # (N, c, H, 1)
        x_at = ax[:, e] + (py - ay[:, e]) * (bx[:, e] - ax[:, e]) / torch.where(by[:, e] == ay[:, e], 1.0, by[:, e] - ay[:, e])
        crossings += (crosses & (px < x_at)).sum(1, dtype=torch.int32)
        if softness > 0:
            ex, ey = bx[:, e] - ax[:, e], by[:, e] - ay[:, e]
            t = (((px - ax[:, e]) * ex + (py - ay[:, e]) * ey) / (ex * ex + ey * ey).clamp_min(1e-12)).clamp(0, 1)
            d2 = ((px - ax[:, e] - t * ex).square() + (py - ay[:, e] - t * ey).square()).amin(1)
            nearest = d2 if nearest is None else torch.minimum(nearest, d2)
    inside = crossings % 2 == 1
    if softness <= 0:
        return inside.to(polygons.dtype).unsqueeze(1)
    signed = torch.where(inside, 1.0, -1.0).to(polygons.dtype) * (nearest + 1e-12).sqrt()
    return torch.sigmoid(signed / softness).unsqueeze(1)


def region_mask(points: torch.Tensor, region: str | list[int], size: int | tuple[int, int],
                points_size: int | tuple[int, int] | None = None, softness: float = 0.0) -> torch.Tensor:
    """(N, 1, H, W) mask of a region (a key of REGIONS or a contour of indices) at resolution `size`;
    `points_size` is the (H, W) or side of the image the points are in (default: `size`)."""
    indices = REGIONS[region] if isinstance(region, str) else list(region)
    return polygon_mask(_in_mask_pixels(points[:, indices], size, points_size), size, softness)


def regions_mask(points: torch.Tensor, regions: list[str], size: int | tuple[int, int],
                 points_size: int | tuple[int, int] | None = None, softness: float = 0.0) -> torch.Tensor:
    """(N, 1, H, W) union of several regions' masks (keys of REGIONS), drawn as one batch."""
    longest = max(len(REGIONS[r]) for r in regions)
    # each contour padded with its last vertex: the extra edges have no length
    contours = [i for r in regions for i in REGIONS[r] + [REGIONS[r][-1]] * (longest - len(REGIONS[r]))]
    polygons = _in_mask_pixels(points[:, contours], size, points_size).reshape(-1, longest, 2)
    masks = polygon_mask(polygons, size, softness)
    return masks.view(points.shape[0], len(regions), *masks.shape[-2:]).amax(1, keepdim=True)


def _in_mask_pixels(points: torch.Tensor, size, points_size) -> torch.Tensor:
    """(N, K, 2) x, y of `points` (N, K, >=2) moved from `points_size` pixels to `size` pixels."""
    height, width = (size, size) if isinstance(size, int) else size
    source = points_size if points_size is not None else (height, width)
    source_h, source_w = (source, source) if isinstance(source, int) else source
    if (source_w, source_h) == (width, height):
        return points[..., :2]
    return torch.stack([points[..., 0] * (width / source_w), points[..., 1] * (height / source_h)], -1)


def mouth_mask(points: torch.Tensor, size, points_size=None, softness: float = 0.0,
               inner: bool = False) -> torch.Tensor:
    """The lips and the mouth between them (outer contour), or only the opening (`inner`)."""
    return region_mask(points, "inner_lips" if inner else "outer_lips", size, points_size, softness)


def eyes_mask(points: torch.Tensor, size, points_size=None, softness: float = 0.0,
              with_lids: bool = False) -> torch.Tensor:
    """Both eyes: the visible eyeball between the lids, or (`with_lids`) the eye with its upper lid
    up to the brow, an area that keeps its size through a blink."""
    left, right = ("left_eye_area", "right_eye_area") if with_lids else ("left_eye", "right_eye")
    return torch.maximum(region_mask(points, left, size, points_size, softness),
                         region_mask(points, right, size, points_size, softness))

"""`DriverWarp`: a random similarity (and optional mild elastic) warp of the driving frame alone.

Real pairs of a short clip differ little, and a still has no second frame at all; warping the
driving frame gives the model motion it must explain (the warped frame is the reconstruction
target), with the transform known exactly.

Matrices follow `torch.nn.functional.affine_grid` (``align_corners=False``): a 2x3 ``theta`` maps
each *output* pixel's normalised position (x, y in [-1, 1], y pointing down) to where it is read
in the input, ``input = theta @ (x, y, 1)``. So content at input position p lands at
``inverse(theta)(p)`` in the warped frame (`warped_position`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

PADDING_MODES = ("reflection", "border", "zeros")


def identity_matrix() -> torch.Tensor:
    """The 2x3 ``theta`` that leaves a frame as it is."""
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def similarity_matrix(angle_deg: float, scale: float = 1.0, shift_x: float = 0.0, shift_y: float = 0.0) -> torch.Tensor:
    """``theta`` (2, 3) that turns a square frame's content by `angle_deg` about the centre (positive:
    clockwise on screen), scales it by `scale` and then moves it by (`shift_x`, `shift_y`) fractions
    of the side (positive: right, down)."""
    values = torch.tensor([[angle_deg, scale, shift_x, shift_y]], dtype=torch.float64)
    return similarity_matrices(*values.unbind(1))[0].float()


def similarity_matrices(angle_deg: torch.Tensor, scale: torch.Tensor, shift_x: torch.Tensor,
                        shift_y: torch.Tensor) -> torch.Tensor:
    """`similarity_matrix` for a batch: (B,) tensors -> ``theta`` (B, 2, 3) in their dtype and device."""
    a = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(a), torch.sin(a)
    # Forward map of the content: out = scale * R @ in + t (t in normalised units, side = 2). affine_grid
    # wants the way back, where each output pixel reads from: in = R^T (out - t) / scale.
    inv_cos, inv_sin = cos / scale, sin / scale
    tx, ty = 2.0 * shift_x, 2.0 * shift_y
    row_x = torch.stack([inv_cos, inv_sin, -(inv_cos * tx + inv_sin * ty)], -1)
    row_y = torch.stack([-inv_sin, inv_cos, inv_sin * tx - inv_cos * ty], -1)
    return torch.stack([row_x, row_y], -2)


def warped_position(theta: torch.Tensor, xy: torch.Tensor, size: int) -> torch.Tensor:
    """Where input pixels `xy` (..., 2) (x, y in pixels, pixel centres at integers) land in a
    `size` x `size` frame warped by `theta`."""
    normalised = (2.0 * xy.double() + 1.0) / size - 1.0
    matrix = torch.cat([theta.double(), torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)])
    forward = torch.linalg.inv(matrix)
    out = normalised @ forward[:2, :2].T + forward[:2, 2]
    return ((out + 1.0) * size - 1.0) / 2.0


def warp_image(image: torch.Tensor, theta: torch.Tensor, displacement: torch.Tensor | None = None,
               padding_mode: str = "reflection") -> torch.Tensor:
    """`image` (3, H, W) or (B, 3, H, W) resampled through `theta` (2, 3) or (B, 2, 3).

    `displacement` (H, W, 2) or (B, H, W, 2), in normalised units, is added to the sampling grid
    (the elastic part). Reflection or border padding fill what comes in from outside the frame
    with image content rather than black corners the model would have to reproduce.
    """
    single = image.dim() == 3
    x = image[None] if single else image
    theta = theta.to(x.dtype).to(x.device)
    theta = theta.expand(x.shape[0], 2, 3) if theta.dim() == 2 else theta
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if displacement is not None:
        grid = grid + displacement.to(grid)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out[0] if single else out


@dataclass(frozen=True)
class DriverWarp:
    """Random warps of a (square) driving frame.

    Args:
        rotation_deg: rotation drawn uniformly in [-rotation_deg, rotation_deg].
        scale: zoom factor drawn in [1 - scale, 1 + scale].
        shift: shift along each axis drawn in [-shift, shift], as a fraction of the side.
        elastic_amplitude: largest elastic displacement, as a fraction of the side (0: none). The
            field is drawn on an `elastic_grid` x `elastic_grid` lattice and upsampled bicubically,
            so it is smooth: a mild non-rigid change of shape, not a texture distortion.
        padding_mode: ``"reflection"`` or ``"border"`` (``"zeros"`` leaves black corners).
    """

    rotation_deg: float = 15.0
    scale: float = 0.1
    shift: float = 0.1
    elastic_amplitude: float = 0.0
    elastic_grid: int = 4
    padding_mode: str = "reflection"

    def __post_init__(self):
        if self.rotation_deg < 0 or self.shift < 0 or self.elastic_amplitude < 0:
            raise ValueError("rotation_deg, shift and elastic_amplitude cannot be negative")
        if not 0 <= self.scale < 1:
            raise ValueError(f"scale must lie in [0, 1), got {self.scale}")
        if self.elastic_grid < 2:
            raise ValueError(f"elastic_grid must be at least 2, got {self.elastic_grid}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {self.padding_mode!r}")

    def sample_matrix(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random similarity ``theta`` (2, 3)."""
        u = torch.rand(4, generator=generator, dtype=torch.float64) * 2 - 1
        return self._matrices(u[None])[0].float()

    def sample_matrices(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`batch` random similarities (B, 2, 3), drawn on the generator's device (the GPU's own RNG
        for a batch that lives there)."""
        device = generator.device if generator is not None else "cpu"
        u = torch.rand(batch, 4, generator=generator, device=device) * 2 - 1
        return self._matrices(u)

    def _matrices(self, u: torch.Tensor) -> torch.Tensor:
        """(B, 2, 3) similarities from uniform draws u (B, 4) in [-1, 1]: angle, scale, shift x, shift y."""
        return similarity_matrices(u[:, 0] * self.rotation_deg, 1.0 + u[:, 1] * self.scale,
                                   u[:, 2] * self.shift, u[:, 3] * self.shift)

    def sample_displacement(self, size: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """A smooth random displacement field (size, size, 2) in normalised units, or None when off."""
        fields = self.sample_displacements(1, size, generator)
        return None if fields is None else fields[0]

    def sample_displacements(self, batch: int, size: int, generator: torch.Generator | None = None
                             ) -> torch.Tensor | None:
        """`batch` smooth displacement fields (B, size, size, 2), or None when the elastic part is off."""
        if self.elastic_amplitude <= 0:
            return None
        device = generator.device if generator is not None else "cpu"
        coarse = torch.rand(batch, 2, self.elastic_grid, self.elastic_grid, generator=generator, device=device) * 2 - 1
        field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
        # Bicubic overshoot can pass the lattice values a little; the amplitude is a bound.
        field = field.clamp(-1, 1) * (2.0 * self.elastic_amplitude)
        return field.permute(0, 2, 3, 1)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """A randomly warped copy of `image` (3, S, S) and its similarity ``theta`` (2, 3).

        With an elastic part the warp is ``theta`` plus a small smooth displacement on top.
        """
        height, width = image.shape[-2:]
        if height != width:
            raise ValueError(f"DriverWarp takes square frames, got {width}x{height}")
        theta = self.sample_matrix(generator)
        displacement = self.sample_displacement(height, generator)
        return warp_image(image, theta, displacement, self.padding_mode), theta

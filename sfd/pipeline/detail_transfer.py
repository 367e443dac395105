"""Detail transfer: paste the animated face back at the source's resolution, not the model's.

The model renders faces at its own size (64 px for the bundled demo, 256 px for vox256), while
the face in a source photo is often several times larger: upsampled, the rendered face is
blurred. The source crop's fine detail, i.e. the crop at paste resolution minus the model-size
crop upsampled, is moved with the generator's final flow and added back wherever that flow
samples inside the crop. A driver that does not move therefore gives back the source's own
pixels, and a moving face keeps its texture.

The detail is not weighted by the generator's image blend mask (where its output is a warp of the
source rather than its own rendering). That mask falls as the head moves further, over the eyes,
nose and mouth most (to half at the centre of the face for a head swaying sideways), so weighted
by it a face turned aside came out as the blurred 64 px render. Unweighted, on the test clips,
LPIPS went from 0.088 to 0.086 and the identity distance from 0.281 to 0.274 (docs/experiments.md).

Two things keep that detail sharp. The source's crop box lies on pixel borders
(`CropBox.on_pixels`), so the detail is cut out of the photo and pasted back into it as it is,
not interpolated twice at a fraction of a pixel. And the detail is resampled bicubically: the
flow moves it by fractions of a pixel, where bilinear weights average neighbouring pixels (white
noise moved by half a pixel keeps 71 % of its contrast bilinearly, 85 % bicubically). On the test
clips the two took LPIPS from 0.099 to 0.089 (docs/experiments.md).

Faces larger than `WORKING_SIDE` are drawn, retargeted (`face_retargeting`) and read at that
side, and the rest of their detail, what the working side lacks of the crop at the box's own
side (`DetailLayer.fine`), goes in once, at the end (`add_fine_detail`): the working-side face is
upsampled and the fine detail is sampled where each of its pixels took its content from in the
source crop (`source_coordinates`, carried through the retargeting's warps like an image). So a
face keeps all of its detail up to `MAX_FULL_SIDE`, resampled once, and the per-frame work at
the crop's own side is one bicubic resampling and two resizes instead of every warp. Where the
mouth transfer darkens the inside of a mouth it opened, the fine detail there is darkened alike
(`gain`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..face import CropBox
from ..face import crop as crop_image
from ..models.generator import identity_grid, pixel_centres

# Faces are drawn, retargeted and read at most at this side; the detail above it goes in at the end.
WORKING_SIDE = 512
# ... up to this side (a face filling a 4K video frame is pasted from this size): a frame's work
# and a layer's memory grow with the square of the side.
MAX_FULL_SIDE = 2048


@dataclass
class DetailLayer:
    """The fine detail of source faces, in the model's [-1, 1] units: `residual` (1 or B, 3, side,
    side) at the working side, and for faces larger than that, `fine` (1 or B, 3, S, S; float16),
    what the working side lacks of the crop at the box's own side S."""

    residual: torch.Tensor
    fine: torch.Tensor | None = None

    @property
    def side(self) -> int:
        """The working side: faces are drawn with `residual` at this side."""
        return self.residual.shape[-1]

    @property
    def full_side(self) -> int:
        """The side the faces are pasted back at."""
        return self.side if self.fine is None else self.fine.shape[-1]


def _to_model_units(images: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def _resize(x: torch.Tensor, side: int) -> torch.Tensor:
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)


def detail_layer(image: np.ndarray, box: CropBox, model_crop: np.ndarray,
                 device: torch.device | str = "cpu") -> DetailLayer | None:
    """The detail of `image` inside `box` that the model-size `model_crop` of that box lacks.

    None when the face is not larger on screen than the model's crop (nothing to add).
    """
    return detail_layers([image], [box], model_crop[None], device)


def detail_layers(images, boxes, model_crops: np.ndarray, device: torch.device | str = "cpu") -> DetailLayer | None:
    """`detail_layer` for a batch of frames (each with its own box): `residual` at the working
    side, `fine` at the largest box's side (at most `MAX_FULL_SIDE`)."""
    size = model_crops.shape[1]
    full = min(round(max(box.side for box in boxes)), MAX_FULL_SIDE)
    if full <= size:
        return None
    device = torch.device(device)
    side = min(full, max(WORKING_SIDE, size))
    working, fine = [], []
    for image, box in zip(images, boxes):  # a frame at a time: a batch of large crops is gigabytes
        sharp = _to_model_units(crop_image(image, box, full)[None], device)
        if side < full:  # the working side's crop low-passed, so that what it lacks is all in `fine`
            low = F.interpolate(sharp, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            # float16: under a tenth of a grey level off, and half the memory of a large face's layer
            fine.append((sharp - _resize(low, full)).half())
            sharp = low
        working.append(sharp)
    blurred = _resize(_to_model_units(model_crops, device), side)
    return DetailLayer(residual=torch.cat(working) - blurred, fine=torch.cat(fine) if fine else None)


def source_coordinates(flow: torch.Tensor, side: int) -> torch.Tensor:
    """Where each pixel of faces drawn with the generator's final `flow` (B, 2, h, w) took its
    content from in the source crop: (B, 2, side, side), x and y in grid_sample's [-1, 1] units
    (`align_corners=False`)."""
    flow = _resize(flow.float(), side)
    return identity_grid(side, flow.device, flow.dtype).permute(0, 3, 1, 2) + flow


def _sample(detail: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """`detail` (1 or B, 3, S, S) sampled at `grid` (B, H, W, 2), grid_sample's layout."""
    # Zero padding: no detail comes from outside the crop. Bicubic: see the module doc.
    detail = detail.to(grid.device, torch.float32).expand(grid.shape[0], -1, -1, -1)
    return F.grid_sample(detail, grid, mode="bicubic", padding_mode="zeros", align_corners=False)


def add_detail(images: torch.Tensor, flow: torch.Tensor, detail: DetailLayer,
               coordinates: torch.Tensor | None = None) -> torch.Tensor:
    """Generated images (B, 3, size, size) at the detail's working side with the source's detail added.

    `flow` is the generator's final flow (`SFDModel.generate(..., return_warp=True)`): the detail
    is warped like the source image. `coordinates`: `source_coordinates(flow, detail.side)` where
    the caller has them already.
    """
    if coordinates is None:
        coordinates = source_coordinates(flow, detail.side)
    grid = coordinates.permute(0, 2, 3, 1)
    return _resize(images.float(), detail.side) + _sample(detail.residual, grid)


def add_fine_detail(faces: torch.Tensor, coordinates: torch.Tensor, fine: torch.Tensor,
                    gain: torch.Tensor | None = None) -> torch.Tensor:
    """Faces at the working side (B, 3, side, side; `add_detail`'s, perhaps retargeted since) at
    the side of the fine detail `fine` (`DetailLayer.fine`, 1 or B of them), moved in: sampled at
    `coordinates` (B, 2, side, side; `source_coordinates`, through the same warps as the faces)
    upsampled, and scaled by `gain` (B, 1, side, side) where given (the mouth's shading)."""
    full, side = fine.shape[-1], coordinates.shape[-1]
    # The offsets from each side's own pixel centres are what is resized: a resized grid would
    # stop half a working pixel short of the crop's edges. Built in grid_sample's layout, the
    # pixel centres added in place: at the crop's side every copy counts.
    offsets = coordinates.float() - identity_grid(side, coordinates.device, torch.float32).permute(0, 3, 1, 2)
    grid = _resize(offsets, full).permute(0, 2, 3, 1).contiguous()
    axis = pixel_centres(full, grid.device)
    grid[..., 0] += axis
    grid[..., 1] += axis[:, None]
    moved = _sample(fine, grid)
    if gain is not None:
        moved *= _resize(gain.float(), full)
    return moved.add_(_resize(faces.float(), full))

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..face import CropBox
from ..face import crop as crop_image
from ..models.generator import identity_grid

# Detail is kept up to this crop side (px): larger faces are pasted from a crop of this size.
MAX_DETAIL_SIDE = 1024


@dataclass
class DetailLayer:
    """The fine detail of source faces: (1 or B, 3, side, side) float32, in the model's [-1, 1] units."""

    residual: torch.Tensor

    @property
    def side(self) -> int:
        return self.residual.shape[-1]


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
    """`detail_layer` for a batch of frames (each with its own box), at the largest box's side."""
    size = model_crops.shape[1]
    side = min(round(max(box.side for box in boxes)), MAX_DETAIL_SIDE)
    if side <= size:
        return None
    device = torch.device(device)
    sharp = _to_model_units(np.stack([crop_image(image, box, side) for image, box in zip(images, boxes)]), device)
    blurred = _resize(_to_model_units(model_crops, device), side)
    return DetailLayer(residual=sharp - blurred)


def add_detail(images: torch.Tensor, flow: torch.Tensor, detail: DetailLayer) -> torch.Tensor:
    """Generated images (B, 3, size, size) at the detail's side with the source's detail added.

    `flow` is the generator's final flow (`SFDModel.generate(..., return_warp=True)`): the detail
    is warped like the source image.
    """
    side = detail.side
    images, flow = images.float(), flow.float()
    flow = _resize(flow, side)
    grid = identity_grid(side, flow.device, flow.dtype) + flow.permute(0, 2, 3, 1)
    residual = detail.residual.to(flow.device).expand(flow.shape[0], -1, -1, -1)
    # Zero padding: no detail comes from outside the crop. Bicubic: see the module doc.
    moved = F.grid_sample(residual, grid, mode="bicubic", padding_mode="zeros", align_corners=False)
    return _resize(images, side) + moved

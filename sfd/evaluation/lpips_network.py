"""`LPIPS`: the learned perceptual distance of Zhang et al. (CVPR 2018), AlexNet variant.

Our own implementation of the published recipe:
- inputs in [-1, 1] are shifted and scaled per channel to ImageNet statistics
  (shift -0.030, -0.088, -0.188; scale 0.458, 0.448, 0.450);
- the AlexNet trunk (torchvision's layout) is tapped after each of its five ReLUs
  (64, 192, 384, 256, 256 channels);
- each tapped feature is normalised to unit length along channels, the two images' features
  are subtracted and squared, weighted per channel by a learned 1x1 convolution (no bias),
  averaged over space, and the five layers are summed.

Weights: one safetensors file. Keys in our layout (`features.{0,3,6,8,10}.{weight,bias}`,
`lins.{0..4}.weight`), in torchvision's AlexNet layout plus the heads (`classifier.*` is
ignored), or as the `lpips` package's model state (`net.slice{k}.{i}.*`, `lin{k}.model.1.weight`)
all load. Make it with ``python -m sfd.evaluation.convert lpips --alexnet ALEXNET.pth
--heads alex.pth OUT.safetensors``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from .metrics import image_pair, per_image
from .weights import load_strict, read_safetensors

TAPS = (1, 4, 7, 9, 11)  # indices of AlexNet's ReLUs in `features`
CHANNELS = (64, 192, 384, 256, 256)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
ARCHITECTURE = "lpips-alexnet"


def alexnet_trunk() -> nn.Sequential:
    """AlexNet's convolutional trunk up to its fifth ReLU, with torchvision's module indices."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
    )


def our_key(key: str) -> str | None:
    """Map the keys of the accepted layouts to ours."""
    if key.startswith("classifier."):
        return None  # torchvision AlexNet's classifier: not part of LPIPS
    if m := re.fullmatch(r"net\.slice\d\.(\d+)\.(weight|bias)", key):  # the lpips package keeps AlexNet's indices
        return f"features.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"lin(\d)\.model\.1\.weight", key):  # lpips: Dropout, then the 1x1 conv
        return f"lins.{m[1]}.weight"
    return key


class LPIPS(nn.Module):
    """LPIPS distance (AlexNet). `forward(x, y)` takes (N, 3, H, W) in [-1, 1] and returns (N,).

    Images need at least about 32 px on a side (AlexNet's stride 4 and two poolings).
    """

    def __init__(self):
        super().__init__()
        self.features = alexnet_trunk()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_file(cls, path: str | Path, device: torch.device | str = "cpu") -> "LPIPS":
        """Load the AlexNet trunk and the linear heads from a safetensors file."""
        state, _ = read_safetensors(path, "LPIPS weights")
        net = load_strict(cls(), state, f"the LPIPS weights at {path}", rename=our_key)
        return net.to(device)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAPS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = (x - self.shift) / self.scale
        y = (y - self.shift) / self.scale
        total = 0.0
        for fx, fy, lin in zip(self._taps(x), self._taps(y), self.lins):
            # Unit length along channels (the epsilon keeps all-zero features finite).
            fx = fx / (fx.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((fx - fy).square()).mean(dim=(2, 3))
        return total.flatten()


def lpips(a, b, network: LPIPS, batch_size: int = 16):
    """LPIPS distance per image between two batches of images (layout as in `metrics`).

    Returns a float for single images, a float64 array (N,) for batches.
    """
    x, y, single = image_pair(a, b)
    param = next(network.parameters())
    values = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            xs = x[start:start + batch_size].to(param.device, param.dtype) * 2 - 1
            ys = y[start:start + batch_size].to(param.device, param.dtype) * 2 - 1
            values.append(network(xs, ys).double().cpu())
    return per_image(torch.cat(values), single)

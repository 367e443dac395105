"""`VGG19PerceptualLoss`: L1 between VGG19 features of output and target over an image pyramid.

As in LIA (and pix2pixHD/FOMM before it): both images are compared at several scales (1, 1/2,
1/4, 1/8), at the relu1_1 ... relu5_1 activations of an ImageNet VGG19, deeper layers weighted
more. The network is torchvision's ``vgg19`` architecture built with ``weights=None`` and filled
from a safetensors file: this machine cannot download torchvision's weights, and nothing is
unpickled. Make that file once with ``python -m sfd.pretrained.convert vgg19 vgg19-dcbb9e9d.pth
vgg19.safetensors`` (`convert_vgg19`) and give its path, a folder holding it, or a Hub repo id that has it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sfd.errors import WeightsError
from sfd.pretrained.vgg16 import VGG16PerceptualLoss


# Indices in torchvision's vgg19().features of relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1.
VGG19_RELU_LAYERS = (1, 6, 11, 20, 29)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_weights_file(weights: str | Path, filename: str = "vgg19.safetensors", revision: str | None = None) -> Path:
    """A local safetensors file from a file path, a folder holding `filename`, or a Hub repo id."""
    path = Path(weights)
    if path.is_file():
        return path
    if path.is_dir():
        if not (path / filename).is_file():
            raise WeightsError(f"no {filename} in {path}")
        return path / filename
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(str(weights), filename, revision=revision))
    except Exception as error:  # offline, unknown repo, missing file: all the same to the user
        raise WeightsError(f"VGG19 weights {weights!r} are neither a local file or folder nor a Hub repo with "
                           f"{filename} ({type(error).__name__}: {error})") from error


def vgg19_features(state_dict: dict[str, torch.Tensor] | None = None) -> nn.Sequential:
    """torchvision's VGG19 feature layers up to relu5_1, with weights from `state_dict`.

    `state_dict` holds torchvision's keys (``features.0.weight``, ...; a classifier is ignored)
    or the same without the ``features.`` prefix. None leaves the layers randomly initialised.
    """
    from torchvision.models import vgg19

    with torch.device("meta"):  # the 100 M-parameter classifier is never materialised
        layers = vgg19(weights=None).features[: VGG19_RELU_LAYERS[-1] + 1]
    layers = layers.to_empty(device="cpu")
    if state_dict is None:
        for module in layers.modules():
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
        return layers
    wanted = layers.state_dict()
    weights = {}
    for key in wanted:
        for candidate in (f"features.{key}", key):
            if candidate in state_dict:
                weights[key] = state_dict[candidate]
                break
    missing = sorted(set(wanted) - set(weights))
    if missing:
        raise WeightsError(f"the VGG19 weights lack {', '.join(missing)} (expected torchvision's vgg19 keys)")
    try:
        layers.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"the VGG19 weights do not fit torchvision's vgg19: {error}") from error
    return layers


class VGG19Taps(nn.Module):
    """VGG19's relu1_1 ... relu5_1 activations of images in [-1, 1] (ImageNet-normalised first)."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features
        self.taps = VGG19_RELU_LAYERS
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = ((images + 1) * 0.5 - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG19_RELU_LAYERS:
                out.append(x)
        return out


class VGG19PerceptualLoss(VGG16PerceptualLoss):
    """The pyramid feature-matching loss of `VGG16PerceptualLoss` on VGG19 (relu1_1 ... relu5_1),
    for users who have torchvision's VGG19 weights as safetensors. The network is frozen.

    Args:
        features: VGG19 feature layers (`vgg19_features`).
        scales, layer_weights: as for `VGG16PerceptualLoss`.
    """

    def __init__(self, features: nn.Sequential, scales=(1.0, 0.5, 0.25, 0.125),
                 layer_weights=(1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)):
        super().__init__(VGG19Taps(features), scales, layer_weights)

    @classmethod
    def from_pretrained(cls, weights: str | Path, filename: str = "vgg19.safetensors", revision: str | None = None,
                        **kwargs) -> "VGG19PerceptualLoss":
        """Build from a safetensors file, a folder holding `filename`, or a Hub repo id."""
        from safetensors.torch import load_file

        path = resolve_weights_file(weights, filename, revision)
        try:
            state_dict = load_file(str(path))
        except Exception as error:
            raise WeightsError(f"cannot read VGG19 weights from {path}: {error}") from error
        return cls(vgg19_features(state_dict), **kwargs)


def convert_vgg19(pth_path: str | Path, out_path: str | Path) -> Path:
    """Write the VGG19 feature weights of a torchvision checkpoint to `out_path` (safetensors)."""
    from safetensors.torch import save_file

    try:
        state_dict = torch.load(str(pth_path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"cannot read {pth_path} as a torchvision state dict: {error}") from error
    if isinstance(state_dict, dict) and "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    features = vgg19_features(state_dict)  # checks every needed key and shape
    tensors = {f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_path), metadata={"source": Path(pth_path).name, "architecture": "torchvision vgg19"})
    return out_path

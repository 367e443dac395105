"""`LandmarkDetector`: facial landmarks for AKD and the cross-identity motion error.

Architecture choice: the Adaptive-Wing-loss FAN (stacked hourglasses with CoordConv) of
facexlib (`facexlib.alignment.awing_arch.FAN`), 98 WFLW landmarks, trained on 256 x 256 face
crops. FOMM's AKD used Bulat's 68-point FAN ("face-alignment"), which is a close relative; the
two give different numbers, so compare AKD only between rows measured with the same network.
Only facexlib's network class is used; the pre-processing and the heatmap decoding are here.

Weights: a safetensors file of that network's state dict (`conv1.conv.weight`, `m0.*`, `l0.*`,
...); the number of hourglass modules and of landmarks is read from the tensors. Make it from
facexlib's `alignment_WFLW_4HG.pth` with ``python -m sfd.pretrained.convert landmarks IN OUT``.

The detector is run on the whole frame (the evaluation's frames are face crops), resized to
256 x 256: the landmarks come out in pixels of that 256 px frame, whatever the frames' size,
so AKD is in pixels at 256 px, the resolution of FOMM's and LIA's tables.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ..errors import WeightsError
from .files import read_safetensors
from .frames import map_frames
from .state_dicts import load_strict, strip_prefix

INPUT_SIZE = 256
HEATMAP_SIZE = 64  # the network's heatmaps are a quarter of its input
ARCHITECTURE = "facexlib-awing-fan"


def build_fan(num_modules: int = 4, num_landmarks: int = 98) -> nn.Module:
    """facexlib's FAN, randomly initialised, in eval mode; WeightsError when facexlib is absent."""
    try:
        from facexlib.alignment.awing_arch import FAN
    except ImportError as error:
        raise WeightsError(f"the landmark network needs facexlib (pip install --no-deps facexlib): {error}") from error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FAN(num_modules=num_modules, num_landmarks=num_landmarks, device="cpu").eval()


def load_fan(state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """The FAN that `state` fits (hourglass modules and landmarks read from its tensors), loaded."""
    state = strip_prefix(state)
    modules = sum(1 for k in state if re.fullmatch(r"l\d+\.weight", k))
    if not modules or "l0.weight" not in state:
        raise WeightsError(f"{what} are not a FAN state dict (no `l0.weight` head)")
    network = build_fan(modules, state["l0.weight"].shape[0] - 1)  # one extra boundary heatmap
    return load_strict(network, state, what)


def decode_heatmaps(heatmaps: torch.Tensor) -> np.ndarray:
    """Landmarks (N, K, 2) in heatmap pixels from heatmaps (N, K, h, w).

    The peak of each heatmap, moved a quarter pixel towards its higher neighbour along x and
    along y (the usual sub-pixel refinement of heatmap regression), then +0.5 so that a point
    in the middle of heatmap pixel i is at i + 0.5 (pixel edges at integers).
    """
    hm = heatmaps.detach().float().cpu().numpy()
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w)
    peak = flat.argmax(axis=2)
    y, x = np.divmod(peak, w)
    rows = hm.reshape(n * k, h, w)
    yi, xi = y.ravel(), x.ravel()
    idx = np.arange(n * k)
    right = rows[idx, yi, np.minimum(xi + 1, w - 1)]
    left = rows[idx, yi, np.maximum(xi - 1, 0)]
    down = rows[idx, np.minimum(yi + 1, h - 1), xi]
    up = rows[idx, np.maximum(yi - 1, 0), xi]
    points = np.stack([x.ravel() + 0.25 * np.sign(right - left), y.ravel() + 0.25 * np.sign(down - up)], axis=1)
    return (points + 0.5).reshape(n, k, 2)


class LandmarkDetector:
    """98 facial landmarks per frame. Call it with uint8 frames (N, H, W, 3) or (H, W, 3).

    Returns (N, K, 2) float64 (x, y) in pixels of the frame resized to 256 x 256.
    """

    name = "FAN (Adaptive Wing, WFLW 98 points, facexlib)"

    def __init__(self, network: nn.Module, device: torch.device | str = "cpu", batch_size: int = 8):
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.batch_size = batch_size

    @classmethod
    def from_file(cls, path: str | Path, device: torch.device | str = "cpu") -> "LandmarkDetector":
        state, _ = read_safetensors(path, "landmark weights")
        return cls(load_fan(state, f"the landmark weights at {path}"), device)

    def _inputs(self, frames: np.ndarray) -> torch.Tensor:
        resized = [f if f.shape[:2] == (INPUT_SIZE, INPUT_SIZE) else
                   cv2.resize(f, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if f.shape[0] > INPUT_SIZE
                              else cv2.INTER_CUBIC) for f in frames]
        x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)  # RGB in [0, 1]
        return x.to(self.device)

    def __call__(self, frames) -> np.ndarray:
        def run(batch: np.ndarray) -> np.ndarray:
            heatmaps, _ = self.network(self._inputs(batch))
            return decode_heatmaps(heatmaps[-1][:, :-1])  # the last stack; drop the boundary map

        return map_frames(frames, self.batch_size, run) * (INPUT_SIZE / HEATMAP_SIZE)

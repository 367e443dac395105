"""`IdentityEncoder`: face identity embeddings for AED and the cross-identity ID similarity.

Architecture choice: ArcFace with an IR-SE-50 backbone (Deng et al.; the PyTorch port that
facexlib ships as `facexlib.recognition.arcface_arch.Backbone`, also the identity network of
pSp/e4e's identity loss). It takes 112 x 112 RGB faces in [-1, 1] and gives 512-d embeddings of
unit length, so AED lies in [0, 2] and ID similarity (cosine) in [-1, 1]. FOMM's AED used
another identity network: compare AED only between rows measured with the same network.
Only facexlib's network class is used; the pre-processing is here.

Weights: a safetensors file of that network's state dict (`input_layer.*`, `body.*`,
`output_layer.*`); depth (50/100/152) and IR vs IR-SE are read from the tensors. Make it from
facexlib's `recognition_arcface_ir_se50.pth` with ``python -m sfd.pretrained.convert identity IN OUT``.

Face region: the frames are VoxCeleb-style head crops, looser than ArcFace's aligned faces,
so the central region of each frame (by default rows 35..223 and columns 32..220 of a 256 px
frame, pSp's choice for its identity loss) is resized to 112 x 112.
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

INPUT_SIZE = 112
# (x0, y0, x1, y1) of the face region as fractions of the frame: pSp's 256 px crop [35:223, 32:220].
FACE_REGION = (32 / 256, 35 / 256, 220 / 256, 223 / 256)
ARCHITECTURE = "facexlib-arcface"
# Residual units per depth of the IR(-SE) backbones (facexlib's get_blocks: 3+4+14+3, 3+13+30+3, 3+8+36+3).
DEPTH_BY_UNITS = {24: 50, 49: 100, 50: 152}


def build_arcface(num_layers: int = 50, mode: str = "ir_se") -> nn.Module:
    """facexlib's ArcFace backbone, randomly initialised, in eval mode; WeightsError without facexlib."""
    try:
        from facexlib.recognition.arcface_arch import Backbone
    except ImportError as error:
        raise WeightsError(f"the identity network needs facexlib (pip install --no-deps facexlib): {error}") from error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Backbone(num_layers=num_layers, drop_ratio=0.6, mode=mode).eval()


def load_arcface(state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """The ArcFace backbone that `state` fits (depth, IR or IR-SE read from its tensors), loaded."""
    state = strip_prefix(state)
    units = {int(m[1]) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    depth = DEPTH_BY_UNITS.get(len(units))
    if "input_layer.0.weight" not in state or depth is None:
        raise WeightsError(f"{what} are not an ArcFace IR/IR-SE 50/100/152 state dict "
                           f"({len(units)} residual units found)")
    mode = "ir_se" if any(".fc1." in k for k in state) else "ir"  # the squeeze-excitation layers
    return load_strict(build_arcface(depth, mode), state, what)


class IdentityEncoder:
    """Identity embeddings. Call it with uint8 frames (N, H, W, 3) or (H, W, 3); returns (N, 512)."""

    name = "ArcFace IR-SE-50 (facexlib)"

    def __init__(self, network: nn.Module, device: torch.device | str = "cpu", batch_size: int = 16,
                 face_region: tuple[float, float, float, float] = FACE_REGION):
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.batch_size = batch_size
        self.face_region = face_region

    @classmethod
    def from_file(cls, path: str | Path, device: torch.device | str = "cpu", **kwargs) -> "IdentityEncoder":
        state, _ = read_safetensors(path, "identity weights")
        return cls(load_arcface(state, f"the identity weights at {path}"), device, **kwargs)

    def _inputs(self, frames: np.ndarray) -> torch.Tensor:
        faces = []
        for frame in frames:
            h, w = frame.shape[:2]
            x0, y0, x1, y1 = self.face_region
            region = frame[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)]
            faces.append(cv2.resize(region, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA
                                    if region.shape[0] > INPUT_SIZE else cv2.INTER_CUBIC))
        x = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).contiguous().float().div_(127.5).sub_(1.0)
        return x.to(self.device)

    def __call__(self, frames) -> np.ndarray:
        return map_frames(frames, self.batch_size,
                          lambda batch: self.network(self._inputs(batch)).double().cpu().numpy())

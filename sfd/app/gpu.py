"""ZeroGPU support: `gpu_task` wraps a function with `spaces.GPU` when the `spaces` module imports.

On a ZeroGPU Space a GPU is attached only while a wrapped function runs, in a worker process,
so what such a function returns (and what the app keeps between calls, e.g. an encoded face in
session state) should live on the CPU: `keep` moves a prepared face there when on ZeroGPU.
Everywhere else both are no-ops.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import torch

from ..models import Descriptors
from ..pipeline import SourceFace

try:  # Present on Hugging Face Spaces; `spaces.GPU` is itself a no-op off ZeroGPU.
    import spaces
except ImportError:
    spaces = None

ON_ZERO_GPU = spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu_task(fn: Callable, duration: int = 60) -> Callable:
    """`fn` run on a ZeroGPU device for at most `duration` seconds; `fn` itself elsewhere."""
    if spaces is None:
        return fn
    return spaces.GPU(duration=duration)(fn)


def _move(descriptors: Descriptors, device: torch.device) -> Descriptors:
    features = None if descriptors.features is None else tuple(f.to(device) for f in descriptors.features)
    return Descriptors(identity=descriptors.identity.to(device), motion=descriptors.motion.to(device),
                       features=features)


def on_device(source: SourceFace, device: torch.device) -> SourceFace:
    """The prepared face with its tensors on `device` (itself when they already are)."""
    if source.descriptors.identity.device == torch.device(device):
        return source
    return dataclasses.replace(source, descriptors=_move(source.descriptors, torch.device(device)))


def keep(source: SourceFace) -> SourceFace:
    """The prepared face as it should be stored between calls (on the CPU under ZeroGPU)."""
    return on_device(source, torch.device("cpu")) if ON_ZERO_GPU else source

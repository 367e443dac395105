"""Checking a network's weights strictly against it, for networks whose files people bring.

FAN, ArcFace, LPIPS files made by hand and VGG19 cannot be downloaded here at run time: their
weights come from local safetensors files that `python -m sfd.pretrained.convert` makes from the
published PyTorch checkpoints without running any pickled code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..errors import WeightsError

def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop a DataParallel-style prefix from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def load_strict(net: nn.Module, state: Mapping[str, torch.Tensor], what: str,
                rename: Callable[[str], str | None] | None = None) -> nn.Module:
    """Load `state` into `net`, or raise WeightsError naming missing, unexpected and mis-shaped tensors.

    `rename` maps a key of the file to the network's key (None drops the tensor). BatchNorm's
    `num_batches_tracked` counters may be absent: they play no part at inference.
    """
    if rename is not None:
        state = {new: v for k, v in state.items() if (new := rename(k)) is not None}
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
        if keys:
            problems.append(f"{label}: " + ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else ""))
    if problems:
        raise WeightsError(f"{what} do not fit the network: " + "; ".join(problems))
    net.load_state_dict({k: state.get(k, v).to(v.dtype) for k, v in expected.items()}, strict=True)
    return net.eval().requires_grad_(False)

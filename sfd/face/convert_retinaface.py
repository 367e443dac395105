"""Convert facexlib's RetinaFace checkpoint (``detection_Resnet50_Final.pth``) to safetensors.

Usage::

    python -m sfd.face.convert_retinaface detection_Resnet50_Final.pth retinaface_resnet50.safetensors

Put the result at ``detector/retinaface_resnet50.safetensors`` in the weights folder or Hub
repo. The checkpoint is read with ``torch.load(weights_only=True)``, which refuses anything
but tensors and plain containers, so converting an untrusted file runs no code; sfd itself
then never touches a pickle. The keys are checked against facexlib's network before
anything is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from sfd.errors import WeightsError, run_command
from sfd.face.retinaface import build_retinaface_network, match_state_dict


def load_pth_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a PyTorch checkpoint safely (``weights_only=True``, on the CPU) as a flat state dict.

    Accepts a bare state dict or one wrapped under ``state_dict``/``model``/``net``;
    ``module.`` prefixes are stripped later by `match_state_dict`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"Could not read {path} as a PyTorch checkpoint of tensors: {exc}") from exc
    for key in ("state_dict", "model", "net"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict.")
    return dict(obj)


def convert_retinaface(src: str | Path, dst: str | Path) -> Path:
    """Convert the checkpoint `src` to the safetensors file `dst` (folders are created).

    Raises WeightsError naming missing/unexpected keys when `src` is not a
    RetinaFace-ResNet50 checkpoint.
    """
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    state = load_pth_state_dict(src)
    net = build_retinaface_network()
    state = match_state_dict(net, state, source=f"the checkpoint {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.clone() for k, v in state.items()},  # clone: safetensors refuses shared storage
        str(dst),
        metadata={"format": "pt", "network": "facexlib RetinaFace resnet50", "source": src.name},
    )
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sfd.face.convert_retinaface",
        description="Convert facexlib's detection_Resnet50_Final.pth to safetensors for sfd.",
    )
    parser.add_argument("src", help="the .pth checkpoint (e.g. detection_Resnet50_Final.pth)")
    parser.add_argument("dst", help="the .safetensors file to write (e.g. detector/retinaface_resnet50.safetensors)")
    args = parser.parse_args(argv)
    return run_command(lambda: f"wrote {convert_retinaface(args.src, args.dst)}")


if __name__ == "__main__":
    sys.exit(main())

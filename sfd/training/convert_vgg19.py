"""Convert torchvision's published VGG19 weights (.pth) to the safetensors file the perceptual loss reads.

    python -m sfd.training.convert_vgg19 vgg19-dcbb9e9d.pth vgg19.safetensors

The .pth is read with ``torch.load(weights_only=True)`` (tensors only, no code runs). Only the
feature layers up to relu5_1 are kept (about 80 MB instead of 550 MB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sfd.errors import WeightsError, run_command

from .vgg19_perceptual_loss import vgg19_features


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfd.training.convert_vgg19", description=__doc__.split("\n\n")[0])
    parser.add_argument("pth", type=Path, help="torchvision's vgg19 weights, e.g. vgg19-dcbb9e9d.pth")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    args = parser.parse_args(argv)
    return run_command(lambda: f"wrote {convert_vgg19(args.pth, args.out)}")


if __name__ == "__main__":
    raise SystemExit(main())

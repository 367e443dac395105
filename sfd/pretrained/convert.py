"""Convert networks' published PyTorch checkpoints, which no registry package ships, to the
safetensors files sfd reads.

Usage::

    python -m sfd.pretrained.convert lpips --alexnet alexnet-owt-7be5be79.pth --heads alex.pth lpips_alex.safetensors
    python -m sfd.pretrained.convert landmarks alignment_WFLW_4HG.pth fan_wflw98.safetensors
    python -m sfd.pretrained.convert identity recognition_arcface_ir_se50.pth arcface_ir_se50.safetensors
    python -m sfd.pretrained.convert vgg19 vgg19-dcbb9e9d.pth vgg19.safetensors

- lpips: torchvision's ImageNet AlexNet and the LPIPS v0.1 linear heads of the `lpips` package
  (`lpips/weights/v0.1/alex.pth`); a full `lpips` model state dict may be given as `--heads` alone.
  Only needed for checkpoints of one's own: evaluation's default LPIPS-AlexNet comes from
  `python -m sfd weights fetch-aux`.
- landmarks: facexlib's Adaptive-Wing FAN (WFLW, 98 points).
- identity: facexlib's ArcFace IR-SE-50.
- vgg19: torchvision's ImageNet VGG19, its feature layers up to relu5_1 (about 80 MB instead of
  550 MB), for ``perceptual_network: vgg19`` in training.

Checkpoints are read with ``torch.load(weights_only=True)`` (tensors and plain containers only:
no code runs) and checked against the network before anything is written.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from ..errors import run_command
from ..face.convert_retinaface import load_pth_state_dict
from . import arcface, fan, lpips, vgg19
from .state_dicts import load_strict, strip_prefix


def _save(network: torch.nn.Module, dst: str | Path, architecture: str, sources: list[Path]) -> Path:
    from safetensors.torch import save_file

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(dst), metadata={"format": "pt", "architecture": architecture,
                                         "source": ", ".join(p.name for p in sources)})
    return dst


def convert_lpips(dst: str | Path, alexnet: str | Path | None, heads: str | Path) -> Path:
    """AlexNet trunk (optional when `heads` is a full lpips model state) + LPIPS heads -> safetensors."""
    sources = [Path(p) for p in (alexnet, heads) if p is not None]
    state = {}
    for path in sources:
        state.update(strip_prefix(load_pth_state_dict(path)))
    net = load_strict(lpips.LPIPS(), state, "the AlexNet + LPIPS checkpoints", rename=_lpips_key)
    return _save(net, dst, lpips.ARCHITECTURES["alex"], sources)


def _lpips_key(key: str) -> str | None:
    """Keys of torchvision's AlexNet and of the `lpips` package's model state -> ours."""
    if key.startswith("classifier."):
        return None  # torchvision AlexNet's classifier: not part of LPIPS
    if m := re.fullmatch(r"net\.slice\d\.(\d+)\.(weight|bias)", key):  # the lpips package keeps AlexNet's indices
        return f"features.{m[1]}.{m[2]}"
    if m := re.fullmatch(r"lin(\d)\.model\.1\.weight", key):  # lpips: Dropout, then the 1x1 conv
        return f"lins.{m[1]}.weight"
    return key


def convert_landmarks(src: str | Path, dst: str | Path) -> Path:
    """facexlib's FAN checkpoint -> safetensors."""
    net = fan.load_fan(load_pth_state_dict(src), f"the checkpoint {src}")
    return _save(net, dst, fan.ARCHITECTURE, [Path(src)])


def convert_identity(src: str | Path, dst: str | Path) -> Path:
    """facexlib's ArcFace checkpoint -> safetensors."""
    net = arcface.load_arcface(load_pth_state_dict(src), f"the checkpoint {src}")
    return _save(net, dst, arcface.ARCHITECTURE, [Path(src)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfd.pretrained.convert",
                                     description="Convert network checkpoints (.pth) to safetensors.")
    sub = parser.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("lpips", help="AlexNet + LPIPS linear heads")
    p.add_argument("--alexnet", default=None, help="torchvision AlexNet state dict (alexnet-owt-7be5be79.pth)")
    p.add_argument("--heads", required=True, help="LPIPS v0.1 heads (lpips/weights/v0.1/alex.pth)")
    p.add_argument("dst")
    helps = {"landmarks": "facexlib's FAN (WFLW)", "identity": "facexlib's ArcFace IR-SE-50",
             "vgg19": "torchvision's VGG19 (vgg19-dcbb9e9d.pth)"}
    for kind, text in helps.items():
        q = sub.add_parser(kind, help=text)
        q.add_argument("src")
        q.add_argument("dst")
    args = parser.parse_args(argv)
    def convert() -> str:
        if args.kind == "lpips":
            return f"wrote {convert_lpips(args.dst, args.alexnet, args.heads)}"
        if args.kind == "landmarks":
            return f"wrote {convert_landmarks(args.src, args.dst)}"
        if args.kind == "vgg19":
            return f"wrote {vgg19.convert_vgg19(args.src, args.dst)}"
        return f"wrote {convert_identity(args.src, args.dst)}"

    return run_command(convert)


if __name__ == "__main__":
    sys.exit(main())

"""Convert the evaluation networks' published PyTorch checkpoints to the safetensors files sfd reads.

Usage::

    python -m sfd.evaluation.convert lpips --alexnet alexnet-owt-7be5be79.pth --heads alex.pth lpips_alex.safetensors
    python -m sfd.evaluation.convert landmarks alignment_WFLW_4HG.pth fan_wflw98.safetensors
    python -m sfd.evaluation.convert identity recognition_arcface_ir_se50.pth arcface_ir_se50.safetensors

- lpips: torchvision's ImageNet AlexNet and the LPIPS v0.1 linear heads of the `lpips` package
  (`lpips/weights/v0.1/alex.pth`); a full `lpips` model state dict may be given as `--heads` alone.
  Only needed for checkpoints of one's own: evaluation's default LPIPS-AlexNet comes from
  `python -m sfd weights fetch-aux`.
- landmarks: facexlib's Adaptive-Wing FAN (WFLW, 98 points).
- identity: facexlib's ArcFace IR-SE-50.

Checkpoints are read with ``torch.load(weights_only=True)`` (tensors and plain containers only:
no code runs) and checked against the network before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..errors import run_command
from ..face.convert_retinaface import load_pth_state_dict
from . import identity, landmarks, lpips_network
from .weights import load_strict, strip_prefix


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
    net = load_strict(lpips_network.LPIPS(), state, "the AlexNet + LPIPS checkpoints",
                      rename=lpips_network.our_key)
    return _save(net, dst, lpips_network.ARCHITECTURE, sources)


def convert_landmarks(src: str | Path, dst: str | Path) -> Path:
    """facexlib's FAN checkpoint -> safetensors."""
    net = landmarks.load_fan(load_pth_state_dict(src), f"the checkpoint {src}")
    return _save(net, dst, landmarks.ARCHITECTURE, [Path(src)])


def convert_identity(src: str | Path, dst: str | Path) -> Path:
    """facexlib's ArcFace checkpoint -> safetensors."""
    net = identity.load_arcface(load_pth_state_dict(src), f"the checkpoint {src}")
    return _save(net, dst, identity.ARCHITECTURE, [Path(src)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfd.evaluation.convert",
                                     description="Convert evaluation network checkpoints (.pth) to safetensors.")
    sub = parser.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("lpips", help="AlexNet + LPIPS linear heads")
    p.add_argument("--alexnet", default=None, help="torchvision AlexNet state dict (alexnet-owt-7be5be79.pth)")
    p.add_argument("--heads", required=True, help="LPIPS v0.1 heads (lpips/weights/v0.1/alex.pth)")
    p.add_argument("dst")
    for kind in ("landmarks", "identity"):
        q = sub.add_parser(kind, help=f"facexlib's {'FAN (WFLW)' if kind == 'landmarks' else 'ArcFace IR-SE-50'}")
        q.add_argument("src")
        q.add_argument("dst")
    args = parser.parse_args(argv)
    def convert() -> str:
        if args.kind == "lpips":
            return f"wrote {convert_lpips(args.dst, args.alexnet, args.heads)}"
        if args.kind == "landmarks":
            return f"wrote {convert_landmarks(args.src, args.dst)}"
        return f"wrote {convert_identity(args.src, args.dst)}"

    return run_command(convert)


if __name__ == "__main__":
    sys.exit(main())

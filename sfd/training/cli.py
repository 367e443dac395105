"""Command line of the trainer: ``python -m sfd.training`` (or ``accelerate launch -m sfd.training``).

    python -m sfd.training --config cfg.yaml
    python -m sfd.training --data-root data/vox --preset vox256 --output-dir runs/vox --batch-size 8
    python -m sfd.training --config cfg.yaml --resume            # continue from the newest checkpoint
    accelerate launch --multi_gpu --num_processes 8 -m sfd.training --config cfg.yaml --mixed-precision bf16

Every `TrainingConfig` field is a flag (``--l1-weight``, ``--r1-interval``, ...); flags override
the YAML file, which overrides the defaults. ``--model key=value`` overrides one SFDModel config
entry of the preset (``--model image_warp=false``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import yaml

from sfd.errors import SFDError, run_command

from .config import TrainingConfig, field_types

# Fields with a flag of their own below (not generated).
_SPECIAL = {"model_overrides", "resume"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sfd.training", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of TrainingConfig settings")
    parser.add_argument("--resume", nargs="?", const="latest", default=None,
                        help="continue from the newest checkpoint in the output dir, or from the one given")
    parser.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                        help="an SFDModel config override (repeatable), e.g. image_warp=false")
    types = field_types()
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(TrainingConfig)}
    for name, kind in types.items():
        if name in _SPECIAL:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = f"(default: {defaults[name]})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        elif getattr(kind, "__origin__", None) is tuple:
            parser.add_argument(flag, type=float, nargs="+", default=argparse.SUPPRESS, help=help_text)
        elif kind in (int, float):
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, type=_optional_str, default=argparse.SUPPRESS,
                                help=help_text + "; 'none' for None")
    return parser


def _optional_str(text: str) -> str | None:
    return None if text.lower() in ("none", "null") else text


def config_from_args(args: argparse.Namespace) -> TrainingConfig:
    """Defaults, then the YAML file, then the flags that were given."""
    values = {}
    if args.config:
        values = TrainingConfig.from_yaml(args.config).to_dict()
    for name in field_types():
        if name not in _SPECIAL and hasattr(args, name):  # flags not given are absent (SUPPRESS)
            values[name] = getattr(args, name)
    overrides = dict(values.get("model_overrides") or {})
    for item in args.model:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--model takes KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(text)  # numbers, booleans, null as YAML reads them
    values["model_overrides"] = overrides
    if args.resume is not None:
        values["resume"] = args.resume
    return TrainingConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    """Run training from the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = None

    def run() -> None:
        nonlocal result
        from .trainer import train

        result = train(config_from_args(args))

    status = run_command(run, errors=(SFDError, ValueError))
    if status:
        return status
    from accelerate import PartialState

    if not PartialState().is_main_process:  # one summary per run, not one per process
        return 0
    last = result.eval_history[-1]["l1"] if result.eval_history else None
    print(f"trained to step {result.step}; checkpoint {result.checkpoint}"
          + (f"; held-out L1 {last:.4f}" if last is not None else ""))
    return 0

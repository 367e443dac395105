"""`CheckpointManager`: training checkpoints as safetensors and JSON only (nothing is ever unpickled).

A checkpoint is a folder ``OUTPUT/checkpoints/checkpoint-0005000/``::

    model/            SFDModel.save_pretrained (config.json + safetensors): loadable as it is
    ema/              the EMA copy, the same way (the weights to export)
    discriminator/    Discriminator.save_pretrained
    optimizers.safetensors   every tensor of both optimizers' states
    rng_state_<rank>.safetensors   torch's RNG states of each process
    trainer_state.json   step, EMA and grad-scaler state, optimizer param groups and scalars

accelerate's ``save_state`` would pickle the optimizer and RNG states, hence this format. The
folder is written under a hidden ``.checkpoint-...partial`` name and renamed when complete (an
atomic rename), so `latest` never returns a half-written checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sfd.errors import WeightsError
from sfd.models.sfd_model import WEIGHTS_NAME as WEIGHTS_FILE  # diffusers' name: save_pretrained folders load

log = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
OPTIMIZERS_FILE = "optimizers.safetensors"


# --------------------------------------------------------------------------- optimizer state <-> tensors
def flatten_optimizer_state(name: str, state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (keyed ``name.param.key``) and JSON-able rest."""
    tensors, scalars = {}, {}
    for param_id, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
              for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(name: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """The inverse of `flatten_optimizer_state`."""
    state: dict[int, dict] = {}
    prefix = f"{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            param_id, _, entry = key[len(prefix):].partition(".")
            state.setdefault(int(param_id), {})[entry] = value
    for param_id, values in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# --------------------------------------------------------------------------- the manager
class CheckpointManager:
    """Writes, finds, loads and prunes the checkpoints of one output folder."""

    def __init__(self, output_dir: str | Path, total_limit: int | None = None):
        self.directory = Path(output_dir) / "checkpoints"
        self.total_limit = total_limit

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = CHECKPOINT_PATTERN.match(path.name)
            if match and (path / STATE_FILE).is_file():
                found.append((int(match.group(1)), path))
        return [path for _, path in sorted(found)]

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    # ------------------------------------------------------------------ saving
    def save(self, step: int, accelerator, model, discriminator, ema, optimizers: dict, extra: dict | None = None) -> Path:
        """Write checkpoint `step` (every process must call this; the main one writes the weights)."""
        final = self.directory / f"checkpoint-{step:07d}"
        partial = self.directory / f".checkpoint-{step:07d}.partial"
        main = accelerator.is_main_process
        if main:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        accelerator.wait_for_everyone()
        save_file(_rng_state(), str(partial / f"rng_state_{accelerator.process_index}.safetensors"))
        if main:
            accelerator.unwrap_model(model).save_pretrained(partial / "model", safe_serialization=True)
            ema.model.save_pretrained(partial / "ema", safe_serialization=True)
            accelerator.unwrap_model(discriminator).save_pretrained(partial / "discriminator", safe_serialization=True)
            tensors, optimizer_meta = {}, {}
            for name, optimizer in optimizers.items():
                t, meta = flatten_optimizer_state(name, optimizer.state_dict())
                tensors.update(t)
                optimizer_meta[name] = meta
            save_file(tensors, str(partial / OPTIMIZERS_FILE))
            scaler = getattr(accelerator, "scaler", None)
            state = {"step": step, "ema": ema.state_dict(), "optimizers": optimizer_meta,
                     "grad_scaler": scaler.state_dict() if scaler is not None else None,
                     "num_processes": accelerator.num_processes, **(extra or {})}
            (partial / STATE_FILE).write_text(json.dumps(state, indent=1))  # written last: marks completion
        accelerator.wait_for_everyone()
        if main:
            if final.exists():
                shutil.rmtree(final)
            os.replace(partial, final)
            self.prune()
        accelerator.wait_for_everyone()
        return final

    def prune(self) -> None:
        if not self.total_limit:
            return
        for path in self.checkpoints()[: -self.total_limit]:
            shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------ loading
    def load(self, path: str | Path, accelerator, model, discriminator, ema, optimizers: dict) -> dict:
        """Restore weights, optimizer, EMA, scaler and RNG states in place; returns the trainer state."""
        path = Path(path)
        if not (path / STATE_FILE).is_file():
            raise WeightsError(f"{path} is not a complete training checkpoint (no {STATE_FILE})")
        state = json.loads((path / STATE_FILE).read_text())
        _load_weights(accelerator.unwrap_model(model), path / "model")
        _load_weights(ema.model, path / "ema")
        _load_weights(accelerator.unwrap_model(discriminator), path / "discriminator")
        ema.load_state_dict(state.get("ema", {}))
        tensors = load_file(str(path / OPTIMIZERS_FILE))
        for name, optimizer in optimizers.items():
            if name not in state["optimizers"]:
                raise WeightsError(f"{path} has no state for the {name} optimizer")
            restored = unflatten_optimizer_state(name, tensors, state["optimizers"][name])
            optimizer.load_state_dict(restored)  # torch moves the state to the parameters' device
        scaler = getattr(accelerator, "scaler", None)
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        rng_file = path / f"rng_state_{accelerator.process_index}.safetensors"
        if rng_file.is_file():
            _set_rng_state(load_file(str(rng_file)))
        return state


def _load_weights(module: torch.nn.Module, folder: Path) -> None:
    file = folder / WEIGHTS_FILE
    if not file.is_file():
        raise WeightsError(f"missing {file}")
    config_file = folder / "config.json"
    if config_file.is_file() and hasattr(module, "config"):
        saved = json.loads(config_file.read_text())
        differing = sorted(k for k, v in dict(module.config).items()
                           if not k.startswith("_") and k in saved and saved[k] != (list(v) if isinstance(v, tuple) else v))
        if differing:
            raise WeightsError(f"checkpoint {folder} was made with another model config "
                               f"({', '.join(f'{k}: {saved[k]} here {module.config[k]}' for k in differing)})")
    state = load_file(str(file))
    target = module.state_dict()
    missing, unexpected = sorted(set(target) - set(state)), sorted(set(state) - set(target))
    if missing or unexpected:
        raise WeightsError(f"{file} does not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    with torch.no_grad():
        for key, value in state.items():
            target[key].copy_(value)


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state[f"torch_cuda_{index}"] = cuda_state
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch_cpu"])
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            if f"torch_cuda_{index}" in state:
                torch.cuda.set_rng_state(state[f"torch_cuda_{index}"], index)

"""Where the model weights are inside a folder: `find_model_folder`.

A folder written by `SFDModel.save_pretrained` is taken as it is; a training checkpoint
folder holds one or more such folders (the EMA weights, the raw weights, ...), and the EMA
copy is preferred because that is the one to evaluate and publish.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import WeightsError

MODEL_CLASS = "SFDModel"
PREFERRED = "ema"


def _is_model_folder(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("_class_name") == MODEL_CLASS


def find_model_folder(checkpoint: str | Path) -> Path:
    """The folder with the SFDModel `config.json` (+ safetensors) in `checkpoint`.

    `checkpoint` itself when it is one; else, among its subfolders at any depth whose
    `config.json` names `SFDModel`, the first one named `ema`, else the first one
    (shallowest first, then in name order). WeightsError when there is none.
    """
    root = Path(checkpoint).expanduser()
    if not root.is_dir():
        raise WeightsError(f"no checkpoint folder at {root}")
    if _is_model_folder(root):
        return root
    found = sorted((p.parent for p in root.rglob("config.json") if _is_model_folder(p.parent)),
                   key=lambda p: (len(p.relative_to(root).parts), str(p)))
    if not found:
        raise WeightsError(f"{root} holds no SFD model: expected a config.json whose _class_name is {MODEL_CLASS} "
                           "in it or in one of its subfolders (as SFDModel.save_pretrained writes)")
    return next((p for p in found if p.name == PREFERRED), found[0])

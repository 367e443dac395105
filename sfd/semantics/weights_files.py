"""Small JSON files kept next to the model weights (`calibration.json`, `atlas.json`).

They live in the weights folder, or in the Hub repo the weights come from, so that a set of
weights carries its own slider ranges and direction names. A missing file is normal (weights
that were never calibrated): readers get None and fall back to generic sliders.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from ..errors import SFDError, WeightsError

log = logging.getLogger(__name__)


def find_weights_file(weights: str | os.PathLike, filename: str, revision: str | None = None) -> Path | None:
    """Where `filename` of a weights folder or Hub repo is on this machine, or None when it has none.

    `weights`: a local folder, the JSON file itself, or an ``owner/name`` Hub repo id (fetched with
    ``hf_hub_download``, which uses the local cache first and works offline once cached).
    """
    path = Path(weights).expanduser()
    if path.is_file():
        return path if path.suffix == ".json" else None
    if path.is_dir():
        candidate = path / filename
        return candidate if candidate.is_file() else None
    text = str(weights)
    looks_like_repo = text.count("/") == 1 and not text.startswith((".", "/", "~")) and not path.suffix
    if not looks_like_repo:
        return None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=text, filename=filename, revision=revision))
    except Exception as error:  # offline, no such repo or file: the weights simply have none here
        log.info("no %s for %s: %s: %s", filename, text, type(error).__name__, error)
        return None


def read_weights_json(weights: str | os.PathLike, filename: str,
                      revision: str | None = None) -> tuple[dict, Path] | None:
    """The parsed `filename` of a weights folder or Hub repo and its path, or None when it has none.

    Raises WeightsError when the file exists but is not a JSON object.
    """
    path = find_weights_file(weights, filename, revision)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"{path} is not a readable JSON file: {error}") from error
    if not isinstance(data, dict):
        raise WeightsError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data, path


def write_json_atomically(data: dict, path: str | os.PathLike) -> Path:
    """Write `data` as indented JSON; the file appears complete or not at all (the app may be reading it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def local_weights_folder(weights: str | os.PathLike) -> Path:
    """The weights as a local folder, where files that belong with them are written by default."""
    folder = Path(weights).expanduser()
    if not folder.is_dir():
        raise SFDError(f"{weights} is not a local folder (a Hub repo?): say where to write with --out")
    return folder

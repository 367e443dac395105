"""The Hub model card (`README.md`) of exported weights, from the template in `weights_card/`.

The YAML front matter is huggingface_hub's `ModelCardData` (license, datasets, library_name,
pipeline_tag, tags, and a `model-index` built from the evaluation JSON); the body is the Jinja2
template `weights_card/MODEL_CARD.md`, filled with the model's size, the training data and
their licences, and the evaluation table.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import SFDError
from ..evaluation.report import COLUMNS, markdown_table

#: The template, kept with the repository (weights_card/ next to the sfd package).
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "weights_card" / "MODEL_CARD.md"
PIPELINE_TAG = "image-to-video"
LIBRARY_NAME = "sfd"
TAGS = ["face-animation", "face-reenactment", "talking-head", "image-animation", "sfd", "safetensors"]
TASK_NAME = "Face reenactment"

# What the datasets' authors say about their terms, as far as we know them; anything else is
# written as unknown, never guessed. Give `NAME=LICENCE` to state it yourself.
KNOWN_DATASET_LICENSES = {
    "voxceleb": "VoxCeleb is released by its authors under CC BY 4.0; the copyright of the videos "
                "remains with their original owners.",
    "voxceleb1": "released by its authors under CC BY 4.0; the copyright of the videos remains with "
                 "their original owners.",
    "voxceleb2": "released by its authors under CC BY 4.0; the copyright of the videos remains with "
                 "their original owners.",
    "celebv-hq": "available for non-commercial research purposes only (its authors' terms); the videos "
                 "come from the Internet and are not the property of its authors.",
    "hdtf": "no licence stated by its authors that we know of; the videos come from YouTube and their "
            "rights stay with their owners. Check before any use beyond research.",
}
UNKNOWN_LICENSE = "licence not recorded at export: check the dataset's own terms."


def parse_datasets(entries) -> list[dict[str, str]]:
    """`["voxceleb2", "mydata=CC BY-NC 4.0"]` -> [{"name", "license"}], with known licences filled in."""
    out = []
    for entry in entries or []:
        name, sep, licence = str(entry).partition("=")
        name = name.strip()
        if not name:
            raise SFDError(f"--datasets takes NAME or NAME=LICENCE, got {entry!r}")
        licence = licence.strip() if sep else KNOWN_DATASET_LICENSES.get(name.lower(), UNKNOWN_LICENSE)
        out.append({"name": name, "license": licence})
    return out


def evaluation_metrics(evaluation: dict) -> list[tuple[str, str, float]]:
    """(metric key, display name, value) of every computed, finite metric of an evaluation result."""
    out = []
    for column in COLUMNS:
        metric = evaluation.get(column.section, {}).get(column.key) or {}
        value = metric.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            kind = "same-identity" if column.section == "same_identity" else "cross-identity"
            out.append((column.key, f"{column.label} ({kind})", value))
    return out


def card_data(*, model_name: str, license: str, datasets: list[dict[str, str]], evaluation: dict | None):
    """huggingface_hub's `ModelCardData` of the front matter (with `model-index` when evaluated)."""
    from huggingface_hub import EvalResult, ModelCardData

    results = []
    if evaluation:
        data = evaluation.get("dataset", {})
        for key, label, value in evaluation_metrics(evaluation):
            results.append(EvalResult(task_type=PIPELINE_TAG, task_name=TASK_NAME,
                                      dataset_type=str(data.get("name", "unknown")),
                                      dataset_name=str(data.get("name", "unknown")),
                                      dataset_split=data.get("split"), metric_type=key, metric_name=label,
                                      metric_value=value))
    return ModelCardData(license=license, library_name=LIBRARY_NAME, pipeline_tag=PIPELINE_TAG, tags=list(TAGS),
                         datasets=[d["name"] for d in datasets] or None, model_name=model_name,
                         eval_results=results or None)


def render_model_card(*, model_name: str, repo_id: str | None, config: dict, parameters: int, license: str,
                      datasets: list[dict[str, str]], evaluation: dict | None, files: list[str],
                      template: str | Path | None = None, notes: str | None = None) -> str:
    """The model card's text (front matter + body)."""
    from huggingface_hub import ModelCard

    template = Path(template) if template is not None else DEFAULT_TEMPLATE
    if not template.is_file():
        raise SFDError(f"model card template not found at {template} (it lives in weights_card/ of the sfd "
                       "repository; pass another with --card-template)")
    card = ModelCard.from_template(
        card_data(model_name=model_name, license=license, datasets=datasets, evaluation=evaluation),
        template_path=str(template),
        title=model_name,
        notes=notes,
        repo_id=repo_id,
        config=config,
        parameters_m=f"{parameters / 1e6:.1f}",
        identity_dim=config["latent_dim"] - config["motion_dim"],
        datasets_info=datasets,
        evaluation_table=markdown_table(evaluation) if evaluation else None,
        evaluation_networks={k: v for k, v in (evaluation or {}).get("networks", {}).items() if v},
        files=files,
    )
    return str(card)

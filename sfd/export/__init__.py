"""Export and publish: a Hub-ready weights folder (safetensors + fp16 variant, detector, calibration,
model card) from a weights folder or a training checkpoint, and its upload.

    from sfd.export import export
    export("runs/ckpt-100000", "release/sfd-vox256", eval_json="eval/evaluation.json",
           datasets=["voxceleb2"], push="org/sfd-vox256")

Command line: ``python -m sfd.export CHECKPOINT OUT_DIR [--push REPO_ID] ...``.
"""

from .checkpoint import find_model_folder
from .cli import main
from .exporter import export
from .model_card import render_model_card
from .publish import push_to_hub

__all__ = ["export", "find_model_folder", "main", "push_to_hub", "render_model_card"]

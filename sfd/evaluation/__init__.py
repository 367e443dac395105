"""Evaluation with the paper protocol (FOMM/LIA): same-identity reconstruction and cross-identity animation.

    from sfd.evaluation import evaluate, markdown_table
    results = evaluate("weights/", "vox/", split="test", lpips_weights="lpips_alex.safetensors")
    print(markdown_table(results))

Command line: ``python -m sfd.evaluation WEIGHTS DATA_ROOT [--split test] [--out DIR] ...``.
Metric functions work on plain arrays: `l1`, `psnr`, `ssim`, `lpips`, `akd`, `aed`,
`identity_similarity`, `motion_error`, `face_detail`.
"""

from .cli import main
from .dataset import TestVideo, find_test_videos
from .evaluator import Evaluator, cross_identity_pairs, evaluate
from .lpips_network import LPIPS, lpips
from .metrics import aed, akd, face_detail, identity_similarity, l1, motion_error, psnr, ssim
from .report import COLUMNS, markdown_table, to_json, write_report

__all__ = [
    "COLUMNS",
    "Evaluator",
    "LPIPS",
    "TestVideo",
    "aed",
    "akd",
    "cross_identity_pairs",
    "evaluate",
    "face_detail",
    "find_test_videos",
    "identity_similarity",
    "l1",
    "lpips",
    "main",
    "markdown_table",
    "motion_error",
    "psnr",
    "ssim",
    "to_json",
    "write_report",
]

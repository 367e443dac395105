"""Shared test setup: offline Hub, deterministic torch, and the shared face data by path."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Hub cannot be reached here; never try
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
TALKING_HEADS = FACES.parent / "talking-heads"  # real clips and stills with a manifest, split by identity


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def faces_dir() -> Path:
    """../shared/data/faces, or a skip saying it is absent."""
    if not FACES.is_dir():
        pytest.skip(f"shared face data not found at {FACES}")
    return FACES

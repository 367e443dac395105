"""Shared test setup: offline Hub, deterministic torch, and the shared face data by path."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Hub cannot be reached here; never try
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
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


def gradient_frames(n: int, h: int, w: int) -> np.ndarray:
    """Smooth, distinct frames (compress well, easy to compare after H.264)."""
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0] = np.broadcast_to(x, (h, w))
        frames[i, ..., 1] = np.broadcast_to(y, (h, w))
        frames[i, ..., 2] = (i * 255) // max(1, n - 1)
    return frames


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def data_file(rel: str) -> Path:
    """A file of ../shared/data/faces, or a skip saying where it was looked for."""
    path = FACES / rel
    if not path.is_file():
        pytest.skip(f"test clip {rel} not available (looked in {FACES})")
    return path

"""Shared test setup: offline Hub, deterministic torch, and the shared face data by path."""

import csv
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Hub cannot be reached here; never try
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
TALKING_HEADS = FACES.parent / "talking-heads"  # real clips and stills with a manifest, split by identity


def perturbed_tiny_model():
    """The tiny preset with its generator nudged off the do-nothing start, reproducibly."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        from sfd.models import SFDModel

        model = SFDModel.from_preset("tiny")
        with torch.no_grad():
            for p in model.generator.parameters():
                p.add_(0.02 * torch.randn_like(p))
    return model


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


# --------------------------------------------------------------------------- a tiny packed corpus
CROP_SIZE = 32  # the synthetic crops of a packed corpus (test_packed_training, test_cross_identity)
_MANIFEST_FIELDS = ("file", "kind", "identity", "split", "duration_s")


def write_clip(folder: Path, frames: int, seed: int, dot: bool = False) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for k in range(frames):
        coarse = rng.integers(0, 256, (CROP_SIZE // 8, CROP_SIZE // 8, 3), dtype=np.uint8)
        image = cv2.resize(coarse, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_CUBIC)  # smooth, as faces are
        if dot:  # a bright dot at pixel (20, 10) on a dark frame
            image = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)
            image[9:12, 19:22] = 255
        cv2.imwrite(str(folder / f"{k:06d}.jpg"), image)


@pytest.fixture
def crops(tmp_path):
    """Synthetic crops and their manifest. train: A (a 40-frame clip), B (three 10-frame clips), S1,
    S2 (stills); test: T (two 36-frame clips)."""
    clips = [("a_long", "A", 40, "train", "video")] + [(f"b_{k}", "B", 10, "train", "video") for k in range(3)]
    clips += [("s_one", "S1", 1, "train", "still"), ("s_two", "S2", 1, "train", "still")]
    clips += [("t_0", "T", 36, "test", "video"), ("t_1", "T", 36, "test", "video")]
    rows = []
    for seed, (stem, person, frames, split, kind) in enumerate(clips):
        group = "stills" if kind == "still" else "clips"
        write_clip(tmp_path / f"{split}_root" / split / f"{group}#{stem}.mp4", frames, seed)
        rows.append({"file": f"{group}/{stem}.mp4", "kind": kind, "identity": person, "split": split,
                     "duration_s": "1.0"})
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, _MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return tmp_path, manifest


def pack_crops(crops, name="corpus.npz", **kwargs) -> Path:
    from sfd.data.packed_corpus import pack_corpus

    root, manifest = crops
    out = root / "lease" / name
    pack_corpus({"train": root / "train_root", "test": root / "test_root"}, out, manifest=manifest, **kwargs)
    return out


@pytest.fixture
def packed_dir(crops):
    """`crops` packed, with the face-mesh weights beside them, as `lease prepare` lays them out."""
    from sfd.pretrained.files import aux_file

    out = pack_crops(crops).parent
    (out / "aux").mkdir()
    (out / "aux" / "face_mesh.safetensors").symlink_to(aux_file("face_mesh"))
    return out

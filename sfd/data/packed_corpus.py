"""`PackedCorpus`: preprocessed face crops of every split in one file, decoded at once into memory.

A GPU is lent for minutes, so its training data must arrive as one small file and be in device
memory before the first step (DESIGN.md, "Training on a lent GPU"). The file is an uncompressed
``.npz`` of the crops' JPEG bytes (already compressed; 128 px crops of the talking-heads corpus
are about 6 KB each) with one row per frame and one per clip:

- ``jpeg`` (bytes, uint8) and ``offsets`` (F + 1,): frame f is ``jpeg[offsets[f]:offsets[f + 1]]``;
- ``frame_clip`` (F,): the clip of each frame, clips' frames consecutive and in order;
- ``clip_name``, ``clip_split``, ``clip_identity`` (the manifest's person, or the clip's own
  name), ``clip_still`` (C,): who is who, as `IdentityPairDataset` reads it from the folders, so
  the held-out clips stay out and a test person in a train folder is an error here too;
- ``info``: JSON (crop size, format version).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfd.errors import SFDError

FORMAT_VERSION = 1
JPEG_QUALITY = 95  # only for crops stored in another format


@dataclass
class PackedCorpus:
    """The decoded corpus: ``frames`` (F, S, S, 3) RGB uint8 and the tables of the module doc."""

    frames: np.ndarray
    frame_clip: np.ndarray
    clip_name: list[str]
    clip_split: list[str]
    clip_identity: list[str]
    clip_still: np.ndarray

    @property
    def size(self) -> int:
        return int(self.frames.shape[1])

    def split_frames(self, split: str) -> np.ndarray:
        """Indices of the frames of one split."""
        clips = np.array([s == split for s in self.clip_split])
        return np.flatnonzero(clips[self.frame_clip]) if len(clips) else np.zeros(0, dtype=np.int64)

    @classmethod
    def load(cls, path: str | Path, workers: int | None = None) -> "PackedCorpus":
        """Read and decode a packed file (JPEG decoding spread over threads: OpenCV releases the GIL)."""
        import cv2

        path = Path(path)
        if not path.is_file():
            raise SFDError(f"no packed corpus at {path} (python -m sfd.training.lease prepare writes one)")
        with np.load(path, allow_pickle=False) as data:
            missing = {"jpeg", "offsets", "frame_clip", "clip_name", "clip_split", "clip_identity", "clip_still",
                       "info"} - set(data.files)
            if missing:
                raise SFDError(f"{path} is not a packed corpus: it has no {', '.join(sorted(missing))}")
            info = json.loads(str(data["info"]))
            if info.get("version") != FORMAT_VERSION:
                raise SFDError(f"{path} is a packed corpus of format {info.get('version')}, this sfd reads "
                               f"{FORMAT_VERSION}: pack it again")
            jpeg, offsets = data["jpeg"], data["offsets"]
            tables = {k: data[k] for k in ("frame_clip", "clip_name", "clip_split", "clip_identity", "clip_still")}

        def decode(f: int) -> np.ndarray:
            image = cv2.imdecode(jpeg[offsets[f]:offsets[f + 1]], cv2.IMREAD_COLOR)
            if image is None:
                raise SFDError(f"{path}: frame {f} is not a readable JPEG")
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

        with ThreadPoolExecutor(workers or min(16, max(1, len(offsets) // 256))) as pool:
            frames = list(pool.map(decode, range(len(offsets) - 1)))
        if not frames:
            raise SFDError(f"{path} holds no frames")
        return cls(frames=np.stack(frames), frame_clip=tables["frame_clip"].astype(np.int64),
                   clip_name=[str(n) for n in tables["clip_name"]], clip_split=[str(s) for s in tables["clip_split"]],
                   clip_identity=[str(i) for i in tables["clip_identity"]],
                   clip_still=tables["clip_still"].astype(bool))


def pack_corpus(splits: dict[str, str | Path], out: str | Path, manifest=None, quality: int | None = None) -> dict:
    """Pack preprocessed crops into one file.

    splits: split name -> data root holding that split's folder (``{"train": "crops", "test":
    "crops_test"}``); manifest: the corpus manifest(s), for who is who (None: each clip a person).
    Returns a summary (frames, clips, people, bytes per split).
    """
    import cv2

    from .identity_pairs import IdentityPairDataset

    jpeg: list[bytes] = []
    frame_clip: list[int] = []
    clips: dict[str, list] = {"name": [], "split": [], "identity": [], "still": []}
    summary: dict[str, dict] = {}
    size = None
    for split, root in splits.items():
        # The dataset only lists and labels the clips here; it decodes nothing.
        dataset = IdentityPairDataset(root, split, size=1, manifest=manifest, driver_warp=None)
        people, frames_before = set(), len(jpeg)
        for clip, identity, still in zip(dataset.clips, dataset.clip_identity, dataset.clip_is_still):
            if not clip.path.is_dir():
                raise SFDError(f"{clip.path} is a video file: pack frame folders (python -m sfd preprocess writes them)")
            for file in clip.files:
                data = file.read_bytes()
                if quality is not None or file.suffix.lower() not in (".jpg", ".jpeg"):
                    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                    if image is None:
                        raise SFDError(f"{file} is not a readable image")
                    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality or JPEG_QUALITY])[1].tobytes()
                if size is None:
                    size = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[0]
                jpeg.append(data)
                frame_clip.append(len(clips["name"]))
            clips["name"].append(clip.path.name)
            clips["split"].append(split)
            clips["identity"].append(dataset.identities[identity])
            clips["still"].append(bool(still) or len(clip.files) < 2)
            people.add(dataset.identities[identity])
        summary[split] = {"frames": len(jpeg) - frames_before, "clips": len(dataset.clips), "people": len(people)}
    offsets = np.zeros(len(jpeg) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in jpeg])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, jpeg=np.frombuffer(b"".join(jpeg), dtype=np.uint8), offsets=offsets,
             frame_clip=np.array(frame_clip, dtype=np.int32), clip_name=np.array(clips["name"]),
             clip_split=np.array(clips["split"]), clip_identity=np.array(clips["identity"]),
             clip_still=np.array(clips["still"], dtype=bool),
             info=np.array(json.dumps({"version": FORMAT_VERSION, "size": size})))
    tmp.replace(out)
    summary["bytes"] = out.stat().st_size
    return summary

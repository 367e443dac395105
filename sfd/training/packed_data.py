"""Training data from a packed corpus (`sfd.data.packed_corpus`), held on the training device.

One call turns the packed file into everything the trainer reads: the training pairs (a
`DevicePairSampler`), fixed held-out pairs for the L1 curve and a `MotionWatch` on held-out
clips. The face-mesh points of every frame are computed here, batched on the device (seconds on
a GPU), instead of a CPU pass over files before training.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from sfd.data.device_pairs import DevicePairSampler
from sfd.data.driver_warp import DriverWarp
from sfd.data.mesh_points import mesh_of_frames
from sfd.data.packed_corpus import PackedCorpus
from sfd.data.pair_augmentation import PairAugmentation

from .motion_watch import MotionWatch, to_model_size

log = logging.getLogger("sfd.training")
WATCH_FRAMES = 32  # frames per held-out clip in the motion watch, as `MotionWatch.from_folder`


@dataclass
class PackedData:
    corpus: PackedCorpus
    points: tuple[np.ndarray, np.ndarray] | None  # mesh points (F, 468, 3) and presence (F,) of every frame
    train: DevicePairSampler
    eval_pairs: list[dict] | None  # batches of held-out (source, driving) pairs
    watch: MotionWatch | None


def load_packed_data(config, size: int, device: torch.device, augmentation: PairAugmentation | None,
                     warp: DriverWarp | None, mesh=None, preloaded: PackedData | None = None) -> PackedData:
    """The training and held-out data of `config.packed_data` on `device` (see the module doc).

    mesh: a `FaceMesh` (default: the converted one, moved to `device`) for the frames' points.
    preloaded: data loaded before, whose corpus and points are used again (e.g. for another model size).
    """
    from sfd.pretrained.face_mesh import FaceMesh

    started = time.perf_counter()
    corpus = preloaded.corpus if preloaded is not None else PackedCorpus.load(config.packed_data)
    decoded = time.perf_counter()
    points = preloaded.points if preloaded is not None else None
    if (config.needs_mesh or config.motion_watch_clips > 0) and points is None:
        mesh = (mesh or FaceMesh.from_pretrained()).to(device)
        points = mesh_of_frames(corpus.frames, mesh, batch_size=256 if device.type == "cuda" else 32)
    elif mesh is not None:
        mesh = mesh.to(device)
    train = DevicePairSampler.from_corpus(corpus, config.train_split, size, device,
                                          mesh_points=points if config.needs_mesh else None,
                                          augmentation=augmentation, driver_warp=warp, warp_prob=config.warp_prob,
                                          still_share=config.still_share)
    eval_pairs = watch = None
    split = config.eval_split
    if split and len(corpus.split_frames(split)):
        held_out = DevicePairSampler.from_corpus(corpus, split, size, device)
        eval_pairs = held_out.fixed_pairs(config.eval_pairs_per_clip, seed=config.seed, batch=config.batch_size)
        if config.motion_watch_clips > 0:
            watch = MotionWatch(watch_clips(corpus, split, points, size, config.motion_watch_clips), mesh)
    log.info("packed data: %d training frames of %d people, decoded in %.1f s, ready in %.1f s",
             len(train), train.people, decoded - started, time.perf_counter() - started)
    return PackedData(corpus=corpus, points=points, train=train, eval_pairs=eval_pairs, watch=watch or None)


def watch_clips(corpus: PackedCorpus, split: str, points, size: int, clips: int, frames: int = WATCH_FRAMES) -> list:
    """The first `clips` clips of the split (by name) with at least `frames` frames: that many, evenly
    spaced, at model size, with their points."""
    chosen = []
    for clip in sorted(np.unique(corpus.frame_clip[corpus.split_frames(split)]), key=lambda c: corpus.clip_name[c]):
        members = np.flatnonzero(corpus.frame_clip == clip)
        if len(members) < frames:
            continue
        picked = members[np.linspace(0, len(members) - 1, frames).round().astype(int)]
        images = torch.from_numpy(corpus.frames[picked]).permute(0, 3, 1, 2)
        chosen.append((to_model_size(images, size), points[0][picked]))
        if len(chosen) == clips:
            break
    return chosen

"""`IdentityPairDataset`: training pairs drawn per person, stills as sources, warped drivers.

Sampling per clip or per frame lets one 200 s clip, or one person with many clips, fill most
batches; the model then fits a few faces and learns little motion. Here an item is:

1. a person, uniformly among the split's identities (the manifest's ``identity`` label; a clip no
   manifest lists is a person of its own);
2. one of that person's clips, with weight sqrt(frames) (``clip_weighting="sqrt_frames"``: longer
   footage counts for more, but a 200 s interview is only ~4x a 12 s one, not 16x) or uniformly;
3. two frames of the clip (`FaceVideoDataset.frame_pair`). A still (a one-frame folder, e.g.
   ``preprocess --stills``) is both source and driver.

The pair gets the shared flip/colour `PairAugmentation`, then the driving frame alone is warped
by a random `DriverWarp` with probability `warp_prob` (`still_warp_prob` for stills, 1.0 by
default: a still's only motion is the warp). The reconstruction target is the warped frame.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

from sfd.errors import SFDError

from .driver_warp import DriverWarp, identity_matrix
from .face_video_dataset import DEFAULT_CACHE_BYTES, MAX_BAD_CLIP_RETRIES, FaceVideoDataset, to_tensor
from .layout import frame_files
from .manifest import Manifest, media_stem
from .mesh_points import MIN_PRESENCE, NUM_POINTS, read_folder_mesh
from .pair_augmentation import PairAugmentation

log = logging.getLogger(__name__)

# The held-out evaluation clips of ../shared/data/faces (README: driving2.mp4 of LIA, d19.mp4 of
# LivePortrait, whose d19.jpg is the same person): never trained on.
HELD_OUT_STEMS = frozenset({"driving2", "d19"})
CLIP_WEIGHTINGS = ("sqrt_frames", "uniform")


class IdentityPairDataset(FaceVideoDataset):
    """(source, driving) pairs, one person drawn uniformly per item (see the module doc).

    Args:
        root, split, size, seed, min_frame_gap, cache_bytes, decode: as for `FaceVideoDataset`.
        manifest: ``manifest.csv`` path(s) or a `Manifest`, naming each clip's person and split;
            None: every clip is its own person.
        augmentation: the `PairAugmentation` shared by both frames, or None.
        driver_warp: the `DriverWarp` of driving frames, or None for no warps at all.
        warp_prob, still_warp_prob: chance that a clip's / a still's driving frame is warped.
        clip_weighting: ``"sqrt_frames"`` or ``"uniform"``: how a person's clip is chosen.
        still_share: None draws persons uniformly, as the rest of the doc says; a number in [0, 1]
            makes that share of items come from persons who have stills only (uniformly among
            them) and the rest from persons with video (uniformly among those), e.g. to keep
            warped stills from outnumbering real motion when most persons are photos.
        pairs_per_identity: items per person and pass (the length of an "epoch").
        exclude_stems: clips (by raw file stem) to leave out; None: `HELD_OUT_STEMS` in a
            ``train`` split, nothing elsewhere.
        mesh: also return the frames' face-mesh points (`sfd.data.mesh_points`, precomputed
            beside the frames): ``source_points``, ``driver_points`` (468, 2) in [-1, 1] units and
            ``points_valid`` (False where a frame has none).

    The split must not hold anybody the manifest puts in another split: a ``test`` person (or a
    file listed as ``test``) under ``train/`` is an error, not a silent leak.

    An item is a dict: ``source``, ``driving`` (3, size, size) float32 in [-1, 1], ``clip`` (index
    into `clip_paths`), ``frames`` (the two frame indices), ``identity`` (index into
    `identities`), ``is_still`` (bool), ``flipped`` (bool: the pair was mirrored) and ``warp``: the driving frame's 2x3 ``affine_grid``
    matrix (`sfd.data.driver_warp`), the identity matrix when it was not warped.
    """

    def __init__(self, root: str | Path, split: str | None = "train", size: int = 256,
                 manifest: Manifest | str | Path | list | tuple | None = None,
                 augmentation: PairAugmentation | None = None, driver_warp: DriverWarp | None = DriverWarp(),
                 warp_prob: float = 0.5, still_warp_prob: float = 1.0, clip_weighting: str = "sqrt_frames",
                 still_share: float | None = None, pairs_per_identity: int = 1, seed: int | None = None,
                 min_frame_gap: int = 0, exclude_stems: frozenset[str] | set[str] | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, decode: str = "auto", mesh: bool = False):
        super().__init__(root, split, size=size, augmentation=augmentation, seed=seed, min_frame_gap=min_frame_gap,
                         cache_bytes=cache_bytes, decode=decode)
        for name, p in (("warp_prob", warp_prob), ("still_warp_prob", still_warp_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        if still_share is not None and not 0 <= still_share <= 1:
            raise ValueError(f"still_share must lie in [0, 1] or be None, got {still_share}")
        if clip_weighting not in CLIP_WEIGHTINGS:
            raise ValueError(f"clip_weighting must be one of {', '.join(CLIP_WEIGHTINGS)}, got {clip_weighting!r}")
        self.driver_warp = driver_warp
        self.warp_prob, self.still_warp_prob = float(warp_prob), float(still_warp_prob)
        self.clip_weighting = clip_weighting
        self.still_share = still_share
        self.pairs_per_identity = max(1, int(pairs_per_identity))
        self.manifest = manifest if isinstance(manifest, Manifest) or manifest is None else Manifest.load(manifest)
        expected_split = split if split is not None else self.root.name
        if exclude_stems is None:
            exclude_stems = HELD_OUT_STEMS if expected_split == "train" else frozenset()
        left_out = [clip.path.name for clip in self.clips if media_stem(clip.path.name) in exclude_stems]
        kept = [clip for clip in self.clips if media_stem(clip.path.name) not in exclude_stems]
        if left_out:
            log.info("left out %d held-out clip(s): %s", len(left_out), ", ".join(left_out))
        if not kept:
            raise SFDError(f"no clips left under {self.root} once the held-out ones are left out")
        self.clips = kept
        self._index_identities(expected_split)
        self._frame_counts: dict[int, int] = {}
        self.mesh = mesh
        self._meshes: dict[int, tuple[torch.Tensor, torch.Tensor] | None] = {}

    # ------------------------------------------------------------------ who is who
    def _index_identities(self, expected_split: str) -> None:
        labels, stills = [], []
        test_people = self.manifest.identities("test") if self.manifest is not None else set()
        for clip in self.clips:
            entry = self.manifest.lookup(clip.path.name) if self.manifest is not None else None
            if entry is None:
                labels.append(clip.path.name)
                stills.append(_looks_like_still(clip.path))
                continue
            if entry.split != expected_split:
                raise SFDError(f"{clip.path} is a {entry.split} file in the manifest ({entry.file}) but lies in "
                               f"the {expected_split} data: preprocess with --manifest to split it right")
            if expected_split == "train" and entry.identity in test_people:
                raise SFDError(f"{clip.path} shows {entry.identity!r}, a test person: it must not be trained on")
            labels.append(entry.identity)
            stills.append(entry.kind == "still")
        self.identities: list[str] = sorted(set(labels))
        index = {label: i for i, label in enumerate(self.identities)}
        self.clip_identity: list[int] = [index[label] for label in labels]
        self.clip_is_still: list[bool] = stills
        self.identity_clips: list[list[int]] = [[] for _ in self.identities]
        for clip_index, identity in enumerate(self.clip_identity):
            self.identity_clips[identity].append(clip_index)
        stills_only = [all(stills[c] for c in clips) for clips in self.identity_clips]
        self.still_identities = [i for i, only in enumerate(stills_only) if only]
        self.video_identities = [i for i, only in enumerate(stills_only) if not only]

    def __len__(self) -> int:
        return len(self.identities) * self.pairs_per_identity

    # ------------------------------------------------------------------ drawing an item
    def _frame_count(self, clip_index: int) -> int:
        if clip_index not in self._frame_counts:  # counted on first use: init lists no folder
            self._frame_counts[clip_index] = len(self.clips[clip_index])
        return self._frame_counts[clip_index]

    def _person_pool(self, generator: torch.Generator | None) -> list[int]:
        if self.still_share is None or not self.still_identities or not self.video_identities:
            return list(range(len(self.identities)))
        from_stills = torch.rand((), generator=generator).item() < self.still_share
        return self.still_identities if from_stills else self.video_identities

    def draw_clip(self, generator: torch.Generator | None = None) -> tuple[int, int]:
        """(identity, clip) of one item: a person uniformly, then one of their readable clips."""
        for _ in range(MAX_BAD_CLIP_RETRIES + 1):
            pool = self._person_pool(generator)
            identity = pool[torch.randint(len(pool), (), generator=generator).item()]
            clips = [c for c in self.identity_clips[identity] if c not in self._bad]
            if not clips:
                continue
            if self.clip_weighting == "uniform" or len(clips) == 1:
                weights = torch.ones(len(clips))
            else:
                weights = torch.tensor([math.sqrt(self._frame_count(c)) for c in clips], dtype=torch.float)
            return identity, clips[torch.multinomial(weights, 1, generator=generator).item()]
        raise SFDError(f"no readable clip found in {self.root} ({len(self._bad)} unreadable clips; see the warnings)")

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        generator = self._generator(index)
        for _ in range(MAX_BAD_CLIP_RETRIES + 1):
            identity, clip_index = self.draw_clip(generator)
            clip = self.clips[clip_index]
            try:
                is_still = self.clip_is_still[clip_index] or self._frame_count(clip_index) < 2
                if is_still:
                    i = j = 0
                    source = driving = clip.frames([0])[0]
                else:
                    i, j = self.frame_pair(self._frame_count(clip_index), generator)
                    source, driving = clip.frames([i, j])
                break
            except (SFDError, OSError) as error:
                log.warning("skipping unreadable clip %s: %s", clip.path, error)
                self._bad.add(clip_index)
        else:
            raise SFDError(f"no readable clip found near item {index} of {self.root} "
                           f"({len(self._bad)} unreadable clips so far; see the warnings)")
        source, driving = to_tensor(source), to_tensor(driving)
        flipped = False
        if self.augmentation is not None:
            source, driving, flipped = self.augmentation.apply(source, driving, generator=generator)
        # After the shared augmentation, so `warp` relates the returned frames exactly.
        theta = identity_matrix()
        p = self.still_warp_prob if is_still else self.warp_prob
        if self.driver_warp is not None and p > 0 and torch.rand((), generator=generator).item() < p:
            driving, theta = self.driver_warp(driving, generator=generator)
        item = {"source": source, "driving": driving, "clip": clip_index, "frames": torch.tensor([i, j]),
                "identity": identity, "is_still": is_still, "flipped": flipped, "warp": theta}
        if self.mesh:
            item.update(self._mesh_points(clip_index, i, j, flipped, theta))
        return item

    def _mesh_points(self, clip_index: int, i: int, j: int, flipped: bool, theta: torch.Tensor) -> dict:
        """Mesh points (468, 2) of both returned frames in [-1, 1] units, moved as the frames were
        (mirrored with the pair, the driver's carried through its warp), and whether both exist."""
        if clip_index not in self._meshes:
            clip = self.clips[clip_index]
            found = read_folder_mesh(clip.path, [f.name for f in frame_files(clip.path)]) if clip.path.is_dir() else None
            self._meshes[clip_index] = None if found is None else (
                torch.from_numpy(found[0][..., :2]).to(torch.float16), torch.from_numpy(found[1] >= MIN_PRESENCE))
        mesh = self._meshes[clip_index]
        if mesh is None:
            return {"source_points": torch.zeros(NUM_POINTS, 2), "driver_points": torch.zeros(NUM_POINTS, 2),
                    "points_valid": False}
        points, present = mesh
        source, driver = points[i].float(), points[j].float()
        if flipped:
            source, driver = source * torch.tensor([-1.0, 1.0]), driver * torch.tensor([-1.0, 1.0])
        # The warped driver at p shows the frame at theta @ [p, 1]: a point q moves to theta_lin^-1 (q - t).
        driver = torch.linalg.solve(theta[:, :2], (driver - theta[:, 2]).T).T
        return {"source_points": source, "driver_points": driver, "points_valid": bool(present[i] and present[j])}


def _looks_like_still(path: Path) -> bool:
    """A clip no manifest lists is a still when preprocess said so, or when it is one frame.

    Read at init for unlisted clips only (one small file, else one folder listing each).
    """
    if not path.is_dir():
        return False
    meta = path / "meta.json"
    if meta.is_file():
        try:
            return json.loads(meta.read_text()).get("kind") == "still"
        except (OSError, ValueError):
            pass
    return len(frame_files(path)) < 2

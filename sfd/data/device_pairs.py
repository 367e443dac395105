"""`DevicePairSampler`: `IdentityPairDataset`'s training pairs drawn as whole batches on the device.

On a GPU the per-sample data path (JPEG decoding, a warp per item, collation in worker
processes) fed a small model at about 1 % of the chip. Here every frame of the corpus is one uint8
tensor on the device, its face-mesh points another, and a batch is an index draw followed by
batched augmentation, all on the device and with no host-device synchronisation:

1. a person (uniformly, or `still_share` of them from the people with stills only), one of their
   clips (weight sqrt(frames), as `IdentityPairDataset`), two distinct frames of it (a still is
   both);
2. the same flip and colour jitter for both frames (`PairAugmentation`'s draws);
3. the driving frame alone warped by a random `DriverWarp` with probability `warp_prob`
   (`still_warp_prob` for stills), the returned ``warp`` the exact matrix used (identity when not
   warped), and the mesh points moved as the frames were.

Items are the same dict keys as `IdentityPairDataset` with ``mesh=True``, batched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .driver_warp import DriverWarp, identity_matrix, warp_image
from .pair_augmentation import PairAugmentation


class DevicePairSampler:
    """Batches of (source, driving) pairs from frames held on one device (see the module doc).

    Args:
        frames: (F, 3, S, S) uint8 at the model's size, on the device to train on.
        frame_clip: (F,) clip of each frame (a clip's frames consecutive, in order).
        clip_identity: (C,) person index of each clip; clip_still: (C,) bool.
        points: (F, 468, 2) face-mesh points in [-1, 1] crop units; present: (F,) bool (None: no mesh).
        augmentation, driver_warp, warp_prob, still_warp_prob, still_share: as `IdentityPairDataset`.
    """

    def __init__(self, frames: torch.Tensor, frame_clip: torch.Tensor, clip_identity: torch.Tensor,
                 clip_still: torch.Tensor, points: torch.Tensor | None = None, present: torch.Tensor | None = None,
                 augmentation: PairAugmentation | None = None, driver_warp: DriverWarp | None = None,
                 warp_prob: float = 0.5, still_warp_prob: float = 1.0, still_share: float | None = None):
        if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be (F, 3, S, S) uint8, got {tuple(frames.shape)} {frames.dtype}")
        device = frames.device
        self.frames, self.points, self.present = frames, points, present
        self.augmentation, self.driver_warp = augmentation, driver_warp
        self.warp_prob, self.still_warp_prob, self.still_share = float(warp_prob), float(still_warp_prob), still_share
        frame_clip = frame_clip.to(device=device, dtype=torch.long)
        clips = len(clip_identity)
        self.clip_length = torch.bincount(frame_clip, minlength=clips)
        if bool((self.clip_length == 0).any()):
            raise ValueError("every clip needs at least one frame")
        self.clip_start = torch.cumsum(self.clip_length, 0) - self.clip_length
        self.clip_still = clip_still.to(device=device, dtype=torch.bool) | (self.clip_length < 2)
        self.clip_identity = clip_identity = clip_identity.to(device=device, dtype=torch.long)
        people = int(clip_identity.max()) + 1
        # (people, most clips of one person): each person's clips, weight sqrt(frames), 0 as padding.
        per_person = [torch.nonzero(clip_identity == p).flatten() for p in range(people)]
        width = max(len(c) for c in per_person)
        self.person_clips = torch.zeros(people, width, dtype=torch.long, device=device)
        self.person_weights = torch.zeros(people, width, device=device)
        for p, c in enumerate(per_person):
            self.person_clips[p, :len(c)] = c
            self.person_weights[p, :len(c)] = self.clip_length[c].float().sqrt()
        stills_only = torch.tensor([bool(self.clip_still[c].all()) for c in per_person], device=device)
        self.still_people = torch.nonzero(stills_only).flatten()
        self.video_people = torch.nonzero(~stills_only).flatten()
        self.people = people
        self._identity = identity_matrix().to(device)  # made once: a copy to the GPU per batch would wait for it

    @classmethod
    def from_corpus(cls, corpus, split: str, size: int, device: torch.device | str, mesh_points=None,
                    **kwargs) -> "DevicePairSampler":
        """The pairs of one split of a `PackedCorpus`, frames resized to `size` on `device`.

        mesh_points: ``(points (F, 468, >=2), presence (F,))`` of all the corpus's frames, or None.
        kwargs: the sampling and augmentation arguments of the constructor.
        """
        import numpy as np

        from .mesh_points import MIN_PRESENCE

        chosen = corpus.split_frames(split)
        if not len(chosen):
            raise ValueError(f"the packed corpus has no {split} frames")
        clips = np.unique(corpus.frame_clip[chosen])
        renumber = np.full(len(corpus.clip_name), -1)
        renumber[clips] = np.arange(len(clips))
        labels = sorted({corpus.clip_identity[c] for c in clips})
        person = [labels.index(corpus.clip_identity[c]) for c in clips]
        points = present = None
        if mesh_points is not None:
            points = torch.as_tensor(mesh_points[0][chosen][..., :2], dtype=torch.float32, device=device)
            present = torch.as_tensor(mesh_points[1][chosen] >= MIN_PRESENCE, device=device)
        sampler = cls(frames_at_size(corpus.frames[chosen], size, device),
                      torch.as_tensor(renumber[corpus.frame_clip[chosen]]), torch.as_tensor(person),
                      torch.as_tensor(corpus.clip_still[clips]), points, present, **kwargs)
        sampler.identities = labels
        return sampler

    def __len__(self) -> int:
        return len(self.frames)

    def _draw_people(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        device = self.frames.device
        if self.still_share is None or not len(self.still_people) or not len(self.video_people):
            return torch.randint(self.people, (batch,), generator=generator, device=device)
        from_stills = torch.rand(batch, generator=generator, device=device) < self.still_share
        still = self.still_people[torch.randint(len(self.still_people), (batch,), generator=generator, device=device)]
        video = self.video_people[torch.randint(len(self.video_people), (batch,), generator=generator, device=device)]
        return torch.where(from_stills, still, video)

    def draw_frames(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(source frame, driving frame, clip) indices (B,) each: person, clip, two distinct frames."""
        person = self._draw_people(batch, generator)
        choice = torch.multinomial(self.person_weights[person], 1, generator=generator)[:, 0]
        clip = self.person_clips[person, choice]
        length = self.clip_length[clip]
        u = torch.rand(2, batch, generator=generator, device=self.frames.device)
        i = (u[0] * length).long().clamp(max=length - 1)
        # j uniform among the other frames; a one-frame clip (a still) gives i again
        step = 1 + (u[1] * (length - 1)).long().clamp(max=(length - 2).clamp(min=0))
        j = torch.where(length > 1, (i + step) % length, i)
        start = self.clip_start[clip]
        return start + i, start + j, clip

    def sample(self, batch: int, generator: torch.Generator) -> dict:
        """One training batch (the module doc), drawn with `generator` (on the frames' device)."""
        device = self.frames.device
        src, drv, clip = self.draw_frames(batch, generator)
        source = self.frames[src].float().div_(127.5).sub_(1.0)
        driving = self.frames[drv].float().div_(127.5).sub_(1.0)
        flipped = torch.zeros(batch, dtype=torch.bool, device=device)
        if self.augmentation is not None:
            if self.augmentation.flip_prob > 0:
                flipped = torch.rand(batch, generator=generator, device=device) < self.augmentation.flip_prob
                mirror = flipped[:, None, None, None]
                source, driving = torch.where(mirror, source.flip(-1), source), torch.where(mirror, driving.flip(-1), driving)
            jitter = self.augmentation.jitter
            if jitter.enabled:
                factors = jitter.sample(batch, generator=generator, device=device)
                source, driving = jitter.apply(source, factors), jitter.apply(driving, factors)
        is_still = self.clip_still[clip]
        theta = self._identity.expand(batch, 2, 3)
        if self.driver_warp is not None and max(self.warp_prob, self.still_warp_prob) > 0:
            chance = torch.where(is_still, self.still_warp_prob, self.warp_prob)
            warped = torch.rand(batch, generator=generator, device=device) < chance
            theta = torch.where(warped[:, None, None], self.driver_warp.sample_matrices(batch, generator), theta)
            size = driving.shape[-1]
            displacement = self.driver_warp.sample_displacements(batch, size, generator)
            if displacement is not None:
                displacement = displacement * warped[:, None, None, None]
            moved = warp_image(driving, theta, displacement, self.driver_warp.padding_mode)
            driving = torch.where(warped[:, None, None, None], moved, driving)  # unwarped frames stay exact
        out = {"source": source, "driving": driving, "clip": clip, "frames": torch.stack([src, drv], 1),
               "identity": self.clip_identity[clip], "is_still": is_still, "flipped": flipped,
               "warp": theta.contiguous()}
        if self.points is not None:
            out.update(self._moved_points(src, drv, flipped, theta))
        return out

    def _moved_points(self, src: torch.Tensor, drv: torch.Tensor, flipped: torch.Tensor, theta: torch.Tensor) -> dict:
        """Both frames' points moved as the frames were: mirrored with the pair, the driver's carried
        through its warp (content at p lands at theta_lin^-1 (p - t))."""
        mirror = torch.where(flipped, -1.0, 1.0)[:, None]
        source, driver = self.points[src].float(), self.points[drv].float()
        source = torch.stack([source[..., 0] * mirror, source[..., 1]], -1)
        driver = torch.stack([driver[..., 0] * mirror, driver[..., 1]], -1)
        a, b, c, d = theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1]
        det = a * d - b * c  # a closed-form 2x2 inverse: linalg.solve would sync to check for errors
        inverse = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det[:, None, None]
        driver = (driver - theta[:, None, :, 2]) @ inverse.transpose(1, 2)
        valid = self.present[src] & self.present[drv]
        return {"source_points": source, "driver_points": driver, "points_valid": valid}

    def fixed_pairs(self, per_clip: int, seed: int = 0, batch: int = 64) -> list[dict]:
        """Evaluation pairs: `per_clip` (source, driving) pairs of each clip, no augmentation or warps,
        the same for every call with the same seed (batches of at most `batch`, on the device)."""
        generator = torch.Generator(device=self.frames.device).manual_seed(seed)
        clips = torch.arange(len(self.clip_length), device=self.frames.device).repeat_interleave(per_clip)
        length, start = self.clip_length[clips], self.clip_start[clips]
        u = torch.rand(2, len(clips), generator=generator, device=self.frames.device)
        i = (u[0] * length).long().clamp(max=length - 1)
        j = (u[1] * length).long().clamp(max=length - 1)
        pairs = []
        for chunk in torch.split(torch.arange(len(clips), device=self.frames.device), batch):
            pairs.append({"source": self.frames[start[chunk] + i[chunk]].float() / 127.5 - 1,
                          "driving": self.frames[start[chunk] + j[chunk]].float() / 127.5 - 1})
        return pairs


def frames_at_size(frames, size: int, device: torch.device | str) -> torch.Tensor:
    """(F, S, S, 3) uint8 numpy crops -> (F, 3, size, size) uint8 on `device`, area-resized in chunks."""
    out = []
    for start in range(0, len(frames), 1024):
        chunk = torch.from_numpy(frames[start:start + 1024]).to(device).permute(0, 3, 1, 2)
        if chunk.shape[-1] != size:
            chunk = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
        out.append(chunk.contiguous())
    return torch.cat(out)

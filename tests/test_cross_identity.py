"""The cross-identity training signal: retargeted mesh points, partners drawn inside the batch, and
the trainer's term (sfd.training.cross_identity)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import CROP_SIZE, pack_crops
from sfd.data.device_pairs import DevicePairSampler
from sfd.data.mesh_points import NUM_POINTS
from sfd.data.packed_corpus import PackedCorpus
from sfd.pretrained.face_mesh_regions import HEAD_POINTS, REGIONS
from sfd.pretrained.mesh_motion import face_size, retarget_points
from sfd.training.cross_identity import cross_identity_partners
from sfd.training.motion_losses import non_rigid_offsets

LIPS = sorted(set(REGIONS["outer_lips"]) | set(REGIONS["inner_lips"]))


def _face(seed: int, scale: float, centre=(0.0, 0.0)) -> torch.Tensor:
    """(1, 468, 2) points of a made-up face: random, spread by `scale` about `centre`."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(1, NUM_POINTS, 2, generator=generator) - 0.5) * scale + torch.tensor(centre)


def _similarity(points: torch.Tensor, angle_deg: float, scale: float, shift) -> torch.Tensor:
    """`points` turned by `angle_deg` and scaled about their head centre, then shifted."""
    t = math.radians(angle_deg)
    rotation = scale * torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    centre = points[:, HEAD_POINTS].mean(1, keepdim=True)
    return (points - centre) @ rotation.T + centre + torch.tensor(shift)


def test_a_driver_lip_moved_by_d_moves_the_source_lip_by_d_times_the_face_size_ratio():
    reference = _face(0, 0.8)
    source = _face(1, 0.4, centre=(0.1, -0.05))  # another person, a face half as large
    d = torch.tensor([0.0, 0.06])  # every lip point down by 0.06
    driver = reference.clone()
    driver[:, LIPS] += d
    ratio = (face_size(source) / face_size(reference)).item()
    assert 0.4 < ratio < 0.6
    moved = retarget_points(source, driver, reference) - source
    assert torch.allclose(moved[:, LIPS], ratio * d.expand(1, len(LIPS), 2), atol=1e-5)
    others = [k for k in range(NUM_POINTS) if k not in set(LIPS)]
    assert moved[:, others].abs().max().item() < 1e-5  # the head did not move: nothing else does


def test_a_rigid_head_motion_of_the_driver_gives_no_non_rigid_offset():
    reference, source = _face(0, 0.8), _face(1, 0.5, centre=(0.05, 0.1))
    driver = _similarity(reference, angle_deg=12.0, scale=1.1, shift=(0.08, -0.03))
    retargeted = retarget_points(source, driver, reference)
    assert (retargeted - source).abs().max().item() > 0.03  # the source's head moved...
    assert non_rigid_offsets(source, retargeted).abs().max().item() < 1e-5  # ...as a whole
    # by the driver's turn and scale, about its own centre, shifted by the shift times the size ratio
    expected = _similarity(source, 12.0, 1.1, (0.0, 0.0))
    ratio = face_size(source) / face_size(reference)
    shift = torch.tensor([0.08, -0.03]) * ratio
    assert torch.allclose(retargeted, expected + shift, atol=1e-5)


def test_head_motion_and_a_moved_lip_add_up():
    reference, source = _face(0, 0.8), _face(1, 0.8, centre=(0.05, 0.0))
    opened = reference.clone()
    opened[:, LIPS] += torch.tensor([0.0, 0.05])
    driver = _similarity(opened, angle_deg=-8.0, scale=1.0, shift=(0.02, 0.0))
    # non-rigid: the lips' own motion, turned with the head (the faces are about the same size)
    offsets = non_rigid_offsets(source, retarget_points(source, driver, reference))
    ratio = (face_size(source) / face_size(reference)).item()
    lip_drop = offsets[0, LIPS].norm(dim=-1).mean().item()
    assert abs(lip_drop - 0.05 * ratio) < 0.01, (lip_drop, ratio)


def test_partners_are_other_people_of_the_same_batch_mirrored_alike():
    identity = torch.tensor([0, 0, 1, 1, 2, 3, 3, 4])
    flipped = torch.tensor([0, 1, 0, 1, 0, 0, 1, 1], dtype=torch.bool)
    usable = torch.tensor([1, 1, 1, 1, 1, 1, 1, 0], dtype=torch.bool)
    for seed in range(20):
        partner, ok = cross_identity_partners(identity, flipped, usable, torch.Generator().manual_seed(seed))
        for i in range(len(identity)):
            if ok[i]:
                j = int(partner[i])
                assert identity[j] != identity[i] and flipped[j] == flipped[i] and usable[j]
        assert not ok[7]  # an item without points gets no partner
        assert ok[:7].all()  # everyone else has one (another person mirrored alike exists for each)
    # one person only: nobody has a partner
    _, ok = cross_identity_partners(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.bool),
                                    torch.ones(4, dtype=torch.bool))
    assert not ok.any()


def test_cross_identity_partners_of_a_training_batch_are_training_people(crops):
    """The partners come from the batch, and a batch of the train split holds training people only:
    a test person is never paired with a training person."""
    corpus = PackedCorpus.load(pack_crops(crops))
    sampler = DevicePairSampler.from_corpus(corpus, "train", CROP_SIZE, "cpu", still_share=0.3)
    training = {person for person, split in zip(corpus.clip_identity, corpus.clip_split) if split == "train"}
    assert training == {"A", "B", "S1", "S2"}  # T is the test person
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        batch = sampler.sample(16, generator)
        partner, ok = cross_identity_partners(batch["identity"], batch["flipped"], torch.ones(16, dtype=torch.bool),
                                              generator)
        names = [sampler.identities[int(k)] for k in batch["identity"]]
        assert set(names) <= training
        assert all(names[int(partner[i])] != names[i] for i in range(16) if ok[i])
        assert ok.any()


def test_the_trainer_adds_the_cross_identity_term_and_it_reaches_the_generator(packed_dir, tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    from sfd.training.lease import lease_config
    from sfd.training.trainer import Trainer

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    config = lease_config(packed_dir, 1.0, tmp_path / "run", None, "tiny", False, "cpu", 8).replace(
        max_steps=2, max_minutes=None, motion_watch_clips=0, cross_identity_weight=1.0, cross_identity_share=0.5)
    trainer = Trainer(config)
    batch = trainer.sampler.sample(8, torch.Generator().manual_seed(1))
    # The synthetic crops have no faces for the mesh to find: give every frame made-up points, the
    # driver's lips lowered.
    faces = torch.cat([_face(k, 0.8) for k in range(8)])
    opened = faces.clone()
    opened[:, LIPS] += torch.tensor([0.0, 0.05])
    batch.update(source_points=faces, driver_points=opened, points_valid=torch.ones(8, dtype=torch.bool))
    out = trainer.model(batch["source"], batch["driving"], return_flow=True)
    terms: dict = {}
    trainer._motion_terms(batch, out, out.image.float(), terms)
    assert torch.isfinite(terms["cross_identity"]) and terms["cross_identity"] > 0
    terms["cross_identity"].backward()
    generator_grads = [p.grad for p in trainer.model.generator.parameters() if p.grad is not None]
    assert generator_grads and any(g.abs().sum() > 0 for g in generator_grads)
    trainer.model.zero_grad(set_to_none=True)
    result = trainer.train()
    assert result.step == 2
    assert np.isfinite(result.history[-1]["cross_identity"])


def test_the_cross_identity_share_must_be_a_fraction():
    from sfd.training.config import TrainingConfig

    with pytest.raises(ValueError, match="cross_identity_share"):
        TrainingConfig(data_root="x", cross_identity_share=0.0)
    with pytest.raises(ValueError, match="cross_identity_weight"):
        TrainingConfig(data_root="x", cross_identity_weight=-1.0)

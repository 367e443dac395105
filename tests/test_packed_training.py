"""Training on a lent GPU: the packed corpus, batches drawn on the device, the lease command.

Everything runs on the CPU here (the same code runs on a GPU; the lease's own GPU numbers are in
the README). Frames are tiny synthetic crops made here, with a manifest, packed as JPEG.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from sfd.data import DriverWarp, PairAugmentation, warp_image
from sfd.data.device_pairs import DevicePairSampler
from sfd.data.packed_corpus import PackedCorpus
from sfd.errors import SFDError
from sfd.pretrained.face_mesh_regions import REGIONS, region_mask, regions_mask

from conftest import CROP_SIZE as SIZE, pack_crops as _pack, write_clip as _write_clip


# --------------------------------------------------------------------------- the packed file
def test_packing_keeps_every_frame_its_person_split_and_stills(crops):
    path = _pack(crops)
    corpus = PackedCorpus.load(path)
    assert corpus.frames.shape == (40 + 30 + 2 + 72, SIZE, SIZE, 3)
    assert sorted(set(corpus.clip_identity)) == ["A", "B", "S1", "S2", "T"]
    assert [s for s, still in zip(corpus.clip_identity, corpus.clip_still) if still] == ["S1", "S2"]
    assert {corpus.clip_identity[c] for c in corpus.frame_clip[corpus.split_frames("test")]} == {"T"}
    # JPEG crops keep their bytes: the frames decode exactly as the files do
    first = corpus.clip_name.index("clips#a_long.mp4")
    folder = crops[0] / "train_root" / "train" / "clips#a_long.mp4"
    frames = np.flatnonzero(corpus.frame_clip == first)
    for k in (0, 17, 39):
        expected = cv2.cvtColor(cv2.imread(str(folder / f"{k:06d}.jpg")), cv2.COLOR_BGR2RGB)
        assert np.array_equal(corpus.frames[frames[k]], expected)
    smaller = PackedCorpus.load(_pack(crops, "q60.npz", quality=60))
    assert (crops[0] / "lease" / "q60.npz").stat().st_size < path.stat().st_size
    assert np.abs(smaller.frames.astype(int) - corpus.frames.astype(int)).mean() < 6


def test_a_test_person_in_the_training_folder_cannot_be_packed(crops):
    root, manifest = crops
    (root / "test_root" / "test" / "clips#t_0.mp4").rename(root / "train_root" / "train" / "clips#t_0.mp4")
    with pytest.raises(SFDError, match="test"):
        _pack(crops)


def test_a_file_that_is_not_a_packed_corpus_is_refused(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(SFDError, match="not a packed corpus"):
        PackedCorpus.load(tmp_path / "other.npz")
    with pytest.raises(SFDError, match="no packed corpus"):
        PackedCorpus.load(tmp_path / "missing.npz")


# --------------------------------------------------------------------------- batches on the device
def _sampler(corpus: PackedCorpus, points=None, **kwargs) -> DevicePairSampler:
    return DevicePairSampler.from_corpus(corpus, "train", SIZE, "cpu", mesh_points=points, **kwargs)


def test_people_are_drawn_evenly_and_a_pair_is_two_frames_of_one_clip(crops):
    sampler = _sampler(PackedCorpus.load(_pack(crops)), warp_prob=0.0)
    owner = torch.full((len(sampler.clip_length),), -1)  # each clip's person
    for person in range(sampler.people):
        owner[sampler.person_clips[person][sampler.person_weights[person] > 0]] = person
    clip_of_frame = torch.bucketize(torch.arange(len(sampler)), sampler.clip_start, right=True) - 1
    counts = torch.zeros(sampler.people)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        batch = sampler.sample(200, generator)
        src, drv = batch["frames"].T
        assert torch.equal(clip_of_frame[src], batch["clip"]) and torch.equal(clip_of_frame[drv], batch["clip"])
        moving = ~batch["is_still"]
        assert bool((src[moving] != drv[moving]).all()) and bool((src[~moving] == drv[~moving]).all())
        counts += torch.bincount(owner[batch["clip"]], minlength=sampler.people)
    # per person, not per clip (B has 3) or per frame (A has 40 frames, a still 1)
    assert torch.allclose(counts / counts.sum(), torch.full((4,), 0.25), atol=0.03)


def test_still_share_sets_how_many_pairs_come_from_people_with_stills_only(crops):
    sampler = _sampler(PackedCorpus.load(_pack(crops)), still_share=0.1)
    batch = sampler.sample(4000, torch.Generator().manual_seed(1))
    assert abs(batch["is_still"].float().mean().item() - 0.1) < 0.02


def test_stills_are_always_warped_and_the_returned_matrix_is_the_warp_used(crops):
    sampler = _sampler(PackedCorpus.load(_pack(crops)), driver_warp=DriverWarp(rotation_deg=20), warp_prob=0.3,
                       augmentation=PairAugmentation(flip_prob=0.0, brightness=0, contrast=0, saturation=0))
    batch = sampler.sample(400, torch.Generator().manual_seed(2))
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    warped = ~torch.isclose(batch["warp"], identity).flatten(1).all(1)
    assert bool(warped[batch["is_still"]].all())
    assert abs(warped[~batch["is_still"]].float().mean().item() - 0.3) < 0.08
    unwarped_driver = sampler.frames[batch["frames"][:, 1]].float() / 127.5 - 1
    assert torch.equal(batch["driving"][~warped], unwarped_driver[~warped])  # exact, not resampled
    again = warp_image(unwarped_driver[warped], batch["warp"][warped], padding_mode="reflection")
    assert torch.allclose(again, batch["driving"][warped], atol=1e-5)


def test_mesh_points_follow_the_flip_and_the_warp_of_their_frames(crops, tmp_path):
    root, manifest = crops
    for folder in (root / "train_root" / "train").iterdir():  # every frame: a dot at pixel (20, 10)
        frames = len(list(folder.iterdir()))
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
        _write_clip(folder, frames, 0, dot=True)
    corpus = PackedCorpus.load(_pack(crops))
    points = np.zeros((len(corpus.frames), 468, 3), np.float32)
    points[:, :, 0], points[:, :, 1] = 20.5 / SIZE * 2 - 1, 10.5 / SIZE * 2 - 1
    sampler = _sampler(corpus, (points, np.ones(len(points))), warp_prob=1.0,
                       driver_warp=DriverWarp(rotation_deg=20, scale=0.1, shift=0.1),
                       augmentation=PairAugmentation(flip_prob=0.5, brightness=0, contrast=0, saturation=0))
    batch = sampler.sample(64, torch.Generator().manual_seed(3))
    assert batch["points_valid"].all()
    mirrored = batch["source_points"][:, 0, 0] < 0
    assert 0 < mirrored.sum() < 64
    for key, points_key in (("source", "source_points"), ("driving", "driver_points")):
        bright = batch[key].mean(1).flatten(1).argmax(1)
        found = torch.stack([bright % SIZE, bright // SIZE], 1).float()
        expected = (batch[points_key][:, 0] + 1) / 2 * SIZE - 0.5
        assert (found - expected).abs().max() <= 1.5


def test_fixed_pairs_are_the_same_every_call_and_unaugmented(crops):
    sampler = DevicePairSampler.from_corpus(PackedCorpus.load(_pack(crops)), "test", SIZE, "cpu")
    first, second = sampler.fixed_pairs(3, seed=5, batch=4), sampler.fixed_pairs(3, seed=5, batch=4)
    assert sum(len(b["source"]) for b in first) == 2 * 3
    assert all(torch.equal(a["driving"], b["driving"]) for a, b in zip(first, second))


# --------------------------------------------------------------------------- masks drawn as one batch
def _even_odd(polygon: np.ndarray, size: int) -> np.ndarray:
    """Pixel-centre point-in-polygon by the even-odd rule, one pixel at a time (the reference)."""
    mask = np.zeros((size, size))
    for y in range(size):
        for x in range(size):
            px, py, inside = x + 0.5, y + 0.5, False
            for (ax, ay), (bx, by) in zip(polygon, np.roll(polygon, -1, 0)):
                if (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay):
                    inside = not inside
            mask[y, x] = inside
    return mask


def test_batched_region_masks_are_the_union_of_the_regions_drawn_one_by_one():
    points = torch.rand(3, 468, 2, generator=torch.Generator().manual_seed(0)) * 12 + 2
    regions = ["outer_lips", "left_eye_area", "right_eye_area"]
    union = regions_mask(points, regions, 16)
    one_by_one = torch.stack([region_mask(points, r, 16) for r in regions]).amax(0)
    assert torch.equal(union, one_by_one)
    reference = np.maximum.reduce([_even_odd(points[1, REGIONS[r]].numpy(), 16) for r in regions])
    assert np.array_equal(union[1, 0].numpy(), reference)
    soft = regions_mask(points.requires_grad_(), regions, 16, softness=0.5)
    soft.sum().backward()
    assert points.grad.abs().sum() > 0  # soft masks stay differentiable


# --------------------------------------------------------------------------- the trainer and the lease
def test_training_on_packed_data_runs_with_the_recipe_and_watches_motion(packed_dir, tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    from sfd.training.lease import lease_config
    from sfd.training.trainer import Trainer

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    config = lease_config(packed_dir, 1.0, tmp_path / "run", None, "tiny", False, "cpu", 4).replace(
        max_steps=3, max_minutes=None, motion_watch_clips=2)
    trainer = Trainer(config)
    assert trainer.train_dataset is None and trainer.sampler is not None  # no files read per step
    result = trainer.train()
    assert result.step == 3
    assert {"l1", "mouth_corr", "driver_sensitivity"} <= set(result.eval_history[-1])
    assert all(np.isfinite(v) for k, v in result.history[-1].items() if k != "step")
    assert {"l1", "keypoint_flow", "readout", "expression_readout"} <= set(result.history[-1])


def test_the_motion_watch_moves_its_mesh_to_the_device_of_the_model(packed_dir, monkeypatch):
    """On a CPU there is one device; what can be shown is that the watch moves the mesh itself."""
    from sfd.models import SFDModel
    from sfd.pretrained.face_mesh import FaceMesh
    from sfd.training.motion_watch import MotionWatch

    corpus = PackedCorpus.load(packed_dir / "corpus.npz")
    images = torch.from_numpy(corpus.frames[corpus.split_frames("test")[:6]]).permute(0, 3, 1, 2).float() / 127.5 - 1
    mesh = FaceMesh.from_pretrained(packed_dir / "aux" / "face_mesh.safetensors")
    moved = []
    original = FaceMesh.to

    def recording_to(self, *args, **kwargs):
        moved.append(args[0] if args else kwargs.get("device"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FaceMesh, "to", recording_to)
    watch = MotionWatch([(images, np.zeros((6, 468, 3), np.float32))], mesh)
    model = SFDModel.from_preset("tiny", size=SIZE, descriptor_size=SIZE).eval()
    scores = watch(model)
    assert moved and all(torch.device(d) == next(model.parameters()).device for d in moved)
    assert np.isfinite(scores["driver_sensitivity"])


def test_the_lease_dry_run_writes_at_most_eight_small_files_with_weights_that_load(packed_dir, tmp_path, capsys):
    from accelerate.state import AcceleratorState, GradientState

    from sfd.models import SFDModel
    from sfd.training.lease import main

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    out = tmp_path / "out"
    assert main(["run", "--data", str(packed_dir), "--minutes", "0.05", "--out", str(out), "--device", "cpu",
                 "--batch-size", "4", "--set", "cross_identity_weight=1.5"]) == 0
    files = [f for f in out.rglob("*") if f.is_file()]
    assert 3 <= len(files) <= 8
    assert all(f.stat().st_size <= 16 * 2**20 and len(f.relative_to(out).parts) <= 2 for f in files)
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] >= 1 and report["watch_clips"] == 2
    assert report["settings"] == {"cross_identity_weight": 1.5}
    assert set(report["watch_before"]) == set(report["watch_after"])
    model = SFDModel.from_pretrained(str(out / "weights"))
    assert model.config.size == 64
    assert "Motion watch, 2 held-out clips" in capsys.readouterr().out


def test_the_lease_says_what_is_missing(tmp_path, capsys):
    from sfd.training.lease import main

    assert main(["run", "--data", str(tmp_path), "--minutes", "0.05", "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 2
    assert "no packed corpus" in capsys.readouterr().err
    assert main(["run", "--data", str(tmp_path), "--minutes", "0.05", "--out", str(tmp_path / "o"),
                 "--set", "cross_identity_wieght=2"]) == 2
    assert "--set takes KEY=VALUE with KEY a training setting, got 'cross_identity_wieght=2'" in capsys.readouterr().err
    assert main(["run", "--data", str(tmp_path), "--minutes", "0.05", "--out", str(tmp_path / "o"),
                 "--set", "cross_identity_share=0"]) == 2
    assert "cross_identity_share must lie in (0, 1]" in capsys.readouterr().err


def test_lease_settings_are_read_as_their_types():
    from sfd.training.lease import _settings

    # YAML alone would read 1e-4 as text
    assert _settings(["learning_rate=1e-4", "cross_identity_weight=2", "channels_last=true"]) == {
        "learning_rate": 1e-4, "cross_identity_weight": 2.0, "channels_last": True}

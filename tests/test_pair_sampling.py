"""The identity-pair training recipe: per-person sampling, stills as sources, warped drivers.

Sampling is checked on tiny synthetic frame folders with a manifest made here; the still crop on
one shared photo (../shared/data/faces, by path).
"""

from __future__ import annotations

import collections
import csv
import math

import numpy as np
import pytest
import torch

from sfd.data import (DriverWarp, IdentityPairDataset, Manifest, ManifestEntry, PairAugmentation, frame_files,
                      media_stem, preprocess_videos, similarity_matrix, to_tensor, warp_image, warped_position)
from sfd.data.driver_warp import identity_matrix
from sfd.data.preprocess import find_jobs
from sfd.errors import SFDError
from sfd.media import load_image, save_image

SIZE = 16
FIELDS = ("file", "kind", "identity", "source_repo", "commit", "source_path", "repo_licence", "media_terms",
          "duration_s", "width", "height", "fps", "split")


def _frame(seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _clip(folder, frames: int, seed: int = 0) -> None:
    for k in range(frames):
        save_image(_frame(seed * 1000 + k), folder / f"{k:06d}.png")


def _manifest(path, rows) -> None:
    """rows: (file, kind, identity, split)."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for file, kind, identity, split in rows:
            writer.writerow({"file": file, "kind": kind, "identity": identity, "split": split, "duration_s": "1.0"})


@pytest.fixture
def corpus(tmp_path):
    """A: one 200-frame clip; B: five 10-frame clips; C: one 10-frame clip; D: a test person."""
    root = tmp_path / "crops"
    clips = [("a_long", "A", 200, "train")] + [(f"b_{k}", "B", 10, "train") for k in range(5)]
    clips += [("c_one", "C", 10, "train"), ("d_test", "D", 10, "test")]
    for seed, (stem, _, frames, split) in enumerate(clips):
        _clip(root / split / f"clips#{stem}.mp4", frames, seed)  # named as preprocess names them
    manifest = tmp_path / "manifest.csv"
    _manifest(manifest, [(f"clips/{stem}.mp4", "video", person, split) for stem, person, _, split in clips])
    return root, manifest


# --------------------------------------------------------------------------- manifest
def test_manifest_rows_are_found_from_preprocessed_folder_names(corpus):
    _, manifest = corpus
    rows = Manifest.load(manifest)
    assert media_stem("clips#b_3.mp4") == media_stem("clips/b_3.mp4") == media_stem("b_3") == "b_3"
    assert rows.lookup("clips#b_3.mp4").identity == "B"
    assert rows.lookup("stills#b_3.v2") is None  # only media extensions are stripped
    assert rows.identities("test") == {"D"}


# --------------------------------------------------------------------------- per-person sampling
def test_each_person_gets_a_third_of_the_pairs_and_no_test_person_ever_appears(corpus):
    root, manifest = corpus
    data = IdentityPairDataset(root, "train", size=SIZE, manifest=manifest, driver_warp=None,
                               pairs_per_identity=1000, seed=0)
    assert data.identities == ["A", "B", "C"] and len(data) == 3000
    people, b_clips = collections.Counter(), collections.Counter()
    for index in range(len(data)):
        item = data[index]
        person = data.identities[item["identity"]]
        assert person == data.identities[data.clip_identity[item["clip"]]]
        people[person] += 1
        if person == "B":
            b_clips[item["clip"]] += 1
        assert not item["is_still"] and torch.equal(item["warp"], identity_matrix())
    assert "D" not in people
    for person in "ABC":
        assert abs(people[person] / len(data) - 1 / 3) < 0.04, people  # 4 standard deviations
    # B's five equal clips share B's third evenly (sqrt weighting of equal lengths is uniform).
    assert len(b_clips) == 5 and all(abs(n / people["B"] - 0.2) < 0.06 for n in b_clips.values()), b_clips


def test_longer_clips_of_a_person_are_drawn_by_sqrt_frames(tmp_path):
    root = tmp_path / "crops"
    _clip(root / "train" / "long", 160, 1)
    _clip(root / "train" / "short", 10, 2)
    manifest = tmp_path / "m.csv"
    _manifest(manifest, [("long.mp4", "video", "P", "train"), ("short.mp4", "video", "P", "train")])
    data = IdentityPairDataset(root, "train", size=SIZE, manifest=manifest, driver_warp=None, seed=0)
    generator = torch.Generator().manual_seed(0)
    drawn = collections.Counter(data.clip_paths[data.draw_clip(generator)[1]].name for _ in range(2000))
    assert abs(drawn["long"] / 2000 - 4 / 5) < 0.04  # sqrt(160) : sqrt(10) = 4 : 1
    uniform = IdentityPairDataset(root, "train", size=SIZE, manifest=manifest, clip_weighting="uniform", seed=0)
    drawn = collections.Counter(uniform.draw_clip(generator)[1] for _ in range(2000))
    assert abs(drawn[0] / 2000 - 0.5) < 0.05


def test_a_test_person_or_test_file_in_the_train_data_is_an_error(corpus, tmp_path):
    root, manifest = corpus
    (root / "test" / "clips#d_test.mp4").rename(root / "train" / "clips#d_test.mp4")
    with pytest.raises(SFDError, match="test"):
        IdentityPairDataset(root, "train", size=SIZE, manifest=manifest)
    # Listed as train, but the person is a test person elsewhere in the manifest.
    (root / "train" / "clips#d_test.mp4").rename(root / "train" / "clips#d_other.mp4")
    rows = Manifest.load(manifest).entries + [ManifestEntry("clips/d_other.mp4", "video", "D", "train")]
    with pytest.raises(SFDError, match="test person"):
        IdentityPairDataset(root, "train", size=SIZE, manifest=Manifest(rows))


def test_unlisted_clips_are_persons_of_their_own_and_held_out_clips_stay_out(tmp_path):
    root = tmp_path / "crops"
    for k, name in enumerate(("lia-vox#driving1.mp4", "lia-vox#driving2.mp4", "liveportrait#driving#d19.mp4",
                              "liveportrait#driving#d3.mp4")):
        _clip(root / "train" / name, 4, k)
    data = IdentityPairDataset(root, "train", size=SIZE, driver_warp=None)
    assert data.identities == ["lia-vox#driving1.mp4", "liveportrait#driving#d3.mp4"]
    assert len(data) == 2
    # Evaluation data keeps every clip.
    (root / "train").rename(root / "test")
    assert len(IdentityPairDataset(root, "test", size=SIZE).identities) == 4


def test_still_share_sets_how_many_items_come_from_photo_only_persons(tmp_path):
    root = tmp_path / "crops"
    _clip(root / "train" / "video_person", 6, 0)
    for k in range(9):
        _clip(root / "train" / f"photo{k}.jpg", 1, k + 1)
    data = IdentityPairDataset(root, "train", size=SIZE, still_share=0.25, seed=0, pairs_per_identity=40)
    assert len(data.still_identities) == 9 and len(data.video_identities) == 1
    stills = sum(data[i]["is_still"] for i in range(len(data)))
    assert abs(stills / len(data) - 0.25) < 0.07  # uniform over persons would give 0.9


# --------------------------------------------------------------------------- the driver warp
def _dot_image(x: float, y: float, size: int = 64) -> torch.Tensor:
    """A Gaussian blob at pixel (x, y), (3, size, size) in [0, 1]: zero padding adds nothing to it."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float), torch.arange(size, dtype=torch.float),
                            indexing="ij")
    blob = torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5**2))
    return blob.expand(3, size, size).clone()


def _centroid(image: torch.Tensor) -> torch.Tensor:
    weight = image[0]
    weight = torch.where(weight > 0.05, weight, torch.zeros_like(weight))
    ys, xs = torch.meshgrid(torch.arange(image.shape[-2], dtype=torch.float),
                            torch.arange(image.shape[-1], dtype=torch.float), indexing="ij")
    return torch.stack([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


def test_a_known_warp_moves_a_dot_where_the_matrix_says():
    size, angle, scale, shift = 64, 30.0, 1.1, (0.1, -0.05)
    dot = torch.tensor([40.0, 22.0])
    theta = similarity_matrix(angle, scale, *shift)
    warped = warp_image(_dot_image(*dot.tolist(), size), theta, padding_mode="zeros")
    # Written out independently: about the frame centre, turn clockwise on screen (y down), zoom, shift.
    centre = (size - 1) / 2
    a = math.radians(angle)
    rotation = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    expected = centre + scale * rotation @ (dot - centre) + torch.tensor(shift) * size
    assert torch.allclose(warped_position(theta, dot, size).float(), expected, atol=1e-3)
    assert torch.dist(_centroid(warped), expected) < 1.0


def test_identity_parameters_give_the_frame_back():
    frame = to_tensor(_frame(7, 64))
    assert torch.allclose(similarity_matrix(0.0), identity_matrix())
    assert (warp_image(frame, identity_matrix()) - frame).abs().max() < 1e-5
    still = DriverWarp(rotation_deg=0, scale=0, shift=0)
    warped, theta = still(frame, torch.Generator().manual_seed(0))
    assert torch.allclose(theta, identity_matrix()) and (warped - frame).abs().max() < 1e-5


def test_random_warps_stay_in_range_and_fill_the_corners():
    warp = DriverWarp(rotation_deg=15, scale=0.1, shift=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        theta = warp.sample_matrix(generator)
        forward = torch.linalg.inv(torch.cat([theta, torch.tensor([[0.0, 0.0, 1.0]])]))
        zoom = forward[:2, :2].det().sqrt()
        angle = math.degrees(math.atan2(forward[1, 0], forward[0, 0]))
        assert 0.9 - 1e-5 <= zoom <= 1.1 + 1e-5 and abs(angle) <= 15 + 1e-4
        assert forward[:2, 2].abs().max() <= 0.2 + 1e-5  # 10 % of the side is 0.2 in [-1, 1] units
    frame = torch.ones(3, 32, 32) * 0.5
    warped, _ = DriverWarp(rotation_deg=45, scale=0, shift=0)(frame, generator)
    assert torch.allclose(warped, frame, atol=1e-5)  # reflection padding: no black corners


def test_the_elastic_part_is_small_and_smooth():
    warp = DriverWarp(rotation_deg=0, scale=0, shift=0, elastic_amplitude=0.02, elastic_grid=4)
    assert DriverWarp().sample_displacement(32) is None
    field = warp.sample_displacement(64, torch.Generator().manual_seed(0))
    assert field.shape == (64, 64, 2) and field.abs().max() <= 0.04 + 1e-6 and field.abs().max() > 0.005
    # Neighbours move alike (no tearing): the steepest step is about the lattice's, 2 x 0.04 over 21 px.
    assert (field[1:] - field[:-1]).abs().max() < 0.008 and (field[:, 1:] - field[:, :-1]).abs().max() < 0.008
    frame = to_tensor(_frame(3, 64))
    warped, theta = warp(frame, torch.Generator().manual_seed(0))
    assert torch.allclose(theta, identity_matrix()) and not torch.equal(warped, frame)


# --------------------------------------------------------------------------- stills and warped clips
def test_a_still_is_its_own_source_and_its_driver_is_the_warped_source(tmp_path):
    root = tmp_path / "crops"
    _clip(root / "train" / "stills#s1.jpg", 1, 5)
    _clip(root / "train" / "clips#v1.mp4", 8, 6)
    manifest = tmp_path / "m.csv"
    _manifest(manifest, [("stills/s1.jpg", "still", "S", "train"), ("clips/v1.mp4", "video", "V", "train")])
    augmentation = PairAugmentation(flip_prob=0.5, brightness=0.2, contrast=0.2, saturation=0.2)
    data = IdentityPairDataset(root, "train", size=SIZE, manifest=manifest, augmentation=augmentation,
                               warp_prob=0.0, pairs_per_identity=20, seed=3)
    stills = [item for item in (data[i] for i in range(len(data))) if item["is_still"]]
    assert stills and all(data.identities[item["identity"]] == "S" for item in stills)
    for item in stills:
        assert item["warp"].shape == (2, 3) and not torch.allclose(item["warp"], identity_matrix())
        expected = warp_image(item["source"], item["warp"], padding_mode=data.driver_warp.padding_mode)
        assert (item["driving"] - expected).abs().max() < 1e-5
    plain = IdentityPairDataset(root, "train", size=SIZE, manifest=manifest, seed=0, pairs_per_identity=10)
    stored = to_tensor(load_image(frame_files(root / "train" / "stills#s1.jpg")[0]))
    assert all(torch.equal(item["source"], stored) for item in (plain[i] for i in range(len(plain)))
               if item["is_still"])


def test_a_clip_driver_is_warped_with_the_chosen_probability(corpus):
    root, manifest = corpus
    always = IdentityPairDataset(root, "train", size=SIZE, manifest=manifest, warp_prob=1.0, seed=1)
    never = IdentityPairDataset(root, "train", size=SIZE, manifest=manifest, warp_prob=0.0, seed=1)
    for index in range(len(always)):
        item = always[index]
        files = frame_files(always.clip_paths[item["clip"]])
        i, j = item["frames"].tolist()
        assert torch.equal(item["source"], to_tensor(load_image(files[i])))  # the source is never warped
        assert (item["driving"] - warp_image(to_tensor(load_image(files[j])), item["warp"])).abs().max() < 1e-5
        plain = never[index]
        assert torch.equal(plain["warp"], identity_matrix())
        assert torch.equal(plain["driving"], to_tensor(load_image(frame_files(never.clip_paths[plain["clip"]])[
            plain["frames"][1]])))
    half = IdentityPairDataset(root, "train", size=SIZE, manifest=manifest, warp_prob=0.5, seed=2,
                               pairs_per_identity=100)
    warped = sum(not torch.equal(half[i]["warp"], identity_matrix()) for i in range(len(half)))
    assert abs(warped / len(half) - 0.5) < 0.1


def test_items_batch_with_the_default_collate(corpus):
    root, manifest = corpus
    data = IdentityPairDataset(root, "train", size=SIZE, manifest=manifest, seed=0, pairs_per_identity=2)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch["source"].shape == (4, 3, SIZE, SIZE) and batch["warp"].shape == (4, 2, 3)
    assert batch["identity"].dtype == torch.int64 and batch["is_still"].dtype == torch.bool


# --------------------------------------------------------------------------- preprocess: splits and stills
def test_preprocess_takes_splits_from_the_manifest_and_leaves_out_excluded_files(tmp_path):
    raw = tmp_path / "raw"
    for name in ("clips/a.mp4", "clips/b.mp4", "clips/held.mp4", "stills/p.jpg", "other/x.mp4"):
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        (raw / name).write_bytes(b"")
    manifest = tmp_path / "m.csv"
    _manifest(manifest, [("clips/a.mp4", "video", "A", "train"), ("clips/b.mp4", "video", "B", "test"),
                         ("stills/p.jpg", "still", "P", "train")])
    rows = Manifest.load(manifest)
    jobs = {j.name: (j.split, j.kind) for j in find_jobs(raw, 0.0, stills=True, manifest=rows,
                                                         exclude=("clips/held.mp4",))}
    assert jobs == {"clips#a.mp4": ("train", "video"), "clips#b.mp4": ("test", "video"),
                    "stills#p.jpg": ("train", "still"), "other#x.mp4": ("train", "video")}
    assert [j.name for j in find_jobs(raw, 0.0, manifest=rows, only_split="test")] == ["clips#b.mp4"]
    assert "stills#p.jpg" not in {j.name for j in find_jobs(raw, 0.0)}  # photos only with stills=True


def test_preprocess_crops_a_still_as_the_pipeline_crops_a_source(tmp_path, faces_dir):
    from sfd.face import CropBox, crop, default_face_detector

    photo = faces_dir / "liveportrait" / "source" / "s0.jpg"
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "s0.jpg").symlink_to(photo)
    report = preprocess_videos(raw, tmp_path / "out", size=64, stills=True, progress=False)
    assert report.written == ["s0.jpg"] and report.frames_written == 1
    folder = tmp_path / "out" / "train" / "s0.jpg"
    [stored] = frame_files(folder)
    pixels = load_image(photo, max_side=2048)
    expected = crop(pixels, CropBox.from_face(default_face_detector().detect_single(pixels)), 64)
    assert np.abs(load_image(stored).astype(int) - expected.astype(int)).max() <= 1
    item = IdentityPairDataset(tmp_path / "out", "train", size=64, seed=0)[0]
    assert item["is_still"] and not torch.allclose(item["warp"], identity_matrix())


# --------------------------------------------------------------------------- mesh points travel with the frames
def test_mesh_points_follow_flip_and_warp(corpus):
    """A point drawn on the frames lands where the returned mesh points say, after flip and warp."""
    from sfd.data.mesh_points import MESH_FILE

    root, manifest = corpus
    size = 64
    for folder in (root / "train").iterdir():
        files = frame_files(folder)
        for f in files:  # a bright dot at (40, 20) px (pixel edges at integers) on a dark frame
            frame = np.zeros((size, size, 3), np.uint8)
            frame[19:22, 39:42] = 255
            save_image(frame, f)
        points = np.zeros((len(files), 468, 3), np.float32)
        points[:, :, 0], points[:, :, 1] = 40.5 / size * 2 - 1, 20.5 / size * 2 - 1
        np.savez(folder / MESH_FILE, points=points, presence=np.ones(len(files), np.float32),
                 files=np.array([f.name for f in files]))
    data = IdentityPairDataset(root, "train", size=size, manifest=manifest, mesh=True, warp_prob=1.0,
                               augmentation=PairAugmentation(flip_prob=0.5, brightness=0, contrast=0, saturation=0),
                               driver_warp=DriverWarp(rotation_deg=20, scale=0.1, shift=0.1), seed=3,
                               pairs_per_identity=4)
    flips = set()
    for index in range(len(data)):
        item = data[index]
        assert item["points_valid"]
        flips.add(bool(item["source_points"][0, 0] < 0))
        for image, points in ((item["source"], item["source_points"]), (item["driving"], item["driver_points"])):
            bright = image.mean(0)
            y, x = np.unravel_index(int(bright.argmax()), bright.shape)
            expected = (points[0].numpy() + 1) / 2 * size - 0.5  # pixel index of the point
            assert abs(x - expected[0]) <= 1.5 and abs(y - expected[1]) <= 1.5, (index, x, y, expected)
    assert flips == {True, False}  # both mirrored and plain pairs were checked

"""Training data: the pair dataset over both layouts, its augmentation, and the preprocess command.

Clips come from ../shared/data/faces by path (linked into tmp folders, never copied into the repo).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sfd.data import (ColorJitter, FaceVideoDataset, FrameCache, PairAugmentation, VideoFileClip, find_clips,
                      frame_files, preprocess_videos, to_tensor)
from sfd.data.frame_folder_clip import fit_square
from sfd.data.preprocess import main as preprocess_main
from sfd.errors import SFDError
from sfd.media import VideoReader, load_image, save_image, write_video

SIZE = 64


def _frames(path, count, step=1, size=SIZE):
    """The first `count` frames (every `step`-th) of a clip, fitted to `size`."""
    out = []
    with VideoReader(path, batch_size=32) as reader:
        for index, frame in enumerate(reader.frames()):
            if index % step == 0:
                out.append(fit_square(frame, size))
            if len(out) == count:
                break
    return out


@pytest.fixture
def frame_root(tmp_path, faces_dir):
    """train/ with two frame folders (24 frames each) of two shared clips, test/ with one."""
    root = tmp_path / "frames"
    for split, clip in (("train", "driving1.mp4"), ("train", "driving2.mp4"), ("test", "driving3.mov")):
        for k, frame in enumerate(_frames(faces_dir / "lia-vox" / clip, 24, step=3)):
            save_image(frame, root / split / clip / f"frame{k}.png")  # unpadded numbers: natural order
    return root


# --------------------------------------------------------------------------- layout
def test_layout_finds_frame_folders_and_videos_in_natural_order(tmp_path, frame_root):
    clips = find_clips(frame_root / "train")
    assert [c.name for c in clips] == ["driving1.mp4", "driving2.mp4"]  # folders named like files
    names = [p.name for p in frame_files(clips[0])]
    assert names[:3] == ["frame0.png", "frame1.png", "frame2.png"] and names[10] == "frame10.png"
    (frame_root / "train" / ".partial").mkdir()
    assert len(find_clips(frame_root / "train")) == 2  # hidden work folders are not clips


# --------------------------------------------------------------------------- the dataset
def test_dataset_returns_same_video_pairs_with_the_stored_frames(frame_root):
    data = FaceVideoDataset(frame_root, "train", size=SIZE, pairs_per_clip=5, seed=1)
    assert len(data) == 10
    for index in range(len(data)):
        item = data[index]
        assert item["clip"] == index % 2
        for key in ("source", "driving"):
            x = item[key]
            assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32
            assert -1.0 <= x.min() and x.max() <= 1.0
        i, j = item["frames"].tolist()
        assert i != j
        files = frame_files(data.clip_paths[item["clip"]])
        # Without augmentation the pair is exactly two stored frames of that one clip.
        assert torch.equal(item["source"], to_tensor(load_image(files[i])))
        assert torch.equal(item["driving"], to_tensor(load_image(files[j])))
    again = data[3]
    assert torch.equal(again["source"], data[3]["source"])  # a seed fixes the pairs


def test_dataset_resizes_to_the_model_size(frame_root):
    data = FaceVideoDataset(frame_root, "test", size=32, seed=0)
    assert data[0]["source"].shape == (3, 32, 32)


def test_augmentation_is_identical_for_both_frames(tmp_path):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    for k in range(2):  # two identical frames: any difference after augmentation is a mismatch
        save_image(frame, tmp_path / "train" / "still" / f"{k}.png")
    aug = PairAugmentation(flip_prob=0.5, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05)
    data = FaceVideoDataset(tmp_path, "train", size=SIZE, augmentation=aug, pairs_per_clip=16)
    original = to_tensor(frame)
    flipped = changed = 0
    for index in range(len(data)):
        item = data[index]
        assert torch.equal(item["source"], item["driving"])
        assert item["source"].min() >= -1 and item["source"].max() <= 1
        changed += not torch.allclose(item["source"], original, atol=1e-3)
        flipped += torch.allclose(item["source"].flip(-1), original, atol=0.35) and not torch.allclose(
            item["source"], original, atol=0.35)
    assert changed == len(data)  # the colour jitter acts
    assert 0 < flipped < len(data)  # and about half of the pairs are mirrored


def test_pair_flip_mirrors_both_frames():
    a, b = torch.rand(3, 8, 8) * 2 - 1, torch.rand(3, 8, 8) * 2 - 1
    sa, sb = PairAugmentation(flip_prob=1.0, brightness=0, contrast=0, saturation=0)(a, b)
    assert torch.equal(sa, a.flip(-1)) and torch.equal(sb, b.flip(-1))


def test_color_jitter_per_image_and_off_at_zero():
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    assert torch.equal(ColorJitter(0, 0, 0, 0)(images), images)
    out = ColorJitter(0.3, 0.3, 0.3, 0.05)(images, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1
    ratios = (out + 1).mean(dim=(1, 2, 3)) / (images + 1).mean(dim=(1, 2, 3))
    assert ratios.std() > 0.01  # each image gets its own factors


def test_video_file_layout_cache_and_seek_agree(tmp_path, faces_dir):
    split = tmp_path / "videos" / "train"
    split.mkdir(parents=True)
    (split / "driving2.mp4").symlink_to(faces_dir / "lia-vox" / "driving2.mp4")
    cached = VideoFileClip(split / "driving2.mp4", SIZE, FrameCache(64 * 2**20), decode="cache")
    seeking = VideoFileClip(split / "driving2.mp4", SIZE, decode="seek")
    assert cached.uses_cache() and not seeking.uses_cache()
    indices = [0, 57, 180]
    by_cache = cached.frames(indices)
    by_seek = seeking.frames(indices)
    assert len(cached) >= 200 and cached.cache.bytes == len(cached) * SIZE * SIZE * 3
    for a, b in zip(by_cache, by_seek):
        assert a.shape == (SIZE, SIZE, 3)
        # Same frame both ways (up to rescaling differences of a decoder path).
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0

    data = FaceVideoDataset(tmp_path / "videos", "train", size=SIZE, pairs_per_clip=3, seed=0)
    item = data[1]
    assert item["source"].shape == (3, SIZE, SIZE) and item["clip"] == 0
    i, j = item["frames"].tolist()
    assert torch.equal(item["driving"], to_tensor(data.clips[0].frames([j])[0]))


def test_frame_cache_evicts_least_recently_used():
    cache = FrameCache(max_bytes=300)
    for key in "abc":
        assert cache.put(key, np.zeros(100, np.uint8))
    cache.get("a")
    cache.put("d", np.zeros(100, np.uint8))
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    assert not cache.put("big", np.zeros(301, np.uint8))
    assert cache.bytes <= 300


def test_dataset_errors_name_the_problem(tmp_path):
    with pytest.raises(SFDError, match="train"):
        FaceVideoDataset(tmp_path, "train", size=SIZE)
    (tmp_path / "train").mkdir()
    with pytest.raises(SFDError, match="no clips"):
        FaceVideoDataset(tmp_path, "train", size=SIZE)


def test_unreadable_clip_is_replaced_by_another(tmp_path, frame_root, caplog):
    broken = frame_root / "train" / "broken.mp4"
    broken.write_bytes(b"not a video")
    data = FaceVideoDataset(frame_root, "train", size=SIZE, seed=0)
    index = [c.name for c in data.clip_paths].index("broken.mp4")
    item = data[index]
    assert item["clip"] != index
    assert "broken.mp4" in caplog.text


# --------------------------------------------------------------------------- preprocess
def test_preprocess_crops_with_one_box_by_default_and_records_whether_the_face_stayed_in_it(tmp_path, faces_dir):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "d19.mp4").symlink_to(faces_dir / "liveportrait" / "driving" / "d19.mp4")
    report = preprocess_videos(raw, tmp_path / "out", size=SIZE, workers=1, max_frames=30, progress=False)
    assert report.written == ["d19.mp4"]
    meta = json.loads((tmp_path / "out" / "train" / "d19.mp4" / "meta.json").read_text())
    assert meta["track"] == "fixed"
    # One look, at frame 25; the face of this talking head is still inside its first box there.
    assert (meta["watched_frames"], meta["drifted_frames"], meta["missed_frames"]) == (1, 0, 0)


def test_preprocess_crops_a_real_clip_resumes_and_skips_a_faceless_video(tmp_path, faces_dir, capsys):
    raw = tmp_path / "raw"
    (raw / "talk").mkdir(parents=True)
    (raw / "talk" / "d19.mp4").symlink_to(faces_dir / "liveportrait" / "driving" / "d19.mp4")
    gradient = np.tile(np.linspace(40, 200, 96, dtype=np.uint8)[None, :, None], (96, 1, 3))
    write_video(raw / "empty.mp4", np.stack([gradient] * 12), fps=12)
    out = tmp_path / "out"

    report = preprocess_videos(raw, out, size=SIZE, workers=2, split_test=0.0, track="smooth", detect_every=3,
                               max_frames=10, progress=False)
    assert report.written == ["talk#d19.mp4"] and report.frames_written == 10
    assert "empty.mp4" in report.skipped and "no face" in report.skipped["empty.mp4"]
    folder = out / "train" / "talk#d19.mp4"
    frames = frame_files(folder)
    assert len(frames) == 10 and load_image(frames[0]).shape == (SIZE, SIZE, 3)
    assert (folder / "meta.json").is_file()
    assert not (out / ".partial").exists()
    assert (out / ".skipped" / "empty.mp4.txt").is_file()
    # The cropped folder is a training clip as it is.
    assert FaceVideoDataset(out, "train", size=SIZE, seed=0)[0]["source"].shape == (3, SIZE, SIZE)

    # Second run: nothing redone, the face-less video stays skipped with its reason.
    stamp = frames[0].stat().st_mtime_ns
    assert preprocess_main([str(raw), str(out), "--size", str(SIZE), "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "0 videos written" in printed and "1 already done" in printed and "no face" in printed
    assert frames[0].stat().st_mtime_ns == stamp


def test_preprocess_keeps_the_raw_splits_and_hash_splits_stably(tmp_path, faces_dir):
    from sfd.data.preprocess import find_jobs, hashed_split

    raw = tmp_path / "raw"
    for split in ("train", "test"):
        (raw / split).mkdir(parents=True)
        (raw / split / "clip.mp4").symlink_to(faces_dir / "lia-vox" / "driving2.mp4")
    jobs = find_jobs(raw, test_fraction=0.5)
    assert sorted((j.split, j.name) for j in jobs) == [("test", "clip.mp4"), ("train", "clip.mp4")]
    names = [f"id{k}#clip.mp4" for k in range(400)]
    splits = [hashed_split(n, 0.1) for n in names]
    assert splits == [hashed_split(n, 0.1) for n in names]
    assert 20 <= splits.count("test") <= 60

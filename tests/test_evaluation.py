"""Evaluation: metric functions against independent references, the metric networks' loading, and the
paper protocol end to end on real clips with the tiny model (plumbing, not quality)."""

import importlib.util
import json
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sfd import SFDModel
from sfd.errors import SFDError, WeightsError
from sfd.evaluation import (
    LPIPS,
    aed,
    akd,
    cross_identity_pairs,
    evaluate,
    face_detail,
    find_test_videos,
    identity_similarity,
    l1,
    lpips,
    main,
    markdown_table,
    motion_error,
    psnr,
    ssim,
)
from sfd.pretrained.arcface import IdentityEncoder, build_arcface
from sfd.pretrained.convert import convert_landmarks, convert_lpips
from sfd.pretrained.fan import LandmarkDetector, build_fan, decode_heatmaps
from sfd.media import ffmpeg_exe, read_video

try:  # the independent reference for PSNR and SSIM (a test dependency)
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
except ImportError:
    peak_signal_noise_ratio = structural_similarity = None

needs_skimage = pytest.mark.skipif(structural_similarity is None,
                                   reason="scikit-image (the PSNR/SSIM reference) is not installed")
needs_facexlib = pytest.mark.skipif(importlib.util.find_spec("facexlib") is None,
                                    reason="facexlib (the landmark/identity network classes) is not installed")


def sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-image's SSIM with Wang et al.'s settings (what `ssim` implements)."""
    return structural_similarity(a, b, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)


def state(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------- pixel metrics
@needs_skimage
def test_psnr_and_ssim_match_scikit_image_on_random_images():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    noise = rng.integers(-30, 31, a.shape)
    b = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
    b[1] = 255 - a[1]  # one very different pair
    fa, fb = a / 255.0, b / 255.0
    ours_psnr, ours_ssim = psnr(a, b), ssim(a, b)
    assert ours_psnr.shape == ours_ssim.shape == (3,)
    for i in range(3):
        assert ours_psnr[i] == pytest.approx(peak_signal_noise_ratio(fa[i], fb[i], data_range=1.0), abs=1e-9)
        assert ours_ssim[i] == pytest.approx(sk_ssim(fa[i], fb[i]), abs=1e-9)
    # float input in [0, 1], torch or numpy, gives the same numbers as uint8 input
    assert np.allclose(ssim(torch.from_numpy(fa), torch.from_numpy(fb)), ours_ssim, atol=1e-12)
    assert psnr(fa[0], fb[0]) == pytest.approx(ours_psnr[0], abs=1e-9)


@needs_skimage
def test_psnr_and_ssim_match_scikit_image_on_real_frames(faces_dir):
    frames, _ = read_video(faces_dir / "lia-vox" / "driving2.mp4", max_frames=12)
    a, b = frames[0] / 255.0, frames[11] / 255.0
    assert psnr(frames[0], frames[11]) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-9)
    assert ssim(frames[0], frames[11]) == pytest.approx(sk_ssim(a, b), abs=1e-9)
    assert ssim(frames[0], frames[0]) == pytest.approx(1.0)
    assert psnr(frames[0], frames[0]) == np.inf


def test_l1_on_hand_made_arrays():
    black = np.zeros((2, 2, 3), np.uint8)
    white = np.full((2, 2, 3), 255, np.uint8)
    assert l1(black, white) == pytest.approx(1.0)
    half = black.copy()
    half[0] = 51  # 6 of 12 values at 0.2
    assert l1(black, half) == pytest.approx(0.1)
    batch = l1(np.stack([black, black]), np.stack([white, half]))
    assert np.allclose(batch, [1.0, 0.1])
    assert l1(np.full((4, 4, 3), 0.25), np.full((4, 4, 3), 0.75)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        l1(black, np.zeros((3, 3, 3), np.uint8))


def test_face_detail_falls_when_the_face_is_blurred_and_ignores_the_picture_around_it():
    import cv2

    rng = np.random.default_rng(3)
    frame = np.full((120, 160, 3), 128, np.uint8)
    frame[30:90, 50:110] = rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)
    face = np.array([[50.0, 30.0], [109.0, 89.0], [80.0, 60.0]])  # the landmarks' box is the textured square
    sharp = face_detail(frame, face)
    blurred = frame.copy()
    blurred[30:90, 50:110] = cv2.GaussianBlur(frame[30:90, 50:110], (0, 0), 2)
    assert face_detail(blurred, face) < 0.3 * sharp
    # Texture outside the landmarks' box does not count; a frame without a face is NaN.
    busy = frame.copy()
    busy[:, :40] = rng.integers(0, 256, (120, 40, 3), dtype=np.uint8)
    assert face_detail(busy, face) == pytest.approx(sharp)
    values = face_detail(np.stack([frame, blurred]), np.stack([face, np.full_like(face, np.nan)]))
    assert values[0] == pytest.approx(sharp) and np.isnan(values[1])
    with pytest.raises(ValueError):
        face_detail(np.stack([frame, frame]), face[None])


# ---------------------------------------------------------------------- keypoints and embeddings
def test_akd_of_known_shifts():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 256, (4, 98, 2))
    shifts = np.array([[3.0, 4.0], [0.0, 0.0], [-6.0, 8.0], [1.0, 0.0]])  # lengths 5, 0, 10, 1
    assert np.allclose(akd(points + shifts[:, None, :], points), [5.0, 0.0, 10.0, 1.0])
    assert akd(points[0] + [3.0, 4.0], points[0]) == pytest.approx(5.0)
    # half the points moved by 2, half by 0: the mean distance is 1
    moved = points[0].copy()
    moved[:49, 0] += 2.0
    assert akd(moved, points[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        akd(points, points[:, :10])


def test_motion_error_is_zero_for_a_perfect_transfer_and_the_shift_otherwise():
    rng = np.random.default_rng(2)
    source, reference = rng.uniform(0, 256, (98, 2)), rng.uniform(0, 256, (98, 2))
    driving = reference + rng.normal(0, 5, (3, 98, 2))
    perfect = source + (driving - reference)
    assert np.allclose(motion_error(perfect, source, driving, reference), 0.0)
    assert np.allclose(motion_error(perfect + [0.0, 2.0], source, driving, reference), 2.0)


def test_aed_and_identity_similarity_of_synthetic_embeddings():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(5, 512))
    d = rng.normal(size=(5, 512))
    assert np.allclose(aed(e + d, e), np.linalg.norm(d, axis=1))
    assert aed(e[0], e[0]) == 0.0
    x = np.array([1.0, 0.0, 0.0])
    assert np.allclose(identity_similarity(np.array([[2.0, 0, 0], [0, 3.0, 0], [-1.0, 0, 0]]), x), [1.0, 0.0, -1.0])
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    # for unit vectors, |a - b|^2 = 2 - 2 cos
    assert np.allclose(aed(unit[:4], unit[1:]) ** 2, 2 - 2 * identity_similarity(unit[:4], unit[1:]))


# ---------------------------------------------------------------------- LPIPS
@pytest.fixture(scope="module")
def lpips_weights(tmp_path_factory):
    """LPIPS with random weights (non-negative heads, as trained ones are), saved as safetensors."""
    torch.manual_seed(0)
    net = LPIPS()
    for lin in net.lins:
        lin.weight.data.abs_()
    path = tmp_path_factory.mktemp("lpips") / "lpips_alex.safetensors"
    save_file(state(net), str(path))
    return path


def test_lpips_from_random_weights_is_zero_for_identical_images_and_positive_otherwise(lpips_weights):
    net = LPIPS.from_file(lpips_weights)
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    same = lpips(a, a, net)
    different = lpips(a, b, net, batch_size=2)
    assert same.shape == different.shape == (3,)
    assert np.all(same == 0.0)
    assert np.all(np.isfinite(different)) and np.all(different > 0)
    assert isinstance(lpips(a[0], b[0], net), float)


def test_lpips_converts_the_lpips_package_layout_and_refuses_wrong_or_pickled_weights(lpips_weights, tmp_path):
    reference = LPIPS.from_file(lpips_weights)
    assert reference.net == "alex"  # told from the file
    ours = state(reference)
    # The lpips package's names: AlexNet slices keep torchvision's indices; heads sit behind a Dropout.
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    theirs = {}
    for key, value in ours.items():
        if key.startswith("features."):
            index = int(key.split(".")[1])
            theirs[f"net.slice{slices[index]}.{index}.{key.split('.')[2]}"] = value
        else:
            theirs[f"lin{key.split('.')[1]}.model.1.weight"] = value
    torch.save(theirs, tmp_path / "theirs.pth")  # a full lpips model state converts alone
    loaded = LPIPS.from_file(convert_lpips(tmp_path / "theirs.safetensors", None, tmp_path / "theirs.pth"))
    for key, value in state(loaded).items():
        assert torch.equal(value, ours[key])

    # and from the published checkpoints: torchvision's AlexNet (its classifier is dropped) + the LPIPS heads
    torch.save({**{k: v for k, v in ours.items() if k.startswith("features.")},
                "classifier.1.weight": torch.zeros(4096, 9216)}, tmp_path / "alexnet.pth")
    torch.save({k: v for k, v in theirs.items() if k.startswith("lin")}, tmp_path / "alex.pth")
    out = convert_lpips(tmp_path / "converted.safetensors", tmp_path / "alexnet.pth", tmp_path / "alex.pth")
    assert all(torch.equal(v, ours[k]) for k, v in state(LPIPS.from_file(out)).items())

    broken = dict(ours)
    broken["lins.0.weight"] = torch.zeros(1, 32, 1, 1)
    del broken["features.10.bias"]
    save_file(broken, str(tmp_path / "broken.safetensors"))
    with pytest.raises(WeightsError, match="features.10.bias") as error:
        LPIPS.from_file(tmp_path / "broken.safetensors")
    assert "lins.0.weight" in str(error.value)
    with pytest.raises(WeightsError, match="safetensors only"):
        LPIPS.from_file(tmp_path / "alex.pth")
    with pytest.raises(WeightsError, match="no weights file"):
        LPIPS.from_file(tmp_path / "absent.safetensors")


# ---------------------------------------------------------------------- landmark and identity networks
def test_heatmap_decoding_finds_the_peak_with_sub_pixel_refinement():
    heatmaps = torch.zeros(1, 2, 64, 64)
    heatmaps[0, 0, 20, 10] = 1.0  # a lone peak at x=10, y=20: the centre of that heatmap pixel
    heatmaps[0, 1, 5, 30] = 1.0
    heatmaps[0, 1, 5, 31] = 0.5  # a higher right neighbour: a quarter pixel to the right
    heatmaps[0, 1, 4, 30] = 0.5  # a higher upper neighbour: a quarter pixel up
    points = decode_heatmaps(heatmaps)
    assert np.allclose(points[0], [[10.5, 20.5], [30.75, 5.25]])


@pytest.fixture
def frames(faces_dir):
    return read_video(faces_dir / "lia-vox" / "driving2.mp4", max_frames=2)[0]


@needs_facexlib
def test_landmark_network_loads_from_safetensors_and_converts_from_a_checkpoint(tmp_path, frames):
    fan = state(build_fan(num_modules=1))  # one hourglass keeps the test fast; the real one has four
    # the published checkpoint nests the state dict and may carry DataParallel's prefix
    torch.save({"state_dict": {f"module.{k}": v for k, v in fan.items()}}, tmp_path / "fan.pth")
    out = convert_landmarks(tmp_path / "fan.pth", tmp_path / "fan.safetensors")
    detector = LandmarkDetector.from_file(out)
    for key, value in state(detector.network).items():
        assert torch.equal(value, fan[key])
    points = detector(frames)
    assert points.shape == (2, 98, 2)
    assert np.all(np.isfinite(points)) and points.min() >= 0 and points.max() <= 256
    assert detector(frames[0]).shape == (98, 2)
    with pytest.raises(WeightsError, match="safetensors only"):
        LandmarkDetector.from_file(tmp_path / "fan.pth")


@needs_facexlib
def test_identity_network_loads_from_safetensors_and_gives_unit_embeddings(tmp_path, frames):
    torch.manual_seed(0)
    save_file(state(build_arcface(50, "ir_se")), str(tmp_path / "arcface.safetensors"))
    encoder = IdentityEncoder.from_file(tmp_path / "arcface.safetensors")
    embeddings = encoder(frames)
    assert embeddings.shape == (2, 512)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    save_file({"input_layer.0.weight": torch.zeros(64, 3, 3, 3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match="ArcFace"):
        IdentityEncoder.from_file(tmp_path / "bad.safetensors")


# ---------------------------------------------------------------------- the protocol end to end
def test_cross_identity_pairs_use_different_videos_and_spread_over_them():
    assert cross_identity_pairs(3, 3) == [(0, 1), (1, 2), (2, 0)]
    pairs = cross_identity_pairs(10, 4)
    assert len(pairs) == 10 and len(set(pairs)) == 10 and all(s != d for s, d in pairs)
    assert cross_identity_pairs(5, 1) == []


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    SFDModel.from_preset("tiny").save_pretrained(folder)
    return folder


@pytest.fixture
def data_root(tmp_path, faces_dir):
    """A test split of two short real clips: one as a video file, one as a folder of frames."""
    root = tmp_path / "data"
    (root / "test" / "d3").mkdir(parents=True)
    ffmpeg = [ffmpeg_exe(), "-loglevel", "error", "-y"]
    subprocess.run([*ffmpeg, "-i", str(faces_dir / "lia-vox" / "driving2.mp4"), "-t", "0.5", "-an",
                    str(root / "test" / "vox.mp4")], check=True, timeout=120)
    subprocess.run([*ffmpeg, "-i", str(faces_dir / "liveportrait" / "driving" / "d3.mp4"), "-t", "0.3",
                    "-vf", "scale=256:256", str(root / "test" / "d3" / "%04d.png")], check=True, timeout=120)
    return root


def test_test_videos_are_found_in_both_layouts_and_a_missing_split_is_an_error(data_root, tmp_path):
    videos = find_test_videos(data_root)
    assert [v.name for v in videos] == ["d3", "vox"]
    assert videos[0].is_frame_folder and not videos[1].is_frame_folder
    assert [len(b) for b in videos[1].batches(batch_size=4, max_frames=6)] == [4, 2]
    assert sum(len(b) for b in videos[0].batches(batch_size=4)) == len(videos[0].frame_paths())
    with pytest.raises(SFDError, match="no 'val' split"):
        find_test_videos(data_root, "val")
    (tmp_path / "test").mkdir()
    with pytest.raises(SFDError, match="no test videos"):
        find_test_videos(tmp_path)


def test_evaluate_without_metric_networks_scores_pixels_and_says_what_was_not_computed(weights, data_root, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setenv("SFD_AUX_CACHE", str(tmp_path / "empty-cache"))  # no default LPIPS either
    monkeypatch.delenv("SFD_AUX_WEIGHTS", raising=False)

    def no_dlib():
        raise WeightsError("dlib-bin is not installed")

    monkeypatch.setattr("sfd.evaluation.evaluator.default_dlib_face", no_dlib)  # as on a machine without dlib
    results = evaluate(weights, data_root, max_frames=4, device="cpu")
    same = results["same_identity"]
    assert same["frames"] == 2 * 3  # frames 1..3 of each of the two videos
    for key in ("l1", "psnr", "ssim"):
        assert np.isfinite(same[key]["value"]) and same[key]["frames"] == 6
    assert 0 < same["l1"]["value"] < 1 and -1 < same["ssim"]["value"] <= 1
    for key, flag in (("lpips", "--lpips-weights"), ("akd", "--landmark-weights"), ("aed", "--identity-weights")):
        assert same[key]["value"] is None and flag in same[key]["reason"]
    assert "python -m sfd weights fetch-aux" in same["lpips"]["reason"]
    cross = results["cross_identity"]
    assert cross["pairs"] == 0 and cross["id_sim"]["value"] is None
    assert "--identity-weights" in cross["id_sim"]["reason"] and "--landmark-weights" in cross["motion_error"]["reason"]
    assert [v["name"] for v in results["videos"]] == ["d3", "vox"]
    assert results["protocol"]["size"] == 64 and results["protocol"]["crop"] is False
    table = markdown_table(results)
    header = ("| Method | L1 ↓ | PSNR ↑ | SSIM ↑ | LPIPS ↓ | AKD ↓ | AED ↓ | Mouth r ↑ | Eyes r ↑ | Pose r ↑ | ID-sim ↑ "
              "| Motion err. ↓ |")
    assert table.startswith(header)
    row = next(line for line in table.splitlines() if line.startswith(f"| {results['method']} |"))
    assert f"{same['l1']['value']:.4f}" in row and "n/c" in row
    assert "--lpips-weights" in table  # the reason is in a footnote
    with pytest.raises(WeightsError, match="safetensors only"):  # weights asked for must load: no silent n/c
        evaluate(weights, data_root, lpips_weights=tmp_path / "alex.pth", device="cpu")


def test_evaluate_by_default_scores_landmarks_identity_and_following_beside_the_baseline(weights, data_root):
    """dlib's landmarks and descriptor and LPIPS-AlexNet are the defaults; every metric has the
    do-nothing baseline's value beside it, and that baseline does not follow the driver."""
    results = evaluate(weights, data_root, max_frames=6, device="cpu", cross_identity_pairs=0)
    same, base = results["same_identity"], results["baseline"]
    for key in ("lpips", "akd", "aed"):
        assert np.isfinite(same[key]["value"]) and np.isfinite(base[key]["value"]), key
    assert base["akd"]["value"] > 0 and base["l1"]["value"] > 0
    for key in ("mouth_corr", "eye_corr", "pose_corr"):
        assert base[key]["value"] in (0.0, None) or base[key]["value"] == 0.0
        assert same[key]["value"] is None or -1 <= same[key]["value"] <= 1
    assert "dlib" in results["networks"]["landmarks"] and "dlib" in results["networks"]["identity"]
    assert "| ↳ do nothing (source copied) |" in markdown_table(results)


def test_evaluate_can_face_crop_frames_that_are_not_crops(weights, faces_dir, tmp_path):
    (tmp_path / "test").mkdir()
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(faces_dir / "liveportrait" / "driving" /
                    "d3.mp4"), "-t", "0.3", "-an", str(tmp_path / "test" / "d3.mp4")], check=True, timeout=120)
    results = evaluate(weights, tmp_path, crop=True, max_frames=3, device="cpu")
    assert results["protocol"]["crop"] is True and results["same_identity"]["frames"] == 2
    assert np.isfinite(results["same_identity"]["ssim"]["value"])
    assert "face-cropped" in markdown_table(results)


def test_evaluate_with_metric_networks_fills_every_column(weights, data_root):
    """Stand-in landmark and identity networks (cheap functions of the pixels) exercise the AKD, AED,
    ID-sim and motion-error plumbing; the real networks are tested above. LPIPS is the default one:
    LPIPS-AlexNet converted by `python -m sfd weights fetch-aux` (which CI runs first)."""
    grid = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.0)), -1).reshape(-1, 2) * 30

    def landmarks(frames):
        frames = np.asarray(frames)
        shift = frames.reshape(*frames.shape[:-3], -1).mean(-1) / 10
        return grid + shift[..., None, None]

    def identity(frames):
        return np.asarray(frames, np.float64).mean(axis=(-3, -2)) / 255

    results = evaluate(weights, data_root, max_frames=3, landmark_weights=landmarks,
                       identity_weights=identity, device="cpu", name="tiny")
    for section, key in (("same_identity", k) for k in ("l1", "psnr", "ssim", "lpips", "akd", "aed")):
        assert np.isfinite(results[section][key]["value"])
    cross = results["cross_identity"]
    assert cross["pairs"] == 2 and cross["frames"] == 2 * 2
    assert -1 <= cross["id_sim"]["value"] <= 1 and cross["motion_error"]["value"] >= 0
    assert [(p["source"], p["driver"]) for p in results["pairs"]] == [("d3", "vox"), ("vox", "d3")]
    assert results["networks"]["lpips"].startswith("LPIPS (AlexNet)")
    table = markdown_table(results)
    assert table.split("\n\n")[0].count("n/c") == 3  # only the correlations: they need dlib's 68-point layout
    assert "68-point layout" in table


def test_cli_writes_json_and_markdown_and_prints_the_table(weights, data_root, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(weights), str(data_root), "--out", str(out), "--max-frames", "3", "--max-videos", "1",
                 "--device", "cpu", "--name", "SFD tiny"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "evaluation.json").read_text())
    assert results["method"] == "SFD tiny" and results["dataset"]["videos"] == 1
    assert (out / "evaluation.md").read_text() == printed
    assert "| SFD tiny |" in printed
    assert results["cross_identity"]["id_sim"]["reason"] == "cross-identity needs at least two test videos"
    assert main([str(weights), str(tmp_path / "nowhere")]) == 2


def test_full_frame_scores_against_the_do_nothing_baseline_and_draws_the_figure(faces_dir, tmp_path):
    from sfd import SFDPipeline
    from sfd.evaluation.full_frame import full_frame_reconstruction, main as full_frame_main, reenactment_figure

    clip = faces_dir / "lia-vox" / "driving2.mp4"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SFDModel.from_preset("tiny")
    pipe = SFDPipeline(model, None, device="cpu")
    # The model alone: mouth transfer would open the source's mouth with the driver's, whatever the model.
    result = full_frame_reconstruction(pipe, clip, max_frames=12, crop=False, keep_frames=[3, 9], mouth=False, head=False)
    frames = read_video(clip, max_frames=12)[0]
    assert result["frames"] == 11
    # The untrained model reproduces its source and detail transfer restores the full-size pixels:
    # it scores (almost) exactly the do-nothing baseline.
    assert result["l1"] == pytest.approx(result["baseline_l1"], abs=5e-4)
    assert np.array_equal(result["kept"][0][0], frames[3]) and np.array_equal(result["kept"][1][0], frames[9])
    figure = reenactment_figure(result["source"], result["kept"], height=100, gap=4)
    assert figure.shape == (2 * 100 + 4, 3 * 100 + 2 * 4, 3)
    with pytest.raises(SFDError, match="no frame 40"):
        full_frame_reconstruction(pipe, clip, max_frames=12, crop=False, keep_frames=[40])
    out = tmp_path / "figure.png"
    # Bad weights: exit status 2 with a message, no traceback and no figure.
    assert full_frame_main([str(tmp_path / "none"), str(clip), "--figure", str(out)]) == 2
    assert not out.exists()


def test_the_ceiling_pastes_the_drivers_own_face_at_the_models_size(faces_dir, capsys):
    from sfd import SFDPipeline
    from sfd.evaluation.full_frame import full_frame_reconstruction, main as full_frame_main

    clip = faces_dir / "lia-vox" / "driving2.mp4"
    pipe = SFDPipeline(SFDModel.from_preset("tiny"), None, device="cpu")
    ceiling = full_frame_reconstruction(pipe, clip, max_frames=12, ceiling=True, keep_frames=[0, 9])
    frames = read_video(clip, max_frames=12)[0]
    source, (first, later) = ceiling["source"], ceiling["kept"]
    # No model: the driver's own face, upsampled from 64 px. Closer to the driver than doing
    # nothing on a moving clip, yet not exact.
    assert ceiling["l1"] < 0.8 * ceiling["baseline_l1"]
    assert 0 < np.abs(later[1].astype(int) - frames[9]).mean() < np.abs(source.astype(int) - frames[9]).mean()
    assert np.abs(first[1].astype(int) - frames[0]).mean() > 0
    with pytest.raises(SFDError, match="same identity"):
        full_frame_reconstruction(pipe, clip, max_frames=4, ceiling=True, source_image=frames[0])
    for extra in (["--cross-stills", "2"], ["--driver-box", "track"], ["--no-crop"]):
        assert full_frame_main(["never-loaded", str(clip), "--ceiling", *extra]) == 2
        assert "--ceiling scores the same identity with one crop box" in capsys.readouterr().err

"""Calibration and the direction atlas: statistics on real faces, flow naming on synthetic flows,
and the atlas and both commands on the tiny model (random weights; the atlas's generator is
perturbed so that its flows are not zero)."""

import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sfd import SFDModel, SFDPipeline
from sfd.errors import SFDError, WeightsError
from sfd.media import load_image, save_image
from sfd.semantics import Atlas, Calibration, FaceSampler, build_atlas, classify_flow, measure_flow
from sfd.semantics.atlas import main as atlas_main
from sfd.semantics.calibrate import main as calibrate_main
from sfd.semantics.calibration import calibrate

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
from sfd.semantics.face_measures import BOTH_EYES_NAMES, FACE_MEASURES, MEASURE_INDEX, name_effects  # noqa: E402

NAMES = {m.positive for m in FACE_MEASURES} | {m.negative for m in FACE_MEASURES} | {*BOTH_EYES_NAMES, "mixed",
                                                                                      "subtle"}
FLOW_NAMES = {"roll", "yaw", "pitch", "shift x", "shift y", "zoom", "mouth open", "mouth", "blink", "eyes",
              "mixed", "subtle"}
GROUPS = {"Head", "Mouth", "Eyes", "Brows", "Other"}


@pytest.fixture(scope="module")
def faces() -> Path:
    if not FACES.is_dir():
        pytest.skip(f"shared face data not found at {FACES}")
    return FACES


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    SFDModel.from_preset("tiny").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipe(weights):
    return SFDPipeline.from_pretrained(weights, device="cpu")


@pytest.fixture(scope="module")
def calibration(pipe, faces) -> Calibration:
    portraits = sorted((faces / "lia-vox").glob("*.png"))
    images = portraits + [faces / "liveportrait" / "source" / f"s{i}.jpg" for i in (5, 6, 7)]
    return calibrate(pipe, images)


@pytest.fixture(scope="module")
def moving_weights(tmp_path_factory) -> Path:
    """A tiny model whose flow heads (zero at initialisation) are perturbed, so that every direction moves."""
    torch.manual_seed(1)
    model = SFDModel.from_preset("tiny")
    with torch.no_grad():
        for parameter in model.generator.flow_heads.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    folder = tmp_path_factory.mktemp("moving-weights")
    model.save_pretrained(folder)
    return folder


def portrait_crops(faces: Path, count: int) -> np.ndarray:
    """The lia-vox portraits are already aligned 256 px face crops."""
    return np.stack([load_image(p) for p in sorted((faces / "lia-vox").glob("*.png"))[:count]])


# ---------------------------------------------------------------------- calibration
def test_calibration_of_real_faces_is_finite_with_the_model_sizes(calibration, pipe):
    config = pipe.model.config
    assert calibration.num_faces == 7
    assert calibration.motion_mean.shape == calibration.motion_std.shape == (config.motion_dim,)
    assert calibration.identity_mean.shape == calibration.identity_std.shape == (config.latent_dim - config.motion_dim,)
    for kind in ("motion", "identity"):
        mean, std = calibration.statistics(kind)
        assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    assert calibration.fits(pipe.model)
    order = calibration.identity_order
    assert sorted(order) == list(range(calibration.identity_dim))
    assert np.all(np.diff(calibration.identity_std[order]) <= 0)  # largest variance first


def test_calibration_saves_and_loads_in_the_app_format(calibration, tmp_path):
    path = Path(calibration.save(tmp_path))
    assert path == tmp_path / "calibration.json"
    data = json.loads(path.read_text())
    assert set(data) == {"version", "num_faces", "motion", "identity"} and data["version"] == 1
    assert set(data["motion"]) == {"mean", "std"} and set(data["identity"]) == {"mean", "std", "order"}
    assert len(data["identity"]["order"]) == len(data["identity"]["mean"]) and data["num_faces"] == 7

    loaded = Calibration.load(tmp_path)
    for kind in ("motion", "identity"):
        for ours, theirs in zip(calibration.statistics(kind), loaded.statistics(kind)):
            np.testing.assert_array_equal(ours, theirs)
    assert loaded.identity_order == calibration.identity_order and loaded.num_faces == 7
    assert Calibration.load(path).num_faces == 7  # the file itself also works
    assert Calibration.load(tmp_path / "elsewhere") is None
    assert Calibration.load("someone/uncached-weights") is None  # a Hub repo without the file (offline here)


def test_slider_ranges_are_mean_plus_minus_three_std(calibration):
    for kind in ("motion", "identity"):
        mean, std = calibration.statistics(kind)
        for index in (0, len(mean) // 2, len(mean) - 1):
            lo, hi = calibration.slider_range(kind, index)
            assert lo == pytest.approx(mean[index] - 3 * std[index])
            assert hi == pytest.approx(mean[index] + 3 * std[index])
    with pytest.raises(IndexError):
        calibration.slider_range("motion", calibration.motion_dim)
    with pytest.raises(ValueError):
        calibration.slider_range("pose", 0)


def test_identity_order_follows_variance_and_bad_files_are_weights_errors(tmp_path):
    made = Calibration.from_descriptors(np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]]),
                                        np.array([[0.0, 0.0, 1.0], [0.0, 3.0, 2.0], [0.0, -3.0, 3.0]]))
    assert made.identity_order == [1, 2, 0]
    np.testing.assert_allclose(made.motion_std, [2.0, np.std([1.0, 3.0, 8.0], ddof=1)])

    broken = made.to_dict()
    broken["identity"]["order"] = [0, 0, 1]
    (tmp_path / "calibration.json").write_text(json.dumps(broken))
    with pytest.raises(WeightsError, match="order"):
        Calibration.load(tmp_path)
    (tmp_path / "calibration.json").write_text(json.dumps({**made.to_dict(), "version": 7}))
    with pytest.raises(WeightsError, match="version"):
        Calibration.load(tmp_path)
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(WeightsError):
        Calibration.load(tmp_path)


def test_calibrate_takes_ready_crops_for_a_bare_model_and_needs_two_faces(pipe):
    crops = torch.rand(3, 3, 64, 64) * 2 - 1
    assert calibrate(pipe.model, crops).num_faces == 3
    with pytest.raises(SFDError, match="at least 2"):
        calibrate(pipe.model, crops[:1])


def test_calibrate_command_samples_videos_and_skips_files_without_a_face(faces, tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(faces / "lia-vox" / "monroe.png", data / "monroe.png")
    shutil.copy(faces / "lia-vox" / "driving2.mp4", data / "clip.mp4")
    landscape = np.zeros((240, 320, 3), np.uint8)
    landscape[120:] = (40, 120, 40)
    landscape[:120] = (150, 180, 230)
    save_image(landscape, data / "landscape.png")
    (data / "broken.jpg").write_bytes(b"not an image at all")
    (data / "notes.txt").write_text("ignored: not an image or a video")
    weights = tmp_path / "weights"
    SFDModel.from_preset("tiny").save_pretrained(weights)

    with caplog.at_level(logging.INFO, logger="sfd.semantics"):
        assert calibrate_main([str(weights), str(data), "--frames-per-video", "2", "--device", "cpu"]) == 0
    saved = json.loads((weights / "calibration.json").read_text())
    assert saved["num_faces"] == 3  # monroe and two frames of the clip
    assert len(saved["motion"]["mean"]) == 20 and len(saved["identity"]["std"]) == 108
    skipped = caplog.text
    assert "skipping landscape.png: no face" in skipped and "skipping broken.jpg" in skipped
    assert "notes.txt" not in skipped

    frames = FaceSampler.video_frames(data / "clip.mp4", 3)
    assert frames.shape == (3, 256, 256, 3)
    assert calibrate_main([str(weights), str(tmp_path / "missing")]) == 2


# ---------------------------------------------------------------------- naming flows
SIZE = 64


def flow_of(motion_x, motion_y, size=SIZE):
    """The flow change (grid units) that moves the content by (motion_x, motion_y) px: the flow is backward."""
    return -np.stack([motion_x, motion_y]).astype(np.float64) / (size / 2)


def crop_grid(n=SIZE):
    """Cell centres as fractions of the crop: (x, y), each (n, n)."""
    centres = (np.arange(n) + 0.5) / n
    y, x = np.meshgrid(centres, centres, indexing="ij")
    return x, y


def synthetic_flow(kind: str) -> np.ndarray:
    x, y = crop_grid()
    zero = np.zeros_like(x)
    dx, dy = (x - 0.5) * SIZE, (y - 0.56) * SIZE  # px from the face's centre
    if kind == "roll":  # 4 degrees clockwise on screen
        angle = math.radians(4)
        return flow_of(-angle * dy, angle * dx)
    if kind == "shift x":
        return flow_of(zero + 2.0, zero)
    if kind == "shift y":
        return flow_of(zero, zero - 2.0)
    if kind == "zoom":  # 5 % larger
        return flow_of(0.05 * dx, 0.05 * dy)
    if kind == "yaw":  # a rotating cylinder of the face's width: dx ~ cos of the horizontal angle
        across = (x - 0.5) / 0.25
        return flow_of(2.0 * np.sqrt(np.clip(1 - across ** 2, 0, None)), zero)
    if kind == "pitch":
        along = (y - 0.56) / 0.34
        return flow_of(zero, 2.0 * np.sqrt(np.clip(1 - along ** 2, 0, None)))
    if kind == "mouth open":  # only the lower lip and jaw go down
        lower_lip = (y >= 0.75) & (y < 0.85) & (x >= 0.38) & (x < 0.62)
        return flow_of(zero, 2.0 * lower_lip)
    if kind == "blink":  # upper eyelids of both eyes go down
        lids = (y >= 0.43) & (y < 0.52) & (((x >= 0.33) & (x < 0.46)) | ((x >= 0.54) & (x < 0.67)))
        return flow_of(zero, 2.0 * lids)
    if kind == "noise":
        return np.random.default_rng(0).normal(0.0, 0.002, (2, SIZE, SIZE))
    raise ValueError(kind)


@pytest.mark.parametrize("kind, name, group", [
    ("roll", "roll", "Head"), ("shift x", "shift x", "Head"), ("shift y", "shift y", "Head"),
    ("zoom", "zoom", "Head"), ("yaw", "yaw", "Head"), ("pitch", "pitch", "Head"),
    ("mouth open", "mouth open", "Mouth"), ("blink", "blink", "Eyes"), ("noise", "subtle", "Other"),
])
def test_classify_flow_names_synthetic_motions(kind, name, group):
    found, found_group, measurements = classify_flow(synthetic_flow(kind), SIZE)
    assert (found, found_group) == (name, group), measurements
    assert all(math.isfinite(v) for v in measurements.values())


def test_flow_measurements_have_meaningful_signs_and_units():
    assert measure_flow(synthetic_flow("roll"), SIZE).roll_deg == pytest.approx(4.0, abs=0.05)
    assert measure_flow(synthetic_flow("zoom"), SIZE).zoom_percent == pytest.approx(5.0, abs=0.05)
    assert measure_flow(synthetic_flow("shift x"), SIZE).shift_x_px == pytest.approx(2.0, abs=1e-6)
    assert measure_flow(synthetic_flow("shift y"), SIZE).shift_y_px == pytest.approx(-2.0, abs=1e-6)  # up
    assert measure_flow(synthetic_flow("mouth open"), SIZE).mouth_open_px > 1.0
    assert measure_flow(synthetic_flow("blink"), SIZE).eyes_vertical_px > 0  # lids move down


def test_classify_flow_accepts_batches_torch_and_coarse_grids():
    zoom = synthetic_flow("zoom")
    assert classify_flow(torch.from_numpy(np.stack([zoom, zoom])).float(), SIZE)[0] == "zoom"
    coarse_name, _, coarse = classify_flow(zoom[:, ::2, ::2], SIZE)  # a flow at size/2, as without image warp
    assert coarse_name == "zoom" and coarse["zoom_percent"] == pytest.approx(5.0, abs=0.1)
    diagonal = flow_of(np.full((SIZE, SIZE), 2.0), np.full((SIZE, SIZE), 2.0))  # shift x and y alike
    assert classify_flow(diagonal, SIZE)[:2] == ("mixed", "Head")
    with pytest.raises(ValueError):
        classify_flow(np.zeros((3, SIZE, SIZE)), SIZE)
    with pytest.raises(ValueError):
        classify_flow(np.full((2, SIZE, SIZE), np.nan), SIZE)


# ---------------------------------------------------------------------- atlas
def test_build_atlas_measures_every_direction_and_saves_previews(moving_weights, calibration, faces, tmp_path):
    model = SFDModel.from_pretrained(moving_weights)
    atlas = build_atlas(model, portrait_crops(faces, 2), calibration, preview_size=48)
    assert len(atlas) == model.config.motion_dim and atlas.spread == "calibration" and atlas.num_faces == 2
    for index, direction in enumerate(atlas.directions):
        assert direction.index == index and direction.name in NAMES and direction.group in GROUPS
        assert direction.offset == pytest.approx(2 * calibration.motion_std[index], rel=1e-4)
        assert all(math.isfinite(v) for v in direction.measurements.values())
    assert max(d.measurements["face_motion_px"] for d in atlas.directions) > 0  # the flows do move

    atlas.save(tmp_path)
    loaded = Atlas.load(tmp_path)
    assert [loaded.label(i) for i in range(len(loaded))] == [atlas.label(i) for i in range(len(atlas))]
    assert [loaded.group(i) for i in range(len(loaded))] == [d.group for d in atlas.directions]
    strip = load_image(loaded.preview_path(0))
    assert strip.shape == (48, 5 * 48, 3)
    assert sorted(p.name for p in (tmp_path / "atlas").iterdir()) == [f"direction_{i:02d}.png" for i in range(20)]
    data = json.loads((tmp_path / "atlas.json").read_text())
    assert data["version"] == 2 and [d["index"] for d in data["directions"]] == list(range(20))
    assert {"index", "name", "group", "info", "effects", "effects_spread", "std", "flow_name",
            "measurements"} <= set(data["directions"][0])
    assert data["measures"]["yaw"] == {"unit": "degrees", "spread": 11.5}
    np.testing.assert_allclose(loaded.effect_matrix(), atlas.effect_matrix(), rtol=1e-5)
    assert sum(len(v) for v in loaded.groups().values()) == 20
    assert Atlas.load(tmp_path / "nothing-here") is None


def effects(**values) -> np.ndarray:
    vector = np.zeros(len(FACE_MEASURES))
    for key, value in values.items():
        vector[MEASURE_INDEX[key]] = value
    return vector


@pytest.mark.parametrize("measured, name, group", [
    (effects(mouth_open=0.3, yaw=0.01), "mouth open", "Mouth"),
    (effects(mouth_open=-0.3), "mouth close", "Mouth"),
    (effects(roll=0.2, move_x=0.02), "tilt right", "Head"),
    (effects(roll=-0.2), "tilt left", "Head"),
    (effects(yaw=0.2), "turn left", "Head"),
    (effects(pitch=-0.2), "nod down", "Head"),
    (effects(eye_left=-0.2, eye_right=-0.18), "blink", "Eyes"),
    (effects(eye_left=-0.2), "blink left", "Eyes"),
    (effects(brows=0.1), "brows up", "Brows"),
    (effects(mouth_width=0.1), "smile", "Mouth"),
    (effects(zoom=0.1, move_y=-0.01), "zoom in", "Head"),
    (effects(mouth_open=0.001), "subtle", "Other"),
])
def test_directions_are_named_by_their_dominant_measured_effect(measured, name, group):
    assert name_effects(measured)[:2] == (name, group)


def test_a_mixed_direction_names_its_two_largest_effects_in_its_tooltip():
    name, group, info = name_effects(effects(mouth_open=0.2, roll=-0.15, yaw=0.05))
    assert (name, group) == ("mixed", "Other")
    assert "mouth open 0.2" in info and "tilt left 0.15" in info and "turn" not in info
    assert name_effects(effects(yaw=0.2, pitch=0.18))[:2] == ("mixed", "Head")  # both Head


def test_a_version_1_atlas_still_loads_without_effects():
    atlas = Atlas.from_dict({"version": 1, "directions": [{"index": 0, "name": "yaw", "group": "Head"}]})
    assert atlas.label(0) == "yaw" and atlas.info(0) == "" and atlas.effect_matrix() is None


def test_atlas_labels_number_repeated_names():
    from sfd.semantics import AtlasDirection

    atlas = Atlas([AtlasDirection(i, name, group, {}) for i, (name, group) in
                   enumerate([("yaw", "Head"), ("mouth open", "Mouth"), ("yaw", "Head")])])
    assert [atlas.label(i) for i in range(3)] == ["yaw", "mouth open", "yaw 2"]
    assert atlas.groups() == {"Head": [0, 2], "Mouth": [1]}
    with pytest.raises(IndexError):
        atlas.label(3)


def test_atlas_command_writes_the_atlas_next_to_the_weights(moving_weights, faces, tmp_path):
    data = tmp_path / "faces"
    data.mkdir()
    for name in ("monroe.png", "taylor.png"):
        shutil.copy(faces / "lia-vox" / name, data / name)
    weights = tmp_path / "weights"
    shutil.copytree(moving_weights, weights)
    assert atlas_main([str(weights), "--faces", str(data), "--no-crop", "--preview-steps", "3", "--preview-size", "32",
                       "--device", "cpu"]) == 0
    atlas = Atlas.load(weights)
    assert len(atlas) == 20 and atlas.spread == "faces" and atlas.num_faces == 2  # no calibration.json here
    assert all(atlas.preview_path(i) is not None for i in range(20))
    assert atlas_main([str(weights)]) == 2  # no faces given


def test_commands_run_as_python_modules():
    # `python -m` of a submodule whose package imported it already warns and runs it twice: make sure it does not.
    script = ("import runpy, sys\n"
              "for name in ('sfd.semantics.calibrate', 'sfd.semantics.atlas'):\n"
              "    sys.argv = [name, '--help']\n"
              "    try:\n"
              "        runpy.run_module(name, run_name='__main__', alter_sys=True)\n"
              "    except SystemExit as done:\n"
              "        assert done.code == 0, done.code\n")
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", script],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "python -m sfd.semantics.calibrate" in result.stdout and "python -m sfd.semantics.atlas" in result.stdout


def random_atlas(seed: int = 0, directions: int = 12) -> Atlas:
    from sfd.semantics import AtlasDirection

    rng = np.random.default_rng(seed)
    return Atlas([AtlasDirection(i, "mixed", "Other", {}, std=0.5,
                                 effects={m.key: float(rng.normal()) * m.spread for m in FACE_MEASURES})
                  for i in range(directions)])


def test_expression_strength_scales_expression_and_leaves_head_motion_as_it_was():
    atlas = random_atlas()
    matrix = atlas.effect_matrix()
    head = matrix[[i for i, m in enumerate(FACE_MEASURES) if m.group == "Head"]]
    change = np.random.default_rng(1).normal(size=len(atlas))
    np.testing.assert_allclose(atlas.expression_strength_map(1.0), np.eye(len(atlas)), atol=1e-12)
    for strength in (0.0, 0.5, 2.0, 3.0):
        mapped = atlas.expression_strength_map(strength) @ change
        # Yaw, pitch, roll, position and size move exactly as the driver's change moves them ...
        np.testing.assert_allclose(head @ mapped, head @ change, atol=1e-9)
        # ... and the rest of the change, which moves none of them, is scaled.
        rest = change - np.linalg.lstsq(head, head @ change, rcond=None)[0]
        np.testing.assert_allclose(mapped - change, (strength - 1) * rest, atol=1e-9)
    assert np.linalg.norm(rest) > 0.5 * np.linalg.norm(change)  # 12 directions, 6 head measures
    # A change that moves only the head is left alone at any strength.
    pose_only = np.linalg.lstsq(head, np.ones(len(head)), rcond=None)[0]
    np.testing.assert_allclose(atlas.expression_strength_map(2.5) @ pose_only, pose_only, atol=1e-9)


@pytest.mark.parametrize("strength", [-0.1, 3.5, float("nan"), float("inf")])
def test_an_expression_strength_outside_0_to_3_is_refused(strength):
    with pytest.raises(SFDError, match=r"expression strength must lie in \[0, 3\]"):
        random_atlas().expression_strength_map(strength)


def test_expression_strength_needs_measured_effects():
    atlas = Atlas.from_dict({"version": 1, "directions": [{"index": 0, "name": "yaw", "group": "Head"}]})
    with pytest.raises(SFDError, match="measured effects"):
        atlas.expression_strength_map(2.0)

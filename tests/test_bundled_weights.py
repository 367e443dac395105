"""The demo weights that ship inside the package (sfd/weights/sfd-demo64): their files, loading
them offline with no argument, their quality on a clip held out of their training, their
calibration and atlas, and the app starting on them with no environment variables."""

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sfd.app import bundled_default, load_weights
from sfd.app.sliders import SIGMAS, STEP, slider_layout
from sfd.app.weights import BUNDLED_TRAINED_NAME
from sfd.errors import SFDError
from sfd.evaluation import face_motion
from sfd.evaluation.face_judges import FaceJudges
from sfd.evaluation.full_frame import full_frame_reconstruction
from sfd.evaluation.metrics import l1
from sfd.media import read_video
from sfd.models import SFDModel
from sfd.pipeline import SFDPipeline, sfd_pipeline
from sfd.semantics.calibration import Calibration
from sfd.semantics.direction_atlas import Atlas

from conftest import TALKING_HEADS

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sfd_pipeline.BUNDLED_WEIGHTS
# A clip of a person of the corpus's test split (never trained on), whole frames with crop (one
# driver box, the default) and paste-back, first frame as source, as the model card's evaluation;
# the clip of the card's figure. Measured on the bundle, 95 frames: AKD 0.037 inter-ocular
# distances against 0.083 doing nothing and 0.083 untrained (0.45x); mouth r 0.73 against -0.25
# untrained (the previous bundle: 0.49); a still driver: L1 0.0085 to the source, no change at all. (The untrained model's
# output barely moves, so its per-clip correlations are noise: on clip 072, the test clip before
# the one-box crop, it scored mouth r 0.15 by chance, as high as the bundle there.)
TEST_CLIP = "clips/099_dpe-s.mp4"
FRAMES = 96
AKD_MARGIN = 0.4  # relative: landmark error at least 40 % under doing nothing's and the untrained model's
MOUTH_CORR_MIN = 0.5  # mouth-opening correlation with the driver, and its lead over the untrained model
STILL_L1_MAX = 0.02  # a still driver: the output is the source, up to the 64 px model's rendering


@pytest.fixture(scope="module")
def bundled_pipeline() -> SFDPipeline:
    return SFDPipeline.from_pretrained(device="cpu")


def test_the_bundle_is_a_small_fp16_hub_folder_with_its_card():
    names = {p.name for p in BUNDLED.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.fp16.safetensors", "calibration.json", "atlas.json",
            "README.md"} <= names
    assert "diffusion_pytorch_model.safetensors" not in names  # only the float16 variant ships
    weights = BUNDLED / "diffusion_pytorch_model.fp16.safetensors"
    assert weights.stat().st_size < 20 * 2**20
    card = (BUNDLED / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "cc-by-nc-4.0" and front["library_name"]
    for must in ("small demo model", "not the paper", "non-commercial research", "CC BY-NC 4.0", "2-core CPU",
                 "no person of the corpus's `test` split was trained on"):
        assert must in card, must
    # Every source of the training files with the terms of its media, in the metadata and the text.
    assert len(front["datasets"]) >= 10
    for source in front["datasets"]:
        assert f"**{source}**" in card
    assert "research use" in card and "not stated" in card
    # The whole-frame table on the test identities: these weights, the previous ones, doing nothing.
    for row in ("sfd-demo64 (these weights)", "previous bundle", "do nothing"):
        assert re.search(rf"\| {re.escape(row)} \| 0\.\d{{4}} \| 0\.\d{{3}} \| 0\.\d{{3}} \|", card), row


def test_from_pretrained_with_no_argument_loads_the_bundle_offline(bundled_pipeline):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    model = bundled_pipeline.model
    assert model.config.size == 64 and model.dtype == torch.float32  # fp16 file, computed in float32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = SFDModel.from_config(model.config)  # the same architecture, freshly initialised
    changed = [name for (name, a), (_, b) in zip(model.named_parameters(), untrained.named_parameters())
               if not torch.allclose(a, b)]
    assert len(changed) > 0.9 * len(list(model.parameters()))
    q_id, q_m = model.bases()
    q = torch.cat((q_id, q_m), dim=1)
    assert torch.allclose(q.t() @ q, torch.eye(q.shape[1]), atol=1e-5)


@pytest.fixture(scope="module")
def test_identity_clip() -> Path:
    if not (TALKING_HEADS / TEST_CLIP).is_file():
        pytest.skip(f"the talking-heads corpus is not at {TALKING_HEADS}")
    return TALKING_HEADS / TEST_CLIP


def test_on_a_test_identity_the_bundle_follows_the_driver_better_than_untrained_or_doing_nothing(
        bundled_pipeline, test_identity_clip):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = SFDPipeline(SFDModel.from_config(bundled_pipeline.model.config),
                                face_detector=bundled_pipeline.face_detector,
                                device="cpu")
    judges = FaceJudges.default(lpips=False)  # dlib's 68 points, as the model card's numbers
    # The models' own motion: mouth transfer opens any model's output with the driver's mouth.
    trained = full_frame_reconstruction(bundled_pipeline, test_identity_clip, max_frames=FRAMES, judges=judges,
                                        mouth=False, head=False)
    baseline = full_frame_reconstruction(untrained, test_identity_clip, max_frames=FRAMES, judges=judges,
                                         mouth=False, head=False)
    assert trained["frames"] == baseline["frames"] == FRAMES - 1
    assert trained["face_frames"] >= 0.9 * trained["frames"]
    # Landmarks closer to the driver's than doing nothing (the source frame every time) and than the
    # untrained model of the same preset, each by the stated margin.
    assert trained["akd_iod"] < (1 - AKD_MARGIN) * trained["baseline_akd_iod"], trained
    assert trained["akd_iod"] < (1 - AKD_MARGIN) * baseline["akd_iod"], (trained, baseline)
    # The mouth opens and closes with the driver's (doing nothing scores 0).
    assert trained["mouth_corr"] > MOUTH_CORR_MIN, trained
    assert trained["mouth_corr"] > baseline["mouth_corr"] + MOUTH_CORR_MIN, (trained, baseline)


def test_a_still_driver_gives_the_source_back(bundled_pipeline, test_identity_clip):
    frame = read_video(test_identity_clip, max_frames=1)[0][0]
    source = bundled_pipeline.prepare_source(frame)
    still = np.repeat(frame[None], 4, axis=0)
    output = np.concatenate(list(bundled_pipeline.iter_animate(source, [still])))[:, :frame.shape[0], :frame.shape[1]]
    moving = read_video(test_identity_clip, max_frames=FRAMES)[0][::16]
    driven = np.concatenate(list(bundled_pipeline.iter_animate(source, [moving])))[:, :frame.shape[0], :frame.shape[1]]
    unchanged = float(np.abs(output.astype(float) - output[:1]).mean())
    # Every output frame is the same picture, close to the source: nothing moves without a driver motion.
    assert unchanged < 0.5, unchanged  # grey levels
    assert l1(output[0], frame) < STILL_L1_MAX
    assert float(np.abs(driven.astype(float) - driven[:1]).mean()) > 10 * max(unchanged, 0.05)


def shifted_right(image: np.ndarray, dx: int) -> np.ndarray:
    """`image` moved `dx` pixels right, its left edge column repeated into the gap."""
    return np.pad(image, ((0, 0), (dx, 0), (0, 0)), mode="edge")[:, :image.shape[1]]


def test_with_one_driver_box_the_portrait_follows_the_head_across_the_frame(bundled_pipeline, test_identity_clip):
    """The driver's first frame, then 15 frames of it moved right by 6 % of its width: with the
    fixed box (the default) the output's face moves with it (measured: 15.9 px for the driver's 15.1); a
    tracked box re-centres the driver's face, and the move fades out (-1.4 px by the last frame)."""
    frame = read_video(test_identity_clip, max_frames=1)[0][0]
    h, w = frame.shape[:2]
    driver = np.stack([frame] + [shifted_right(frame, round(0.06 * w))] * 15)
    source = bundled_pipeline.prepare_source(frame)
    face = FaceJudges.default(lpips=False).face

    def face_x(frames: np.ndarray) -> np.ndarray:  # mean x of dlib's 68 points, pixels from the first frame's
        x = face.landmarks(frames)[:, :, 0].mean(axis=1)
        return x - x[0]

    shift = face_x(driver)[-1]
    assert shift > 0.05 * w
    moved = {box: face_x(np.concatenate(list(bundled_pipeline.iter_animate(source, [driver], driver_box=box)))
                         [:, :h, :w])[-1] for box in ("fixed", "track")}
    assert moved["fixed"] > 0.7 * shift, (shift, moved)
    assert abs(moved["track"]) < 0.25 * shift, (shift, moved)


def test_the_picture_around_the_face_moves_with_it_and_far_from_it_stays(bundled_pipeline):
    """A test clip's first frame (its face box inside the picture), then that frame moved right by
    6 % of its width: the crop's content moves right, and so does the picture just outside its box
    (no seam where the crop fades in; measured: 14.2 grey levels from the frame moved 6 px right,
    18.3 from it moved left, 16.2 from it unmoved), while the first frame's surroundings and
    everything beyond a quarter of the box's side stay the source's own pixels."""
    clip = TALKING_HEADS / "clips/085_retalking-4.mp4"
    if not clip.is_file():
        pytest.skip(f"the talking-heads corpus is not at {TALKING_HEADS}")
    frame = read_video(clip, max_frames=1)[0][0]
    h, w = frame.shape[:2]
    driver = np.stack([frame] + [shifted_right(frame, round(0.06 * w))] * 7)
    source = bundled_pipeline.prepare_source(frame)
    output = np.concatenate(list(bundled_pipeline.iter_animate(source, [driver])))[:, :h, :w].astype(float)
    box = source.box
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    outside = np.hypot(np.maximum(np.maximum(box.x0 - xs, xs - box.x1), 0),
                       np.maximum(np.maximum(box.y0 - ys, ys - box.y1), 0)) / box.side
    ring = (outside > 0.01) & (outside < 0.1)
    assert ring.sum() > 10_000
    error = {dx: float(np.abs(output[-1] - np.roll(frame, dx, axis=1))[ring].mean()) for dx in (-6, 0, 6)}
    assert error[6] < error[0] - 1 and error[0] < error[-6] - 1, error
    far = outside > 0.26
    assert np.array_equal(output[-1][far], frame[far].astype(float))
    assert np.array_equal(output[0][outside > 0], frame[outside > 0].astype(float))


def test_a_portrait_keeps_its_detail_while_the_driver_s_head_sways_aside(bundled_pipeline, faces_dir):
    """The Mona Lisa driven by a test clip whose head sways sideways: every output frame's face
    keeps at least half of the painting's fine detail (`face_detail`, dlib's landmark box). The
    source's detail goes in wherever the flow samples inside the crop; weighted by the generator's
    blend mask, which falls as the head moves away, the furthest frames kept 0.28 of it
    (measured: min 0.60, mean 0.67; mask-weighted 0.28 and 0.43)."""
    from sfd.evaluation.metrics import face_detail
    from sfd.media import load_image

    clip = TALKING_HEADS / "clips/005_styletalk-feifeili-clip2-short.mp4"
    if not clip.is_file():
        pytest.skip(f"the talking-heads corpus is not at {TALKING_HEADS}")
    frames = read_video(clip, max_frames=48)[0]
    image = load_image(faces_dir / "lia-vox" / "mona_lisa.png")
    output = animate(bundled_pipeline, bundled_pipeline.prepare_source(image), frames)
    face = FaceJudges.default(lpips=False).face
    kept = face_detail(output, face.landmarks(output)) / face_detail(image, face.landmarks(image[None])[0])
    assert np.isfinite(kept).all() and kept.min() > 0.5, np.round(kept, 2)


def test_a_large_photo_s_face_keeps_its_own_fine_detail(bundled_pipeline):
    """A 1,350 x 1,800 photo whose face's crop is about 1,600 px, driven by a test clip: the faces are
    drawn and retargeted at the working side and the rest of the photo's detail goes in at the
    crop's own side, so every output face keeps most of the photo's fine detail (measured over 24
    frames: mean 0.90, min 0.85; with the detail cut at 1,024 px as before, mean 0.32)."""
    from sfd.evaluation.metrics import face_detail
    from sfd.pipeline.detail_transfer import WORKING_SIDE

    frames, image = clip_and_still("004_styletalk-feifeili-clip1.mp4", "126_deepface-img47.jpg")
    source = bundled_pipeline.prepare_source(image)
    assert source.box.side > 3 * WORKING_SIDE and source.detail.full_side == round(source.box.side)
    output = animate(bundled_pipeline, source, frames[:16])
    face = FaceJudges.default(lpips=False).face
    kept = face_detail(output, face.landmarks(output)) / face_detail(image, face.landmarks(image[None])[0])
    assert np.isfinite(kept).all() and kept.min() > 0.75, np.round(kept, 2)


def test_the_bundled_calibration_is_finite_and_sets_the_app_slider_ranges(bundled_pipeline, faces_dir):
    calibration = Calibration.load(BUNDLED)
    model = bundled_pipeline.model
    assert calibration.fits(model) and calibration.num_faces >= 100
    for kind, size in (("motion", model.config.motion_dim), ("identity", model.identity_dim)):
        mean, std = calibration.statistics(kind)
        assert mean.shape == std.shape == (size,)
        assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    # Motion sliders must be usable at the app's step: a range of several steps each.
    assert (2 * SIGMAS * calibration.motion_std > 4 * STEP).all()

    loaded = bundled_default("cpu")
    assert loaded.trained and loaded.calibration is not None and loaded.atlas is not None
    assert np.array_equal(loaded.calibration.motion_std, calibration.motion_std)
    face = bundled_pipeline.prepare_source(faces_dir / "liveportrait" / "source" / "s0.jpg")
    layout = slider_layout(face.motion, face.identity, loaded.calibration, 10, loaded.atlas)
    for slider in layout.motion:
        k = slider.index
        low = calibration.motion_mean[k] - SIGMAS * calibration.motion_std[k] - face.motion[k]
        high = calibration.motion_mean[k] + SIGMAS * calibration.motion_std[k] - face.motion[k]
        assert slider.minimum == pytest.approx(min(low, 0), abs=STEP * 1.1)
        assert slider.maximum == pytest.approx(max(high, 0), abs=STEP * 1.1)
    assert [s.index for s in layout.identity] == list(calibration.identity_order[:10])
    order_std = calibration.identity_std[calibration.identity_order]
    assert (np.diff(order_std) <= 0).all()  # largest variance first


def test_the_bundled_atlas_names_every_motion_direction_from_measurements(bundled_pipeline):
    atlas = Atlas.load(BUNDLED)
    assert len(atlas) == bundled_pipeline.model.config.motion_dim
    data = json.loads((BUNDLED / "atlas.json").read_text())
    for direction in data["directions"]:
        assert direction["group"] in ("Head", "Mouth", "Eyes", "Brows", "Other")
        assert all(math.isfinite(v) for v in direction["measurements"].values())
        assert (BUNDLED / direction["preview"]).is_file()


def test_expression_strength_scales_the_mouth_and_keeps_the_head_on_a_test_identity(bundled_pipeline,
                                                                                   test_identity_clip):
    frames = read_video(test_identity_clip, max_frames=48)[0]
    h, w = frames.shape[1:3]
    source, atlas = bundled_pipeline.prepare_source(frames[0]), Atlas.load(BUNDLED)
    landmarks = FaceJudges.default(lpips=False).face.landmarks
    measures = {}
    for strength in (0.0, 1.0, 2.0):
        output = np.concatenate(list(bundled_pipeline.iter_animate(source, [frames], expression_strength=strength,
                                                                   atlas=atlas)))[:, :h, :w]
        measures[strength] = face_motion.face_measures(landmarks(output))
    # The mouth opens and closes more as the strength grows (measured spreads 0.0149, 0.0187, 0.0214
    # inter-ocular distances at 0, 1, 2; the driver's 0.0589). At 0 it still moves: the mesh's pitch
    # and face-oval measures, which the map keeps, respond to a dropping jaw too.
    mouth = [float(np.nanstd(measures[s]["mouth"])) for s in (0.0, 1.0, 2.0)]
    assert mouth[0] * 1.1 < mouth[1] and mouth[1] * 1.1 < mouth[2], mouth
    # The head's sideways motion and roll stay those of strength 1 (measured: correlations 0.93 and
    # 0.85 at 0, 0.95 and 0.79 at 2; spreads within 15 %). The roll here spreads over 0.6 degrees,
    # near dlib's own jitter, hence the lower bar for it. Not the vertical centre: dlib's centre
    # is the mean of all 68 points, lips and chin included, so a wider-opening mouth moves it.
    for strength in (0.0, 2.0):
        for key, least in (("centre_x", 0.8), ("roll", 0.7)):
            moved, plain = measures[strength][key], measures[1.0][key]
            assert face_motion.correlation(moved, plain) > least, (strength, key)
            assert 0.8 < np.nanstd(moved) / np.nanstd(plain) < 1.2, (strength, key)


def clip_and_still(clip_name: str, still_name: str = "145_deepface-img9.jpg") -> tuple[np.ndarray, np.ndarray]:
    """The first 48 frames of a test clip of the corpus and a still of a training-split person (a
    portrait, never a driver); skips where the corpus is absent."""
    from sfd.media import load_image

    clip = TALKING_HEADS / "clips" / clip_name
    still = TALKING_HEADS / "stills" / still_name
    if not (clip.is_file() and still.is_file()):
        pytest.skip(f"the talking-heads corpus is not at {TALKING_HEADS}")
    return read_video(clip, max_frames=48)[0], load_image(still)


def test_another_person_s_still_opens_its_mouth_with_the_driver_and_stays_that_person(bundled_pipeline):
    """A still of a training-split person (as a portrait, never as a driver) driven by a test clip
    whose mouth opens: the mesh's mouth opening of the output, at the driver's 8 widest-open frames
    against its 8 most closed, grows; more with the amplitude matched (the app's default), and
    the face stays the still's person (dlib's descriptor distance)."""
    from sfd.semantics.face_measures import MEASURE_INDEX, measure_faces

    frames, image = clip_and_still("004_styletalk-feifeili-clip1.mp4")
    judges = FaceJudges.default(lpips=False)
    driver_mouth = face_motion.face_measures(judges.face.landmarks(frames))["mouth"]
    order = np.argsort(driver_mouth)
    wide, shut = order[-8:], order[:8]
    source, atlas = bundled_pipeline.prepare_source(image), Atlas.load(BUNDLED)
    grown = {}
    for match in (False, True):  # the model's own motion: no mouth drawn over it
        faces = animate(bundled_pipeline, source, frames, paste_back=False, atlas=atlas, match_amplitude=match,
                        mouth=False, head=False)
        opening = measure_faces(torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1)
        opening = opening[:, MEASURE_INDEX["mouth_open"]].numpy()
        grown[match] = float(opening[wide].mean() - opening[shut].mean())
    # Measured: 0.0067 plain, 0.0368 matched (inner-lip gap / inter-ocular distance); the driver's
    # own dlib gap differs by 0.09 between those frames.
    assert grown[False] > 0.003 and grown[True] > 0.02 and grown[True] > 2 * grown[False], grown
    output = animate(bundled_pipeline, source, frames, atlas=atlas, match_amplitude=True)[::8]
    marks = judges.face.landmarks(output)
    found = ~np.isnan(marks).any(axis=(1, 2))
    assert found.all()
    to_still = np.linalg.norm(judges.face.descriptors(output, marks)
                              - judges.face.descriptors(image[None], judges.face.landmarks(image[None])), axis=1)
    to_driver = np.linalg.norm(judges.face.descriptors(output, marks)
                               - judges.face.descriptors(frames[:1], judges.face.landmarks(frames[:1])), axis=1)
    assert to_still.max() < 0.45 < to_driver.min(), (to_still, to_driver)  # the target: 0.45


def animate(pipeline: SFDPipeline, source, frames: np.ndarray, **options) -> np.ndarray:
    """The output frames of `frames` driving `source`, fed as the app feeds them (batches of 8)."""
    return np.concatenate(list(pipeline.iter_animate(source, [frames[i:i + 8] for i in range(0, len(frames), 8)],
                                                     **options)))


def still_with_and_without(pipeline: SFDPipeline, clip_name: str, option: str):
    """A test clip's first 48 frames driving a training-split still, with the pipeline's `option`
    (a transfer after the model) on and off: the still, the judges, the outputs and dlib's
    following scores (`face_motion.following`) by on/off."""
    frames, image = clip_and_still(clip_name)
    judges = FaceJudges.default(lpips=False)
    driver = judges.face.landmarks(frames)
    source = pipeline.prepare_source(image)
    scores, outputs = {}, {}
    for on in (True, False):
        outputs[on] = animate(pipeline, source, frames, **{option: on})
        scores[on] = face_motion.following(judges.face.landmarks(outputs[on]), driver)
    return image, judges, outputs, scores


def distance_to_still(judges: FaceJudges, output: np.ndarray, image: np.ndarray) -> np.ndarray:
    """dlib's descriptor distance of every 8th output face to the still's."""
    marks = judges.face.landmarks(output[::8])
    return np.linalg.norm(judges.face.descriptors(output[::8], marks)
                          - judges.face.descriptors(image[None], judges.face.landmarks(image[None])), axis=1)


def test_mouth_transfer_opens_another_person_s_still_as_widely_as_the_driver_s(bundled_pipeline):
    """The same still and test clip: with mouth transfer (the default), dlib's mouth opening of the
    output (the evaluation's judge, not the face mesh that sets the warp) follows the driver's and
    moves about as widely; without it, the model alone opens it a fraction as widely. The face
    stays the still's person."""
    image, judges, outputs, scores = still_with_and_without(bundled_pipeline, "004_styletalk-feifeili-clip1.mp4",
                                                            "mouth")
    # measured: r 0.78 and 0.65 of the driver's spread; without: r 0.70 and 0.21
    assert scores[True]["mouth_corr"] > 0.6 and scores[True]["mouth_amplitude"] > 0.45, scores
    assert scores[True]["mouth_amplitude"] > 2 * scores[False]["mouth_amplitude"], scores
    to_still = distance_to_still(judges, outputs[True], image)
    assert to_still.max() < 0.45, to_still  # measured at most 0.18; the target: 0.45


def test_a_driver_caught_mid_word_opens_a_shut_portrait_s_mouth_as_it_speaks(bundled_pipeline):
    """A test clip whose first frame has the lips apart (mid-word), driving a still whose mouth is
    shut: the driver's speech mostly closes below its first frame, and the mouth transfer counts
    its opening from a shut mouth, so dlib's mouth opening of the output follows the driver's and
    moves more than half as widely. The face stays the still's person."""
    frames, image = clip_and_still("005_styletalk-feifeili-clip2-short.mp4", "056_celebahq-ref-male-021612.jpg")
    judges = FaceJudges.default(lpips=False)
    output = animate(bundled_pipeline, bundled_pipeline.prepare_source(image), frames)
    score = face_motion.following(judges.face.landmarks(output), judges.face.landmarks(frames))
    # measured: r 0.86, 0.69 as wide; counted from the driver's first frame (the previous
    # version) r 0.63 and 0.32; without mouth transfer r 0.17 and 0.04
    assert score["mouth_corr"] > 0.75 and score["mouth_amplitude"] > 0.5, score
    to_still = distance_to_still(judges, output, image)
    assert to_still.max() < 0.45, to_still


def teeth_share(judges: FaceJudges, faces: np.ndarray) -> np.ndarray:
    """Per face, the share of pixels between dlib's inner lips that look like teeth: bright and
    nearly grey (lips, even pale ones, are redder; the dark of a mouth is not bright)."""
    import cv2

    shares = []
    for face, marks in zip(faces, judges.face.landmarks(faces)):
        mask = np.zeros(face.shape[:2], np.uint8)
        if not np.isnan(marks).any():
            cv2.fillPoly(mask, [np.round(marks[60:68]).astype(np.int32)], 1)
        pixels = face[mask > 0].astype(np.float64) / 255
        if not len(pixels):
            shares.append(0.0)
            continue
        brightest, darkest = pixels.max(axis=1), pixels.min(axis=1)
        shares.append(float(((brightest > 0.55) & (brightest - darkest < 0.3 * brightest)).mean()))
    return np.array(shares)


def test_another_person_s_opened_mouth_shows_the_driver_s_teeth(bundled_pipeline, monkeypatch):
    """A test clip whose speaker smiles with her teeth showing, driving a still with red lips: between
    the output's inner lips (dlib's) there are teeth, where with the mouth's inside left as the warp
    and the model draw it there are none (stretched lip and shade)."""
    from sfd.pipeline import face_retargeting

    frames, image = clip_and_still("070_dreamtalk-w011-front-happy-level3-001.mp4",
                                   "047_celebahq-ref-female-084913.jpg")
    frames = frames[:16]
    judges = FaceJudges.default(lpips=False)
    source = bundled_pipeline.prepare_source(image)
    shown = teeth_share(judges, animate(bundled_pipeline, source, frames))
    monkeypatch.setattr(face_retargeting, "paint_mouth_inside", lambda images, *args, **kwargs: images)
    undrawn = teeth_share(judges, animate(bundled_pipeline, source, frames))
    # measured: the driver 0.18-0.48 of its inner-lip area, the output 0.14-0.36 (0.08-0.26 with the
    # driver's gap read where the mesh puts it), undrawn 0 on every frame
    assert teeth_share(judges, frames).min() > 0.1
    assert shown.mean() > 0.15 and shown.min() > 0.08, shown
    assert undrawn.max() < 0.02, undrawn


def test_a_mouth_the_model_opens_on_its_own_is_closed_where_the_driver_s_closes(bundled_pipeline):
    """A test clip driving a still whose mouth the model opens and shuts out of step with the
    driver's (its motion ties some opening to the head and brows): the mouth transfer closes the
    drawn mouth where it shows more than the driver's, not only opens it where it shows less, so
    dlib's mouth opening of the output follows the driver's. The face stays the still's person."""
    frames, image = clip_and_still("099_dpe-s.mp4", "209_faceapi-penny3.png")
    judges = FaceJudges.default(lpips=False)
    output = animate(bundled_pipeline, bundled_pipeline.prepare_source(image), frames)
    score = face_motion.following(judges.face.landmarks(output), judges.face.landmarks(frames))
    # measured: r 0.78; opening only (the previous version) r 0.16; without mouth transfer -0.09
    assert score["mouth_corr"] > 0.6, score
    to_still = distance_to_still(judges, output, image)
    assert to_still.max() < 0.45, to_still  # measured at most 0.31


def test_head_transfer_makes_another_person_s_still_follow_the_driver_s_head(bundled_pipeline):
    """The same still and test clip: with head-pose transfer (the default), dlib's face centre and
    roll of the output follow the driver's more closely than the model alone draws them, and the
    face stays the still's person."""
    image, judges, outputs, scores = still_with_and_without(bundled_pipeline, "004_styletalk-feifeili-clip1.mp4",
                                                            "head")
    # measured: pose r 0.94, without 0.49 (on clip 095, whose head turns far, 0.97 and 0.86; with
    # the judge's centre divided by each frame's inter-ocular distance, before 2026-12-07: 0.81 and
    # 0.37, and 0.66 and 0.69 on 095)
    assert scores[True]["pose_corr"] > 0.6 and scores[True]["pose_corr"] > scores[False]["pose_corr"] + 0.2, scores
    to_still = distance_to_still(judges, outputs[True], image)
    assert to_still.max() < 0.45, to_still


def test_another_person_s_still_blinks_where_the_driver_blinks(bundled_pipeline):
    """A still of a training-split person driven by a test clip that blinks: dlib's eye opening of
    the output (the evaluation's judge, not the face mesh that moves the lids) follows the
    driver's, and falls where the driver's eyes are shut; without blink transfer it does not."""
    from sfd.pretrained.dlib_face import DlibFace, eye_openness

    frames, image = clip_and_still("104_yiranran-31.mp4")
    source = bundled_pipeline.prepare_source(image)
    judge = DlibFace()
    driver = eye_openness(judge.landmarks(frames))
    order = np.argsort(driver)
    shut, wide = order[:6], order[-12:]
    scores = {}
    for blinks in (True, False):
        output = animate(bundled_pipeline, source, frames, blinks=blinks)
        eyes = eye_openness(judge.landmarks(output))
        scores[blinks] = (np.corrcoef(eyes, driver)[0, 1], eyes[shut].mean() / eyes[wide].mean())
    # measured: r 0.88 and the shut frames' opening 0.87 of the open ones'; without: -0.05 and 0.99
    assert scores[True][0] > 0.6 and scores[True][1] < 0.93, scores
    assert scores[False][0] < 0.3, scores


def test_the_app_without_weights_settings_loads_the_bundle():
    loaded = load_weights(None, device="cpu")
    assert loaded.trained and loaded.problem is None and loaded.name.startswith(BUNDLED_TRAINED_NAME)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_py_starts_on_the_bundle_with_no_sfd_environment_variables(tmp_path, faces_dir):
    import gradio_client

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFD_")}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_TEMP_DIR=str(tmp_path / "cache"),
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # a start-up guard, not a timing assertion
        while "Running on" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False,
                                      download_files=str(tmp_path / "downloads"))
        config = json.dumps(client.config)
        assert "bundled demo model sfd-demo64" in config and "calibrated slider ranges" in config
        portrait = faces_dir / "liveportrait" / "source" / "s0.jpg"
        result = client.predict(gradio_client.handle_file(str(portrait)), api_name="/descriptors")
        expected = SFDPipeline.from_pretrained(device="cpu").descriptors(portrait)
        np.testing.assert_allclose(result["motion"], expected["motion"], atol=1e-4)  # the bundle answered
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.parametrize("asked", [10.0, -10.0])
def test_the_bundle_turns_real_faces_when_asked_for_yaw_and_tilts_them_less(bundled_pipeline, faces_dir, asked):
    """The expression controls on the shipped weights, not a stub: yaw +-10 degrees on real
    portraits reaches at least half of it (measured: 8.9 to 9.6 on two faces, +9.5 on the
    astronaut), while pitch and roll move less."""
    from sfd.semantics.expression import solve_expression

    portraits = [faces_dir / "liveportrait" / "source" / name for name in ("s0.jpg", "s11.jpg")]
    portraits += [ROOT / "examples" / "astronaut.jpg"] if asked > 0 else []  # her left turn: the next test
    for portrait in portraits:
        face = bundled_pipeline.prepare_source(portrait)
        reached = solve_expression(bundled_pipeline, face, {"yaw": asked}).achieved  # strict: raises if < half
        assert reached["yaw"] * np.sign(asked) >= 0.5 * abs(asked), (portrait.name, reached)
        assert max(abs(reached["pitch"]), abs(reached["roll"])) < abs(reached["yaw"]), (portrait.name, reached)


def test_a_turn_the_bundle_cannot_make_is_refused_with_how_far_it_gets(bundled_pipeline):
    """The astronaut's turn to her left is out of the shipped weights' calibrated range (it reaches
    -1.3 of -10 degrees; the previous `tiny` bundle reached -5.8): the solver says so, with the
    reach, instead of returning a wrong face."""
    from sfd.semantics.expression import solve_expression

    face = bundled_pipeline.prepare_source(ROOT / "examples" / "astronaut.jpg")
    with pytest.raises(SFDError, match=r"cannot make yaw -10 \(reaches -?\d"):
        solve_expression(bundled_pipeline, face, {"yaw": -10.0})

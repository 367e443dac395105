"""Motion-following metrics (sfd.evaluation.face_motion) and the judges that compute them on real clips
(dlib landmarks and descriptors, LPIPS from the registry packages)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sfd.evaluation import face_motion
from sfd.evaluation.face_judges import FaceJudges
from sfd.media import read_video

from conftest import TALKING_HEADS

CLIP = TALKING_HEADS / "clips" / "004_styletalk-feifeili-clip1.mp4"  # a test identity


def _face(mouth_gap: float = 0.0, shift=(0.0, 0.0), roll_deg: float = 0.0) -> np.ndarray:
    """A crude 68-point face: outer eye corners level and 120 px apart, lids, lips, jaw; moved and rolled."""
    p = np.zeros((68, 2))
    p[:17] = np.stack([np.linspace(40, 200, 17), 150 + 40 * np.sin(np.linspace(0, np.pi, 17))], 1)
    p[17:27] = np.stack([np.linspace(50, 190, 10), np.full(10, 70)], 1)
    p[27:36] = np.stack([np.full(9, 120), np.linspace(85, 130, 9)], 1)
    for start, x0 in ((36, 60), (42, 140)):  # corners at x0 and x0 + 40, lids 8 px apart
        p[start:start + 6] = [(x0, 90), (x0 + 13, 86), (x0 + 27, 86), (x0 + 40, 90), (x0 + 27, 94), (x0 + 13, 94)]
    p[48:60] = np.stack([np.linspace(90, 150, 12), np.full(12, 160)], 1)
    p[60:68] = [(95, 160), (105, 160), (120, 160), (135, 160), (145, 160), (135, 160), (120, 160), (105, 160)]
    p[65:68, 1] += mouth_gap  # lower inner lip 65, 66, 67 goes down
    angle = np.radians(roll_deg)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (p - 120) @ rot.T + 120 + np.asarray(shift)


def test_measures_follow_a_known_change():
    faces = np.stack([_face(), _face(mouth_gap=20), _face(roll_deg=10), _face(shift=(30, 0))])
    m = face_motion.face_measures(faces)
    assert m["mouth"][0] == pytest.approx(0, abs=1e-9)
    assert m["mouth"][1] == pytest.approx(20 / 120)  # gap over the 120 px between the outer eye corners
    assert m["roll"][2] == pytest.approx(10, abs=1e-6) and m["roll"][0] == pytest.approx(0, abs=1e-9)
    assert m["centre_x"][3] - m["centre_x"][0] == pytest.approx(30 / 120)
    assert m["eyes"][0] == pytest.approx(8 / 40)


def test_the_face_centre_does_not_move_when_only_the_eye_corners_are_read_differently():
    # A face far from the image's corner whose outer eye corners are read 4 % closer together, as
    # dlib reads them when the lids shut; the face itself does not move. Divided by each frame's
    # own inter-ocular distance its centre would jump by 4 % of (520 / 120) units.
    far = (400.0, 300.0)
    faces = np.stack([_face(shift=far) for _ in range(5)])
    faces[[1, 3], 36, 0] += 2.4
    faces[[1, 3], 45, 0] -= 2.4
    m = face_motion.face_measures(faces)
    for key in ("centre_x", "centre_y"):
        assert np.ptp(m[key]) < 1e-9, key
    # A real move still reads in inter-ocular distances (the clip's median one).
    moved = np.stack([_face(shift=far), _face(shift=(far[0] + 30, far[1]))])
    assert np.diff(face_motion.face_measures(moved)["centre_x"])[0] == pytest.approx(30 / 120)
    # and where no face is found at all, there is no centre
    assert np.isnan(face_motion.face_measures(np.full((2, 68, 2), np.nan))["centre_x"]).all()


def test_centred_akd_takes_out_the_faces_position_and_keeps_the_rest():
    drivers = np.stack([_face(), _face(shift=(30, 0)), _face(shift=(0, -20), mouth_gap=12)])
    still = np.broadcast_to(drivers[:1], drivers.shape)  # doing nothing
    placed = np.stack([_face(), _face(), _face(mouth_gap=12)])  # right expression, no position change
    for output, akd_zero, centred_zero in ((still, False, False), (placed, False, True), (drivers, True, True)):
        scores = face_motion.clip_scores(output[1:], drivers[1:], 256)
        assert (scores["akd_iod"] < 1e-9) == akd_zero
        assert (scores["akd_centred_iod"] < 1e-9) == centred_zero
    # A pure shift costs the whole AKD and nothing of the centred one.
    shift = face_motion.clip_scores(still[1:2], drivers[1:2], 256)
    assert shift["akd_iod"] == pytest.approx(30 / 120) and shift["akd_centred_iod"] == pytest.approx(0, abs=1e-9)


def test_correlation_conventions():
    t = np.arange(20.0)
    assert face_motion.correlation(t, t) == pytest.approx(1)
    assert face_motion.correlation(-t, t) == pytest.approx(-1)
    assert face_motion.correlation(np.ones(20), t) == 0.0  # an output that does not move does not follow
    jitter = 1 + 1e-4 * np.sin(t) + 1e-4 * t  # numerical noise that happens to correlate is still no motion
    assert face_motion.correlation(jitter, t) == 0.0
    assert np.isnan(face_motion.correlation(t, np.ones(20)))  # a still driver: nothing to follow
    with_gaps = t.copy()
    with_gaps[3] = np.nan  # a frame without a face is left out, not an error
    assert face_motion.correlation(with_gaps, t) == pytest.approx(1)


def test_mouth_amplitude_says_how_wide_the_mouth_moves_against_the_driver():
    gaps = np.array([0, 12, 24, 6, 18, 0, 30, 3], float)
    drivers = np.stack([_face(mouth_gap=g) for g in gaps])
    third = np.stack([_face(mouth_gap=g / 3, shift=(5, 0)) for g in gaps])
    still = np.broadcast_to(drivers[:1], drivers.shape)
    assert face_motion.following(drivers, drivers)["mouth_amplitude"] == pytest.approx(1)
    third_scores = face_motion.following(third, drivers)
    # A mouth that opens a third as wide at the right times: correlation 1, amplitude a third.
    assert third_scores["mouth_corr"] == pytest.approx(1) and third_scores["mouth_amplitude"] == pytest.approx(1 / 3)
    assert face_motion.following(still, drivers)["mouth_amplitude"] == 0
    assert np.isnan(face_motion.spread_ratio(np.arange(5.0), np.ones(5)))  # a still driver: nothing to compare


@pytest.fixture(scope="module")
def clip_and_judges():
    if not CLIP.is_file():
        pytest.skip(f"{CLIP} is not here (the shared corpus)")
    frames = read_video(CLIP, max_frames=48)[0]
    return frames, FaceJudges.default()


def test_a_perfect_copy_scores_akd_zero_and_correlations_one(clip_and_judges):
    frames, judges = clip_and_judges
    clip = judges.new_clip(frames[0])
    for start in range(0, len(frames), 16):
        clip.add(frames[start:start + 16], frames[start:start + 16])
    scores = clip.scores()
    assert scores["face_frames"] == len(frames) - 1
    assert scores["akd_iod"] < 1e-9 and scores["id_dist"] < 1e-9 and scores["lpips"] < 1e-6
    assert scores["detail"] == pytest.approx(1.0)  # as much fine detail in the face as the real frames
    for key in ("mouth_corr", "eye_corr", "pose_corr"):
        assert scores[key] == pytest.approx(1.0, abs=1e-9)
    # The do-nothing baseline (every frame = frame 0) of the same clip: the driver moves away from it.
    assert scores["baseline_akd_iod"] > 0.01 and scores["baseline_akd_px256"] > 0.5
    assert scores["baseline_lpips"] > 0.02
    for key in ("mouth_corr", "eye_corr", "pose_corr"):
        assert scores[f"baseline_{key}"] == 0.0
    assert scores["baseline_id_dist"] < 0.6  # the same person, so the identity distance is small


def test_a_time_shifted_copy_follows_less_and_a_blurred_one_loses_its_detail(clip_and_judges):
    frames, judges = clip_and_judges
    lagged = np.concatenate([frames[:1], frames[:-1]])
    clip = judges.new_clip(frames[0])
    clip.add(np.concatenate([frames[:1], np.roll(frames[1:], 20, axis=0)]), frames)
    shuffled = clip.scores()
    clip = judges.new_clip(frames[0])
    clip.add(lagged, frames)
    assert clip.scores()["mouth_corr"] > shuffled["mouth_corr"]
    assert shuffled["akd_iod"] > 0.005
    # The same frames at a quarter of their size, enlarged again: the landmarks stay, the detail goes.
    h, w = frames.shape[1:3]
    soft = np.stack([cv2.resize(cv2.resize(f, (w // 4, h // 4), interpolation=cv2.INTER_AREA), (w, h),
                                interpolation=cv2.INTER_LINEAR) for f in frames])
    clip = judges.new_clip(frames[0])
    clip.add(soft, frames)
    assert clip.scores()["detail"] < 0.6


def test_cross_identity_scores_a_still_driven_by_a_clip(clip_and_judges):
    """A still of another person driven by a clip: correlations and identity distance to the still,
    no pixel distances to the driver (another face), the baseline's correlations 0."""
    from sfd.evaluation.evaluator import as_pipeline
    from sfd.evaluation.full_frame import full_frame_reconstruction
    from sfd.media import load_image

    _, judges = clip_and_judges
    pipe, _ = as_pipeline(Path(__file__).resolve().parents[1] / "sfd" / "weights" / "sfd-demo64", crop=True)
    still = load_image(TALKING_HEADS / "stills" / "147_makeittalk-anne.jpg")
    row = full_frame_reconstruction(pipe, CLIP, 8, crop=True, judges=judges, source_image=still)
    assert row["frames"] == 7 and row["face_frames"] == 7
    assert "l1" not in row and "akd_iod" not in row
    assert row["id_dist_source"] < 0.6  # the output is still the still's person
    assert 0.3 < row["detail"] < 1.5 and row["baseline_detail"] == 1.0  # the face's detail against the still's
    for key in ("mouth_corr", "eye_corr", "pose_corr"):
        assert -1 <= row[key] <= 1 and row[f"baseline_{key}"] == 0.0


def test_full_frame_cli_skips_a_still_without_a_face_and_scores_the_others(tmp_path, capsys):
    """`--cross-stills` over a manifest: a still the detector misses (a blank picture) is named and
    skipped; the real still is driven and scored; the run does not stop."""
    import csv

    from PIL import Image

    from sfd.evaluation.full_frame import main

    root = tmp_path / "corpus"
    (root / "stills").mkdir(parents=True)
    (root / "clips").mkdir()
    (root / "clips" / CLIP.name).symlink_to(CLIP)
    (root / "stills" / "anne.jpg").symlink_to(TALKING_HEADS / "stills" / "147_makeittalk-anne.jpg")
    Image.new("RGB", (150, 150), (128, 128, 128)).save(root / "stills" / "blank.jpg")
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "kind", "identity", "split"])
        writer.writerow([f"clips/{CLIP.name}", "video", "feifei", "test"])
        writer.writerow(["stills/anne.jpg", "still", "anne", "train"])
        writer.writerow(["stills/blank.jpg", "still", "nobody", "train"])
    weights = Path(__file__).resolve().parents[1] / "sfd" / "weights" / "sfd-demo64"
    out = tmp_path / "scores.json"
    assert main([str(weights), "--data", str(root), "--cross-stills", "2", "--max-frames", "4", "--no-judges",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Skipped 1 still(s) where no face was found: blank.jpg" in printed
    import json

    cross = json.loads(out.read_text())["cross_identity"]
    assert [row["source_name"] for row in cross[:-1]] == ["anne.jpg"] and cross[0]["frames"] == 3


def test_cross_clips_are_first_clips_of_other_people_and_differ_between_clips():
    from sfd.evaluation.full_frame import cross_clips

    videos = ["a1", "a2", "b1", "c1", "c2", "d1"]
    person = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "c2": "C", "d1": "D"}
    chosen = [cross_clips(videos, person, i, 2) for i in range(len(videos))]
    for video, sources in zip(videos, chosen):
        assert len(sources) == 2 and len({person[s] for s in sources}) == 2
        assert person[video] not in {person[s] for s in sources}  # never the driver's own person
        assert set(sources) <= {"a1", "b1", "c1", "d1"}  # each person's first clip
    assert len({tuple(s) for s in chosen}) > 3  # spread: clips get different people
    assert cross_clips(["a1", "a2"], {"a1": "A", "a2": "A"}, 0, 3) == []  # one person: nobody else


def test_full_frame_cli_drives_other_peoples_first_frames_and_refuses_both_protocols(tmp_path, capsys):
    import csv
    import json

    from sfd.evaluation.full_frame import main

    root = tmp_path / "corpus"
    (root / "clips").mkdir(parents=True)
    (root / "clips" / CLIP.name).symlink_to(CLIP)
    other = TALKING_HEADS / "clips" / "099_dpe-s.mp4"
    (root / "clips" / other.name).symlink_to(other)
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "kind", "identity", "split"])
        writer.writerow([f"clips/{CLIP.name}", "video", "feifei", "test"])
        writer.writerow([f"clips/{other.name}", "video", "dpe", "test"])
    weights = Path(__file__).resolve().parents[1] / "sfd" / "weights" / "sfd-demo64"
    out = tmp_path / "scores.json"
    assert main([str(weights), "--data", str(root), "--cross-frames", "3", "--max-frames", "4", "--no-judges",
                 "--json", str(out)]) == 0
    cross = json.loads(out.read_text())["cross_identity"][:-1]
    assert sorted(row["source_name"] for row in cross) == sorted([CLIP.name, other.name])
    assert all(row["source_name"] != row["video"] and row["frames"] == 3 for row in cross)
    capsys.readouterr()
    assert main([str(weights), "--data", str(root), "--cross-frames", "1", "--cross-stills", "1"]) != 0
    assert "two protocols" in capsys.readouterr().err


def _landmarks_of_one_face(frames: int = 10) -> np.ndarray:
    """(frames, 68, 2) copies of dlib's landmarks of a real test face."""
    frame = read_video(CLIP, max_frames=1)[0]
    marks = FaceJudges.default(lpips=False).face.landmarks(frame)
    return np.repeat(marks, frames, axis=0).astype(np.float64)


def test_the_cross_figure_shows_the_driver_s_widest_mouth_closest_eyes_and_furthest_shift():
    from sfd.errors import SFDError
    from sfd.evaluation.cross_figure import telling_frames

    marks = _landmarks_of_one_face()
    marks[3, 65:68, 1] += 6  # frame 3: the lower inner lip drops
    marks[5, [37, 38, 43, 44], 1] += 3  # frame 5: the upper lids come down
    marks[7] += [12.0, 0.0]  # frame 7: the face moves sideways
    marks[8] = np.nan  # frame 8: no face (never chosen, whatever it would measure)
    assert telling_frames(marks) == [0, 3, 5, 7]
    marks[0] = np.nan
    with pytest.raises(SFDError, match="first frame has no face"):
        telling_frames(marks)


def test_the_cross_figure_cli_writes_a_row_per_face_under_the_driver_s(tmp_path):
    from PIL import Image

    from sfd.evaluation.cross_figure import main

    weights = Path(__file__).resolve().parents[1] / "sfd" / "weights" / "sfd-demo64"
    other = TALKING_HEADS / "clips" / "099_dpe-s.mp4"
    still = TALKING_HEADS / "stills" / "147_makeittalk-anne.jpg"
    out = tmp_path / "figure.png"
    assert main([str(weights), str(CLIP), str(other), str(still), "--out", str(out), "--max-frames", "12",
                 "--height", "64"]) == 0
    figure = Image.open(out)
    assert figure.height == 22 + 3 * 64 + 2 * 4  # the header, the driver's row and one per face
    assert figure.width == 4 * 64 + 3 * 4  # four columns of face crops

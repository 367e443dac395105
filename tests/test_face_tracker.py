"""Tests of sfd.face over video: box smoothing and the face tracker (fixed box, smoothed boxes,
when it looks for the face again), on scripted detectors and one real clip of the shared face
set (read in place; that test skips when the set is absent)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sfd.errors import NoFaceError
from sfd.face import BoxSmoother, CropBox, Face, FaceDetector, FaceTracker, HaarCascadeDetector


def _noisy_track(n=120, side=300.0, jitter=0.02, seed=0):
    """A still head that moves right by 0.6 side over frames 60-75; boxes with detector jitter."""
    rng = np.random.default_rng(seed)
    true = np.tile([500.0, 400.0], (n, 1))
    true[60:76, 0] += np.linspace(0, 1, 16) * 0.6 * side
    true[76:, 0] += 0.6 * side
    noise = rng.normal(0, jitter * side, (n, 2))
    boxes = [CropBox(*(true[i] + noise[i]), side * float(np.exp(rng.normal(0, jitter)))) for i in range(n)]
    return true, boxes


def test_smoother_reduces_jitter_and_follows_a_real_move():
    true, boxes = _noisy_track()
    smoother = BoxSmoother()
    out = np.array([smoother.update(b).as_array() for b in boxes])
    raw = np.array([b.as_array() for b in boxes])
    raw_jitter = np.diff(raw[5:60, :2], axis=0).std()
    smooth_jitter = np.diff(out[5:60, :2], axis=0).std()
    assert smooth_jitter < raw_jitter / 3
    assert np.diff(out[5:60, 2]).std() < np.diff(raw[5:60, 2]).std() / 3
    # It follows the move: never more than 8% of the side off the true track, and once
    # settled, 15 frames after the move ended, closer to it than the raw boxes are.
    err = np.linalg.norm(out[:, :2] - true, axis=1) / 300.0
    raw_err = np.linalg.norm(raw[:, :2] - true, axis=1) / 300.0
    assert err[10:].max() < 0.08
    assert err[90:].mean() < 0.015 < raw_err[90:].mean()
    assert err[90:].max() < 0.05


def test_smoother_modes():
    _, boxes = _noisy_track()
    boxes = boxes[:20]
    fixed = BoxSmoother(mode="fixed")
    assert all(fixed.update(b) == boxes[0] for b in boxes)
    raw = BoxSmoother(mode="raw")
    assert all(raw.update(b).as_array() == pytest.approx(b.as_array()) for b in boxes)
    s = BoxSmoother()
    with pytest.raises(ValueError):
        s.update(None)
    first = s.update(boxes[0])
    assert s.update(None) == first  # no new box: it stays on the last one
    with pytest.raises(ValueError):
        BoxSmoother(mode="kalman")


class _CountingDetector(FaceDetector):
    """Returns a face that drifts right by 1 px per call; counts its calls."""

    name = "counting"

    def __init__(self, face_from: int = 0):
        self.calls = 0
        self.face_from = face_from

    def _detect(self, image):
        self.calls += 1
        if self.calls <= self.face_from:
            return []
        x = 100.0 + self.calls
        return [Face((x, 100.0, x + 80.0, 200.0), 0.99)]


def test_tracker_modes():
    frames = [np.zeros((240, 320, 3), np.uint8)] * 12
    det = _CountingDetector()
    tracker = FaceTracker(det, mode="fixed")
    boxes = [tracker(f) for f in frames]
    assert tracker.detections == 1 and all(b == boxes[0] for b in boxes)

    det = _CountingDetector()
    tracker = FaceTracker(det, every=4)
    boxes = [tracker(f) for f in frames]
    assert det.calls == 3 and tracker.detections == 3
    assert all(b.side == pytest.approx(2.0 * np.sqrt(80 * 100)) for b in boxes)
    assert boxes[-1].cx > boxes[0].cx  # follows the drift

    full = FaceTracker(None, mode="full")
    assert full(np.zeros((256, 256, 3), np.uint8)).box == pytest.approx((0, 0, 256, 256))
    with pytest.raises(ValueError):
        FaceTracker(None, mode="smooth")


class _ScriptedDetector(FaceDetector):
    """The k-th call finds the face shifted right by shifts[k] px (None: no face; "zoom": twice as big)."""

    name = "scripted"

    def __init__(self, shifts):
        self.shifts = list(shifts)
        self.calls = 0

    def _detect(self, image):
        shift = self.shifts[min(self.calls, len(self.shifts) - 1)]
        self.calls += 1
        if shift is None:
            return []
        if shift == "zoom":  # twice the size, same centre
            return [Face((60.0, 10.0, 220.0, 210.0), 0.99)]
        return [Face((100.0 + shift, 60.0, 180.0 + shift, 160.0), 0.99)]


def test_a_fixed_box_looks_for_its_face_every_25_frames_and_counts_when_it_has_left():
    frames = [np.zeros((240, 320, 3), np.uint8)] * 104
    # No face in the first 3 frames; then the first box (the face 80 px wide, the crop 179 px);
    # then, 25, 50, 75 and 100 frames later: 10 px off (inside), 90 px off (out), no face, and the
    # face grown to 160 px about the same centre (out), where a smaller face would stay inside.
    det = _ScriptedDetector([None, None, None, 0, 10, 90, None, "zoom"])
    tracker = FaceTracker(det, mode="fixed")
    for frame in frames[:3]:
        with pytest.raises(NoFaceError):
            tracker(frame)
    boxes = [tracker(f) for f in frames[3:]]  # looks at frames 28, 53, 78 and 103
    assert all(b == boxes[0] for b in boxes)  # the box never moves
    assert det.calls == tracker.detections == 8
    assert (tracker.watched_frames, tracker.drifted_frames, tracker.missed_frames) == (4, 2, 1)
    assert tracker.faceless_frames == 3  # the opening only: the looks count their own misses


def test_tracker_without_a_face_in_the_first_frame():
    tracker = FaceTracker(_CountingDetector(face_from=1))
    with pytest.raises(NoFaceError, match="frame 0"):
        tracker(np.zeros((64, 64, 3), np.uint8))
    assert tracker(np.zeros((64, 64, 3), np.uint8)).side > 0  # found on the next frame


def test_tracker_on_a_real_clip_gives_steadier_boxes_than_raw_detections(faces_dir):
    cap = cv2.VideoCapture(str(faces_dir / "liveportrait/driving/d3.mp4"))
    frames = []
    while len(frames) < 40:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if len(frames) < 40:
        pytest.skip("OpenCV could not read the driving clip d3.mp4")
    det = HaarCascadeDetector()
    tracks = {}
    for mode in ("raw", "smooth"):
        tracker = FaceTracker(det, mode=mode)
        tracks[mode] = np.array([tracker(f).as_array() for f in frames])
    side = tracks["raw"][:, 2].mean()
    shake = {m: np.abs(np.diff(t, axis=0)).mean(axis=0) / side for m, t in tracks.items()}
    assert shake["smooth"].sum() < shake["raw"].sum()
    # Same place on average: smoothing must not drift away from the face.
    assert np.abs(tracks["smooth"].mean(0) - tracks["raw"].mean(0))[:2].max() < 0.05 * side

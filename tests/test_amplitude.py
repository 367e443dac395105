"""Matching the driver's expression amplitude on another face (sfd.pipeline.amplitude) and its
plumbing through the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sfd.errors import SFDError
from sfd.media import VideoWriter, probe_video, read_video
from sfd.pipeline import SFDPipeline, amplitude
from sfd.semantics import Atlas, AtlasDirection
from sfd.semantics.face_measures import FACE_MEASURES

from conftest import TALKING_HEADS, perturbed_tiny_model

TALKING_CLIP = TALKING_HEADS / "clips" / "004_styletalk-feifeili-clip1.mp4"  # a test person; mouth opens at 0.2 s


def _atlas(directions: int = 20) -> Atlas:
    rng = np.random.default_rng(0)
    return Atlas([AtlasDirection(i, "mixed", "Other", {}, std=1.0,
                                 effects={m.key: rng.normal() for m in FACE_MEASURES}) for i in range(directions)])


@pytest.fixture
def spreads(monkeypatch):
    """`mouth_spread` replaced: the driver's faces (value 0.5) read `target`, a rendered batch reads
    the strength it was rendered at (the fake render writes it into every pixel) times `response`."""
    state = {"target": 0.04, "response": 0.01, "rendered": []}

    def fake(faces: torch.Tensor) -> float:
        value = float(faces.flatten()[0])
        if value == 0.5:
            return state["target"]
        state["rendered"].append(value)
        return value * state["response"]

    monkeypatch.setattr(amplitude, "mouth_spread", fake)
    return state


def _match(strength: float = 1.0, frames: int = 30) -> float:
    motion = torch.randn(frames, 20)
    reference = torch.zeros(1, 20)
    driver = torch.full((frames, 3, 8, 8), 0.5)
    calls = []

    def render(moved: torch.Tensor) -> torch.Tensor:
        # the strength this motion was mapped with: the expression map scales motion about the reference
        calls.append(len(moved))
        return torch.full((len(moved), 3, 8, 8), float(len(calls)))  # 1st candidate, 2nd, ...

    candidates = sorted({min(3.0, strength * g) for g in amplitude.GAINS})
    chosen = amplitude.matched_strength(render, reference, motion, driver, _atlas(), strength)
    assert all(n == min(amplitude.SAMPLE_FRAMES, frames) for n in calls)  # a sample, not every frame
    return chosen, candidates, len(calls)


def test_the_first_strength_whose_mouth_moves_as_widely_as_the_driver_s_is_chosen(spreads):
    # candidate k (1-based) reads k * 0.01: the driver's 0.04 is first reached by the 4th, strength 2
    chosen, candidates, renders = _match()
    assert candidates == [1.0, 1.25, 1.5, 2.0, 2.5, 3.0]
    assert chosen == 2.0 and renders == 4  # no renders past the one that reached it


def test_a_face_that_never_reaches_the_driver_gets_the_strength_that_came_closest(spreads):
    spreads["response"] = 0.001  # at most 0.006 against 0.04
    chosen, candidates, renders = _match()
    assert chosen == 3.0 and renders == len(candidates)


def test_the_user_strength_multiplies_the_gains_within_the_control_range(spreads):
    chosen, candidates, _ = _match(strength=2.0)
    assert candidates == [2.0, 2.5, 3.0]  # 2 x 1.5 and up are capped at 3
    assert chosen == 3.0


def test_a_driver_whose_mouth_stays_still_keeps_the_user_strength(spreads):
    spreads["target"] = amplitude.MIN_DRIVER_SPREAD / 2
    chosen, _, renders = _match(strength=1.5)
    assert chosen == 1.5 and renders == 0


@pytest.fixture(scope="module")
def moving_pipe():
    """The tiny model with its generator nudged off the do-nothing start, so that motion moves pixels."""
    return SFDPipeline(perturbed_tiny_model(), device="cpu")


def test_matching_holds_the_first_frames_then_streams_and_reports_the_strength(moving_pipe, faces_dir, tmp_path,
                                                                             monkeypatch):
    if not TALKING_CLIP.is_file():
        pytest.skip(f"shared talking-head clip not found at {TALKING_CLIP}")
    chosen = []
    real = amplitude.matched_strength

    def spy(*args, **kwargs):
        chosen.append(real(*args, **kwargs))
        return chosen[-1]

    monkeypatch.setattr("sfd.pipeline.sfd_pipeline.matched_strength", spy)
    source = moving_pipe.prepare_source(faces_dir / "lia-vox" / "taylor.png")
    frames = read_video(TALKING_CLIP, max_frames=64)[0]
    atlas = _atlas()
    # 64 frames in batches of 8: one match after the first 48 faces, every frame out, in order
    out = list(moving_pipe.iter_animate(source, [frames[i:i + 8] for i in range(0, 64, 8)], atlas=atlas,
                                        match_amplitude=True, paste_back=False, mouth=False, head=False))
    assert len(chosen) == 1 and sum(len(o) for o in out) == 64
    assert 1.0 <= chosen[0] <= 3.0
    # the same frames at that strength, plainly: the held frames were rendered with it
    plain = list(moving_pipe.iter_animate(source, [frames[i:i + 8] for i in range(0, 64, 8)], atlas=atlas,
                                          expression_strength=chosen[0], paste_back=False, mouth=False, head=False))
    # (mouth transfer off in both: its target scales with the strength asked for, 1 when matching)
    assert np.array_equal(np.concatenate(out), np.concatenate(plain))
    # a clip shorter than the calibration is matched on what it has
    short = list(moving_pipe.iter_animate(source, [frames[:8], frames[8:12]], atlas=atlas, match_amplitude=True,
                                          paste_back=False))
    assert len(chosen) == 2 and sum(len(o) for o in short) == 12
    # animate() says which strength it used
    path = tmp_path / "driver.mp4"
    with VideoWriter(path, probe_video(TALKING_CLIP).fps) as writer:
        writer.write(frames[:20])
    result = moving_pipe.animate(source.image, path, tmp_path / "out.mp4", atlas=atlas, match_amplitude=True)
    assert result.expression_strength == chosen[-1] and result.frame_count == 20


def test_matching_needs_the_atlas_and_says_so_before_any_frame(moving_pipe, faces_dir, tmp_path):
    source = moving_pipe.prepare_source(faces_dir / "lia-vox" / "taylor.png")
    with pytest.raises(SFDError, match="matching the driver's amplitude, needs the weights' direction atlas"):
        moving_pipe.iter_animate(source, [], match_amplitude=True)
    with pytest.raises(SFDError, match="direction atlas"):
        moving_pipe.animate(source.image, tmp_path / "missing.mp4", tmp_path / "o.mp4", match_amplitude=True)
    # an atlas that measured no effects cannot tell expression from head: refused at the call too
    unmeasured = Atlas([AtlasDirection(i, "mixed", "Other", {}) for i in range(20)])
    with pytest.raises(SFDError, match="measured effects"):
        moving_pipe.iter_animate(source, [], atlas=unmeasured, match_amplitude=True)
    assert not list(tmp_path.iterdir())

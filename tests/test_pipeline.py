"""The reenactment pipeline and CLI on real clips, with the tiny model (plumbing, not beauty)."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sfd import SFDModel, SFDPipeline
from sfd.errors import ImageError, NoFaceError, SFDError, VideoError
from sfd.media import VideoWriter, probe_video, read_video
from sfd.pipeline import MotionSmoother

from conftest import perturbed_tiny_model

# A short real talking clip (2 s, 256x256, a face in every frame) from the shared corpus, read in place.
TALKING_CLIP = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "talking-heads" / "clips"
                / "010_styletalk-furious-talk2-clip1.mp4")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny model's weights folder: random weights exercise every path of the pipeline."""
    folder = tmp_path_factory.mktemp("weights")
    SFDModel.from_preset("tiny").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipe(weights):
    return SFDPipeline.from_pretrained(weights, device="cpu")


@pytest.fixture(scope="module")
def moving_pipe(pipe):
    """The tiny model with its generator nudged off the do-nothing start, so that motion moves pixels."""
    return SFDPipeline(perturbed_tiny_model(), face_detector=pipe.face_detector, device="cpu")


@pytest.fixture
def talking_clip() -> Path:
    if not TALKING_CLIP.is_file():
        pytest.skip(f"shared talking-head clip not found at {TALKING_CLIP}")
    return TALKING_CLIP


def clip(src, dst, seconds: float, extra=()):
    """The first `seconds` of a real clip, re-encoded (optionally transformed by ffmpeg args)."""
    from sfd.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(src), "-t", str(seconds), *extra, str(dst)],
                   check=True, timeout=120)
    return dst


def landscape(h=360, w=640) -> np.ndarray:
    """A face-free picture: sky gradient over noisy green hills."""
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.uint8)
    sky = np.linspace(200, 120, h // 2)[:, None]
    img[: h // 2] = np.stack([sky * 0.6, sky * 0.8, np.full_like(sky, 230)], -1).astype(np.uint8)
    img[h // 2:] = (np.array([40, 120, 40]) + rng.integers(-20, 20, (h - h // 2, w, 3))).clip(0, 255)
    return img


def test_animate_real_clip_keeps_frames_fps_size_and_audio(pipe, faces_dir, tmp_path):
    source = faces_dir / "liveportrait" / "source" / "s0.jpg"
    driving = clip(faces_dir / "liveportrait" / "driving" / "d3.mp4", tmp_path / "d3.mp4", 2.0, ["-c:a", "copy"])
    driver = probe_video(driving)
    seen = []
    out = pipe.animate(source, driving, tmp_path / "out" / "result.mp4", progress=lambda d, t: seen.append((d, t)),
                       side_by_side_path=tmp_path / "out" / "panels.mp4", driver_box="track")
    info = probe_video(out)
    panels = probe_video(tmp_path / "out" / "panels.mp4")
    # The square driver at the result's height, then the source and the result at their own size.
    assert (panels.width, panels.height) == (info.height + 2 * info.width, info.height)
    assert panels.frame_count == driver.frame_count
    assert out.faceless_frames == 0 and out.face_summary() == "a face in every driving frame"
    width, height = Image.open(source).size
    assert info.frame_count == driver.frame_count
    assert info.fps == pytest.approx(driver.fps)
    assert (info.width, info.height) == (width - width % 2, height - height % 2)
    assert driver.has_audio and info.has_audio
    assert seen[-1][0] == driver.frame_count and all(a <= b for a, b in seen)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["panels.mp4", "result.mp4"]  # no temp files


def test_the_driver_box_is_the_first_face_s_unless_tracking_is_asked_for(pipe, faces_dir, tmp_path):
    """One box by default (the head's shifts are motion; whole frames follow them: see the bundle's
    tests); the summary says the face was framed once, and a wrong value stops before any work."""
    driving = clip(faces_dir / "liveportrait" / "driving" / "d3.mp4", tmp_path / "d3.mp4", 1.0)
    source = faces_dir / "liveportrait" / "source" / "s0.jpg"
    fixed = pipe.animate(source, driving, tmp_path / "fixed.mp4")
    tracked = pipe.animate(source, driving, tmp_path / "tracked.mp4", driver_box="track")
    assert (fixed.tracked, tracked.tracked) == (False, True)
    assert fixed.face_summary() == "one crop box for the driver, from its first frame's face"
    assert tracked.face_summary() == "a face in every driving frame"
    assert fixed.frame_count == tracked.frame_count == probe_video(driving).frame_count
    with pytest.raises(SFDError, match="driver_box must be one of fixed, track, got 'follow'"):
        pipe.animate(source, driving, tmp_path / "bad.mp4", driver_box="follow")
    with pytest.raises(SFDError, match="driver_box must be one of"):  # at the call, before any frame
        pipe.iter_animate(pipe.prepare_source(source), [read_video(driving, max_frames=2)[0]], driver_box="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d3.mp4", "fixed.mp4", "tracked.mp4"]


def test_a_head_that_leaves_the_one_box_is_reported_and_a_steady_one_is_not(pipe, faces_dir, talking_clip, tmp_path):
    frames, info = read_video(talking_clip, max_frames=51)
    w = frames.shape[2]
    # The same talk, the picture sliding right by up to 35 % of its width: the face leaves its first box.
    sliding = np.stack([np.pad(f, ((0, 0), (round(0.35 * w * i / 50), 0), (0, 0)), mode="edge")[:, :w]
                        for i, f in enumerate(frames)])
    for name, video in (("steady.mp4", frames), ("sliding.mp4", sliding)):
        with VideoWriter(tmp_path / name, info.fps) as writer:
            writer.write(video)
    source = faces_dir / "lia-vox" / "taylor.png"
    steady = pipe.animate(source, tmp_path / "steady.mp4", tmp_path / "o1.mp4", paste_back=False)
    slid = pipe.animate(source, tmp_path / "sliding.mp4", tmp_path / "o2.mp4", paste_back=False)
    tracked = pipe.animate(source, tmp_path / "sliding.mp4", tmp_path / "o3.mp4", paste_back=False,
                           driver_box="track")
    assert (steady.watched_frames, steady.drifted_frames) == (2, 0)  # frames 25 and 50 looked at
    # The box is 282 px, wider than the 256 px frame: at frame 25 (45 px off) the face is still inside
    # it, at frame 50 (90 px off) its right edge is out (slid further, the face leaves the frame too:
    # then no face is found, which is counted apart).
    assert (slid.watched_frames, slid.drifted_frames, slid.missed_frames) == (2, 1, 0)
    assert "the face had left that box in 1 of 2 frames checked" in slid.face_summary()
    assert "left that box" not in steady.face_summary() and "no face in" not in steady.face_summary()
    assert tracked.watched_frames == 0 and tracked.face_summary() == "a face in every driving frame"


def test_animate_without_paste_back_gives_the_crop_and_silent_driver_gives_silent_video(pipe, faces_dir, tmp_path):
    driving = clip(faces_dir / "lia-vox" / "driving1.mp4", tmp_path / "d1.mp4", 1.5)  # no audio track
    out = pipe.animate(faces_dir / "lia-vox" / "monroe.png", driving, tmp_path / "o.mp4",
                       paste_back=False, crop_driving=False, relative=False)
    info = probe_video(out)
    assert (info.width, info.height) == (pipe.size, pipe.size)
    assert not info.has_audio and info.frame_count == probe_video(driving).frame_count


def test_still_driver_with_relative_motion_reproduces_the_source_reconstruction(pipe, faces_dir):
    source = pipe.prepare_source(faces_dir / "lia-vox" / "taylor.png")
    frame = read_video(faces_dir / "lia-vox" / "driving2.mp4", max_frames=1)[0][0]
    still = [np.stack([frame] * 3), np.stack([frame] * 2)]
    frames = np.concatenate(list(pipe.iter_animate(source, still, crop_driving=False, paste_back=False)))
    reconstruction = pipe.edit(source, paste_back=False)
    assert frames.shape == (5, pipe.size, pipe.size, 3)
    assert np.abs(frames.astype(int) - reconstruction.astype(int)).max() <= 1


def atlas_of(head_effect: float, directions: int = 20) -> "Atlas":
    """An atlas whose every direction moves the head measures by `head_effect` per std, and the
    expression measures by random amounts."""
    from sfd.semantics import Atlas, AtlasDirection
    from sfd.semantics.face_measures import FACE_MEASURES

    rng = np.random.default_rng(0)
    return Atlas([AtlasDirection(i, "mixed", "Other", {}, std=1.0,
                                 effects={m.key: head_effect * rng.normal() if m.group == "Head" else rng.normal()
                                          for m in FACE_MEASURES}) for i in range(directions)])


def test_expression_strength_maps_the_driver_s_motion_and_bad_settings_stop_at_the_call(moving_pipe, faces_dir,
                                                                                         talking_clip, tmp_path):
    source = moving_pipe.prepare_source(faces_dir / "lia-vox" / "taylor.png")
    driving = read_video(talking_clip, max_frames=48)[0][::8]  # frames far apart: the face moves

    def animate(**kwargs) -> np.ndarray:  # the model's motion alone: no lids or mouth drawn over it
        return np.concatenate(list(moving_pipe.iter_animate(source, [driving], paste_back=False, blinks=False,
                                                            mouth=False, head=False, **kwargs)))

    plain = animate()
    # Strength 1 is the driver's own motion, atlas or not.
    assert np.array_equal(animate(expression_strength=1.0, atlas=atlas_of(1.0)), plain)
    # An atlas where no direction moves the head: at 0 nothing of the driver's change is left,
    # and every frame is the first one's; at 2 the face moves more than the driver's own motion makes it.
    frozen = animate(expression_strength=0.0, atlas=atlas_of(0.0))
    doubled = animate(expression_strength=2.0, atlas=atlas_of(0.0))
    # Measured: 0, 0.19 and 0.39 grey levels from the first frame (frozen, plain, doubled).
    assert mean_difference(frozen, frozen[:1]) == 0 < 0.1 < mean_difference(plain, plain[:1])
    assert mean_difference(doubled, doubled[:1]) > 1.5 * mean_difference(plain, plain[:1])
    with pytest.raises(SFDError, match="needs the weights' direction atlas"):
        moving_pipe.iter_animate(source, [driving], expression_strength=2.0)
    with pytest.raises(SFDError, match="12 directions, this model 20 motion coefficients"):
        moving_pipe.iter_animate(source, [driving], expression_strength=2.0, atlas=atlas_of(1.0, directions=12))
    with pytest.raises(SFDError, match=r"must lie in \[0, 3\]"):
        moving_pipe.animate(source.image, talking_clip, tmp_path / "bad.mp4", expression_strength=4.0,
                            atlas=atlas_of(1.0))
    assert not list(tmp_path.iterdir())


def opening_on_black(clip, path, black: int, face_frames: int) -> Path:
    """`clip`'s first `face_frames` frames after `black` black frames (a fade-in, a title card)."""
    frames, info = read_video(clip, max_frames=face_frames)
    with VideoWriter(path, info.fps) as writer:
        writer.write(np.concatenate([np.zeros((black, *frames.shape[1:]), np.uint8), frames]))
    return path


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_driver_opening_without_a_face_is_animated_from_its_first_face(moving_pipe, faces_dir, talking_clip,
                                                                      tmp_path):
    pipe = moving_pipe
    driving = opening_on_black(talking_clip, tmp_path / "fade_in.mp4", black=10, face_frames=20)
    source = pipe.prepare_source(faces_dir / "lia-vox" / "taylor.png")
    still = pipe.edit(source, paste_back=False)  # what a driver that does not move gives

    result = pipe.animate(source.image, driving, tmp_path / "out.mp4", paste_back=False)
    assert probe_video(result).frame_count == 30 == result.frame_count
    assert (result.faceless_frames, result.first_face_frame) == (10, 10)
    assert result.face_summary().startswith("no face in 10 of 30 driving frames")
    # Relative motion counts from the first face: up to it, every frame shows the source as it is (had
    # a black frame been the reference, the first face frame would differ from them by about 2.3).
    video = read_video(result)[0]
    assert mean_difference(video[0], still) < 4.0  # a 64 px H.264 frame
    assert max(mean_difference(frame, video[0]) for frame in video[1:11]) < 0.5

    # Exactly, without a video codec in between, in batches that split the black opening.
    frames = read_video(driving)[0]
    streamed = np.concatenate(list(pipe.iter_animate(source, [frames[:8], frames[8:16], frames[16:]],
                                                     paste_back=False)))
    assert streamed.shape == (30, pipe.size, pipe.size, 3)
    assert np.abs(streamed[:11].astype(int) - still.astype(int)).max() <= 1
    assert max(mean_difference(frame, still) for frame in streamed[11:]) > 0.1  # then the face moves

    with VideoWriter(tmp_path / "black.mp4", 25) as writer:
        writer.write(np.zeros((6, 256, 256, 3), np.uint8))
    with pytest.raises(NoFaceError, match="driving video black.mp4: No face was found in any of its 6 frames"):
        pipe.animate(source.image, tmp_path / "black.mp4", tmp_path / "none.mp4")
    assert not (tmp_path / "none.mp4").exists()


def high_frequency_energy(images: np.ndarray) -> float:
    """Mean detail finer than about two pixels: what blurs away when a small picture is scaled up."""
    gray = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) for image in images]
    return float(np.mean([np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.0)).mean() for g in gray]))


def test_side_by_side_shows_sharp_panels_at_the_results_size(pipe, faces_dir, tmp_path):
    # A 512 px source for a 256 px driver: the driver panel is enlarged to the result's height.
    Image.open(faces_dir / "lia-vox" / "taylor.png").convert("RGB").resize((512, 512), Image.Resampling.LANCZOS
                                                                           ).save(tmp_path / "taylor512.png")
    driving = clip(faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "d.mp4", 0.6)
    result = pipe.animate(tmp_path / "taylor512.png", driving, tmp_path / "result.mp4",
                          side_by_side_path=tmp_path / "panels.mp4")
    assert result.side_by_side == tmp_path / "panels.mp4"
    results, panels, drivers = read_video(result)[0], read_video(tmp_path / "panels.mp4")[0], read_video(driving)[0]
    height, width = results.shape[1:3]
    assert (height, width) == (512, 512) and panels.shape[1:3] == (height, 3 * width)
    assert len(panels) == len(results) == len(drivers)
    assert mean_difference(panels[:, :, 2 * width:], results) < 2.0  # the result as it is, up to the codec
    driver_panels = panels[:, :, :width]
    enlarged = np.stack([cv2.resize(d, (width, height), interpolation=cv2.INTER_CUBIC) for d in drivers])
    assert mean_difference(driver_panels, enlarged) < 4.0  # the whole driving frame
    # As sharp as the driving frames themselves at that size (a model-size crop scaled up is not).
    assert high_frequency_energy(driver_panels) > 0.8 * high_frequency_energy(enlarged)
    thumbnail = np.stack([cv2.resize(cv2.resize(d, (pipe.size, pipe.size), interpolation=cv2.INTER_AREA),
                                     (width, height), interpolation=cv2.INTER_CUBIC) for d in drivers])
    assert high_frequency_energy(thumbnail) < 0.7 * high_frequency_energy(enlarged)  # the test can tell


def test_edit_moves_the_face_and_keeps_the_image_size(pipe, faces_dir):
    path = faces_dir / "liveportrait" / "source" / "s5.jpg"
    source = pipe.prepare_source(path)
    base = pipe.edit(source)
    assert base.shape[:2] == np.asarray(Image.open(path).convert("RGB")).shape[:2]
    assert np.array_equal(base, pipe.edit(source))  # deterministic
    with pytest.raises(SFDError, match="motion coefficient 99 does not exist"):
        pipe.edit(source, motion_offsets={99: 1.0})
    desc = pipe.descriptors(path)
    assert desc["motion"].shape == (20,) and desc["identity"].shape == (108,)
    assert np.allclose(desc["motion"], source.motion)


def test_source_crop_box_lies_on_the_face(pipe, faces_dir):
    # The face in s0.jpg (600x704 painting), checked by eye: x 278..358, y 75..180 (brows to chin).
    x0, y0, x1, y1 = 278, 75, 358, 180
    box = pipe.prepare_source(faces_dir / "liveportrait" / "source" / "s0.jpg").box
    assert x0 < box.cx < x1 and y0 < box.cy < y1  # centred on the face
    assert box.x0 < x0 and box.y0 < y0 and box.x1 > x1 and box.y1 > y1  # the whole face inside
    assert 1.5 * (y1 - y0) < box.side < 3.0 * (y1 - y0)  # head with some margin, not the whole body


def test_no_face_in_source_is_a_clear_error(pipe, tmp_path, faces_dir):
    Image.fromarray(landscape()).save(tmp_path / "landscape.png")
    with pytest.raises(NoFaceError, match="No face was found"):
        pipe.animate(tmp_path / "landscape.png", faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "o" / "x.mp4")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_no_face_in_driving_video_is_a_clear_error_and_leaves_nothing(pipe, tmp_path, faces_dir):
    with VideoWriter(tmp_path / "empty.mp4", 10) as w:
        w.write(np.stack([landscape(256, 256)] * 5))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(NoFaceError, match="driving video empty.mp4"):
        pipe.animate(faces_dir / "lia-vox" / "monroe.png", tmp_path / "empty.mp4", out_dir / "x.mp4")
    assert list(out_dir.iterdir()) == []


def test_bad_files_are_clear_errors(pipe, tmp_path, faces_dir):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageError, match="not an image"):
        pipe.prepare_source(tmp_path / "notes.png")
    data = (faces_dir / "lia-vox" / "driving2.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:2048])
    with pytest.raises(VideoError):
        pipe.animate(faces_dir / "lia-vox" / "monroe.png", tmp_path / "cut.mp4", tmp_path / "o.mp4")
    (tmp_path / "text.mp4").write_text("hello")
    with pytest.raises(VideoError, match="text.mp4"):
        pipe.animate(faces_dir / "lia-vox" / "monroe.png", tmp_path / "text.mp4", tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()
    with pytest.raises(VideoError, match="limit"):
        pipe.animate(faces_dir / "lia-vox" / "monroe.png", faces_dir / "lia-vox" / "driving1.mp4",
                     tmp_path / "o.mp4", max_duration=10)


def test_one_frame_portrait_and_non_square_drivers_work(pipe, faces_dir, tmp_path):
    source = faces_dir / "lia-vox" / "monroe.png"
    one = clip(faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "one.mp4", 0.04, ["-frames:v", "1"])
    assert probe_video(pipe.animate(source, one, tmp_path / "o1.mp4")).frame_count == 1
    portrait = clip(faces_dir / "liveportrait" / "source" / "s29.mp4", tmp_path / "portrait.mp4", 0.5)
    out = pipe.animate(source, portrait, tmp_path / "o2.mp4")
    assert probe_video(out).frame_count == probe_video(portrait).frame_count
    wide = clip(faces_dir / "liveportrait" / "source" / "s18.mp4", tmp_path / "wide.webm", 0.4, ["-c:v", "libvpx-vp9"])
    assert probe_video(pipe.animate(source, wide, tmp_path / "o3.mp4")).frame_count == probe_video(wide).frame_count


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_grayscale_rgba_and_16bit_sources_work(pipe, faces_dir, tmp_path, mode):
    rgb = Image.open(faces_dir / "lia-vox" / "macron.png").convert("RGB")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    else:
        img = rgb.convert(mode)
    img.save(tmp_path / "src.png")
    out = pipe.edit(tmp_path / "src.png")
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8


def test_huge_source_is_downscaled_not_a_crash(pipe, faces_dir, tmp_path):
    Image.open(faces_dir / "lia-vox" / "monroe.png").convert("RGB").resize((4400, 4400)).save(tmp_path / "big.jpg")
    out = pipe.edit(tmp_path / "big.jpg")
    assert max(out.shape[:2]) == 2048


def test_motion_smoother_smooths_and_streams():
    import torch

    x = torch.randn(40, 4)
    assert torch.equal(MotionSmoother(0.0)(x), x)
    smooth = MotionSmoother(0.8)
    y = torch.cat([smooth(x[:15]), smooth(x[15:])])  # state carries over batches
    assert y.diff(dim=0).std() < 0.5 * x.diff(dim=0).std()
    assert torch.allclose(y, torch.cat([MotionSmoother(0.8)(x)]))
    with pytest.raises(ValueError):
        MotionSmoother(1.0)


def test_cli_animate_edit_and_errors(weights, faces_dir, tmp_path):
    driving = clip(faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "d.mp4", 1.0, ["-c:a", "aac"])
    cmd = [sys.executable, "-m", "sfd", "animate", "--weights", str(weights), "--no-blinks", "--no-mouth", "--no-head",
           "--source", str(faces_dir / "lia-vox" / "monroe.png"), "--driving", str(driving),
           "--output", str(tmp_path / "o.mp4"), "--no-crop-driving"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "25 frames" in done.stdout and "with audio" in done.stdout
    assert "no face in" not in done.stdout  # the driver is taken whole: no face to miss
    # Weights without a direction atlas cannot match the driver's amplitude: said, nothing written.
    done = subprocess.run(cmd[:-3] + ["--output", str(tmp_path / "m.mp4"), "--no-crop-driving", "--match-amplitude"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "needs the weights' direction atlas" in done.stderr, done.stderr
    assert not (tmp_path / "m.mp4").exists()
    done = subprocess.run([sys.executable, "-m", "sfd", "edit", "--weights", str(weights), "--source",
                           str(faces_dir / "lia-vox" / "monroe.png"), "--motion", "3=1.5", "--output",
                           str(tmp_path / "e.png")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "e.png").size == (256, 256)
    Image.fromarray(landscape()).save(tmp_path / "landscape.png")
    done = subprocess.run([sys.executable, "-m", "sfd", "edit", "--weights", str(weights), "--source",
                           str(tmp_path / "landscape.png"), "--output", str(tmp_path / "x.png")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "No face was found" in done.stderr and not (tmp_path / "x.png").exists()


def test_cli_summary_counts_the_driving_frames_without_a_face(weights, faces_dir, talking_clip, tmp_path):
    frames, info = read_video(talking_clip, max_frames=15)
    black = np.zeros((5, *frames.shape[1:]), np.uint8)
    with VideoWriter(tmp_path / "cut_away.mp4", info.fps) as writer:  # black, face, black (a cut), face
        writer.write(np.concatenate([black, frames[:10], black, frames[10:]]))

    def animate(*options: str) -> str:
        done = subprocess.run([sys.executable, "-m", "sfd", "animate", "--weights", str(weights), "--source",
                               str(faces_dir / "lia-vox" / "monroe.png"), "--driving", str(tmp_path / "cut_away.mp4"),
                               "--output", str(tmp_path / "o.mp4"), *options], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert "25 frames" in done.stdout and len(done.stdout.strip().splitlines()) == 1
        return done.stdout

    # A tracked face is searched in every frame: the cut is counted too.
    tracked = animate("--driver-box", "track")
    assert "no face in 10 of 25 driving frames (the first face is in frame 5" in tracked
    # One box (the default): the face is found once, and the summary says so.
    fixed = animate()
    assert "no face in 5 of 25 driving frames (the first face is in frame 5" in fixed
    assert "the later ones are cropped with its box" in fixed


def test_edit_video_keeps_frames_and_audio_and_applies_offsets(weights, faces_dir, tmp_path):
    import torch

    model = SFDModel.from_pretrained(weights)
    with torch.no_grad():  # wake the zero-initialised flow heads so that offsets move pixels
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    pipe = SFDPipeline(model, device="cpu")
    video = clip(faces_dir / "lia-vox" / "driving2.mp4", tmp_path / "v.mp4", 0.6, ["-c:a", "aac"])
    plain = pipe.edit_video(video, tmp_path / "plain.mp4", crop=False)
    moved = pipe.edit_video(video, tmp_path / "moved.mp4", crop=False, motion_offsets={0: 3.0, 5: -3.0})
    info = probe_video(moved)
    assert info.frame_count == probe_video(video).frame_count and info.has_audio
    a, b = read_video(plain)[0].astype(int), read_video(moved)[0].astype(int)
    assert np.abs(a - b).mean() > 0.5
    with pytest.raises(SFDError, match="identity coefficient 500"):
        pipe.edit_video(video, tmp_path / "bad.mp4", crop=False, identity_offsets={500: 1.0})
    assert not (tmp_path / "bad.mp4").exists()


def test_no_weights_and_no_bundled_weights_is_a_clear_error(monkeypatch, tmp_path):
    from sfd.errors import WeightsError
    from sfd.pipeline import sfd_pipeline

    monkeypatch.setattr(sfd_pipeline, "BUNDLED_WEIGHTS", tmp_path / "absent")
    with pytest.raises(WeightsError, match="no SFD weights given and no bundled weights"):
        SFDPipeline.from_pretrained()

"""The reenactment pipeline and CLI on real clips, with the tiny model (plumbing, not beauty)."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sfd import SFDModel, SFDPipeline
from sfd.errors import ImageError, NoFaceError, SFDError, VideoError
from sfd.media import VideoWriter, probe_video, read_video
from sfd.pipeline import MotionSmoother


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny model's weights folder: random weights exercise every path of the pipeline."""
    folder = tmp_path_factory.mktemp("weights")
    SFDModel.from_preset("tiny").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipe(weights):
    return SFDPipeline.from_pretrained(weights, device="cpu")


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
                       side_by_side_path=tmp_path / "out" / "panels.mp4")
    info = probe_video(out)
    panels = probe_video(tmp_path / "out" / "panels.mp4")
    assert (panels.width, panels.height) == (3 * pipe.size, pipe.size) and panels.frame_count == driver.frame_count
    width, height = Image.open(source).size
    assert info.frame_count == driver.frame_count
    assert info.fps == pytest.approx(driver.fps)
    assert (info.width, info.height) == (width - width % 2, height - height % 2)
    assert driver.has_audio and info.has_audio
    assert seen[-1][0] == driver.frame_count and all(a <= b for a, b in seen)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["panels.mp4", "result.mp4"]  # no temp files


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
    cmd = [sys.executable, "-m", "sfd", "animate", "--weights", str(weights), "--source",
           str(faces_dir / "lia-vox" / "monroe.png"), "--driving", str(driving), "--output", str(tmp_path / "o.mp4"),
           "--no-crop-driving"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "25 frames" in done.stdout and "with audio" in done.stdout
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

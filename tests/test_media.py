"""Tests of sfd.media's videos: probe, read and write round trips (images: test_images.py).

Real clips are read from the shared data folder (never copied into the repo);
tests that need them are skipped when it is absent. Everything else is made in
tmp_path with the ffmpeg binary of imageio-ffmpeg.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from sfd.errors import SFDError, VideoError
from sfd.media.image import load_image
from sfd.media import VideoInfo, VideoReader, VideoWriter, ffmpeg_exe, probe_video, read_video, write_video

from conftest import data_file, gradient_frames, listing



def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                   check=True, timeout=60)


def child_processes() -> list[tuple[int, str]]:
    """(pid, state) of this process's ffmpeg children, zombies included (Linux /proc).

    Only ffmpeg: other tests of the session may leave helpers of their own (multiprocessing's
    resource tracker, say) that are not what these tests check."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text.split("(", 1)[1].rsplit(")", 1)[0]
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and name.startswith("ffmpeg"):
            found.append((int(entry.name), fields[0]))
    return found


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize("fps", [25, 29.97])
def test_write_probe_roundtrip(tmp_path, fps):
    frames = gradient_frames(30, 48, 64)
    out = write_video(tmp_path / "out.mp4", frames, fps)
    info = probe_video(out)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height) == (64, 48)
    assert info.frame_count == 30 and info.frame_count_exact
    assert info.fps == pytest.approx(fps, abs=0.01)
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert not info.has_audio
    assert info.duration == pytest.approx(30 / fps, abs=0.05)
    back, _ = read_video(out)
    assert back.shape == (30, 48, 64, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 3  # crf 18: close to the input
    assert listing(tmp_path) == ["out.mp4"]  # no temporary files left


def test_fractional_fps_is_ntsc_exact(tmp_path):
    out = write_video(tmp_path / "ntsc.mp4", gradient_frames(3, 16, 16), 29.97)
    assert probe_video(out).fps == pytest.approx(30000 / 1001, abs=1e-9)
    # Text form of the frame rate works too.
    out = write_video(tmp_path / "ntsc2.mp4", gradient_frames(3, 16, 16), "24000/1001")
    assert probe_video(out).fps == pytest.approx(24000 / 1001, abs=1e-9)


def test_faststart(tmp_path):
    out = write_video(tmp_path / "fs.mp4", gradient_frames(5, 16, 16), 25)
    head = out.read_bytes()
    # moov before mdat: browsers can play before the whole file is loaded.
    assert 0 <= head.find(b"moov") < head.find(b"mdat")


def test_odd_size_is_cropped_by_default(tmp_path):
    frames = gradient_frames(4, 101, 75)
    with VideoWriter(tmp_path / "odd.mp4", 25) as writer:
        writer.write(frames)
    assert writer.size == (74, 100)
    info = probe_video(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (74, 100)


def test_odd_size_pad_repeats_edge(tmp_path):
    frames = np.zeros((4, 33, 21, 3), np.uint8)
    frames[..., 0] = 200  # uniform colour: padded edge must match, not be black
    out = write_video(tmp_path / "pad.mp4", frames, 25, odd_size="pad")
    info = probe_video(out)
    assert (info.width, info.height) == (22, 34)
    back, _ = read_video(out)
    assert np.abs(back[:, -1, -1].astype(int) - [200, 0, 0]).max() < 8
    # A 1-pixel side is always padded, even with crop.
    out = write_video(tmp_path / "thin.mp4", np.zeros((2, 1, 9, 3), np.uint8), 25)
    assert probe_video(out).size == (8, 2)


def test_colours_survive_roundtrip(tmp_path):
    frame = np.zeros((32, 96, 3), np.uint8)
    frame[:, :32] = (255, 0, 0)
    frame[:, 32:64] = (0, 255, 0)
    frame[:, 64:] = (0, 0, 255)
    out = write_video(tmp_path / "rgb.mp4", np.stack([frame] * 3), 25)
    back, _ = read_video(out)
    for x, colour in ((16, (255, 0, 0)), (48, (0, 255, 0)), (80, (0, 0, 255))):
        assert np.abs(back[1, 16, x].astype(int) - colour).max() <= 6


def test_one_frame_roundtrip(tmp_path):
    frame = gradient_frames(1, 40, 40)[0]
    out = write_video(tmp_path / "one.mp4", frame, 25)  # a single (H, W, 3) frame
    info = probe_video(out)
    assert info.frame_count == 1
    back, _ = read_video(out)
    assert back.shape == (1, 40, 40, 3)


def test_audio_is_muxed_when_source_has_audio(tmp_path):
    src = data_file("lia-vox/driving2.mp4")
    assert probe_video(src).has_audio
    with VideoWriter(tmp_path / "talk.mp4", 25, audio_source=src) as writer:
        assert writer.will_have_audio
        for batch in np.split(gradient_frames(30, 64, 64), 3):
            writer.write(batch)
    assert writer.audio_muxed
    info = probe_video(tmp_path / "talk.mp4")
    assert info.has_audio and info.audio_codec == "aac"
    assert info.frame_count == 30
    # The 8.9 s of audio is cut to the 1.2 s video (give or take an AAC packet).
    assert info.duration == pytest.approx(1.2, abs=0.15)
    assert listing(tmp_path) == ["talk.mp4"]


def test_audio_from_mov_and_shorter_audio_keeps_all_frames(tmp_path):
    src = data_file("lia-vox/driving3.mov")
    out = write_video(tmp_path / "a.mp4", gradient_frames(10, 32, 32), 24, audio_source=src)
    assert probe_video(out).has_audio
    # Audio (0.3 s of tone, as mp3) shorter than the video: the video keeps every frame.
    tone = tmp_path / "tone.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.3", str(tone))
    out = write_video(tmp_path / "b.mp4", gradient_frames(30, 32, 32), 25, audio_source=tone)
    info = probe_video(out)
    assert info.has_audio and info.frame_count == 30


def test_no_audio_when_source_is_silent_or_keep_audio_false(tmp_path):
    silent = data_file("lia-vox/driving1.mp4")
    assert not probe_video(silent).has_audio
    with VideoWriter(tmp_path / "a.mp4", 10, audio_source=silent) as writer:
        writer.write(gradient_frames(5, 32, 32))
    assert not writer.audio_muxed
    assert not probe_video(tmp_path / "a.mp4").has_audio

    talking = data_file("lia-vox/driving2.mp4")
    out = write_video(tmp_path / "b.mp4", gradient_frames(5, 32, 32), 25,
                      audio_source=talking, keep_audio=False)
    assert not probe_video(out).has_audio
    assert listing(tmp_path) == ["a.mp4", "b.mp4"]


def test_writer_exception_leaves_no_files_and_no_process(tmp_path):
    target = tmp_path / "broken.mp4"
    with pytest.raises(KeyError):
        with VideoWriter(target, 25, audio_source=data_file("lia-vox/driving2.mp4")) as writer:
            writer.write(gradient_frames(10, 32, 32))
            assert any(name.endswith(".part.mp4") for name in listing(tmp_path))
            raise KeyError("boom")
    assert listing(tmp_path) == []
    assert child_processes() == []


def test_writer_bad_frames(tmp_path):
    with pytest.raises(VideoError, match="same size"):
        with VideoWriter(tmp_path / "x.mp4", 25) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            writer.write(np.zeros((32, 48, 3), np.uint8))
    with pytest.raises(VideoError, match="shape"):
        with VideoWriter(tmp_path / "y.mp4", 25) as writer:
            writer.write(np.zeros((32, 32), np.uint8))
    # No frames at all: an error, and no (empty) file.
    with pytest.raises(VideoError, match="No frames"):
        with VideoWriter(tmp_path / "z.mp4", 25):
            pass
    assert listing(tmp_path) == []
    assert child_processes() == []


def test_writer_bad_audio_source(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        VideoWriter(tmp_path / "x.mp4", 25, audio_source=tmp_path / "missing.mp4")
    with pytest.raises(ValueError):
        VideoWriter(tmp_path / "x.mp4", 0)
    assert listing(tmp_path) == []


def test_writer_accepts_float_frames(tmp_path):
    frames = np.full((3, 16, 16, 3), 0.5, np.float32)
    back, _ = read_video(write_video(tmp_path / "f.mp4", frames, 25))
    assert abs(int(back[0, 8, 8, 0]) - 128) <= 4


# ---------------------------------------------------------------- probing and errors


def test_text_file_renamed_mp4(tmp_path):
    fake = tmp_path / "holiday_clip.mp4"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="holiday_clip.mp4"):
        probe_video(fake)
    with pytest.raises(VideoError, match="holiday_clip.mp4"):
        VideoReader(fake)


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        probe_video(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(VideoError, match="empty"):
        probe_video(tmp_path / "empty.mp4")
    with pytest.raises(VideoError, match="not a regular file"):
        probe_video(tmp_path)
    assert issubclass(VideoError, SFDError) and issubclass(VideoError, ValueError)


def test_audio_only_file_is_not_a_video(tmp_path):
    audio = tmp_path / "voice.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", str(audio))
    with pytest.raises(VideoError, match="no video stream"):
        probe_video(audio)


def test_max_duration():
    clip = data_file("lia-vox/driving1.mp4")
    with pytest.raises(VideoError) as err:
        probe_video(clip, max_duration=10)
    assert "65.2" in str(err.value) and "10" in str(err.value)
    with pytest.raises(VideoError, match="limit"):
        VideoReader(clip, max_duration=10)
    assert probe_video(clip, max_duration=120).duration == pytest.approx(65.2, abs=0.1)


@pytest.mark.parametrize("keep", ["half", "2k"])
def test_truncated_real_video(tmp_path, keep):
    data = data_file("lia-vox/driving2.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2] if keep == "half" else data[:2048])
    started = time.monotonic()
    with pytest.raises(VideoError, match="cut.mp4"):
        read_video(cut)
    assert time.monotonic() - started < 20
    assert child_processes() == []


def test_truncated_faststart_video_gives_decodable_frames(tmp_path):
    # moov at the front: the header survives the cut, only the end is missing.
    full = write_video(tmp_path / "full.mp4", np.random.default_rng(0).integers(0, 255, (40, 64, 64, 3), np.uint8), 25)
    data = full.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    try:
        frames, _ = read_video(half)
    except VideoError as exc:
        assert "half.mp4" in str(exc)
    else:
        assert 0 < len(frames) < 40
    tiny = tmp_path / "tiny.mp4"
    tiny.write_bytes(data[:2048])
    with pytest.raises(VideoError, match="tiny.mp4"):
        read_video(tiny)
    assert child_processes() == []


def test_zero_decodable_frames(tmp_path):
    # A valid header whose video data is garbage: nothing decodes.
    good = write_video(tmp_path / "good.mp4", gradient_frames(10, 64, 64), 25)
    data = bytearray(good.read_bytes())
    mdat = data.find(b"mdat")
    data[mdat + 4:] = bytes(len(data) - mdat - 4)
    bad = tmp_path / "zeros.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(VideoError, match="zeros.mp4"):
        read_video(bad)


# ---------------------------------------------------------------- reading


def test_stream_long_video_in_batches_with_bounded_memory():
    clip = data_file("lia-vox/driving1.mp4")
    info = probe_video(clip)
    assert info.frame_count >= 650 and info.fps == 10
    frame_bytes = 256 * 256 * 3
    tracemalloc.start()
    try:
        sizes = []
        with VideoReader(clip, batch_size=16) as reader:
            for batch in reader:
                assert batch.dtype == np.uint8 and batch.shape[1:] == (256, 256, 3)
                if not sizes:
                    # The first batch arrives long before the whole file is decoded.
                    assert reader.frames_read == 16
                sizes.append(len(batch))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(sizes) == info.frame_count
    assert all(n == 16 for n in sizes[:-1])
    # The whole video would be ~128 MB; a few batches are ~3 MB each.
    assert peak < 10 * 16 * frame_bytes, f"peak traced memory {peak / 1e6:.1f} MB"
    assert peak < sum(sizes) * frame_bytes / 4


def test_early_exit_stops_ffmpeg():
    clip = data_file("lia-vox/driving1.mp4")
    reader = VideoReader(clip, batch_size=8)
    for _ in reader:
        break
    reader.close()
    assert child_processes() == []
    # An exception inside the with block.
    with pytest.raises(RuntimeError):
        with VideoReader(clip, batch_size=8) as reader:
            for _ in reader:
                raise RuntimeError("consumer failed")
    assert child_processes() == []
    # Iterating again starts over from the first frame.
    reader = VideoReader(clip, batch_size=4)
    first = next(iter(reader))
    again = next(iter(reader))
    assert np.array_equal(first, again)
    reader.close()
    assert child_processes() == []


def test_frames_and_read_all(tmp_path):
    out = write_video(tmp_path / "v.mp4", gradient_frames(10, 32, 48), 25)
    with VideoReader(out, batch_size=3) as reader:
        frames = list(reader.frames())
    assert len(frames) == 10 and frames[0].shape == (32, 48, 3)
    assert VideoReader(out).read_all(max_frames=4).shape == (4, 32, 48, 3)


def test_resize_on_decode_and_fps_resample(tmp_path):
    out = write_video(tmp_path / "v.mp4", gradient_frames(20, 64, 128), 20)
    frames, _ = read_video(out, size=(32, 16))
    assert frames.shape == (20, 16, 32, 3)
    frames, _ = read_video(out, max_side=64)
    assert frames.shape == (20, 32, 64, 3)
    reader = VideoReader(out, fps=10)
    assert len(reader.read_all()) == 10


def test_portrait_video():
    clip = data_file("liveportrait/source/s29.mp4")
    info = probe_video(clip)
    assert info.height > info.width
    assert info.has_audio
    with VideoReader(clip, batch_size=4, max_side=512) as reader:
        batch = next(iter(reader))
    assert batch.shape == (4, 512, 270, 3)


def test_rotation_metadata_is_applied(tmp_path):
    frames = np.zeros((5, 32, 64, 3), np.uint8)
    frames[:, :, :32] = (0, 255, 0)  # left half green, right half blue
    frames[:, :, 32:] = (0, 0, 255)
    plain = write_video(tmp_path / "plain.mp4", frames, 25)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    info = probe_video(rotated)
    assert info.rotation == 90 and (info.width, info.height) == (32, 64)
    back, _ = read_video(rotated)
    assert back.shape == (5, 64, 32, 3)
    # 90 degrees counter-clockwise: the left half ends up at the bottom.
    assert back[0, -4, 16, 1] > 200 and back[0, 4, 16, 2] > 200


@pytest.mark.parametrize(
    "name, codec_args",
    [
        ("clip.mov", ["-c:v", "libx264", "-pix_fmt", "yuv444p"]),
        ("clip.webm", ["-c:v", "libvpx-vp9", "-b:v", "300k", "-deadline", "realtime"]),
        ("clip.mkv", ["-c:v", "ffv1", "-pix_fmt", "yuv420p10le"]),
        ("gray.mkv", ["-c:v", "ffv1", "-pix_fmt", "gray"]),
        ("clip.avi", ["-c:v", "mpeg4", "-q:v", "2"]),
    ],
)
def test_other_containers_and_pixel_formats(tmp_path, name, codec_args):
    frames = gradient_frames(12, 48, 64)
    src = write_video(tmp_path / "src.mp4", frames, 25)
    clip = tmp_path / name
    ffmpeg("-i", str(src), *codec_args, str(clip))
    info = probe_video(clip)
    assert (info.width, info.height) == (64, 48) and info.fps == 25
    back, _ = read_video(clip, batch_size=5)
    assert back.shape == (12, 48, 64, 3) and back.dtype == np.uint8
    if name.startswith("gray"):
        assert np.array_equal(back[..., 0], back[..., 1])  # gray comes out as R = G = B
    else:
        assert np.abs(back.astype(int) - frames).mean() < 8


def test_real_clips_read():
    mov = data_file("lia-vox/driving3.mov")
    info = probe_video(mov)
    assert info.has_audio and info.fps == 24 and info.frame_count > 400
    with VideoReader(mov, batch_size=8) as reader:
        assert next(iter(reader)).shape == (8, 256, 256, 3)
    d2 = probe_video(data_file("lia-vox/driving2.mp4"))
    assert d2.fps == 25 and d2.duration == pytest.approx(8.9, abs=0.05)


def test_still_image_is_a_one_frame_video():
    jpg = data_file("liveportrait/source/s0.jpg")
    frames, info = read_video(jpg)
    assert info.frame_count == 1 and frames.shape[0] == 1
    assert frames.shape[1:] == load_image(jpg).shape


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_stalled_ffmpeg_is_killed(tmp_path):
    """ffmpeg that stops getting data must not hang the reader (watchdog)."""
    y4m = subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=25",
         "-frames:v", "60", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"],
        capture_output=True, check=True, timeout=60).stdout
    fifo = tmp_path / "live.y4m"
    os.mkfifo(fifo)
    release = threading.Event()

    def feed():  # send half the stream, then keep the pipe open without writing
        with open(fifo, "wb") as fh:
            fh.write(y4m[: len(y4m) // 2])
            fh.flush()
            release.wait(30)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    info = VideoInfo(path=fifo, width=32, height=32, fps=25.0, frame_count=60, duration=2.4,
                     has_audio=False, codec="rawvideo", pix_fmt="yuv420p")
    started = time.monotonic()
    try:
        with pytest.raises(VideoError, match="produced no frame"):
            with VideoReader(fifo, batch_size=4, info=info, stall_timeout=1.0) as reader:
                for _ in reader:
                    pass
    finally:
        release.set()
        feeder.join(5)
    assert time.monotonic() - started < 15
    assert child_processes() == []

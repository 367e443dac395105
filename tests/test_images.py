"""Tests of sfd.media's images: loading (modes, orientation, bit depths, bombs) and saving.

Real portraits are read from the shared data folder (never copied into the repo); tests that
need them are skipped when it is absent. Everything else is made in tmp_path.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfd.errors import ImageError, SFDError
from sfd.media.image import load_image, save_image

from conftest import data_file, gradient_frames, listing



# ---------------------------------------------------------------- images


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose IHDR claims width x height (with a valid CRC)."""
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_load_grayscale_and_1bit(tmp_path):
    Image.new("L", (5, 4), 100).save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8
    assert (img == 100).all()
    Image.new("1", (3, 3), 1).save(tmp_path / "b.png")
    assert (load_image(tmp_path / "b.png") == 255).all()


def test_load_rgba_composites_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[0, 0, 3] = 0      # fully transparent red -> white
    rgba[1, 1, 3] = 255    # opaque red -> red
    rgba[2, 2, 3] = 128    # half -> pink
    Image.fromarray(rgba).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.shape == (4, 4, 3)
    assert img[0, 0].tolist() == [255, 255, 255]
    assert img[1, 1].tolist() == [255, 0, 0]
    assert img[2, 2].tolist() == [255, 127, 127]


def test_load_16bit_png_scales_not_clips(tmp_path):
    arr = np.array([[65535, 32768], [0, 256]], np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    img = load_image(tmp_path / "g16.png")
    assert img[..., 0].tolist() == [[255, 128], [0, 1]]
    # 16-bit arrays are scaled the same way.
    assert load_image(arr)[0, 1, 0] == 128
    # 16-bit RGB PNG (Pillow cannot write one, so build it by hand).
    rgb16 = tmp_path / "rgb16.png"
    _write_png16_rgb(rgb16, np.array([[[65535, 32768, 0]]], np.uint16))
    assert load_image(rgb16)[0, 0].tolist() == [255, 128, 0]


def _write_png16_rgb(path: Path, arr: np.ndarray) -> None:
    """Minimal 16-bit RGB PNG writer (Pillow cannot write 48-bit RGB)."""
    h, w, _ = arr.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_load_palette_with_transparency(tmp_path):
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * 759)
    pal.putpixel((1, 1), 1)
    pal.putpixel((2, 2), 2)
    pal.save(tmp_path / "p.png", transparency=2)
    img = load_image(tmp_path / "p.png")
    assert img[0, 0].tolist() == [255, 0, 0]
    assert img[1, 1].tolist() == [0, 0, 255]
    assert img[2, 2].tolist() == [255, 255, 255]  # transparent index -> white


def test_load_cmyk_and_exif_orientation(tmp_path):
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    red = load_image(tmp_path / "c.jpg")[2, 2].astype(int)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    im = Image.new("RGB", (30, 20), (9, 9, 9))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "o.jpg", exif=exif)
    assert load_image(tmp_path / "o.jpg").shape == (30, 20, 3)


def test_not_an_image_empty_missing_truncated(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("definitely not pixels")
    with pytest.raises(ImageError, match="notes.png is not an image Pillow can read"):
        load_image(text)
    (tmp_path / "empty.jpg").touch()
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageError):
        load_image(12345)
    assert issubclass(ImageError, SFDError)


def test_large_but_allowed_image_loads(tmp_path):
    Image.new("RGB", (5000, 300), (1, 2, 3)).save(tmp_path / "wide.png")
    img = load_image(tmp_path / "wide.png")
    assert img.shape == (300, 5000, 3)
    assert load_image(tmp_path / "wide.png", max_side=1000).shape == (60, 1000, 3)
    with pytest.raises(ImageError, match="limit"):
        load_image(tmp_path / "wide.png", max_pixels=1_000_000)


@pytest.mark.parametrize("side", [30000, 8000])
def test_decompression_bomb_refused_before_decoding(tmp_path, side):
    bomb = png_claiming_size(tmp_path / "bomb.png", side, side)
    assert bomb.stat().st_size < 1000
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="too large"):
            load_image(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # nothing close to side*side*3 bytes was allocated


def test_arrays_pil_and_bytes(tmp_path):
    assert load_image(np.zeros((3, 4), np.float32)).shape == (3, 4, 3)
    assert load_image(np.full((2, 2, 1), 1.0)).tolist() == [[[255] * 3] * 2] * 2
    with pytest.raises(ImageError, match="0..1"):
        load_image(np.full((2, 2, 3), 200.0))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ImageError, match="empty"):
        load_image(np.zeros((0, 3, 3), np.uint8))
    assert load_image(Image.new("LA", (3, 3), (50, 255))).tolist() == [[[50] * 3] * 3] * 3
    buf = io.BytesIO()
    Image.new("RGB", (6, 5), (7, 8, 9)).save(buf, format="PNG")
    assert load_image(buf.getvalue())[0, 0].tolist() == [7, 8, 9]
    big = np.zeros((100, 40, 3), np.uint8)
    assert load_image(big, max_side=50).shape == (50, 20, 3)


def test_save_image_roundtrip_and_no_temp_files(tmp_path):
    img = gradient_frames(1, 20, 30)[0]
    out = save_image(img, tmp_path / "sub" / "a.png")
    assert np.array_equal(load_image(out), img)
    save_image(img, tmp_path / "sub" / "a.jpg")
    assert np.abs(load_image(tmp_path / "sub" / "a.jpg").astype(int) - img).mean() < 3
    rgba = np.dstack([img, np.full(img.shape[:2], 128, np.uint8)])
    save_image(rgba, tmp_path / "sub" / "alpha.png")
    with Image.open(tmp_path / "sub" / "alpha.png") as saved:
        assert saved.mode == "RGBA"
    with pytest.raises(ImageError, match="extension"):
        save_image(img, tmp_path / "sub" / "a.xyz")
    assert listing(tmp_path / "sub") == ["a.jpg", "a.png", "alpha.png"]


def test_real_portraits_load():
    for rel in ("lia-vox/macron.png", "liveportrait/source/s0.jpg"):
        img = load_image(data_file(rel))
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        small = load_image(data_file(rel), max_side=128)
        assert max(small.shape[:2]) == 128

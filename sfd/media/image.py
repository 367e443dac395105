"""Loading and saving still images as RGB ``uint8`` numpy arrays.

Everything the pipeline sees is an ``(H, W, 3)`` ``uint8`` array in RGB order,
whatever came in: a file path, a numpy array (as Gradio hands over) or a PIL
image. Bad input raises :class:`sfd.errors.ImageError` with a message meant for
the user.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sfd.errors import ImageError

__all__ = ["DEFAULT_MAX_PIXELS", "ImageSource", "load_image", "save_image", "to_rgb_uint8"]

#: Largest image (width * height) :func:`load_image` decodes by default: 50
#: megapixels, i.e. 150 MB as RGB. Checked from the header before decoding, so
#: a small file that claims a huge size (a "decompression bomb") costs nothing.
DEFAULT_MAX_PIXELS = 50_000_000

ImageSource = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]

# Formats save_image knows, by file extension.
_SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def load_image(
    source: ImageSource,
    max_side: int | None = None,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Load an image as an RGB ``uint8`` array of shape ``(H, W, 3)``.

    Args:
        source: a file path (``str`` / ``os.PathLike``), the raw bytes of an
            image file, a numpy array, or a ``PIL.Image.Image``.
            Numpy arrays are taken as RGB(A) or grayscale, ``(H, W)``,
            ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``; ``uint8`` as is,
            ``uint16`` scaled from 0..65535, ``bool`` as black/white and
            floats as 0..1 (values above 1 are refused rather than guessed at).
        max_side: if given, shrink the image (keeping its aspect ratio) so its
            longer side is at most this many pixels. Images are never enlarged.
        max_pixels: refuse images with more than this many pixels (width *
            height), read from the file header before any pixel is decoded.
            ``None`` turns the check off (Pillow's own bomb limit of about
            179 megapixels still applies to files).
        background: colour that transparent pixels are composited onto.

    Conversions, so that every source ends up as plain RGB:

    * Transparency (RGBA, LA, palette with a transparent index) is
      **composited onto a white background** (``background``), not dropped:
      dropping alpha would reveal whatever colour the fully transparent pixels
      happen to hold, often black, which looks like a black border.
    * Grayscale, 1-bit and palette images are expanded to RGB.
    * 16-bit images are scaled to 8 bits (65535 -> 255, 32768 -> 128), not
      clipped at 255.
    * The EXIF orientation tag is applied, so phone photos stand upright.
    * CMYK (and other images with an embedded ICC profile) are converted to
      sRGB through the profile when Pillow has LittleCMS, else with Pillow's
      plain conversion.
    * Animated images (GIF, WebP, ...) give their first frame.

    Raises:
        ImageError: the file is missing, empty, not an image, truncated or
            corrupt, or larger than ``max_pixels``; or the array has an
            unusable shape, dtype or value range.
    """
    if max_side is not None and max_side < 1:
        raise ImageError(f"max_side must be a positive number of pixels, not {max_side!r}.")

    if isinstance(source, np.ndarray):
        rgb = _array_to_rgb(source, "The image array", background)
        _check_pixels(rgb.shape[1], rgb.shape[0], max_pixels, "The image array")
        return _shrink_array(rgb, max_side)

    if isinstance(source, Image.Image):
        name = "The image"
        _check_pixels(source.width, source.height, max_pixels, name)
        return _pil_to_rgb(source, name, max_side, background)

    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "The uploaded image"
        if not data:
            raise ImageError(f"{name} is empty (0 bytes).")
        return _load_file(io.BytesIO(data), name, max_side, max_pixels, background)

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = path.name or str(path)
        if not path.exists():
            raise ImageError(f"Image file {str(path)!r} was not found.")
        if not path.is_file():
            raise ImageError(f"{name} is not a file (it is a folder or a device).")
        if path.stat().st_size == 0:
            raise ImageError(f"{name} is empty (0 bytes); it is not an image.")
        with open(path, "rb") as fh:
            return _load_file(fh, name, max_side, max_pixels, background)

    raise ImageError(
        f"Cannot load an image from a {type(source).__name__}; "
        "give a file path, image bytes, a numpy array or a PIL image."
    )


def save_image(image: np.ndarray | Image.Image, path: str | os.PathLike, *, quality: int = 95) -> Path:
    """Save an image to ``path``; the format follows the extension.

    ``image`` may be anything :func:`load_image` accepts as an array (RGB,
    RGBA, grayscale; uint8, uint16, float 0..1) or a PIL image. JPEG output
    uses ``quality``; RGBA is kept for PNG/WebP/TIFF and composited onto white
    for formats without alpha. Missing parent folders are created.

    The file appears atomically: it is written to a temporary file in the same
    folder and renamed, so a reader never sees half an image and a failure
    leaves nothing behind.

    Returns the path written. Raises :class:`ImageError` for an unknown
    extension or an unusable array.
    """
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_SAVE_FORMATS))
        raise ImageError(f"Cannot save {path.name}: unknown image extension (use one of {known}).")

    if isinstance(image, Image.Image):
        pil = image
    else:
        arr = np.asarray(image)
        keep_alpha = arr.ndim == 3 and arr.shape[-1] == 4 and fmt in ("PNG", "WEBP", "TIFF")
        if keep_alpha:
            arr = np.concatenate(
                [_array_to_rgb(arr[..., :3], "The image to save", (255, 255, 255)),
                 _to_uint8(arr[..., 3], "The image to save")[..., None]],
                axis=-1,
            )
        else:
            arr = _array_to_rgb(arr, "The image to save", (255, 255, 255))
        pil = Image.fromarray(arr)
    if fmt == "JPEG" and pil.mode not in ("RGB", "L", "CMYK"):
        pil = Image.fromarray(_pil_to_rgb(pil, path.name, None, (255, 255, 255)))

    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".part{path.suffix}")
    try:
        with os.fdopen(fd, "wb") as fh:
            pil.save(fh, format=fmt, **options)
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    return path


def to_rgb_uint8(array: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Convert a numpy image (gray, RGB, RGBA; any supported dtype) to RGB uint8.

    Same rules as :func:`load_image` for arrays, without size checks.
    """
    return _array_to_rgb(np.asarray(array), "The image array", background)


# --------------------------------------------------------------------------
# internals


def _load_file(fh, name: str, max_side, max_pixels, background) -> np.ndarray:
    # Image.open only parses the header; pixels are decoded on load(). That is
    # what lets us refuse a decompression bomb before it costs memory.
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice its limit; we have our own.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fh)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name} is too large to load safely: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image Pillow can read.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow raises these when the header itself is cut short or garbled.
        raise ImageError(f"{name} is truncated or corrupt and cannot be read ({exc}).") from None

    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageError(f"{name} has no pixels ({width}x{height}).")
        _check_pixels(width, height, max_pixels, name)
        try:
            # Big JPEGs can be decoded straight at 1/2, 1/4 or 1/8 size.
            if max_side is not None and max(width, height) > max_side and im.format == "JPEG":
                scale = max_side / max(width, height)
                im.draft(im.mode, (max(1, int(width * scale)), max(1, int(height * scale))))
            im.load()
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{name} is too large to load safely ({exc}).") from None
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
            raise ImageError(f"{name} is truncated or corrupt and cannot be decoded ({exc}).") from None
        return _pil_to_rgb(im, name, max_side, background)


def _check_pixels(width: int, height: int, max_pixels: int | None, name: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{name} is too large: {width}x{height} = {width * height / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:.1f} megapixels. Use a smaller image."
        )


def _pil_to_rgb(im: Image.Image, name: str, max_side, background) -> np.ndarray:
    """Turn a loaded PIL image of any mode into an RGB uint8 array."""
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        try:
            # Only transpose when needed: exif_transpose copies the image otherwise.
            if im.getexif().get(0x0112, 1) not in (1, None):
                im = ImageOps.exif_transpose(im) or im
        except Exception:  # a broken EXIF block should not make a photo unusable
            pass
        im = _apply_icc(im)
        if max_side is not None and max(im.size) > max_side:
            im = _resize_pil(im, max_side)
        return _array_to_rgb(_pil_to_array(im), name, background)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name} is truncated or corrupt and cannot be decoded ({exc}).") from None


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """PIL image -> numpy array keeping the bit depth (so 16-bit can be scaled)."""
    mode = im.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        # Mode "I" is 32-bit; in practice it holds 16-bit data (PNG, TIFF).
        return arr.astype(np.uint16) if arr.min() >= 0 and arr.max() <= 65535 else arr
    if mode == "F":
        return np.asarray(im)
    # CMYK, YCbCr, LAB, HSV, RGBX, ...: let Pillow convert to RGB(A).
    return np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))


def _apply_icc(im: Image.Image) -> Image.Image:
    """Convert through an embedded ICC profile to sRGB, where that is possible.

    Needed above all for CMYK, where the plain formula gives washed-out or
    inverted colours; also fixes wide-gamut (Display P3) phone photos.
    """
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        desc = (ImageCms.getProfileDescription(src) or "").lower()
        if im.mode != "CMYK" and "srgb" in desc:
            return im  # already sRGB: skip a costly no-op transform
        alpha = im.getchannel("A") if im.mode == "RGBA" else None
        base = im.convert("RGB") if im.mode == "RGBA" else im
        out = ImageCms.profileToProfile(base, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        if out is None:
            return im
        if alpha is not None:
            out.putalpha(alpha)
        return out
    except Exception:  # no LittleCMS, broken profile: fall back to the plain conversion
        return im


def _resize_pil(im: Image.Image, max_side: int) -> Image.Image:
    width, height = im.size
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if im.mode.startswith("I;16"):
        im = im.convert("I")  # not every filter supports I;16; "I" keeps the 16-bit values
    elif im.mode not in ("RGB", "RGBA", "L", "LA", "I", "F"):
        im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _shrink_array(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side is None or max(rgb.shape[:2]) <= max_side:
        return rgb
    return np.asarray(_resize_pil(Image.fromarray(rgb), max_side))


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """Scale any supported dtype to uint8 (16-bit by /257, floats from 0..1)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        # 65535 / 257 = 255 exactly: a full-range rescale, not a clip at 255.
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and not np.isfinite(arr).all():
            raise ImageError(f"{name} contains NaN or infinite values.")
        if arr.size and (arr.min() < -1e-3 or arr.max() > 1 + 1e-3):
            raise ImageError(
                f"{name} is floating point with values from {arr.min():.3g} to {arr.max():.3g}; "
                "expected 0..1. Convert it to uint8 first."
            )
        return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 255:
            return arr.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return _to_uint8(arr.astype(np.uint16), name)
        raise ImageError(f"{name} has integer values from {lo} to {hi}, outside 0..65535.")
    raise ImageError(f"{name} has an unsupported data type {arr.dtype}.")


def _array_to_rgb(arr: np.ndarray, name: str, background) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (2, 3, 4)):
        raise ImageError(
            f"{name} has shape {arr.shape}; expected (H, W), (H, W, 3) or (H, W, 4)."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{name} is empty (shape {arr.shape}).")
    arr = _to_uint8(arr, name)
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=-1))
    if arr.shape[-1] == 2:  # gray + alpha
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=-1), arr[..., 1:]], axis=-1)
    if arr.shape[-1] == 4:
        alpha = arr[..., 3:].astype(np.float32) / 255.0
        if alpha.min() >= 1.0:
            return np.ascontiguousarray(arr[..., :3])
        bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
        out = arr[..., :3].astype(np.float32) * alpha + bg * (1.0 - alpha)
        return np.round(out).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

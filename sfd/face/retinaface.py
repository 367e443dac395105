"""`RetinaFaceDetector`: facexlib's RetinaFace (ResNet-50) with weights from safetensors only.

Only facexlib's network class is used (``facexlib.detection.retinaface.RetinaFace``): its
helper code around it (alignment, ``torch.load`` without ``map_location``, ``np.float``)
is broken on numpy 2 or unpickles files, so the pre-processing, the anchors ("priors"),
the box decoding and the NMS are done here. facexlib is installed with
``pip install --no-deps facexlib`` (its declared dependencies pull the non-headless
opencv-python, which clashes with opencv-python-headless); the network path needs only
torch, torchvision, numpy, opencv, Pillow and tqdm, which sfd already has.

Weights: ``detector/retinaface_resnet50.safetensors`` inside a weights folder or a Hugging
Face Hub repo (the same layout as the model weights), or any path to such a file. Make it
from facexlib's published ``detection_Resnet50_Final.pth`` with
``python -m sfd.face.convert_retinaface IN.pth OUT.safetensors``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from sfd.errors import WeightsError
from sfd.face.detector import FaceDetector, downscale
from sfd.face.face import Face

#: Where the detector's weights live inside a weights folder or Hub repo.
RETINAFACE_FILENAME = "detector/retinaface_resnet50.safetensors"

# RetinaFace-ResNet50 anchor layout (the published model's training config): three
# feature levels with strides 8, 16, 32 and two square anchors per location.
_STEPS = (8, 16, 32)
_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
_VARIANCE = (0.1, 0.2)
# The network was trained on BGR images minus these per-channel means (Caffe style).
_BGR_MEAN = (104.0, 117.0, 123.0)


def build_retinaface_network() -> torch.nn.Module:
    """facexlib's RetinaFace-ResNet50 network, randomly initialised, on the CPU, in eval mode.

    Raises WeightsError when facexlib is not installed.
    """
    try:
        from facexlib.detection.retinaface import RetinaFace
    except ImportError as exc:
        raise WeightsError(
            "The RetinaFace detector needs facexlib: pip install --no-deps facexlib "
            f"(import failed: {exc}). Without it sfd falls back to MTCNN or OpenCV's Haar cascade."
        ) from exc
    with warnings.catch_warnings():
        # facexlib builds torchvision's resnet50 with the deprecated `pretrained=False`.
        warnings.simplefilter("ignore", UserWarning)
        net = RetinaFace(network_name="resnet50", half=False, phase="test", device=torch.device("cpu"))
    return net.eval()


def match_state_dict(
    net: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "the weights"
) -> dict[str, torch.Tensor]:
    """Check `state` against `net`'s keys and shapes and return a dict ready to load strictly.

    A ``module.`` prefix (left by DataParallel) is stripped. BatchNorm
    ``num_batches_tracked`` counters may be absent (old checkpoints lack them; they play no
    part at inference) and are then taken from `net`. Anything else missing, unexpected or
    of another shape raises WeightsError naming the keys.
    """
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape)):
            if keys:
                shown = ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise WeightsError(f"{source} do not match facexlib's RetinaFace-ResNet50 network; " + "; ".join(parts))
    out = {}
    for k, ref in expected.items():
        v = state.get(k, ref)
        if not isinstance(v, torch.Tensor):
            raise WeightsError(f"{source}: entry {k} is not a tensor ({type(v).__name__}).")
        out[k] = v.detach().to(dtype=ref.dtype).contiguous()
    return out


def resolve_retinaface_weights(weights: str | Path, revision: str | None = None) -> Path:
    """Find the RetinaFace safetensors file from a file path, a weights folder or a Hub repo id.

    - an existing ``.safetensors`` file: used as it is;
    - an existing folder: ``FOLDER/detector/retinaface_resnet50.safetensors``;
    - otherwise ``owner/name``: that file is fetched from the Hugging Face Hub
      (``hf_hub_download``, which uses the local cache first).
    Raises WeightsError saying what was looked for and where.
    """
    path = Path(weights).expanduser()
    if path.suffix in (".pth", ".pt", ".pkl", ".bin"):
        raise WeightsError(
            f"{path} is a pickle checkpoint; sfd only loads safetensors. Convert it with: "
            f"python -m sfd.face.convert_retinaface {path} retinaface_resnet50.safetensors"
        )
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / RETINAFACE_FILENAME
        if candidate.is_file():
            return candidate
        raise WeightsError(f"No RetinaFace weights in {path}: expected the file {candidate}.")
    text = str(weights)
    looks_like_repo = text.count("/") == 1 and not text.startswith((".", "/", "~")) and not path.suffix
    if not looks_like_repo:
        raise WeightsError(f"RetinaFace weights not found: {text} is neither a file, a folder nor a Hub repo id.")
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=text, filename=RETINAFACE_FILENAME, revision=revision))
    except Exception as exc:  # offline, no such repo or file, ...: say which
        raise WeightsError(
            f"Could not get {RETINAFACE_FILENAME} from the Hub repo {text}: {type(exc).__name__}: {exc}"
        ) from exc


def retinaface_priors(height: int, width: int) -> torch.Tensor:
    """Anchors of a ``height`` x ``width`` network input (both multiples of 32), in pixels.

    Returns an (N, 4) tensor of (cx, cy, w, h), in the order the network's heads emit
    them: level by level, row by row, column by column, then the two anchor sizes.
    """
    out = []
    for step, sizes in zip(_STEPS, _MIN_SIZES, strict=True):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy, cx = torch.meshgrid(
            (torch.arange(rows, dtype=torch.float32) + 0.5) * step,
            (torch.arange(cols, dtype=torch.float32) + 0.5) * step,
            indexing="ij",
        )
        centers = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, len(sizes), 2)
        wh = torch.tensor(sizes, dtype=torch.float32).reshape(1, -1, 1).expand(centers.shape[0], -1, 2)
        out.append(torch.cat([centers, wh], dim=-1).reshape(-1, 4))
    return torch.cat(out, dim=0)


def decode_retinaface(
    loc: torch.Tensor, landm: torch.Tensor, priors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn the network's regressions into boxes (N, 4: x0, y0, x1, y1) and landmarks (N, 5, 2).

    The SSD parameterisation: centre offsets in units of ``variance[0]`` x anchor size,
    log-size ratios in units of ``variance[1]``; landmarks like centres.
    """
    c, wh = priors[:, :2], priors[:, 2:]
    centers = c + loc[:, :2] * _VARIANCE[0] * wh
    sizes = wh * torch.exp(loc[:, 2:] * _VARIANCE[1])
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1)
    points = c[:, None, :] + landm.reshape(-1, 5, 2) * _VARIANCE[0] * wh[:, None, :]
    return boxes, points


class RetinaFaceDetector(FaceDetector):
    """RetinaFace-ResNet50 (facexlib's network) with weights from a safetensors file.

    Args:
        weights: a ``.safetensors`` file, a weights folder holding
            ``detector/retinaface_resnet50.safetensors``, a Hub repo id with that file,
            or an already loaded state dict.
        device: torch device (default: CUDA when available, else CPU).
        conf_threshold: minimum face probability.
        nms_threshold: IoU above which overlapping boxes are merged (kept: the best).
        max_side: the image is shrunk to this longer side first (speed on CPU; portrait
            faces are large). ``None`` runs at full size.
        revision: Hub revision, when `weights` is a repo id.
    """

    name = "retinaface"

    def __init__(
        self,
        weights: str | Path | Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        conf_threshold: float = 0.8,
        nms_threshold: float = 0.4,
        max_side: int | None = 640,
        revision: str | None = None,
    ):
        if isinstance(weights, Mapping):
            state, source = weights, "the given RetinaFace state dict"
        else:
            path = resolve_retinaface_weights(weights, revision=revision)
            source = f"the RetinaFace weights {path}"
            try:
                from safetensors.torch import load_file

                state = load_file(str(path), device="cpu")
            except Exception as exc:
                raise WeightsError(f"Could not read {path} as safetensors: {exc}") from exc
            self.weights_path = path
        net = build_retinaface_network()
        net.load_state_dict(match_state_dict(net, state, source), strict=True)
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.net = net.to(self.device).eval()
        self.conf_threshold = conf_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self._mean = torch.tensor(_BGR_MEAN, dtype=torch.float32, device=self.device).reshape(3, 1, 1)

    def _detect(self, image: np.ndarray) -> list[Face]:
        import torchvision

        small, back = downscale(image, self.max_side)
        h, w = small.shape[:2]
        # Pad to a multiple of the coarsest stride so that every level's grid is exact.
        ph, pw = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(small[:, :, ::-1])).to(self.device)  # RGB -> BGR
            x = x.permute(2, 0, 1).float() - self._mean
            # Zero padding after mean subtraction = padding with the mean colour.
            x = torch.nn.functional.pad(x, (0, pw - w, 0, ph - h))[None]
            loc, conf, landm = self.net(x)
            priors = retinaface_priors(ph, pw).to(self.device)
            if priors.shape[0] != loc.shape[1]:  # would mean another network layout
                raise WeightsError(f"RetinaFace gave {loc.shape[1]} anchors, expected {priors.shape[0]}.")
            scores = conf[0, :, 1]
            keep = scores > self.conf_threshold
            boxes, points = decode_retinaface(loc[0][keep], landm[0][keep], priors[keep])
            scores = scores[keep]
            order = torchvision.ops.nms(boxes, scores, self.nms_threshold)
            boxes, points, scores = boxes[order].cpu().numpy(), points[order].cpu().numpy(), scores[order].cpu().numpy()
        faces = []
        for b, p, s in zip(boxes, points, scores, strict=True):
            face = Face(box=tuple(float(v) for v in b), score=float(s), landmarks=p.astype(np.float64))
            faces.append(face.scaled(back))
        return faces

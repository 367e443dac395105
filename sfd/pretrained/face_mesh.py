"""MediaPipe's face mesh (468 3-D points) as a differentiable torch module.

The network is the `face_landmark.tflite` model of the `mediapipe==0.10.14` wheel (Apache-2.0,
Google): a 192 x 192 RGB face crop in, 468 points (x, y in crop pixels, z relative depth in the
same units, smaller = closer to the camera) and a face-presence logit out. Its architecture is
written below; `convert_mediapipe_wheel` reads the TFLite file once (with the `tflite` package,
needed only then) and stores the fp16 weights as float32 safetensors, so sfd runs it with torch
alone.

Coordinates: crop pixel ``i`` spans ``[i, i + 1)``, so a point at x = 96 lies in the middle of
the crop (the same convention as `sfd.face` boxes). Points from `FaceMesh.detect` are in the
pixels of the image they were cropped from.

Framing: MediaPipe feeds the model a square crop of side 1.5 x the face box, rotated so the eyes
are level (`ROI_SCALE`). `mesh_crop_transforms` builds that crop from any face box (a
`sfd.face.Face` box, or the box of a previous mesh: `rois_from_points`); `FaceMesh.detect` does
both passes, the second one on the box of the first pass's points, as MediaPipe's tracking does.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError

INPUT_SIZE = 192
NUM_POINTS = 468
ROI_SCALE = 1.5  # MediaPipe's RectTransformation scale around the face box, for detections and landmarks alike
ARCHITECTURE = "mediapipe-face-landmark-468"
WHEEL_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
SOURCE = f"mediapipe==0.10.14 wheel, {WHEEL_MEMBER} (Apache-2.0, Google)"

# Residual blocks as (TFLite depthwise index, pointwise conv index, PReLU index, in, out, stride);
# the indices name the TFLite layers the weights come from.
BACKBONE = [
    (1, 2, 2, 16, 16, 1), (2, 3, 3, 16, 16, 1), (3, 4, 4, 16, 32, 2), (4, 5, 5, 32, 32, 1),
    (5, 6, 6, 32, 32, 1), (6, 7, 7, 32, 64, 2), (7, 8, 8, 64, 64, 1), (8, 9, 9, 64, 64, 1),
    (9, 10, 10, 64, 128, 2), (10, 11, 11, 128, 128, 1), (11, 12, 12, 128, 128, 1),
    (12, 13, 13, 128, 128, 2), (13, 14, 14, 128, 128, 1), (14, 15, 15, 128, 128, 1),
]
# Each head: blocks on the backbone's 6 x 6 features, a 1x1 reduction to 32 channels (conv, PReLU),
# one more block, then a 3x3 convolution over the final 3 x 3 map.
LANDMARK_HEAD = {"blocks": [(15, 16, 16, 128, 128, 2), (16, 17, 17, 128, 128, 1), (17, 18, 18, 128, 128, 1)],
                 "reduce": (19, 19), "tail": (18, 20, 20, 32, 32, 1), "out": (21, 3 * NUM_POINTS)}
PRESENCE_HEAD = {"blocks": [(23, 28, 26, 128, 128, 2)],
                 "reduce": (29, 27), "tail": (24, 30, 28, 32, 32, 1), "out": (31, 1)}


class FaceMeshOutput(NamedTuple):
    points: torch.Tensor    # (N, 468, 3): x, y in crop pixels (0..192), z relative, same units
    presence: torch.Tensor  # (N,): probability that the crop shows a face (MediaPipe drops < 0.5)


class FaceMeshDetection(NamedTuple):
    points: torch.Tensor      # (N, 468, 3) in image pixels (z scaled like x and y)
    presence: torch.Tensor    # (N,)
    transforms: torch.Tensor  # (N, 2, 3): crop pixel (u, v, 1) -> image pixel (x, y) of the last pass
    crop_points: torch.Tensor  # (N, 468, 3) in the last crop's pixels


class _ResidualBlock(nn.Module):
    """3x3 depthwise (stride 1 or 2) and 1x1 convolution added to the input (max-pooled and zero-padded
    in channels when it shrinks or widens), then PReLU."""

    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.extra_channels = channels_out - channels_in
        self.depthwise = nn.Conv2d(channels_in, channels_in, 3, stride, padding=0 if stride == 2 else 1,
                                   groups=channels_in)
        self.pointwise = nn.Conv2d(channels_in, channels_out, 1)
        self.act = nn.PReLU(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            # TensorFlow's SAME padding of an even size at stride 2 pads only right and bottom
            y = self.depthwise(F.pad(x, (0, 1, 0, 1)))
            x = F.max_pool2d(x, 2)
        else:
            y = self.depthwise(x)
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return self.act(x + self.pointwise(y))


class _Head(nn.Module):
    def __init__(self, spec: dict):
        super().__init__()
        self.blocks = nn.Sequential(*[_ResidualBlock(i, o, s) for _, _, _, i, o, s in spec["blocks"]])
        width, reduced = spec["blocks"][-1][4], spec["tail"][3]
        self.reduce = nn.Conv2d(width, reduced, 1)
        self.reduce_act = nn.PReLU(reduced)
        self.tail = _ResidualBlock(reduced, spec["tail"][4], spec["tail"][5])
        self.out = nn.Conv2d(spec["tail"][4], spec["out"][1], 3, stride=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tail(self.reduce_act(self.reduce(self.blocks(x))))
        return self.out(x).flatten(1)


class FaceMesh(nn.Module):
    """MediaPipe's 468-point face mesh; every step is differentiable (points w.r.t. the input pixels)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2)
        self.stem_act = nn.PReLU(16)
        self.backbone = nn.Sequential(*[_ResidualBlock(i, o, s) for _, _, _, i, o, s in BACKBONE])
        self.landmark_head = _Head(LANDMARK_HEAD)
        self.presence_head = _Head(PRESENCE_HEAD)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device | None = None) -> FaceMesh:
        """The converted MediaPipe weights (default: `aux_file("face_mesh")`), in eval mode, frozen."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        from .files import aux_file

        path = Path(path) if path is not None else aux_file("face_mesh")
        with safe_open(str(path), "pt") as f:
            architecture = (f.metadata() or {}).get("architecture")
        if architecture != ARCHITECTURE:
            raise WeightsError(f"{path} holds {architecture!r}, not the face mesh ({ARCHITECTURE}); "
                               f"convert it again with `python -m sfd weights fetch-aux --only mediapipe --force`")
        model = cls()
        try:
            model.load_state_dict(load_file(str(path)))
        except RuntimeError as error:
            raise WeightsError(f"{path}: face mesh weights do not fit ({error})") from error
        model.eval().requires_grad_(False)
        return model.to(device) if device is not None else model

    def forward(self, crops: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> FaceMeshOutput:
        """Points and presence for (N, 3, 192, 192) RGB face crops.

        `value_range` is the range of `crops` (default [-1, 1], sfd's image range; (0, 1) or (0, 255)
        work too); the network itself was trained on [0, 1] (MediaPipe's ImageToTensor range).
        """
        if crops.ndim != 4 or crops.shape[1] != 3 or crops.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"FaceMesh takes (N, 3, {INPUT_SIZE}, {INPUT_SIZE}) RGB crops, got {tuple(crops.shape)}; "
                             f"use crop_images (face box) or FaceMesh.on_aligned (whole aligned faces)")
        low, high = value_range
        x = (crops.to(self.stem.weight.dtype) - low) / (high - low)
        x = self.stem_act(self.stem(F.pad(x, (0, 1, 0, 1))))
        x = self.backbone(x)
        points = self.landmark_head(x).view(-1, NUM_POINTS, 3)
        presence = torch.sigmoid(self.presence_head(x)[:, 0])
        return FaceMeshOutput(points, presence)

    def detect(self, images: torch.Tensor, boxes, angles=None, scale: float = ROI_SCALE, passes: int = 2,
               value_range: tuple[float, float] = (-1.0, 1.0)) -> FaceMeshDetection:
        """The mesh of one face per image, in image pixels.

        images: (N, 3, H, W); boxes: (N, 4) face boxes (x0, y0, x1, y1) in image pixels, e.g.
        `Face.box` of `sfd.face` (any detector's box is fine: the later passes re-frame the crop
        on the mesh itself); angles: (N,) crop rotations (see `mesh_crop_transforms`), None for
        upright. Each pass after the first crops around the previous pass's points, like
        MediaPipe's tracking, so the crop matches the framing the model was trained with.
        """
        boxes = torch.as_tensor(boxes, dtype=images.dtype, device=images.device).reshape(-1, 4)
        transforms = mesh_crop_transforms(boxes, angles, scale)
        for step in range(max(1, passes)):
            out = self(crop_images(images, transforms), value_range)
            points = points_to_image(out.points, transforms)
            if step + 1 < passes:
                # the next crop follows the points but does not pass gradients through its framing
                transforms = mesh_crop_transforms(*rois_from_points(points.detach()), scale)
        return FaceMeshDetection(points, out.presence, transforms, out.points)

    def on_aligned(self, images: torch.Tensor, fraction: float = 1.0,
                   value_range: tuple[float, float] = (-1.0, 1.0)) -> FaceMeshOutput:
        """The mesh of whole square face crops (N, 3, S, S) such as sfd's aligned 64/128/256 px faces
        (the face fills the middle), in the pixels of `images`.

        The centre square of side `fraction * S` goes to the network at 192 px (differentiable):
        1.0 resizes the whole image (antialiased when it shrinks); lower values zoom in, sampled
        like `crop_images`, for crops with a wider margin than the mesh's own 1.5 x face box
        (sfd's 256 px VoxCeleb-style crops already frame the face about as MediaPipe does).
        """
        n, _, h, w = images.shape
        if h != w:
            raise ValueError(f"on_aligned takes square images, got {h} x {w}")
        side = fraction * h
        if fraction == 1.0:
            crops = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                  antialias=h > INPUT_SIZE)
            out = self(crops, value_range)
            return FaceMeshOutput(out.points * (h / INPUT_SIZE), out.presence)
        centre = torch.full((n, 2), h / 2.0, dtype=images.dtype, device=images.device)
        box = torch.cat([centre - side / 2, centre + side / 2], dim=1)
        found = self.detect(images, box, scale=1.0, passes=1, value_range=value_range)
        return FaceMeshOutput(found.points, found.presence)


# ---------------------------------------------------------------- crops


def mesh_crop_transforms(boxes, angles=None, scale: float = ROI_SCALE, size: int = INPUT_SIZE) -> torch.Tensor:
    """(N, 2, 3) affines from crop pixels (u, v, 1) to image pixels (x, y) for MediaPipe's framing.

    The crop is a square of side `scale * max(box width, box height)` centred on the box
    (MediaPipe: scale 1.5, square_long), turned by `angles` (radians; the crop's x axis points
    along (cos a, sin a) in the image, x right and y down, so a = atan2(dy, dx) of the eye line
    from the image-left eye to the image-right eye levels the eyes; None: 0).
    """
    boxes = torch.as_tensor(boxes)
    boxes = (boxes if boxes.is_floating_point() else boxes.float()).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = scale * torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    if angles is None:
        angles = torch.zeros_like(side)
    angles = torch.as_tensor(angles, dtype=boxes.dtype, device=boxes.device).reshape(-1).expand_as(side)
    step = side / size
    cos, sin = torch.cos(angles) * step, torch.sin(angles) * step
    half = size / 2.0
    tx = centre[:, 0] - half * (cos - sin)
    ty = centre[:, 1] - half * (sin + cos)
    return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)


def crop_images(images: torch.Tensor, transforms: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """(N, 3, size, size) crops of (N, 3, H, W) `images` through `transforms` (crop -> image pixels),
    bilinear with the border repeated (as MediaPipe's ImageToTensor), differentiable w.r.t. both.

    No antialiasing: like MediaPipe, a crop much larger than `size` is sampled, not averaged.
    """
    n, _, h, w = images.shape
    transforms = transforms.to(images.dtype)
    if transforms.shape[0] != n:
        raise ValueError(f"{transforms.shape[0]} crop transforms for {n} images")
    centres = torch.arange(size, dtype=images.dtype, device=images.device) + 0.5
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    uv1 = torch.stack([u, v, torch.ones_like(u)], -1).view(1, -1, 3)
    xy = uv1 @ transforms.transpose(1, 2)  # (N, size*size, 2) image pixels, edges at integers
    grid = torch.stack([2 * xy[..., 0] / w - 1, 2 * xy[..., 1] / h - 1], -1).view(n, size, size, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def points_to_image(points: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Crop-pixel points (N, P, 2 or 3) to image pixels; z is scaled by the crop's pixel size."""
    linear = transforms[:, :, :2]
    xy = points[..., :2] @ linear.transpose(1, 2) + transforms[:, None, :, 2]
    if points.shape[-1] == 2:
        return xy
    pixel = torch.sqrt(torch.det(linear).abs())[:, None, None]
    return torch.cat([xy, points[..., 2:] * pixel], -1)


def points_to_crop(points: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Inverse of `points_to_image`: image-pixel points (N, P, 2 or 3) to crop pixels."""
    linear = transforms[:, :, :2]
    inverse = torch.linalg.inv(linear)
    xy = (points[..., :2] - transforms[:, None, :, 2]) @ inverse.transpose(1, 2)
    if points.shape[-1] == 2:
        return xy
    pixel = torch.sqrt(torch.det(linear).abs())[:, None, None]
    return torch.cat([xy, points[..., 2:] / pixel], -1)


# eye corners MediaPipe levels the crop with when tracking (subject's right eye outer, left eye outer)
_RIGHT_EYE_OUTER, _LEFT_EYE_OUTER = 33, 263


def rois_from_points(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MediaPipe's tracking box from a mesh in image pixels: the (N, 4) box of all points and the
    (N,) angle of the line between the outer eye corners; give both to `mesh_crop_transforms`."""
    xy = points[..., :2]
    boxes = torch.cat([xy.amin(1), xy.amax(1)], 1)
    eye_line = xy[:, _LEFT_EYE_OUTER] - xy[:, _RIGHT_EYE_OUTER]
    return boxes, torch.atan2(eye_line[:, 1], eye_line[:, 0])


def angles_from_eyes(left_in_image, right_in_image) -> torch.Tensor:
    """Crop angles from eye positions (N, 2) as `sfd.face.Face.landmarks[:, 0]` and `[:, 1]` give
    them (left and right as seen in the image)."""
    left = torch.as_tensor(np.asarray(left_in_image, dtype=np.float32)).reshape(-1, 2)
    right = torch.as_tensor(np.asarray(right_in_image, dtype=np.float32)).reshape(-1, 2)
    d = right - left
    return torch.atan2(d[:, 1], d[:, 0])


# ---------------------------------------------------------------- conversion


def _block_layers(prefix: str, spec: tuple) -> list[tuple[str, str, str]]:
    d, c, p = spec[:3]
    return [(f"{prefix}.depthwise", f"depthwise_conv2d_{d}", "depthwise"),
            (f"{prefix}.pointwise", f"conv2d_{c}", "conv"), (f"{prefix}.act", f"p_re_lu_{p}", "prelu")]


def _layer_table() -> list[tuple[str, str, str, str]]:
    """(torch module, TFLite layer, kind, TFLite tensor the layer reads) for every weighted layer, in
    data-flow order; the reads let the converter check that the file is wired as this code assumes."""
    rows = [("stem", "conv2d_1", "conv", "input_1"), ("stem_act", "p_re_lu_1", "prelu", "conv2d_1")]
    previous = "p_re_lu_1"

    def add_block(prefix, spec, source):
        layers = _block_layers(prefix, spec)
        # the PReLU reads the residual sum, an ADD this table does not name ("")
        for (module, layer, kind), read in zip(layers, [source, layers[0][1], ""]):
            rows.append((module, layer, kind, read))
        return layers[2][1]

    for i, spec in enumerate(BACKBONE):
        previous = add_block(f"backbone.{i}", spec, previous)
    trunk = previous
    for name, head in (("landmark_head", LANDMARK_HEAD), ("presence_head", PRESENCE_HEAD)):
        previous = trunk
        for i, spec in enumerate(head["blocks"]):
            previous = add_block(f"{name}.blocks.{i}", spec, previous)
        conv, act = head["reduce"]
        rows += [(f"{name}.reduce", f"conv2d_{conv}", "conv", previous),
                 (f"{name}.reduce_act", f"p_re_lu_{act}", "prelu", f"conv2d_{conv}")]
        previous = add_block(f"{name}.tail", head["tail"], f"p_re_lu_{act}")
        rows.append((f"{name}.out", f"conv2d_{head['out'][0]}", "conv", previous))
    return rows


def _read_tflite(buffer: bytes) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """Constant tensors by name (fp16 ones as float32), the tensor each weighted layer reads, and the
    graph's output tensor names."""
    import tflite

    model = tflite.Model.GetRootAsModel(buffer, 0)
    if model.SubgraphsLength() != 1:
        raise WeightsError(f"{WHEEL_MEMBER}: expected one subgraph, found {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.FLOAT32: np.float32,
              tflite.TensorType.INT32: np.int32}

    def name(index: int) -> str:
        return graph.Tensors(index).Name().decode()

    def constant(index: int) -> np.ndarray | None:
        tensor = graph.Tensors(index)
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        if tensor.Type() not in dtypes:
            raise WeightsError(f"{WHEEL_MEMBER}: tensor {name(index)} has unsupported type {tensor.Type()}")
        return np.frombuffer(data.tobytes(), dtype=dtypes[tensor.Type()]).reshape(tensor.ShapeAsNumpy())

    dequantized: dict[int, int] = {}
    weights: dict[str, np.ndarray] = {}
    reads: dict[str, str] = {}
    allowed = {"DEQUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MAX_POOL_2D", "PAD"}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        if kind not in allowed:
            raise WeightsError(f"{WHEEL_MEMBER}: unexpected operator {kind}; this converter knows 0.10.14's model")
        inputs, outputs = list(op.InputsAsNumpy()), list(op.OutputsAsNumpy())
        if kind == "DEQUANTIZE":
            dequantized[outputs[0]] = inputs[0]
            continue
        sources = [dequantized.get(j, j) for j in inputs]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU"):
            layer = name(outputs[0])
            for suffix, j in zip(("Kernel", "Bias") if kind != "PRELU" else ("Alpha",), sources[1:]):
                value = constant(j)
                if value is None:
                    raise WeightsError(f"{WHEEL_MEMBER}: {layer} has no constant {suffix}")
                weights[f"{layer}/{suffix}"] = value.astype(np.float32)
            reads[layer] = name(sources[0])
            if kind != "PRELU":
                options = op.BuiltinOptions()
                parsed = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
                parsed.Init(options.Bytes, options.Pos)
                if parsed.FusedActivationFunction() != 0 or parsed.DilationHFactor() != 1:
                    raise WeightsError(f"{WHEEL_MEMBER}: {layer} has a fused activation or dilation")
    outputs = [name(j) for j in graph.OutputsAsNumpy()]
    return weights, reads, outputs


def convert_face_landmark_tflite(buffer: bytes) -> dict[str, torch.Tensor]:
    """The torch state dict of `FaceMesh` from the bytes of face_landmark.tflite."""
    try:
        weights, reads, outputs = _read_tflite(buffer)
    except ImportError as error:
        raise WeightsError("converting the face mesh needs the TFLite flatbuffer reader: `pip install tflite`") from error
    except (struct.error, IndexError, ValueError, AttributeError, TypeError) as error:
        raise WeightsError(f"{WHEEL_MEMBER}: not a readable TFLite model ({error})") from error
    if sorted(outputs) != ["conv2d_21", "conv2d_31"]:
        raise WeightsError(f"{WHEEL_MEMBER}: outputs {outputs}, expected conv2d_21 (points) and conv2d_31 (presence)")
    state: dict[str, torch.Tensor] = {}
    used = set()
    for module, layer, kind, read in _layer_table():
        if layer not in reads:
            raise WeightsError(f"{WHEEL_MEMBER}: layer {layer} is missing")
        actual = reads[layer]
        if read and actual != read:
            raise WeightsError(f"{WHEEL_MEMBER}: {layer} reads {actual}, expected {read}")
        if kind == "prelu":
            state[f"{module}.weight"] = torch.from_numpy(weights[f"{layer}/Alpha"].reshape(-1).copy())
            used.add(f"{layer}/Alpha")
            continue
        kernel = weights[f"{layer}/Kernel"]
        # TFLite: convolutions O,H,W,I and depthwise 1,H,W,C; torch: O,I,H,W and C,1,H,W
        kernel = kernel.transpose(3, 0, 1, 2) if kind == "depthwise" else kernel.transpose(0, 3, 1, 2)
        state[f"{module}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel))
        state[f"{module}.bias"] = torch.from_numpy(weights[f"{layer}/Bias"].copy())
        used.update({f"{layer}/Kernel", f"{layer}/Bias"})
    unused = sorted(set(weights) - used)
    if unused:
        raise WeightsError(f"{WHEEL_MEMBER}: weights this port does not use: {unused[:5]}")
    expected = FaceMesh().state_dict()
    for key, value in expected.items():
        if key not in state or tuple(state[key].shape) != tuple(value.shape):
            got = tuple(state[key].shape) if key in state else None
            raise WeightsError(f"{WHEEL_MEMBER}: {key} has shape {got}, FaceMesh needs {tuple(value.shape)}")
    return state


def convert_mediapipe_wheel(archive: Path, cache: Path) -> list[Path]:
    """Write `face_mesh.safetensors` into `cache` from the mediapipe wheel `archive`; returns [that file]."""
    from .files import AUX_FILES, save_converted

    try:
        with zipfile.ZipFile(archive) as wheel:
            buffer = wheel.read(WHEEL_MEMBER)
            licence = next((n for n in wheel.namelist() if n.endswith(".dist-info/LICENSE")), None)
            licence_text = wheel.read(licence).decode("utf-8", "replace") if licence else ""
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise WeightsError(f"{archive}: not a mediapipe wheel with {WHEEL_MEMBER} ({error})") from error
    if "Apache License" not in licence_text:
        raise WeightsError(f"{archive}: the wheel's licence is not Apache-2.0 as expected; not converting")
    state = convert_face_landmark_tflite(buffer)
    dst = Path(cache) / AUX_FILES["face_mesh"][0]
    return [save_converted(state, dst, ARCHITECTURE, json.dumps({"from": SOURCE, "licence": "Apache-2.0",
                                                                  "archive": Path(archive).name}))]


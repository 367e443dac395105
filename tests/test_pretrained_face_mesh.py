"""The torch port of MediaPipe's face mesh: agreement with Google's runtime, crops, regions, measures.

Needs the converted weights (`python -m sfd weights fetch-aux --only mediapipe`) and the shared face
data (../shared/data); skips otherwise. The live comparison with Google's runtime also needs
`pip install ai-edge-litert==2.3.0` and the mediapipe wheel in $SFD_AUX_ARCHIVES (the folder that
`fetch-aux --from` takes); without them the stored reference (tests/data/face_mesh_reference.npz,
made by tests/data/make_face_mesh_reference.py with that runtime) is used.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sfd.errors import WeightsError
from sfd.pretrained import face_mesh_regions as regions
from sfd.pretrained.face_mesh import (
    FaceMesh,
    convert_face_landmark_tflite,
    convert_mediapipe_wheel,
    crop_images,
    mesh_crop_transforms,
    points_to_crop,
    points_to_image,
    rois_from_points,
)

from conftest import TALKING_HEADS

DATA = Path(__file__).resolve().parent / "data"
SHARED = TALKING_HEADS.parent
CLIPS = SHARED / "talking-heads" / "clips"
TALKING = CLIPS / "055_dreamtalk-m030-front-neutral-level1-001.mp4"  # frames looked at: 6 open, 90 closed
FRONTAL = CLIPS / "001_styletalk-kristinoem.mp4"
TURNED = CLIPS / "004_styletalk-feifeili-clip1.mp4"  # frame 0 looks about 17 degrees to one side


def _reference_module():
    spec = importlib.util.spec_from_file_location("make_face_mesh_reference", DATA / "make_face_mesh_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    try:
        return FaceMesh.from_pretrained()
    except WeightsError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def reference():
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    module = _reference_module()
    stored = dict(np.load(DATA / "face_mesh_reference.npz"))
    crops = [module.reference_crop(module.load_image(str(f), int(i)), b, float(a))
             for f, i, b, a in zip(stored["files"], stored["frames"], stored["boxes"], stored["angles"])]
    return module, stored, np.stack(crops)


def _frame(path: Path, index: int) -> np.ndarray:
    if not path.is_file():
        pytest.skip(f"{path} not found")
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = capture.read()
    capture.release()
    assert ok, f"cannot read frame {index} of {path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _tensor(*images: np.ndarray) -> torch.Tensor:
    """RGB uint8 images to sfd's (N, 3, H, W) [-1, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _crops01(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()


def _mediapipe_wheel() -> Path | None:
    folder = os.environ.get("SFD_AUX_ARCHIVES")
    found = sorted(Path(folder).glob("mediapipe-0.10.14-*.whl")) if folder else []
    return found[-1] if found else None


# ---------------------------------------------------------------- the port vs Google's runtime


def test_port_matches_stored_runtime_reference(mesh, reference):
    _, stored, crops = reference
    with torch.no_grad():
        out = mesh(_crops01(crops), value_range=(0.0, 1.0))
    error = np.linalg.norm(out.points[..., :2].numpy() - stored["points"][..., :2], axis=-1)
    assert error.mean() < 0.01 and error.max() < 0.1, (error.mean(), error.max())
    assert np.abs(out.points[..., 2].numpy() - stored["points"][..., 2]).max() < 0.1
    assert np.allclose(out.presence.numpy(), stored["presence"], atol=1e-4)


def test_port_matches_runtime_live(mesh, reference):
    pytest.importorskip("ai_edge_litert")
    wheel = _mediapipe_wheel()
    if wheel is None:
        pytest.skip("set $SFD_AUX_ARCHIVES to a folder with the mediapipe 0.10.14 wheel for the live comparison")
    module, _, crops = reference
    noise = np.random.default_rng(0).random((1, 192, 192, 3), dtype=np.float32)
    inputs = np.concatenate([crops, noise])
    points, presence = module.run_litert(module.model_from_wheel(wheel), list(inputs))
    with torch.no_grad():
        out = mesh(_crops01(inputs), value_range=(0.0, 1.0))
    error = np.linalg.norm(out.points.numpy() - points, axis=-1)
    assert error.mean() < 1e-3 and error.max() < 1e-2, (error.mean(), error.max())
    assert np.allclose(out.presence.numpy(), presence, atol=1e-5)
    assert presence[-1] < 0.5 < presence[:-1].min()  # noise is not a face


def test_conversion_from_wheel_equals_cached_file(mesh, tmp_path):
    wheel = _mediapipe_wheel()
    if wheel is None:
        pytest.skip("set $SFD_AUX_ARCHIVES to a folder with the mediapipe 0.10.14 wheel")
    (written,) = convert_mediapipe_wheel(wheel, tmp_path)
    fresh = FaceMesh.from_pretrained(written).state_dict()
    for key, value in mesh.state_dict().items():
        assert torch.equal(fresh[key], value), key


def test_conversion_refuses_other_archives(tmp_path):
    bogus = tmp_path / "mediapipe-0.10.14-none.whl"
    with zipfile.ZipFile(bogus, "w") as archive:
        archive.writestr("mediapipe/__init__.py", "")
    with pytest.raises(WeightsError, match="face_landmark.tflite"):
        convert_mediapipe_wheel(bogus, tmp_path)
    with pytest.raises(WeightsError, match="TFLite"):
        convert_face_landmark_tflite(b"not a flatbuffer" * 8)


def test_value_ranges_agree(mesh, reference):
    _, _, crops = reference
    x01 = _crops01(crops[:2])
    with torch.no_grad():
        a = mesh(x01, value_range=(0.0, 1.0)).points
        b = mesh(x01 * 2 - 1).points
        c = mesh(x01 * 255, value_range=(0.0, 255.0)).points
    assert torch.allclose(a, b, atol=1e-3) and torch.allclose(a, c, atol=1e-3)


# ---------------------------------------------------------------- crops


def test_torch_crop_matches_opencv_crop(reference):
    module, stored, crops = reference
    for i in (0, 4):  # a still and a 720 px frame with a turned crop
        image = module.load_image(str(stored["files"][i]), int(stored["frames"][i]))
        transform = mesh_crop_transforms(torch.from_numpy(stored["boxes"][i : i + 1]),
                                         torch.tensor([float(stored["angles"][i])]))
        crop = crop_images(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0, transform)
        difference = (crop[0].permute(1, 2, 0).numpy() - crops[i])
        assert np.abs(difference).mean() < 1e-3 and np.abs(difference).max() < 0.02


def test_crop_point_mapping_round_trip():
    boxes = torch.tensor([[10.0, 20.0, 110.0, 140.0], [300.0, 50.0, 400.0, 150.0]])
    transforms = mesh_crop_transforms(boxes, torch.tensor([0.3, -1.0]))
    crop_points = torch.rand(2, 468, 3) * 192
    back = points_to_crop(points_to_image(crop_points, transforms), transforms)
    assert torch.allclose(back, crop_points, atol=1e-3)
    centre = points_to_image(torch.full((2, 1, 2), 96.0), transforms)[:, 0]
    assert torch.allclose(centre, (boxes[:, :2] + boxes[:, 2:]) / 2, atol=1e-4)
    corner = points_to_image(torch.zeros(1, 1, 2), mesh_crop_transforms(boxes[:1]))[0, 0]
    # upright crop: side 1.5 x the longer box side (120), centred on the box
    assert torch.allclose(corner, torch.tensor([60.0 - 90.0, 80.0 - 90.0]), atol=1e-4)


def test_detect_in_full_frame_agrees_with_reference(mesh, reference):
    module, stored, _ = reference
    i = 4  # 720 px TV frame, face about 100 px wide
    image = module.load_image(str(stored["files"][i]), int(stored["frames"][i]))
    box = torch.from_numpy(stored["boxes"][i : i + 1]).clone()
    box += torch.tensor([6.0, -5.0, 10.0, 3.0])  # a rougher box, as a detector would give
    with torch.no_grad():
        found = mesh.detect(_tensor(image), box, passes=3)
    expected = points_to_image(torch.from_numpy(stored["points"][i : i + 1]),
                               mesh_crop_transforms(torch.from_numpy(stored["boxes"][i : i + 1]),
                                                    torch.tensor([float(stored["angles"][i])])))
    error = (found.points[..., :2] - expected[..., :2]).norm(dim=-1)
    side = float(stored["boxes"][i, 2] - stored["boxes"][i, 0])
    assert found.presence.item() > 0.9
    assert error.mean() < 0.02 * side, (error.mean(), side)
    box_again, _ = rois_from_points(found.points)
    assert (box_again[0, :2] > 0).all() and (box_again[0, 2:] < torch.tensor([image.shape[1], image.shape[0]])).all()


def test_on_aligned_resizes_whole_crops(mesh):
    image = _frame(FRONTAL, 0)  # 256 px aligned crop
    x = _tensor(image)
    with torch.no_grad():
        whole = mesh.on_aligned(x)
        zoomed = mesh.on_aligned(x, fraction=0.9)
    assert whole.points.shape == (1, 468, 3) and whole.presence.item() > 0.9
    # the face lies in the middle of the crop, in the crop's own pixels
    box, _ = rois_from_points(whole.points)
    assert (box[0, :2] > 20).all() and (box[0, 2:] < 250).all()
    assert (whole.points[..., :2] - zoomed.points[..., :2]).norm(dim=-1).mean() < 3.0
    # sfd's 64 px training crops give the same mesh, in their own pixels
    small = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        from_small = mesh.on_aligned(small).points * 4
    assert (from_small[..., :2] - whole.points[..., :2]).norm(dim=-1).mean() < 2.0


# ---------------------------------------------------------------- regions and measures


def test_open_mouth_measures_larger_than_closed(mesh):
    images = _tensor(_frame(TALKING, 6), _frame(TALKING, 90))
    with torch.no_grad():
        points = mesh.on_aligned(images).points
    opened, closed = regions.mouth_opening(points).tolist()
    assert opened > 0.15 and closed < 0.08 and opened > 3 * closed, (opened, closed)
    width = regions.mouth_width(points)
    assert ((width > 0.4) & (width < 0.9)).all()  # mouth corners vs outer eye corners


def test_regions_lie_where_they_belong(mesh):
    image = _frame(FRONTAL, 0)
    with torch.no_grad():
        points = mesh.on_aligned(_tensor(image)).points
    size = image.shape[0]
    outer = regions.mouth_mask(points, size)[0, 0]
    inner_xy = points[0, regions.INNER_LIPS, :2].long().clamp(0, size - 1)
    assert outer[inner_xy[:, 1], inner_xy[:, 0]].all()  # the inner lips lie inside the outer lips
    p = points[0]
    left_eye, right_eye = p[regions.LEFT_EYE, :2].mean(0), p[regions.RIGHT_EYE, :2].mean(0)
    assert left_eye[0] > right_eye[0] + 20  # the subject's left eye is on the image's right
    assert p[regions.LEFT_BROW, 1].mean() < p[regions.LEFT_EYE, 1].mean()
    assert p[regions.RIGHT_BROW, 1].mean() < p[regions.RIGHT_EYE, 1].mean()
    eyes_y, nose_y = p[regions.RIGHT_EYE + regions.LEFT_EYE, 1].mean(), p[regions.NOSE_TIP, 1]
    assert eyes_y < nose_y < p[regions.OUTER_LIPS, 1].mean() < p[regions.CHIN, 1]  # top to bottom
    assert p[regions.NOSE_TIP, 2] < p[[234, 454], 2].min()  # the nose is nearer the camera than the cheeks
    oval = regions.region_mask(points, "face_oval", size)
    eyes = regions.eyes_mask(points, size)
    assert 20 < eyes.sum() < 0.05 * size * size and (eyes * (1 - oval)).sum() == 0
    left, right = regions.eye_opening(points)
    assert 0.15 < left.item() < 0.5 and 0.15 < right.item() < 0.5
    brow_left, brow_right = regions.brow_height(points)
    assert 0.1 < brow_left.item() < 0.4 and abs(brow_left.item() - brow_right.item()) < 0.05
    assert (regions.face_centre(points) - size / 2).abs().max() < 0.15 * size
    assert 0.2 * size < regions.face_scale(points).item() < 0.5 * size


def test_eye_areas_keep_a_closing_eye_inside(mesh):
    """The eye area (lids up to the brow) holds the eye's own contour and keeps its size when the
    lids meet, where the eye contour shrinks to nothing: a loss weighted by it still sees a blink."""
    image = _frame(FRONTAL, 0)
    with torch.no_grad():
        points = mesh.on_aligned(_tensor(image)).points
    size = image.shape[0]
    eyes, areas = regions.eyes_mask(points, size), regions.eyes_mask(points, size, with_lids=True)
    assert (eyes * (1 - areas)).sum() <= 0.05 * eyes.sum()  # the open eye lies inside its area
    assert areas.sum() > 2 * eyes.sum() and (areas * (1 - regions.region_mask(points, "face_oval", size))).sum() == 0
    closed = points.clone()
    for contour in (regions.LEFT_EYE, regions.RIGHT_EYE):
        # the upper lid (the contour's second part) comes down onto the lower lid's lowest point
        closed[0, contour[9:], 1] = points[0, contour[:9], 1].max()
    assert regions.eyes_mask(closed, size).sum() < 0.2 * eyes.sum()  # the eye contour nearly vanishes
    closed_areas = regions.eyes_mask(closed, size, with_lids=True)
    assert closed_areas.sum() > 0.8 * areas.sum()
    assert (eyes * (1 - closed_areas)).sum() <= 0.2 * eyes.sum()  # where the open eye was is still covered


def test_polygon_masks_hard_and_soft():
    square = torch.tensor([[[2.0, 2.0], [10.0, 2.0], [10.0, 6.0], [2.0, 6.0]]], requires_grad=True)
    hard = regions.polygon_mask(square, (8, 12))
    assert hard.shape == (1, 1, 8, 12) and hard.sum().item() == 32
    soft = regions.polygon_mask(square, (8, 12), softness=0.25)
    assert abs(soft.sum().item() - 32) < 2 and soft[0, 0, 4, 6] > 0.95 and soft[0, 0, 0, 0] < 0.05
    soft.sum().backward()
    assert square.grad.abs().sum() > 0
    scaled = regions.region_mask(square.detach().expand(1, 4, 2), [0, 1, 2, 3], 24, points_size=(8, 12))
    assert scaled.shape == (1, 1, 24, 24) and scaled.sum().item() == 32 * 2 * 3


def test_roll_follows_image_rotation(mesh):
    image = _frame(FRONTAL, 0)
    h, w = image.shape[:2]
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), 10.0, 1.0), (w, h),
                            borderMode=cv2.BORDER_REPLICATE)  # +10 degrees: counter-clockwise
    with torch.no_grad():
        pose = regions.head_pose(mesh.on_aligned(_tensor(image, turned)).points)
    change = (pose[1] - pose[0]).tolist()
    assert abs(change[2] - 10.0) < 2.0, change
    assert abs(change[0]) < 3.0 and abs(change[1]) < 3.0, change


def test_mirroring_negates_yaw(mesh):
    image = _frame(TURNED, 0)
    with torch.no_grad():
        pose = regions.head_pose(mesh.on_aligned(_tensor(image, image[:, ::-1].copy())).points)
    yaw, yaw_mirrored = pose[:, 0].tolist()
    assert abs(yaw) > 8.0, yaw
    # the network is not exactly mirror-symmetric: a few degrees of difference remain
    assert abs(yaw + yaw_mirrored) < max(3.0, 0.2 * abs(yaw)), (yaw, yaw_mirrored)
    assert abs(pose[0, 1] - pose[1, 1]) < 3.0 and abs(pose[0, 2] + pose[1, 2]) < 3.0


def test_head_rotation_is_a_rotation():
    points = torch.randn(3, 468, 3) * 50
    r = regions.head_rotation(points)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)
    assert torch.allclose(torch.det(r), torch.ones(3), atol=1e-5)


# ---------------------------------------------------------------- gradients


def test_gradients_reach_the_input(mesh):
    image = _tensor(_frame(FRONTAL, 0)).requires_grad_(True)
    out = mesh.on_aligned(image)
    loss = regions.mouth_opening(out.points).sum() + out.points[..., :2].mean()
    loss.backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in mesh.parameters())

    crop = torch.rand(2, 3, 192, 192, requires_grad=True)
    mesh(crop).points.sum().backward()
    assert crop.grad.abs().sum() > 0

    frame = _tensor(_frame(FRONTAL, 0)).requires_grad_(True)
    found = mesh.detect(frame, torch.tensor([[60.0, 50.0, 200.0, 220.0]]), passes=2)
    regions.mouth_mask(found.points, 64, points_size=256, softness=1.0).sum().backward()
    assert frame.grad.abs().sum() > 0

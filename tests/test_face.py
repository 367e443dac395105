"""Tests of sfd.face: detection, crop boxes, crop/paste-back, RetinaFace weights (box smoothing and
tracking over video: test_face_tracker.py).

Real portraits come from the shared face set (read in place, never copied); those tests
skip when it is absent. RetinaFace is tested with randomly initialised weights (no
download) and skips when facexlib is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sfd.errors import ImageError, NoFaceError, WeightsError
from sfd.face import (
    RETINAFACE_FILENAME,
    CropBox,
    Face,
    FaceDetector,
    HaarCascadeDetector,
    MTCNNDetector,
    as_rgb,
    box_iou,
    crop,
    feather_mask,
    find_face,
    load_face_detector,
    paste_back,
)
from sfd.face.paste import FLOW_DEAD_ZONE, SURROUND_MARGIN, move_surroundings

FACES = Path(__file__).parents[1].parent / "shared/data/faces"
needs_faces = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared face set not found at {FACES}")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked in sys.modules
        return False


HAS_MTCNN = _installed("facenet_pytorch")
HAS_FACEXLIB = _installed("facexlib")
needs_facexlib = pytest.mark.skipif(
    not HAS_FACEXLIB, reason="facexlib is not installed (pip install --no-deps facexlib)"
)

# Face boxes read off the pictures by eye (grid overlay, zoomed): cheek to cheek, hairline
# to chin, in the image's pixels.
EYE_BOXES = {
    "liveportrait/source/s12.jpg": (125, 100, 258, 275),  # Einstein photo, 375x500
    "liveportrait/driving/d30.jpg": (160, 170, 338, 415),  # woman, hand on cheek, 600x900
}
PORTRAITS = [
    "lia-vox/macron.png",
    "lia-vox/monroe.png",
    "liveportrait/source/s12.jpg",
    "liveportrait/source/s9.jpg",
    "liveportrait/driving/d30.jpg",
]


def load_rgb(rel: str) -> np.ndarray:
    image = cv2.imread(str(FACES / rel), cv2.IMREAD_COLOR)
    assert image is not None, rel
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def landscape(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A face-free landscape: gradient sky, soft clouds, a mountain ridge, noisy ground."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    sky = (1 - y) * np.array([60, 120, 220], np.float32) + y * np.array([200, 220, 245], np.float32)
    image = np.broadcast_to(sky, (height, width, 3)).copy()
    clouds = cv2.GaussianBlur(rng.random((height, width), dtype=np.float32), (0, 0), 25)
    clouds = np.clip((clouds - clouds.mean()) * 8, 0, 1)[:, :, None]
    image = image * (1 - clouds) + 250 * clouds
    xs = np.arange(width)
    ridge = (0.55 * height + 40 * np.sin(xs / 70.0) + 20 * np.sin(xs / 23.0 + 1)).astype(int)
    rows = np.arange(height)[:, None]
    mountain = rows >= ridge[None, :]
    image[mountain] = np.array([90, 100, 110], np.float32)
    ground = rows >= int(0.75 * height)
    grass = np.array([70, 120, 50], np.float32) + rng.normal(0, 25, (height, width, 3)).astype(np.float32)
    image = np.where(ground[:, :, None], grass, image)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=["haar", "mtcnn"])
def detector(request) -> FaceDetector:
    if request.param == "mtcnn" and not HAS_MTCNN:
        pytest.skip("facenet-pytorch is not installed (pip install --no-deps facenet-pytorch)")
    return HaarCascadeDetector() if request.param == "haar" else MTCNNDetector()


# --------------------------------------------------------------------------- detection


@needs_faces
@pytest.mark.parametrize("rel", PORTRAITS)
def test_fallback_detector_finds_the_face(detector, rel):
    image = load_rgb(rel)
    faces = detector.detect(image)
    assert faces, f"{detector.name} found no face on {rel}"
    face = faces[0]
    h, w = image.shape[:2]
    # A portrait's face is a sizeable part of the picture and lies inside it.
    assert 0.08 * min(h, w) < face.width < min(h, w)
    cx, cy = face.center
    assert 0 < cx < w and 0 < cy < h
    assert detector.name in ("haar", "mtcnn")
    if detector.name == "mtcnn":
        assert face.landmarks is not None and face.landmarks.shape == (5, 2)
        # Eyes above the mouth, left eye left of the right eye.
        assert face.landmarks[0, 0] < face.landmarks[1, 0]
        assert face.landmarks[:2, 1].max() < face.landmarks[3:, 1].min()


@needs_faces
@pytest.mark.parametrize("rel", sorted(EYE_BOXES))
def test_detected_box_and_crop_box_lie_on_the_face(detector, rel):
    image = load_rgb(rel)
    face = detector.detect_single(image)
    eye = EYE_BOXES[rel]
    assert box_iou(face.box, eye) > 0.5, (detector.name, face.box, eye)
    box = CropBox.from_face(face)
    # The crop holds the whole face, with margin, and is centred on it.
    assert box.x0 < eye[0] and box.y0 < eye[1] and box.x1 > eye[2] and box.y1 > eye[3]
    eye_cx, eye_cy, eye_side = (eye[0] + eye[2]) / 2, (eye[1] + eye[3]) / 2, eye[2] - eye[0]
    assert abs(box.cx - eye_cx) < 0.15 * eye_side and abs(box.cy - eye_cy) < 0.25 * eye_side
    assert 1.5 * eye_side < box.side < 3.0 * eye_side


def test_no_face_on_a_landscape(detector):
    image = landscape()
    assert detector.detect(image) == []
    with pytest.raises(NoFaceError, match="No face was found"):
        detector.detect_single(image)
    with pytest.raises(NoFaceError, match="No face was found"):
        find_face(image, detector)


@needs_faces
@pytest.mark.skipif(not HAS_MTCNN, reason="facenet-pytorch is not installed")
def test_mtcnn_ignores_an_animal_face():
    assert MTCNNDetector().detect(load_rgb("liveportrait/source/s39.jpg")) == []  # a cat


@needs_faces
def test_grayscale_images_are_detected(detector):
    gray = cv2.cvtColor(load_rgb("lia-vox/macron.png"), cv2.COLOR_RGB2GRAY)
    for image in (gray, gray[:, :, None]):
        assert detector.detect(image), detector.name


def test_as_rgb_accepts_gray_and_rgba_and_rejects_the_rest():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_rgb(gray).shape == (3, 4, 3)
    assert (as_rgb(gray)[:, :, 2] == gray).all()
    assert as_rgb(np.zeros((3, 4, 4), np.uint8)).shape == (3, 4, 3)
    with pytest.raises(ImageError):
        as_rgb(np.zeros((3, 4, 3), np.float32))
    with pytest.raises(ImageError):
        as_rgb(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ImageError):
        as_rgb(np.zeros((3, 4, 2), np.uint8))


def test_faces_are_sorted_largest_first():
    class Fake(FaceDetector):
        name = "fake"

        def _detect(self, image):
            return [Face((0, 0, 10, 10), 0.9), Face((0, 0, 50, 40), 0.5), Face((5, 5, 30, 30), 0.99)]

    faces = Fake().detect(np.zeros((64, 64, 3), np.uint8))
    assert [f.area for f in faces] == [2000, 625, 100]


def test_load_face_detector_falls_back_and_says_why(tmp_path):
    det = load_face_detector()
    assert det.name == ("mtcnn" if HAS_MTCNN else "haar")
    assert "retinaface" in det.fallback_reasons
    det = load_face_detector(tmp_path)  # a folder without the detector file
    assert det.name in ("mtcnn", "haar")
    assert str(tmp_path / RETINAFACE_FILENAME) in det.fallback_reasons["retinaface"] or not HAS_FACEXLIB
    assert load_face_detector(prefer="haar").name == "haar"
    assert load_face_detector(prefer=["haar", "mtcnn"]).name == "haar"
    with pytest.raises(WeightsError):
        load_face_detector(None, prefer="retinaface")
    with pytest.raises(ValueError, match="Unknown face detector"):
        load_face_detector(prefer="yolo")


# --------------------------------------------------------------------------- crop and paste


def test_crop_box_from_face_box():
    box = CropBox.from_face((100, 100, 200, 200), scale=2.0, offset_x=0.1, offset_y=-0.05)
    assert box.side == pytest.approx(200)
    assert (box.cx, box.cy) == pytest.approx((150 + 20, 150 - 10))
    assert box.box == pytest.approx((70, 40, 270, 240))
    tall = CropBox.from_face(Face((0, 0, 100, 144), 1.0), scale=1.0, offset_y=0.0)
    assert tall.side == pytest.approx(120)  # sqrt(100 * 144)
    with pytest.raises(ValueError):
        CropBox.from_face((10, 10, 10, 20))
    full = CropBox.full_frame(256, 256)
    assert full.box == pytest.approx((0, 0, 256, 256))


def test_crop_matrix_maps_box_corners_and_inverts():
    box = CropBox(123.4, 210.7, 333.3)
    m, inv = box.matrix(256), box.inverse_matrix(256)
    # Box borders (pixel edges) land on the crop's borders: edge x = centre - 0.5 in OpenCV.
    corner = m @ np.array([box.x0 - 0.5, box.y0 - 0.5, 1.0])
    assert corner == pytest.approx([-0.5, -0.5])
    corner = m @ np.array([box.x1 - 0.5, box.y1 - 0.5, 1.0])
    assert corner == pytest.approx([255.5, 255.5])
    pts = np.array([[10.0, 20.0, 1.0], [300.0, 5.0, 1.0]])
    back = (inv @ np.c_[(m @ pts.T).T, np.ones(2)].T).T
    assert back == pytest.approx(pts[:, :2])


def test_crop_of_an_aligned_box_is_a_plain_slice():
    image = landscape(200, 300)
    box = CropBox(100.0 + 32, 50.0 + 32, 64.0)
    assert np.array_equal(crop(image, box, 64), image[50:114, 100:164])


def test_crop_pads_outside_the_image():
    image = np.full((100, 100, 3), 200, np.uint8)
    image[:, :50] = 50
    box = CropBox(0.0, 50.0, 100.0)  # left half outside the image
    edge = crop(image, box, 100, border="edge")
    assert (edge[:, :50] == 50).all()
    const = crop(image, box, 100, border="constant", fill=0)
    assert (const[:, :48] == 0).all() and (const[:, 52:] == 50).all()
    mirrored = crop(image, box, 100, border="reflect")
    assert mirrored.shape == (100, 100, 3)
    with pytest.raises(ValueError):
        crop(image, box, 100, border="wrap")


def test_large_downscale_crop_is_antialiased():
    # 1-pixel stripes shrunk 8x must come out as flat grey, not as random stripes.
    image = np.zeros((1024, 1024, 3), np.uint8)
    image[:, ::2] = 255
    out = crop(image, CropBox(512.0, 512.0, 1024.0), 128)
    inner = out[8:-8, 8:-8].astype(int)
    assert abs(inner.mean() - 127.5) < 3 and inner.std() < 3


def test_crop_then_paste_back_reproduces_the_source_exactly_for_an_aligned_box():
    image = landscape(240, 320, seed=1)
    box = CropBox(150.0, 110.0, 128.0)
    out = paste_back(image, crop(image, box, 128), box)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).max() <= 1


def test_a_box_moved_onto_pixels_is_cropped_and_pasted_back_without_resampling():
    # A box a fraction of a pixel off is interpolated twice, crop and paste, which blurs fine
    # detail (white noise loses a few grey levels on average); on pixel borders both are copies.
    image = np.random.default_rng(3).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    box = CropBox(150.3, 140.7, 121.4)
    aligned = box.on_pixels()
    assert aligned.side == 121 and aligned.x0 == 90 and aligned.y0 == 80
    assert abs(aligned.cx - box.cx) <= 0.5 and abs(aligned.cy - box.cy) <= 0.5
    side = int(aligned.side)
    assert np.array_equal(crop(image, aligned, side), image[80:201, 90:211])
    assert np.array_equal(paste_back(image, crop(image, aligned, side), aligned), image)
    off = paste_back(image, crop(image, box, side), box)
    assert np.abs(off.astype(int) - image).mean() > 1.0  # what the alignment saves


def test_a_crop_whose_content_moved_is_pasted_back_without_a_seam():
    # The animated crop shows the scene moved by (9, -6) px (a head that moved took its crop's
    # border with it). Faded in alone, two images misaligned by that overlap at the border; with
    # the crop's flow the image around the box moves with it, and far from the box stays as it was.
    rng = np.random.default_rng(4)
    image = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3)).astype(np.float32), (0, 0), 1.5)
    image = np.clip((image - 127.5) * 6 + 127.5, 0, 255).astype(np.uint8)  # texture a misfit shows in
    box = CropBox(200.0, 150.0, 120.0)
    shift = np.array([9.0, -6.0])
    moved_crop = crop(image, CropBox(box.cx + shift[0], box.cy + shift[1], box.side), 120)
    flow = np.broadcast_to((shift / box.side)[:, None, None], (2, 16, 16)).astype(np.float32)
    seamless, faded = paste_back(image, moved_crop, box, flow=flow), paste_back(image, moved_crop, box)
    # the ideal near the box: the whole image moved by the shift
    ideal = cv2.warpAffine(image, np.float32([[1, 0, -shift[0]], [0, 1, -shift[1]]]), (400, 300),
                           flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE).astype(int)
    band = np.zeros((300, 400), bool)  # where the crop fades into the image, and 2 px beyond
    band[88:212, 138:262] = True
    band[102:198, 152:248] = False
    err = {name: np.abs(out.astype(int) - ideal)[band].mean() for name, out in
           (("seamless", seamless), ("faded", faded), ("untouched", image))}
    assert err["seamless"] < 0.25 * err["faded"], err
    assert err["seamless"] < 0.25 * err["untouched"], err
    reach = box.side * (1 + 2 * SURROUND_MARGIN) / 2 + 1  # beyond it the image keeps its pixels
    far = np.ones((300, 400), bool)
    far[int(150 - reach):int(150 + reach) + 1, int(200 - reach):int(200 + reach) + 1] = False
    assert np.array_equal(seamless[far], image[far])
    # a motion under the dead zone (the flow's jitter) moves nothing: the plain paste-back
    still = np.full((2, 16, 16), 0.5 * FLOW_DEAD_ZONE, np.float32)
    assert np.array_equal(paste_back(image, moved_crop, box, flow=still), faded)


def test_the_picture_moved_at_the_image_edge_stretches_instead_of_streaking():
    # A face at the image's left edge moves right: the picture there would come from beyond the
    # edge, and repeating the edge column draws horizontal streaks. It stretches instead, and a
    # little way in it moves by the whole shift.
    rng = np.random.default_rng(5)
    image = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3)).astype(np.float32), (0, 0), 1.5)
    image = np.clip((image - 127.5) * 6 + 127.5, 0, 255).astype(np.uint8)
    box = CropBox(60.0, 150.0, 120.0)  # its left side on the image's edge
    shift = 9.0
    flow = np.zeros((2, 16, 16), np.float32)
    flow[0] = -(shift / box.side + FLOW_DEAD_ZONE)  # each point's content came from 9 px to its left
    moved = move_surroundings(image, box, flow).astype(int)
    rows = slice(100, 200)

    def texture(img, cols):  # mean step between neighbouring columns
        return np.abs(np.diff(img[rows, cols], axis=1)).mean()
    assert texture(moved, slice(0, 12)) > 0.5 * texture(image.astype(int), slice(0, 12))
    assert np.abs(moved[rows, 40:80] - image[rows, 31:71].astype(int)).mean() < 2
    # moving left, the picture at the edge comes from inside the image: it moves all the way
    moved_left = move_surroundings(image, box, -flow).astype(int)
    assert np.abs(moved_left[rows, 0:12] - image[rows, 9:21].astype(int)).mean() < 2


def test_move_surroundings_checks_the_flow_shape():
    with pytest.raises(ImageError, match=r"\(2, h, w\)"):
        move_surroundings(np.zeros((50, 50, 3), np.uint8), CropBox(25.0, 25.0, 20.0), np.zeros((16, 16, 2)))


@needs_faces
def test_crop_then_paste_back_of_a_real_face():
    image = load_rgb("liveportrait/source/s12.jpg")
    box = CropBox.from_face(EYE_BOXES["liveportrait/source/s12.jpg"])
    out = paste_back(image, crop(image, box, 512), box)  # box side ~305 px -> 512 crop
    diff = np.abs(out.astype(int) - image)
    inside = np.zeros(image.shape[:2], bool)
    inside[max(0, int(box.y0)) : int(np.ceil(box.y1)), max(0, int(box.x0)) : int(np.ceil(box.x1))] = True
    assert diff[~inside].max() == 0  # untouched outside the box
    assert diff[inside].mean() < 2.0 and np.percentile(diff[inside], 99) < 20


def test_crop_then_paste_back_of_a_smooth_image_at_any_scale():
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    image = np.stack([xx * 0.5, yy * 0.6, 128 + 60 * np.sin(xx / 40) * np.cos(yy / 50)], -1).astype(np.uint8)
    cases = [(CropBox(200.3, 150.8, 151.1), 256), (CropBox(180.0, 140.0, 260.5), 64), (CropBox(10, 20, 90), 256)]
    for box, size in cases:
        out = paste_back(image, crop(image, box, size), box)
        assert out.shape == image.shape
        assert np.abs(out.astype(int) - image).max() <= 4, (box, size)


def test_paste_back_blends_with_a_soft_edge():
    source = np.zeros((200, 200, 3), np.uint8)
    white = np.full((100, 100, 3), 255, np.uint8)
    box = CropBox(100.0, 100.0, 100.0)
    out = paste_back(source, white, box, feather=0.2)
    row = out[100, :, 0].astype(int)
    assert row[100] == 255 and row[40] == 0 and row[160] == 0
    ramp = row[50:71]
    assert np.all(np.diff(ramp) >= 0) and 0 < ramp[10] < 255  # rises gradually, no step
    hard = paste_back(source, white, box, feather=0.0)
    assert (hard[50:150, 50:150] == 255).all() and hard[:50].max() == 0
    m = feather_mask(100, 0.2)
    assert m.max() == 1.0 and m[0, 0] < 0.01 and m[50, 50] == 1.0
    half = paste_back(source, white, box, feather=0.0, mask=np.full((100, 100), 0.5, np.float32))
    assert abs(int(half[100, 100, 0]) - 128) <= 1


@pytest.mark.parametrize(
    "box",
    [
        CropBox(-30.0, 60.0, 150.0),  # left part outside
        CropBox(310.0, 230.0, 200.0),  # bottom-right corner outside
        CropBox(160.0, 120.0, 900.0),  # larger than the image on all sides
        CropBox(-500.0, -500.0, 100.0),  # wholly outside
    ],
)
def test_paste_back_keeps_the_source_size_when_the_box_leaves_the_image(box):
    source = landscape(240, 320, seed=2)
    animated = np.full((256, 256, 3), 255, np.uint8)
    out = paste_back(source, animated, box)
    assert out.shape == source.shape and out.dtype == np.uint8
    # Outside the box the source is untouched.
    outside = np.ones(source.shape[:2], bool)
    y0, y1 = max(0, int(np.floor(box.y0))), max(0, int(np.ceil(box.y1)))
    x0, x1 = max(0, int(np.floor(box.x0))), max(0, int(np.ceil(box.x1)))
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], source[outside])
    # And the crop round trip still reproduces the source there.
    round_trip = paste_back(source, crop(source, box, 256), box)
    assert round_trip.shape == source.shape


def test_grayscale_crop_and_paste():
    gray = landscape(120, 160)[:, :, 1]
    box = CropBox(80.0, 60.0, 64.0)
    c = crop(gray, box, 64)
    assert c.shape == (64, 64)
    assert np.abs(paste_back(gray, c, box).astype(int) - gray).max() <= 1
    colour = paste_back(gray, np.zeros((64, 64, 3), np.uint8), box)
    assert colour.shape == (120, 160, 3)
    single = paste_back(gray[:, :, None], c[:, :, None], box)
    assert single.shape == (120, 160, 1)
    moved = paste_back(gray[:, :, None], c[:, :, None], box, flow=np.full((2, 4, 4), 0.05, np.float32))
    assert moved.shape == (120, 160, 1) and not np.array_equal(moved, single)


def test_paste_back_on_a_large_frame_touches_only_the_box():
    """Paste-back works on the box's square alone (what keeps it cheap on a 720p frame, whose
    speed `benchmarks/bench_pipeline.py` measures): every pixel outside it keeps its value."""
    frame = landscape(720, 1280)
    box = CropBox(640.0, 330.0, 420.0)
    out = paste_back(frame, 255 - crop(frame, box, 256), box)
    inside = np.zeros(frame.shape[:2], bool)
    inside[int(box.cy - box.side / 2) - 1:int(box.cy + box.side / 2) + 2,
           int(box.cx - box.side / 2) - 1:int(box.cx + box.side / 2) + 2] = True
    assert np.array_equal(out[~inside], frame[~inside])
    assert (out[inside] != frame[inside]).mean() > 0.5


# --------------------------------------------------------------------------- RetinaFace weights


def test_retinaface_without_facexlib_says_how_to_install(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    from sfd.face.retinaface import RetinaFaceDetector

    for name in ("facexlib", "facexlib.detection", "facexlib.detection.retinaface"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    weights = tmp_path / RETINAFACE_FILENAME
    weights.parent.mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(weights))
    with pytest.raises(WeightsError, match="pip install --no-deps facexlib"):
        RetinaFaceDetector(tmp_path)
    det = load_face_detector(tmp_path)
    assert det.name in ("mtcnn", "haar") and "facexlib" in det.fallback_reasons["retinaface"]


@pytest.fixture(scope="module")
def retinaface_files(tmp_path_factory):
    """A random RetinaFace state dict saved like facexlib's .pth, and its converted folder."""
    if not HAS_FACEXLIB:
        pytest.skip("facexlib is not installed (pip install --no-deps facexlib)")
    from sfd.face.convert_retinaface import main
    from sfd.face.retinaface import build_retinaface_network

    torch.manual_seed(0)
    net = build_retinaface_network()
    with torch.no_grad():
        # Small head weights: boxes stay near their anchors and scores spread out, so the
        # post-processing can be compared with facexlib's own on meaningful numbers.
        for head, s in ((net.BboxHead, 0.01), (net.LandmarkHead, 0.01), (net.ClassHead, 0.05)):
            for p in head.parameters():
                p.mul_(s)
    root = tmp_path_factory.mktemp("retinaface")
    pth = root / "detection_Resnet50_Final.pth"
    # As published: saved from DataParallel, so every key has a "module." prefix.
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, pth)
    weights = root / "weights"
    assert main([str(pth), str(weights / RETINAFACE_FILENAME)]) == 0
    return net, pth, weights


def test_converter_round_trip_loads_in_the_detector(retinaface_files):
    from safetensors.torch import load_file

    from sfd.face.retinaface import RetinaFaceDetector

    net, _, weights = retinaface_files
    stored = load_file(str(weights / RETINAFACE_FILENAME))
    expected = net.state_dict()
    assert set(stored) == set(expected)
    assert all(torch.equal(stored[k], expected[k]) for k in expected)

    for source in (weights, weights / RETINAFACE_FILENAME):
        det = RetinaFaceDetector(source, device="cpu")
        assert det.name == "retinaface"
    faces = det.detect(landscape(120, 160))
    assert isinstance(faces, list) and all(isinstance(f, Face) for f in faces)

    chosen = load_face_detector(weights, device="cpu")
    assert chosen.name == "retinaface" and not chosen.fallback_reasons


def test_retinaface_postprocessing_matches_facexlib(retinaface_files):
    from sfd.face.retinaface import RetinaFaceDetector

    net, _, _ = retinaface_files
    det = RetinaFaceDetector(net.state_dict(), device="cpu", conf_threshold=0.6, max_side=None)
    image = np.random.default_rng(0).integers(0, 256, (160, 224, 3), dtype=np.uint8)
    ours = np.array([[*f.box, f.score, *f.landmarks.ravel()] for f in det.detect(image)]).reshape(-1, 15)
    with torch.no_grad():  # facexlib's own pipeline, on BGR input as it expects
        ref = net.detect_faces(np.ascontiguousarray(image[:, :, ::-1]), conf_threshold=0.6, nms_threshold=0.4)
    assert len(ref) > 50
    dist = np.abs(ours[:, None, :] - ref[None, :, :]).max(-1)
    # Equal up to float rounding; a few picks differ where NMS meets exact score ties.
    assert (dist.min(axis=0) < 1e-3).mean() > 0.95
    assert (dist.min(axis=1) < 1e-3).mean() > 0.95


def test_retinaface_priors_match_the_network_output(retinaface_files):
    from sfd.face.retinaface import retinaface_priors

    net, _, _ = retinaface_files
    with torch.inference_mode():
        loc, conf, landm = net(torch.zeros(1, 3, 96, 160))
    assert retinaface_priors(96, 160).shape == (loc.shape[1], 4)
    assert conf.shape[1] == landm.shape[1] == loc.shape[1]


def test_converter_names_missing_and_unexpected_keys(retinaface_files, tmp_path, capsys):
    from sfd.face.convert_retinaface import convert_retinaface, main

    net, _, _ = retinaface_files
    state = dict(net.state_dict())
    del state["fpn.output1.0.weight"]
    state["extra.head.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(WeightsError, match=r"missing keys: fpn\.output1\.0\.weight") as info:
        convert_retinaface(bad, tmp_path / "out.safetensors")
    assert "unexpected keys: extra.head.weight" in str(info.value)
    assert not (tmp_path / "out.safetensors").exists()
    assert main([str(bad), str(tmp_path / "out.safetensors")]) == 2
    assert "fpn.output1.0.weight" in capsys.readouterr().err


def test_retinaface_refuses_pickles_and_missing_files(retinaface_files, tmp_path):
    from sfd.face.retinaface import RetinaFaceDetector

    _, pth, _ = retinaface_files
    with pytest.raises(WeightsError, match="convert_retinaface"):
        RetinaFaceDetector(pth)
    with pytest.raises(WeightsError, match="retinaface_resnet50.safetensors"):
        RetinaFaceDetector(tmp_path)
    not_safetensors = tmp_path / "x.safetensors"
    not_safetensors.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="safetensors"):
        RetinaFaceDetector(not_safetensors)

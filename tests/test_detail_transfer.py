"""Detail transfer: faces pasted back at the source's resolution keep the source's own detail,
moved by the generator's flow."""

import numpy as np
import pytest
import torch

from sfd import SFDModel, SFDPipeline
from sfd.face import CropBox, load_face_detector
from sfd.face import crop as crop_image
from sfd.media import load_image
from sfd.pipeline.detail_transfer import WORKING_SIDE, add_detail, add_fine_detail, detail_layer, source_coordinates
from sfd.pipeline.mouth_transfer import LOWER_INNER, UPPER_INNER, open_mouth
from sfd.pretrained.face_mesh_regions import CHIN, MOUTH_LEFT, MOUTH_RIGHT


def textured_image(side=300, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (side, side, 3), dtype=np.uint8)


def as_model_units(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_still_output_gets_the_source_crop_back_exactly():
    image = textured_image()
    box = CropBox.full_frame(300, 300)
    model_crop = crop_image(image, box, 64)
    layer = detail_layer(image, box, model_crop)
    assert layer.side == 300
    out = add_detail(as_model_units(model_crop[None]), torch.zeros(1, 2, 64, 64), layer)
    sharp = as_model_units(crop_image(image, box, 300)[None])
    assert torch.allclose(out, sharp, atol=1e-4)
    # Without the detail, the upsampled model crop is far from the source's pixels.
    blurred = torch.nn.functional.interpolate(as_model_units(model_crop[None]), size=300, mode="bilinear")
    assert (blurred - sharp).abs().mean() > 0.2


def test_detail_moves_with_the_flow_and_none_comes_from_outside_the_crop():
    image = textured_image(256, seed=1)
    box = CropBox.full_frame(256, 256)
    model_crop = crop_image(image, box, 64)
    layer = detail_layer(image, box, model_crop)
    base = as_model_units(model_crop[None])
    # A flow of +8/256 px-units in grid coordinates samples 4 px to the right at 256 px.
    shift = torch.zeros(1, 2, 64, 64)
    shift[:, 0] = 8 / 256
    moved = add_detail(torch.zeros_like(base), shift, layer)
    residual = layer.residual
    assert torch.allclose(moved[..., 8:-8, 8:-8], residual[..., 8:-8, 12:-4], atol=1e-4)
    # A flow that samples beyond the crop's right edge (half a crop side to the right) adds
    # nothing there: the model's own face, upsampled, is all that is left.
    beyond = torch.zeros(1, 2, 64, 64)
    beyond[:, 0] = 1.0
    out = add_detail(base, beyond, layer)
    upsampled = torch.nn.functional.interpolate(base, size=256, mode="bilinear")
    assert torch.allclose(out[..., 136:], upsampled[..., 136:], atol=1e-6)
    assert (out[..., :120] - upsampled[..., :120]).abs().mean() > 0.1


def test_detail_moved_by_half_a_pixel_keeps_its_contrast():
    # Bilinear sampling half-way between pixels averages two of them (white noise keeps 71 % of
    # its contrast); the detail is sampled bicubically so a face moved by a fraction of a pixel
    # stays sharp.
    image = textured_image(256, seed=2)
    box = CropBox.full_frame(256, 256)
    model_crop = crop_image(image, box, 64)
    layer = detail_layer(image, box, model_crop)
    half_pixel = torch.zeros(1, 2, 64, 64)
    half_pixel[:, 0] = 1 / 256  # grid units: 2 / 256 per pixel at 256 px
    moved = add_detail(torch.zeros(1, 3, 64, 64), half_pixel, layer)
    inner = (..., slice(8, -8), slice(8, -8))
    kept = float(moved[inner].std() / layer.residual[inner].std())
    assert kept > 0.8, kept


def test_no_detail_layer_for_faces_no_larger_than_the_model_crop():
    image = textured_image(64)
    box = CropBox.full_frame(64, 64)
    assert detail_layer(image, box, crop_image(image, box, 64)) is None
    big = CropBox.full_frame(2000, 2000)
    layer = detail_layer(np.zeros((2000, 2000, 3), np.uint8), big, np.zeros((64, 64, 3), np.uint8))
    assert (layer.side, layer.full_side, layer.fine.shape[-1]) == (WORKING_SIDE, 2000, 2000)


def test_a_face_larger_than_the_working_side_keeps_all_its_detail():
    # Drawn at the working side, then the fine detail moved in at the crop's own side: a face
    # that does not move gives back the source crop, pixel for pixel, however large.
    side = 2 * WORKING_SIDE + 100
    image = textured_image(side, seed=3)
    box = CropBox.full_frame(side, side)
    model_crop = crop_image(image, box, 64)
    layer = detail_layer(image, box, model_crop)
    still = torch.zeros(1, 2, 64, 64)
    working = add_detail(as_model_units(model_crop[None]), still, layer)
    assert working.shape[-1] == WORKING_SIDE
    out = add_fine_detail(working, source_coordinates(still, layer.side), layer.fine)
    assert torch.allclose(out, as_model_units(image[None]), atol=1e-3)  # a grey level is 8e-3
    # the working side alone, upsampled, loses most of the texture
    alone = torch.nn.functional.interpolate(working, size=side, mode="bilinear")
    assert (alone - as_model_units(image[None])).abs().mean() > 0.2
    # where the mouth's shading darkens the face (`gain` < 1), its fine detail fades alike
    gain = torch.ones(1, 1, WORKING_SIDE, WORKING_SIDE)
    gain[..., :, : WORKING_SIDE // 2] = 0
    shaded = add_fine_detail(working, source_coordinates(still, layer.side), layer.fine, gain)
    assert torch.allclose(shaded[..., 8:-8, 8: side // 2 - 8], alone[..., 8:-8, 8: side // 2 - 8], atol=1e-5)
    assert torch.allclose(shaded[..., side // 2 + 8:], out[..., side // 2 + 8:], atol=1e-5)


def test_the_fine_detail_moves_with_the_flow_as_the_face_does():
    # A shift of whole pixels at both sides moves the whole detail, the fine part with the rest.
    side = 2 * WORKING_SIDE
    image = textured_image(side, seed=4)
    box = CropBox.full_frame(side, side)
    model_crop = crop_image(image, box, 64)
    layer = detail_layer(image, box, model_crop)
    zeros = torch.zeros(1, 3, 64, 64)

    def detail_moved_by(flow):
        return add_fine_detail(add_detail(zeros, flow, layer), source_coordinates(flow, layer.side), layer.fine)

    shift = torch.zeros(1, 2, 64, 64)
    shift[:, 0] = 16 / side  # 8 px at the crop's side, 4 at the working side
    at_rest = detail_moved_by(torch.zeros(1, 2, 64, 64))
    moved = detail_moved_by(shift)
    assert torch.allclose(moved[..., 16:-16, 16:-24], at_rest[..., 16:-16, 24:-16], atol=1e-3)
    assert (moved - at_rest).abs().mean() > 0.1  # texture: a shifted copy is far from the original


def test_a_map_of_coordinates_moved_by_a_warp_samples_what_the_warp_shows():
    # The retargeting moves where the fine detail comes from by its warps, as it moves the face:
    # sampling the image at the moved coordinates gives the moved image (the mouth's shading
    # left out).
    image = as_model_units(textured_image(128, seed=5)[None])
    points = torch.zeros(1, 468, 2)
    points[0, :, 0], points[0, :, 1] = 64, 80  # a mouth's mesh: corners at 44 and 84, lips around y 80
    for i, x in enumerate(np.linspace(44, 84, len(UPPER_INNER))):
        dip = 2 * np.sin(np.pi * i / (len(UPPER_INNER) - 1))
        points[0, UPPER_INNER[i]] = torch.tensor([x, 80 - dip])
        points[0, LOWER_INNER[i]] = torch.tensor([x, 80 + dip])
    for index, point in ((MOUTH_RIGHT, (44, 80)), (MOUTH_LEFT, (84, 80)), (CHIN, (64, 110))):
        points[0, index] = torch.tensor(point, dtype=torch.float32)
    extra = torch.tensor([10.0])
    grid = source_coordinates(torch.zeros(1, 2, 8, 8), 128)
    moved = open_mouth(grid, points, extra, shade=False)
    assert not torch.equal(moved, grid)
    sampled = torch.nn.functional.grid_sample(image, moved.permute(0, 2, 3, 1), mode="bilinear",
                                              padding_mode="border", align_corners=False)
    warped = open_mouth(image, points, extra, shade=False)
    assert torch.allclose(sampled, warped, atol=1e-5)


@pytest.fixture(scope="module")
def untrained_model() -> SFDModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SFDModel.from_preset("tiny")


def test_an_unedited_face_is_pasted_back_with_its_own_detail(untrained_model, faces_dir):
    # The untrained model reproduces its 64 px input roughly; with detail transfer the paste-back
    # gives back the portrait's own pixels, without it a blurred face.
    portrait = faces_dir / "liveportrait" / "source" / "s0.jpg"
    original = load_image(portrait).astype(np.float32)
    detector = load_face_detector(None, device="cpu")
    errors = {}
    for detail in (True, False):
        pipe = SFDPipeline(untrained_model, detector, device="cpu", detail_transfer=detail)
        source = pipe.prepare_source(portrait)
        assert (source.detail is not None) == detail
        out = pipe.edit(source).astype(np.float32)
        x0, y0 = max(0, int(source.box.x0)), max(0, int(source.box.y0))
        x1, y1 = int(source.box.x1), int(source.box.y1)
        errors[detail] = np.abs(out[y0:y1, x0:x1] - original[y0:y1, x0:x1]).mean()
    assert errors[True] < 0.5 * errors[False], errors
    # grey levels, out of 255: the face's box lies on pixel borders and the detail is moved
    # bicubically, so what is left is the model's own error (1.3 before either)
    assert errors[True] < 1.0, errors

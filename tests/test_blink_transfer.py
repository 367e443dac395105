"""Blink transfer: the lid warp on a drawn eye (exact geometry), the driver's closures on a real
clip that blinks (the real face mesh), and the pipeline closing a portrait's eyes there and
nowhere else."""

import numpy as np
import pytest
import torch

from sfd import SFDModel, SFDPipeline
from sfd.media import read_video
from sfd.pipeline.blink_transfer import CLOSED_RATIO, MAX_WIDEN, WIDE_RATIO, BlinkTransfer, close_lids
from sfd.pipeline.face_retargeting import FaceRetargeting, MeshStreams, tracked_points
from sfd.semantics.face_measures import face_mesh

from conftest import TALKING_HEADS

SIDE = 100
SKIN, EYE = 0.6, -0.8
CENTRES = ((32.0, 40.0), (68.0, 40.0))  # image-left eye, image-right eye
HALF_WIDTH, HALF_GAP, BROW_ABOVE = 12.0, 6.0, 15.0
# The corpus's test clip whose driver blinks twice in its first 60 frames (dlib's eye opening
# falls to about half at frames 34-38 and 47-51), and frames where its eyes are open.
BLINK_CLIP = "clips/036_grid-pwij3p.mp4"
BLINK_FRAMES, OPEN_FRAMES = [34, 35, 36], list(range(0, 30))


def drawn_eyes(side: int = SIDE, centres=CENTRES, half_width: float = HALF_WIDTH, half_gap: float = HALF_GAP,
               brow_above: float = BROW_ABOVE):
    """A skin-coloured image with two dark almond eyes, and a mesh whose eye and brow points lie on
    them (the other points far away, as the warp never reads them)."""
    from sfd.pipeline.blink_transfer import EYE_CONTOURS

    image = torch.full((1, 3, side, side), SKIN)
    points = torch.full((1, 468, 2), -1000.0)
    ys, xs = torch.meshgrid(torch.arange(side) + 0.5, torch.arange(side) + 0.5, indexing="ij")
    for (cx, cy), (left, right, upper, lower, brow) in zip(centres, EYE_CONTOURS):
        u = (xs - cx) / half_width
        inside = (u.abs() < 1) & ((ys - cy).abs() < half_gap * torch.sqrt((1 - u * u).clamp_min(0)))
        image[0, :, inside] = EYE
        knots = np.linspace(-1, 1, len(upper))
        for index, k in zip(upper, knots):
            points[0, index] = torch.tensor([cx + k * half_width, cy - half_gap * np.sqrt(1 - k * k)])
        for index, k in zip(lower, knots):
            points[0, index] = torch.tensor([cx + k * half_width, cy + half_gap * np.sqrt(1 - k * k)])
        for index, k in zip(brow, np.linspace(-0.8, 0.8, len(brow))):
            points[0, index] = torch.tensor([cx + k * half_width, cy - brow_above])
    return image, points


def test_no_closure_leaves_the_image_as_it_is():
    image, points = drawn_eyes()
    assert torch.equal(close_lids(image, points, torch.zeros(1)), image)


def test_a_shut_eye_shows_skin_where_the_eye_was_and_nothing_else_moves():
    image, points = drawn_eyes()
    shut = close_lids(image, points, torch.ones(1))
    for cx, cy in CENTRES:
        x = int(cx)
        # the opening's middle rows, where the eye was dark, are the lid's skin now
        for y in range(int(cy - HALF_GAP + 2), int(cy + HALF_GAP - 2)):
            assert shut[0, 0, y, x] > SKIN - 0.1, (x, y, float(shut[0, 0, y, x]))
        # the rows under the lower lid, beside the corners, and the brow are untouched
        assert torch.equal(shut[0, :, int(cy + HALF_GAP) + 1:, :], image[0, :, int(cy + HALF_GAP) + 1:, :])
        assert torch.equal(shut[0, :, :, int(cx - HALF_WIDTH) - 3], image[0, :, :, int(cx - HALF_WIDTH) - 3])
        assert torch.equal(shut[0, :, : int(cy - BROW_ABOVE) + 1], image[0, :, : int(cy - BROW_ABOVE) + 1])


def test_a_shut_lid_keeps_its_lash_line_thin_at_the_lids_meeting_and_shows_no_streaks():
    # one large eye (30 px half width, 12 px half gap) under a lid whose skin is striped column by
    # column (lashes, eyeliner, any texture that stretching would turn into streaks) and whose lash
    # row, 3 px just above the upper lid, is dark
    cx, cy, half_width, half_gap = 100.0, 100.0, 30.0, 12.0
    image, points = drawn_eyes(200, ((cx, cy), (-500.0, -500.0)), half_width, half_gap, brow_above=30.0)
    ys, xs = torch.meshgrid(torch.arange(200) + 0.5, torch.arange(200) + 0.5, indexing="ij")
    u = (xs - cx) / half_width
    lid = cy - half_gap * torch.sqrt((1 - u * u).clamp_min(0))
    above = (u.abs() < 1) & (ys < lid)
    stripes = above & (ys >= lid - 14) & (xs.long() % 2 == 0)
    image[0, :, stripes] = SKIN + 0.3
    lashes = above & (ys >= lid - 3)
    image[0, :, lashes] = -0.9
    shut = close_lids(image, points, torch.ones(1))[0, 0]
    column = shut[:, int(cx)]
    dark = np.nonzero((column < -0.5).numpy())[0]
    # the lash line lies where the lids meet (the lower lid, 12 px under the centre), as thin as it was
    assert len(dark) and abs(dark.max() - (cy + half_gap)) <= 1.5, dark
    assert len(dark) <= 4, dark
    # the skin that covers the eye carries no stripes: across the middle it varies by a fraction
    # of the stripes' 0.15 standard deviation
    covered = shut[int(cy - 8):int(cy + 2), int(cx - 12):int(cx + 12)]
    assert float(covered.std(dim=1).max()) < 0.03


def test_the_fine_detail_fades_where_a_shut_lid_is_smoothed_and_maps_are_only_moved():
    cx, cy, half_width, half_gap = 100.0, 100.0, 30.0, 12.0
    _, points = drawn_eyes(200, ((cx, cy), (-500.0, -500.0)), half_width, half_gap, brow_above=30.0)
    # the fine detail's gain offset (0: kept) goes to -1 (faded) over the shut lid's smoothed skin,
    # and stays 0 on the lash line, below the lower lid and beside the eye
    gain = close_lids(torch.zeros(1, 1, 200, 200), points, torch.ones(1), "gain")[0, 0]
    assert float(gain[int(cy - 6):int(cy + 2), int(cx - 12):int(cx + 12)].max()) < -0.99
    assert float(gain[int(cy + half_gap) - 1, int(cx)]) == 0.0
    assert torch.equal(gain[int(cy + half_gap) + 1:], torch.zeros_like(gain[int(cy + half_gap) + 1:]))
    assert torch.equal(gain[:, :int(cx - half_width) - 3], torch.zeros_like(gain[:, :int(cx - half_width) - 3]))
    # a map is moved as the picture is, but never blurred: columns that alternate along x (which
    # the lids' vertical move leaves as they are) stay as they were; as colours they are smoothed
    columns = (torch.arange(200) % 2).float().view(1, 1, 1, 200).expand(1, 2, 200, 200).contiguous()
    assert torch.allclose(close_lids(columns, points, torch.ones(1), "map"), columns, atol=1e-5)
    assert not torch.allclose(close_lids(columns, points, torch.ones(1), "colour"), columns, atol=0.1)
    with pytest.raises(ValueError, match="content"):
        close_lids(columns, points, torch.ones(1), "colours")


def test_half_closed_lids_cover_the_upper_half_and_keep_the_lower():
    image, points = drawn_eyes()
    half = close_lids(image, points, torch.tensor([0.5]))
    for cx, cy in CENTRES:
        x = int(cx)
        # the new lid edge is at the middle: above it skin (the lid came down), below it the eye
        assert half[0, 0, int(cy - HALF_GAP / 2), x] > SKIN - 0.1
        assert half[0, 0, int(cy + HALF_GAP / 2), x] == pytest.approx(EYE, abs=1e-4)


def test_a_negative_closure_raises_the_lids_and_stretches_the_eye_without_moving_the_lower_lid_or_brow():
    image, points = drawn_eyes()
    wide = close_lids(image, points, torch.tensor([-0.3]))
    for cx, cy in CENTRES:
        x = int(cx)
        column, before = wide[0, 0, :, x], image[0, 0, :, x]
        dark = np.nonzero((column < (SKIN + EYE) / 2).numpy())[0]
        was = np.nonzero((before < (SKIN + EYE) / 2).numpy())[0]
        # the eye's upper edge rises by 0.3 of its 12 px gap at the middle, its lower edge stays
        assert abs((was.min() - dark.min()) - 0.3 * 2 * HALF_GAP) <= 1.0, (was, dark)
        assert dark.max() == was.max(), (was, dark)
        # below the lower lid, beside the corners and above the brow, nothing moves
        assert torch.equal(wide[0, :, int(cy + HALF_GAP) + 1:, :], image[0, :, int(cy + HALF_GAP) + 1:, :])
        assert torch.equal(wide[0, :, :, int(cx - HALF_WIDTH) - 3], image[0, :, :, int(cx - HALF_WIDTH) - 3])
        assert torch.equal(wide[0, :, : int(cy - BROW_ABOVE) + 1], image[0, :, : int(cy - BROW_ABOVE) + 1])
    # widening is capped: asking for more opens no further than MAX_WIDEN
    assert torch.equal(close_lids(image, points, torch.tensor([-5.0])), close_lids(image, points, torch.tensor([-MAX_WIDEN])))


def eye_points(openings: torch.Tensor) -> torch.Tensor:
    """(N, 468, 2) mesh points whose eyes (10 px wide) open by `openings` (N,) of their width."""
    from sfd.pretrained.face_mesh_regions import (LEFT_EYE_INNER, LEFT_EYE_OUTER, LEFT_LID_PAIRS, RIGHT_EYE_INNER,
                                                  RIGHT_EYE_OUTER, RIGHT_LID_PAIRS)

    points = torch.zeros(len(openings), 468, 2)
    for x0, (outer, inner, pairs) in ((0.0, (LEFT_EYE_OUTER, LEFT_EYE_INNER, LEFT_LID_PAIRS)),
                                      (30.0, (RIGHT_EYE_OUTER, RIGHT_EYE_INNER, RIGHT_LID_PAIRS))):
        points[:, outer] = torch.tensor([x0, 0.0])
        points[:, inner] = torch.tensor([x0 + 10.0, 0.0])
        for up, down in pairs:
            points[:, up, 0] = points[:, down, 0] = x0 + 5.0
            points[:, up, 1] = -5.0 * openings
            points[:, down, 1] = 5.0 * openings
    return points


def test_a_driver_opening_its_eyes_wider_than_usual_widens_them_and_its_usual_jitter_does_not():
    # a driver whose mesh opening sits at 0.30 (its open level), then opens to 0.33 and 0.36
    transfer = BlinkTransfer()
    level = torch.full((20,), 0.30)
    openings = torch.cat([level, torch.tensor([0.31, 0.33, 0.36])])
    closures = transfer.closures(eye_points(openings), torch.ones(len(openings), dtype=torch.bool)).numpy()
    assert (closures[:20] == 0).all()
    assert closures[20] == 0  # 1.03 of the open level: under WIDE_RATIO, the mesh's jitter
    assert closures[21] == pytest.approx(-(1.1 - WIDE_RATIO) / (1 - CLOSED_RATIO), abs=1e-4)
    assert closures[22] == pytest.approx(-MAX_WIDEN)  # 1.2 of it: capped


def test_closures_of_a_batch_apply_per_face():
    image, points = drawn_eyes()
    batch = close_lids(image.expand(2, -1, -1, -1), points.expand(2, -1, -1), torch.tensor([0.0, 1.0]))
    assert torch.equal(batch[0], image[0]) and not torch.equal(batch[1], image[0])


@pytest.fixture(scope="module")
def blink_clip() -> np.ndarray:
    path = TALKING_HEADS / BLINK_CLIP
    if not path.is_file():
        pytest.skip(f"the talking-heads corpus is not at {TALKING_HEADS}")
    return read_video(path, max_frames=40)[0]


@pytest.fixture(scope="module")
def tiny_pipeline() -> SFDPipeline:
    """The tiny preset starts as a do-nothing warp: its output is the portrait itself, so any change
    is the blink transfer's."""
    return SFDPipeline(SFDModel.from_preset("tiny"), device="cpu")


def driver_faces(pipeline: SFDPipeline, clip: np.ndarray) -> torch.Tensor:
    """The clip's faces as the pipeline crops a driver for the face mesh, in [-1, 1]."""
    from sfd.face import crop as crop_image
    from sfd.face.tracker import find_first_face
    from sfd.pipeline.face_retargeting import DRIVER_SIDE

    first = find_first_face(pipeline._detector(), iter(clip), 2.0, 0.0, 0.0)
    crops = np.stack([crop_image(frame, first.box, DRIVER_SIDE) for frame in clip])
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_the_driver_s_blink_closes_and_its_open_frames_do_not(tiny_pipeline, blink_clip):
    faces = driver_faces(tiny_pipeline, blink_clip)
    closures = BlinkTransfer().closures(*tracked_points(face_mesh("cpu"), faces)).numpy()
    # measured: 0.59, 0.95, 0.87 at the blink; at most 0.04 on the open frames (their opening's
    # own small changes), 0 on most
    assert closures[BLINK_FRAMES].min() > 0.35 and closures[BLINK_FRAMES].max() > 0.8, closures
    assert closures[OPEN_FRAMES].max() < 0.1 and (closures[OPEN_FRAMES] == 0).mean() > 0.5, closures


def test_streams_of_faces_are_read_in_one_pass_a_face_as_the_two_pass_framing_reads_them(tiny_pipeline, blink_clip):
    """`MeshStreams` frames each face on the previous face's points in its stream (MediaPipe's video
    mode): one mesh pass a face after the first, a frame's faces of both streams in one batch, the
    same points within about a pixel, the same blink; a face it loses is reported unseen and the
    next one is found again from scratch; a face that has not changed keeps its points."""
    faces = driver_faces(tiny_pipeline, blink_clip)
    small = torch.nn.functional.interpolate(faces, size=(128, 128), mode="area")  # a second stream, as shown
    mesh = face_mesh("cpu")
    batches: list[int] = []
    hook = mesh.register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))
    try:
        two_pass, seen = tracked_points(mesh, faces)
        assert sum(batches) == 2 * len(faces) and seen.all()
        batches.clear()
        streams = MeshStreams(mesh)
        read = [streams(driver=faces[i:i + 8], shown=small[i:i + 8]) for i in range(0, len(faces), 8)]
        # two passes for each stream's first face, then one pass a frame for both streams' faces
        assert sum(batches) == 2 * (len(faces) + 1) and batches.count(2) == len(faces) - 1
    finally:
        hook.remove()
    points = torch.cat([r["driver"][0] for r in read])
    shown = torch.cat([r["shown"][0] for r in read])
    assert all(r[name][1].all() for r in read for name in ("driver", "shown"))
    # measured on 256 px crops: median 0.63 px, 95th percentile 1.4 px
    distance = (points - two_pass).norm(dim=-1)
    assert distance.median() < 1.0 and distance.quantile(0.95) < 2.5, distance
    assert (shown * 2 - points).norm(dim=-1).median() < 2.0  # the same faces at half the size
    closures = BlinkTransfer().closures(points, torch.ones(len(faces), dtype=torch.bool)).numpy()
    assert closures[BLINK_FRAMES].min() > 0.35 and closures[OPEN_FRAMES].max() < 0.1, closures

    noise = torch.rand(1, 3, *faces.shape[-2:]) * 2 - 1
    points, seen = MeshStreams(mesh)(driver=torch.cat([faces[:3], noise, faces[3:6]]))["driver"]
    assert seen.tolist() == [True, True, True, False, True, True, True]
    # the face after the lost one is read afresh, exactly as the two-pass framing reads it
    assert torch.allclose(points[4], two_pass[3], atol=1e-3)

    # a face that has not changed (a still driver, a repeated frame) keeps the points last read,
    # with no mesh pass: a still driver then moves nothing
    batches.clear()
    hook = mesh.register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))
    try:
        repeated = torch.cat([faces[:1]] * 4)
        points, seen = MeshStreams(mesh)(driver=repeated + 0.002 * torch.rand_like(repeated))["driver"]
    finally:
        hook.remove()
    assert sum(batches) == 2 and seen.all() and (points == points[:1]).all()


def test_a_frame_without_a_face_closes_nothing(faces_dir):
    from sfd.media import load_image

    mesh = face_mesh("cpu")
    portrait = torch.from_numpy(np.array(load_image(faces_dir / "lia-vox" / "monroe.png"))).permute(2, 0, 1)[None]
    portrait = torch.nn.functional.interpolate(portrait.float() / 127.5 - 1, size=(256, 256), mode="area")
    noise = torch.rand(1, 3, 256, 256) * 2 - 1
    points, seen = tracked_points(mesh, torch.cat([portrait, noise]))
    assert seen.tolist() == [True, False]
    # an unseen driver face closes nothing, even where its points would read as shut
    shut = BlinkTransfer()
    shut.closures(points[:1].expand(8, -1, -1), torch.ones(8, dtype=torch.bool))
    assert shut.closures(points[1:] * torch.tensor([1.0, 0.0]), torch.zeros(1, dtype=torch.bool)).eq(0).all()
    retargeting = FaceRetargeting(mesh)
    retargeting.start(portrait, portrait)
    (kept,) = retargeting(portrait, noise)  # the mesh finds no face to close or open
    assert torch.equal(kept, noise)


def test_the_pipeline_closes_the_portrait_s_eyes_where_the_driver_blinks_and_only_there(tiny_pipeline,
                                                                                       blink_clip, faces_dir):
    from sfd.pretrained.dlib_face import DlibFace, eye_openness

    source = tiny_pipeline.prepare_source(faces_dir / "lia-vox" / "taylor.png")
    batches = [blink_clip[i:i + 8] for i in range(0, len(blink_clip), 8)]
    # the portrait is a 256 px head shot: pasted back, the whole image is the face at full size
    on = np.concatenate(list(tiny_pipeline.iter_animate(source, batches, mouth=False, head=False)))
    off = np.concatenate(list(tiny_pipeline.iter_animate(source, batches, blinks=False, mouth=False, head=False)))
    changed = np.abs(on.astype(int) - off.astype(int))
    # the open frames' lids move a little at most (their small closures), the blink's a lot:
    # measured, mean change per pixel at most 0.07 on the open frames, at least 0.34 at the blink
    assert changed[OPEN_FRAMES].mean(axis=(1, 2, 3)).max() < 0.3 * changed[BLINK_FRAMES].mean(axis=(1, 2, 3)).min()
    assert (changed.max(axis=(1, 2, 3))[BLINK_FRAMES] > 40).all(), changed.max(axis=(1, 2, 3))
    # only around the eyes: the mouth and chin are the same
    assert np.array_equal(on[:, 160:], off[:, 160:])
    # dlib's eye opening (the evaluation's judge, not the mesh that drew the lids) falls there;
    # measured 0.205 against 0.276
    judge = DlibFace()
    closed, kept = (float(eye_openness(judge.landmarks(x[BLINK_FRAMES])).mean()) for x in (on, off))
    assert closed < 0.85 * kept, (closed, kept)

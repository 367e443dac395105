"""Head-pose transfer: the warp moves a drawn face as asked and leaves the crop's edges, the target
is the driver's head motion carried to the shown face's size (its lips and lids play no part), the
residual ignores jitter and caps misreadings, and on a real face the mesh reads the move back."""

import math

import numpy as np
import torch

from sfd.pipeline.pose_transfer import DEAD_ZONE, MAX_TURN, PoseTransfer, move_heads, residual_similarity
from sfd.pretrained.face_mesh_regions import HEAD_POINTS, INNER_LIP_PAIRS
from sfd.pretrained.mesh_motion import face_size, fit_similarity, retarget_head

SIDE = 160
SEEN = torch.ones(1, dtype=torch.bool)


def similarity(turn_degrees: float, zoom: float) -> torch.Tensor:
    t = math.radians(turn_degrees)
    return torch.tensor([[zoom * math.cos(t), zoom * math.sin(t)]])


def head(size: float = 40.0, turn: float = 0.0, zoom: float = 1.0, shift=(0.0, 0.0), centre=(80.0, 80.0),
         seed: int = 0) -> torch.Tensor:
    """(1, 468, 2) points scattered about `centre` (about `size` px from it), turned, zoomed and
    shifted as a whole."""
    base = torch.randn(1, 468, 2, generator=torch.Generator().manual_seed(seed)) * size
    a = similarity(turn, zoom)
    turned = torch.stack([a[:, None, 0] * base[..., 0] - a[:, None, 1] * base[..., 1],
                          a[:, None, 1] * base[..., 0] + a[:, None, 0] * base[..., 1]], -1)
    return turned + torch.tensor(centre) + torch.tensor(shift)


def dot_image(x: float, y: float) -> torch.Tensor:
    """A grey (1, 3, SIDE, SIDE) image with a soft bright dot at (x, y) and a ramp along its edges."""
    ys, xs = torch.meshgrid(torch.arange(SIDE) + 0.5, torch.arange(SIDE) + 0.5, indexing="ij")
    image = -0.5 + torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 3.0 ** 2)) + 0.3 * (xs / SIDE)
    return image.expand(1, 3, SIDE, SIDE).clone()


def centroid(image: torch.Tensor, x: float, y: float, reach: float = 10.0) -> tuple[float, float]:
    ys, xs = torch.meshgrid(torch.arange(SIDE) + 0.5, torch.arange(SIDE) + 0.5, indexing="ij")
    weight = (image[0, 0] - image[0, 0].median()).clamp_min(0) * (((xs - x) ** 2 + (ys - y) ** 2) < reach ** 2)
    return float((weight * xs).sum() / weight.sum()), float((weight * ys).sum() / weight.sum())


def test_the_warp_moves_a_point_of_the_face_as_asked_and_leaves_the_crop_s_edges():
    centre = torch.tensor([[[80.0, 80.0]]])
    a, moved_to = similarity(8.0, 1.05), centre + torch.tensor([[[6.0, -4.0]]])
    image = dot_image(90.0, 75.0)
    warped = move_heads(image, a, centre, moved_to)
    expected = a[0, 0] * 10 - a[0, 1] * -5 + 86.0, a[0, 1] * 10 + a[0, 0] * -5 + 76.0
    got = centroid(warped, *expected)
    assert abs(got[0] - expected[0]) < 0.3 and abs(got[1] - expected[1]) < 0.3
    # the outermost pixels keep their exact values: the paste-back blends the crop in there
    assert torch.allclose(warped[..., 0, :], image[..., 0, :], atol=1e-5)
    assert torch.allclose(warped[..., :, -1], image[..., :, -1], atol=1e-5)


def test_the_identity_similarity_changes_nothing():
    image = dot_image(70.0, 90.0)
    centre = torch.tensor([[[80.0, 80.0]]])
    assert torch.allclose(move_heads(image, similarity(0.0, 1.0), centre, centre), image, atol=1e-6)


def test_the_target_is_the_driver_s_head_motion_at_the_shown_face_s_size():
    reference = head(40.0, seed=1)
    driver = head(40.0, turn=6.0, zoom=1.1, shift=(10.0, -5.0), seed=1)
    shown = head(80.0, centre=(70.0, 90.0), seed=1)  # placed elsewhere, twice the size
    target = retarget_head(shown, driver, reference)
    a, start, end = fit_similarity(shown, target, HEAD_POINTS)
    assert torch.allclose(a, similarity(6.0, 1.1), atol=1e-4)
    assert math.isclose(float(face_size(shown) / face_size(reference)), 2.0, rel_tol=1e-4)
    # the head centre shifts as the driver's did, twice as far
    head_shift = driver[:, HEAD_POINTS].mean(1) - reference[:, HEAD_POINTS].mean(1)
    assert torch.allclose(end - start, 2 * head_shift, atol=1e-3)


def test_lips_and_lids_play_no_part_in_the_head_s_motion():
    reference = head(40.0, seed=3)
    driver = reference.clone()
    lower_lips = [down for _, down in INNER_LIP_PAIRS]
    driver[0, lower_lips, 1] += 15.0  # the mouth opens; the head stays
    shown = head(60.0, seed=4)
    assert torch.allclose(retarget_head(shown, driver, reference), shown, atol=1e-4)


def test_jitter_moves_nothing_and_a_misread_turn_is_capped():
    shown = head(40.0, seed=5)
    nudged = shown + torch.tensor([0.2 * DEAD_ZONE * 40.0, 0.0])
    assert not bool(residual_similarity(shown, nudged)[3][0])
    thrown = head(40.0, turn=60.0, seed=5)
    a, _, _, moves = residual_similarity(shown, thrown)
    assert bool(moves[0])
    assert math.isclose(math.atan2(float(a[0, 1]), float(a[0, 0])), MAX_TURN, rel_tol=1e-4)


def test_the_shown_face_moves_by_what_the_model_left_out_and_not_where_a_face_was_unseen():
    transfer = PoseTransfer()
    reference, shown_reference = head(30.0, seed=6), head(30.0, centre=(82.0, 78.0), seed=6)
    transfer.start(reference, shown_reference)
    driver = head(30.0, shift=(8.0, 0.0), seed=6)  # the driver's head moved 8 px to the right
    drawn = head(30.0, centre=(82.0, 78.0), shift=(3.0, 0.0), seed=6)  # the model drew 3 px of it
    image = dot_image(83.0, 80.0)
    (moved,) = transfer.apply([image], driver, SEEN, drawn, SEEN)
    x, y = centroid(moved, 88.0, 80.0)
    assert abs(x - 88.0) < 0.3 and abs(y - 80.0) < 0.3
    unseen = torch.zeros(1, dtype=torch.bool)
    assert transfer.apply([image], driver, unseen, drawn, SEEN)[0] is image
    # the same faces at another size move by the same share of their side
    small = torch.nn.functional.interpolate(image, size=(SIDE // 2, SIDE // 2), mode="bilinear", antialias=True)
    _, half = transfer.apply([image, small], driver, SEEN, drawn, SEEN)
    ys, xs = np.unravel_index(int(half[0, 0].argmax()), half.shape[-2:])
    assert abs(xs + 0.5 - 44.0) <= 1.0


def test_maps_that_are_not_colours_move_with_the_faces_unclamped_and_come_last():
    # Where the fine detail of a large face comes from (`source_coordinates`) moves as the face
    # does; its values are not colours, so the bicubic warp's clamp to [-1, 1] must not touch them.
    from sfd.pipeline.detail_transfer import source_coordinates

    transfer = PoseTransfer()
    reference = head(30.0, seed=6)
    image = dot_image(83.0, 80.0)
    coordinates = source_coordinates(torch.full((1, 2, 8, 8), 0.5), SIDE)  # beyond 1 on the right
    unmoved = transfer.apply([image], reference, SEEN, reference, SEEN, maps=[coordinates])  # not started
    assert unmoved[0] is image and unmoved[1] is coordinates
    transfer.start(reference, reference)
    driver = head(30.0, shift=(8.0, 0.0), seed=6)
    moved, moved_map = transfer.apply([image], driver, SEEN, reference, SEEN, maps=[coordinates])
    assert float(moved_map.max()) > 1.4
    # the map is warped as the image: the same warp applied to the map as a (3-channel) image
    stacked = torch.cat([coordinates, coordinates[:, :1]], 1)
    (warped,) = transfer.apply([stacked * 0.5], driver, SEEN, reference, SEEN)  # halved: inside the clamp
    assert torch.allclose(moved_map, 2 * warped[:, :2], atol=1e-5)
    assert not torch.equal(moved, image)


def test_the_face_mesh_reads_a_warped_real_face_back_where_it_was_moved(faces_dir):
    from sfd.media import load_image
    from sfd.pipeline.face_retargeting import tracked_points
    from sfd.semantics.face_measures import face_mesh

    mesh = face_mesh("cpu")
    portrait = torch.from_numpy(np.array(load_image(faces_dir / "lia-vox" / "monroe.png"))).permute(2, 0, 1)[None]
    face = torch.nn.functional.interpolate(portrait.float() / 127.5 - 1, size=(256, 256), mode="area")
    before, seen = tracked_points(mesh, face)
    centre = before[:, HEAD_POINTS].mean(1, keepdim=True)
    moved = move_heads(face, similarity(5.0, 1.04), centre, centre + torch.tensor([[[8.0, -6.0]]]))
    after, seen_after = tracked_points(mesh, moved)
    assert bool(seen[0]) and bool(seen_after[0])
    got, start, end = fit_similarity(before, after, HEAD_POINTS)
    # measured: 4.7 degrees, 1.035, (7.9, -5.5) px; the warp fades out towards the crop's edges
    assert abs(math.degrees(math.atan2(float(got[0, 1]), float(got[0, 0]))) - 5.0) < 1.0
    assert abs(float(got.norm()) - 1.04) < 0.02
    assert torch.allclose(end - start, torch.tensor([[[8.0, -6.0]]]), atol=1.5)

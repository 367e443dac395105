"""Mouth transfer: the opening warp on a drawn mouth (exact geometry), the shortfall it is given
(the driver's change, for each face's size; nothing from a rigid head motion), the inside of the
opened mouth taken from the driver's (its teeth under its upper lip), and the pipeline
opening a real portrait's mouth where a test driver's opens (the bundle's test, in
test_bundled_weights)."""

import math

import numpy as np
import pytest
import torch

from sfd.pipeline.mouth_inside import paint_mouth_inside
from sfd.pipeline.mouth_transfer import (CLOSE_SHARE, DEAD_ZONE, JAW_WIDTH, LOWER_INNER, SHUT, UPPER_INNER,
                                         MouthTransfer, open_mouth, opened_inner_lips)
from sfd.pretrained.face_mesh_regions import (CHIN, INNER_LIP_PAIRS, LEFT_EYE_OUTER, MOUTH_LEFT, MOUTH_RIGHT,
                                              RIGHT_EYE_OUTER)

SIDE = 120
SKIN, LIP, INSIDE = 0.6, 0.0, -0.8
CX, CY = 60.0, 70.0  # the mouth's middle
HALF_WIDTH, INNER_HALF_WIDTH, HALF_GAP, LIP_THICKNESS, CHIN_Y = 20.0, 16.0, 1.5, 5.0, 100.0


def drawn_mouth(half_gap: float = HALF_GAP):
    """A skin-coloured image with lips around a thin dark gap and a dark chin line, and a mesh whose
    mouth and chin points lie on them (the other points far away: the warp never reads them)."""
    image = torch.full((1, 3, SIDE, SIDE), SKIN)
    ys, xs = torch.meshgrid(torch.arange(SIDE) + 0.5, torch.arange(SIDE) + 0.5, indexing="ij")
    across = ((xs - CX) / INNER_HALF_WIDTH).clamp(-1, 1)
    lens = torch.sqrt(1 - across.square())
    inner = (xs - CX).abs() < INNER_HALF_WIDTH
    lips = ((xs - CX).abs() < HALF_WIDTH) & ((ys - CY).abs() < half_gap * lens + LIP_THICKNESS)
    image[0, :, lips] = LIP
    image[0, :, inner & ((ys - CY).abs() < half_gap * lens)] = INSIDE
    image[0, :, ((xs - CX).abs() < 15) & ((ys - CHIN_Y).abs() < 1)] = INSIDE
    points = torch.full((1, 468, 2), -1000.0)
    points[0, MOUTH_RIGHT] = torch.tensor([CX - HALF_WIDTH, CY])
    points[0, MOUTH_LEFT] = torch.tensor([CX + HALF_WIDTH, CY])
    points[0, CHIN] = torch.tensor([CX, CHIN_Y])
    for k, (up, down) in zip(np.linspace(-1, 1, len(UPPER_INNER)), zip(UPPER_INNER, LOWER_INNER)):
        gap = half_gap * math.sqrt(max(0.0, 1 - k * k))
        points[0, up] = torch.tensor([CX + k * INNER_HALF_WIDTH, CY - gap])
        points[0, down] = torch.tensor([CX + k * INNER_HALF_WIDTH, CY + gap])
    return image, points


def dark_rows(column: torch.Tensor, below: float) -> np.ndarray:
    """Rows (pixel centres) of a (H,) column darker than the lips, from `below` on."""
    rows = np.nonzero((column < (LIP + INSIDE) / 2).numpy())[0] + 0.5
    return rows[rows > below]


def test_no_opening_is_an_exact_identity():
    image, points = drawn_mouth()
    assert torch.equal(open_mouth(image, points, torch.zeros(1)), image)


def test_the_gap_widens_by_the_opening_at_the_middle_and_the_chin_drops_with_it():
    image, points = drawn_mouth()
    opened = open_mouth(image, points, torch.tensor([10.0]))
    middle = int(CX)
    before, after = dark_rows(image[0, 0, :, middle], CY - 5), dark_rows(opened[0, 0, :, middle], CY - 5)
    gap_before = before[before < CY + 10]
    gap_after = after[after < CY + 20]
    # the dark inside's lower edge (the lower lip's top) moves down by the opening, its upper edge
    # (the upper lip) stays: measured 69.5-70.5, then 70.5-79.5 (bilinear sampling blurs an edge by
    # a pixel)
    assert abs(gap_after.max() - gap_before.max() - 10) <= 1.5, (gap_before, gap_after)
    assert abs(gap_after.min() - gap_before.min()) <= 1.5, (gap_before, gap_after)
    # the chin line moved down by the opening
    chin_before, chin_after = before[before > 90].mean(), after[after > 90].mean()
    assert abs(chin_after - chin_before - 10) < 1.0, (chin_before, chin_after)
    # the new inside is darker than stretched lips: shaded towards a mouth's inside
    assert float(opened[0, 0, int(CY) + 4:int(CY) + 8, middle].max()) < INSIDE + 0.01


def test_the_corners_open_less_than_the_middle_and_nothing_above_or_beside_moves():
    image, points = drawn_mouth()
    opened = open_mouth(image, points, torch.tensor([10.0]))
    widened = [len(dark_rows(opened[0, 0, :, x], CY - 5)) - len(dark_rows(image[0, 0, :, x], CY - 5))
               for x in (int(CX), int(CX + 12))]
    assert widened[1] < 0.8 * widened[0], widened
    top = int(CY - HALF_GAP - LIP_THICKNESS)  # the upper lip and everything above it
    assert torch.equal(opened[..., :top, :], image[..., :top, :])
    outside = int(JAW_WIDTH * HALF_WIDTH) + 1
    for columns in (slice(0, int(CX) - outside), slice(int(CX) + outside + 1, SIDE)):
        assert torch.equal(opened[..., columns], image[..., columns])


def test_a_negative_opening_closes_the_gap_from_below_and_the_chin_rises_with_it():
    # a mouth drawn 12 px open at its middle, asked to close by 8 px
    image, points = drawn_mouth(half_gap=6.0)
    closed = open_mouth(image, points, torch.tensor([-8.0]))
    middle = int(CX)
    before, after = dark_rows(image[0, 0, :, middle], CY - 10), dark_rows(closed[0, 0, :, middle], CY - 10)
    gap_before, gap_after = before[before < CY + 10], after[after < CY + 10]
    # the upper lip stays, the lower lip rises by the closing: 64.5-75.5 -> 64.5-67.5 (a pixel of blur)
    assert abs(gap_after.min() - gap_before.min()) <= 1.0, (gap_before, gap_after)
    assert abs((gap_before.max() - gap_after.max()) - 8) <= 1.5, (gap_before, gap_after)
    chin_before, chin_after = before[before > 90].mean(), after[after > 90].mean()
    assert abs(chin_before - chin_after - 8) < 1.0, (chin_before, chin_after)
    # no shading: what remains of the gap is the drawn inside, not darker
    assert float(closed.min()) >= INSIDE - 1e-6
    top = int(CY - 6.0 - LIP_THICKNESS)
    assert torch.equal(closed[..., :top, :], image[..., :top, :])
    # asked to close by more than the gap, the lips stop short of crossing: a share of it stays
    shut = open_mouth(image, points, torch.tensor([-40.0]))
    left = dark_rows(shut[0, 0, :, middle], CY - 10)
    left = left[left < CY + 10]
    assert len(left) >= 1 and (left.max() - left.min() + 1) <= (1 - CLOSE_SHARE) * 12 + 2, left


def test_openings_apply_per_face_in_a_batch():
    image, points = drawn_mouth()
    opened = open_mouth(image.expand(2, -1, -1, -1), points.expand(2, -1, -1), torch.tensor([0.0, 8.0]))
    assert torch.equal(opened[0], image[0]) and not torch.equal(opened[1], image[0])


def face_points(inter_ocular: float, lip_gap: float, angle: float = 0.0, scale: float = 1.0,
                shift=(0.0, 0.0)) -> torch.Tensor:
    """(1, 468, 2) points with the outer eye corners `inter_ocular` apart and the inner lips `lip_gap`
    apart, then turned by `angle` degrees, scaled and shifted as a whole (a rigid head motion)."""
    points = torch.zeros(1, 468, 2)
    points[0, RIGHT_EYE_OUTER] = torch.tensor([-inter_ocular / 2, 0.0])
    points[0, LEFT_EYE_OUTER] = torch.tensor([inter_ocular / 2, 0.0])
    for x, (up, down) in zip((-5.0, 0.0, 5.0), INNER_LIP_PAIRS):
        points[0, up] = torch.tensor([x, inter_ocular - lip_gap / 2])
        points[0, down] = torch.tensor([x, inter_ocular + lip_gap / 2])
    turn = math.radians(angle)
    rotation = torch.tensor([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    return scale * points @ rotation.T + torch.tensor(shift)


SEEN = torch.ones(1, dtype=torch.bool)


def started(strength: float = 1.0) -> MouthTransfer:
    """A transfer whose driver (inter-ocular 50 px) starts shut and whose shown face (100 px) starts
    with its lips 2 px apart."""
    transfer = MouthTransfer(strength)
    transfer.start(face_points(50.0, 0.0), face_points(100.0, 2.0))
    return transfer


def test_a_driver_s_lip_moving_by_d_opens_the_shown_face_by_d_times_the_face_size_ratio():
    # the driver's lips part by 10 px of its 50 px face: 20 px of the shown 100 px face, less the
    # 3 px it already shows beyond its start, less the mesh's jitter allowance
    driver, shown = face_points(50.0, 10.0), face_points(100.0, 5.0)
    expected = (0.02 + 10 / 50 - 5 / 100 - DEAD_ZONE) * 100
    assert math.isclose(float(started().shortfall(driver, SEEN, shown, SEEN)[0]), expected, rel_tol=1e-5)
    # the expression strength scales the driver's change
    half = (0.02 + 0.5 * 10 / 50 - 5 / 100 - DEAD_ZONE) * 100
    assert math.isclose(float(started(0.5).shortfall(driver, SEEN, shown, SEEN)[0]), half, rel_tol=1e-5)
    assert float(started(0.0).shortfall(driver, SEEN, shown, SEEN)[0]) == 0.0


def test_a_rigid_head_motion_of_the_driver_opens_nothing():
    moved = face_points(50.0, 0.0, angle=25.0, scale=1.4, shift=(30.0, -12.0))
    shown = face_points(100.0, 2.0, angle=-10.0, scale=0.7, shift=(5.0, 9.0))
    assert float(started().shortfall(moved, SEEN, shown, SEEN)[0]) == 0.0


def test_a_face_drawn_more_open_than_the_driver_s_is_closed_and_one_within_the_jitter_or_unseen_is_left():
    driver = face_points(50.0, 10.0)  # the driver's lips 20 % of its face apart: 22 % for the shown face
    too_open = float(started().shortfall(driver, SEEN, face_points(100.0, 30.0), SEEN)[0])
    assert math.isclose(too_open, (0.02 + 10 / 50 - 30 / 100 + DEAD_ZONE) * 100, rel_tol=1e-5) and too_open < 0
    close_enough = face_points(100.0, 100 * (0.02 + 10 / 50 + 0.8 * DEAD_ZONE))
    assert float(started().shortfall(driver, SEEN, close_enough, SEEN)[0]) == 0.0
    unseen = torch.zeros(1, dtype=torch.bool)
    assert float(started().shortfall(driver, unseen, face_points(100.0, 30.0), SEEN)[0]) == 0.0
    assert float(started().shortfall(driver, SEEN, face_points(100.0, 5.0), unseen)[0]) == 0.0
    # a rigid turn of the shown face changes nothing: the opening is read in its own size
    turned = face_points(100.0, 30.0, angle=20.0, scale=0.5, shift=(7.0, 3.0))
    assert math.isclose(float(started().shortfall(driver, SEEN, turned, SEEN)[0]), too_open * 0.5, rel_tol=1e-4)


def test_a_driver_caught_mid_word_opens_a_shut_face_from_a_shut_mouth_s_reading():
    # The driver's reference shows its lips 10 px apart (of 50), the shown face's 2 px (of 100).
    # The driver's 6 px count from a shut mouth (SHUT): (12 % - SHUT) of the shown face, not the
    # 8 % below its reference that the reference alone would give (which opens nothing).
    transfer = MouthTransfer()
    transfer.start(face_points(50.0, 10.0), face_points(100.0, 2.0))
    shown = face_points(100.0, 2.0)
    opened = float(transfer.shortfall(face_points(50.0, 6.0), SEEN, shown, SEEN)[0])
    assert math.isclose(opened, (6 / 50 - SHUT - 2 / 100 - DEAD_ZONE) * 100, rel_tol=1e-5)
    # the driver shut: the face's 2 px above its shut level (0) close, less the jitter allowance
    shut = float(transfer.shortfall(face_points(50.0, 0.0), SEEN, shown, SEEN)[0])
    assert math.isclose(shut, (0 - 2 / 100 + DEAD_ZONE) * 100, rel_tol=1e-5)
    # a shown face drawn as open as the driver's reference (the same person) is asked for the
    # driver's change from its reference, as before: not that plus its own opening
    same = MouthTransfer()
    same.start(face_points(50.0, 10.0), face_points(100.0, 20.0))
    again = float(same.shortfall(face_points(50.0, 6.0), SEEN, face_points(100.0, 0.0), SEEN)[0])
    assert math.isclose(again, (20 / 100 + 6 / 50 - 10 / 50 - DEAD_ZONE) * 100, rel_tol=1e-5)


TEETH = 0.9


def driver_with_teeth(half_gap: float = 8.0):
    """A drawn open mouth with upper teeth where the face mesh puts them on a real one: from 4 px
    above its upper inner-lip line (the mesh's line sits on the teeth's lower part) to 1 px below."""
    image, points = drawn_mouth(half_gap)
    ys, xs = torch.meshgrid(torch.arange(SIDE) + 0.5, torch.arange(SIDE) + 0.5, indexing="ij")
    top = CY - half_gap * torch.sqrt(1 - ((xs - CX) / INNER_HALF_WIDTH).clamp(-1, 1).square())
    image[0, :, ((xs - CX).abs() < 10) & (ys > top - 4) & (ys < top + 1)] = TEETH
    return image, points


def test_the_opened_lips_are_where_the_warp_leaves_them():
    image, points = drawn_mouth()
    lips = opened_inner_lips(points, torch.tensor([10.0]))
    upper, lower = lips[0, :len(UPPER_INNER)], lips[0, len(UPPER_INNER):]
    assert torch.equal(upper, points[0, UPPER_INNER])
    middle = LOWER_INNER.index(14)
    assert abs(float(lower[middle, 1] - points[0, 14, 1]) - 10) < 1e-4  # the middle by the whole opening
    assert torch.allclose(lower[[0, -1]], points[0, [LOWER_INNER[0], LOWER_INNER[-1]]])  # corners stay
    # the warp's own lower lip is there: its dark gap ends at the moved point
    opened = open_mouth(image, points, torch.tensor([10.0]))
    dark = dark_rows(opened[0, 0, :, int(CX)], CY - 5)
    assert abs(dark[dark < CY + 20].max() + 0.5 - float(lower[middle, 1])) <= 2  # drawn as the gap was


def test_an_opened_mouth_shows_the_driver_s_teeth_under_its_upper_lip_and_its_dark_below():
    image, points = drawn_mouth()
    extra = torch.tensor([10.0])
    opened = open_mouth(image, points, extra)
    lips = opened_inner_lips(points, extra)
    driver, driver_points = driver_with_teeth()
    painted = paint_mouth_inside(opened, lips, SEEN, driver, driver_points, SEEN)
    column = painted[0, 0, :, int(CX)]
    top, bottom = CY - HALF_GAP, CY + HALF_GAP + 10  # the shown gap at the middle: 68.5 to 81.5
    assert float(column[int(top) + 1:int(top) + 3].min()) > 0.5, column[60:85]  # the teeth
    assert float(column[int(top) + 5:int(bottom) - 2].max()) < INSIDE + 0.1, column[60:85]  # the dark
    assert float(opened[0, 0, int(top) + 1:int(top) + 3, int(CX)].max()) < 0.5  # not there before
    # outside the inner lips nothing changes: the lips, the skin, the corners
    outside = torch.ones(SIDE, SIDE, dtype=torch.bool)
    outside[int(top):int(bottom) + 1, int(CX - INNER_HALF_WIDTH):int(CX + INNER_HALF_WIDTH) + 1] = False
    assert torch.equal(painted[0, :, outside], opened[0, :, outside])


def test_a_driver_whose_lips_meet_or_a_face_not_seen_gives_nothing():
    image, points = drawn_mouth()
    extra = torch.tensor([10.0])
    opened = open_mouth(image, points, extra)
    lips = opened_inner_lips(points, extra)
    shut, shut_points = driver_with_teeth(half_gap=0.5)
    assert torch.equal(paint_mouth_inside(opened, lips, SEEN, shut, shut_points, SEEN), opened)
    driver, driver_points = driver_with_teeth()
    assert torch.equal(paint_mouth_inside(opened, lips, SEEN, driver, driver_points, ~SEEN), opened)


def test_the_fine_detail_fades_where_the_inside_is_drawn_and_maps_are_left():
    image, points = drawn_mouth()
    extra = torch.tensor([10.0])
    lips = opened_inner_lips(points, extra)
    driver, driver_points = driver_with_teeth()
    gain = paint_mouth_inside(torch.zeros(1, 1, SIDE, SIDE), lips, SEEN, driver, driver_points, SEEN, "gain")
    assert float(gain[0, 0, int(CY) + 4, int(CX)]) == pytest.approx(-1.0)
    assert float(gain[0, 0, int(CY) - 6, int(CX)]) == 0.0 and float(gain[0, 0, int(CY) + 20, int(CX)]) == 0.0
    coordinates = torch.rand(1, 2, SIDE, SIDE)
    assert torch.equal(paint_mouth_inside(coordinates, lips, SEEN, driver, driver_points, SEEN, "map"), coordinates)
    with pytest.raises(ValueError, match="content"):
        paint_mouth_inside(image, lips, SEEN, driver, driver_points, SEEN, "texture")

"""The motion losses of training (sfd.training.motion_losses) on known geometry and a real face."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfd.data.driver_warp import similarity_matrix, warp_image
from sfd.media import read_video
from sfd.pretrained.face_mesh import FaceMesh
from sfd.pretrained.face_mesh_regions import REGIONS
from sfd.training.motion_losses import (MotionReadout, keypoint_flow_loss, landmark_loss, non_rigid_offsets,
                                        point_error, point_weights, readout_loss, region_weighted_l1,
                                        warp_flow_loss)

from conftest import TALKING_HEADS


def _uniform_flow(dx: float, dy: float, size: int = 32) -> torch.Tensor:
    flow = torch.zeros(1, 2, size, size)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def test_keypoint_flow_loss_is_zero_for_the_right_flow_and_grows_with_the_error():
    driver = torch.rand(1, 50, 2) * 1.6 - 0.8
    source = driver + torch.tensor([0.1, -0.05])  # the source's points sit 0.1 right, 0.05 up of the driver's
    assert keypoint_flow_loss(_uniform_flow(0.1, -0.05), source, driver).item() == pytest.approx(0, abs=1e-6)
    errors = [keypoint_flow_loss(_uniform_flow(0.1 + e, -0.05), source, driver).item() for e in (0.02, 0.04, 0.08)]
    assert errors == pytest.approx([0.02, 0.04, 0.08], rel=1e-4)
    # a pair without points does not count
    both = keypoint_flow_loss(_uniform_flow(0.0, 0.0).repeat(2, 1, 1, 1), source.repeat(2, 1, 1),
                              driver.repeat(2, 1, 1), valid=torch.tensor([False, False]))
    assert both.item() == 0


def test_point_weights_raise_the_lips_and_the_eyes_each_by_its_own_weight():
    weights = point_weights(lips=5.0, eyes=20.0)
    eyes = list(REGIONS["left_eye"]) + list(REGIONS["right_eye"])
    lips = list(REGIONS["outer_lips"]) + list(REGIONS["inner_lips"])
    assert (weights[eyes] == 20).all() and (weights[lips] == 5).all()
    assert int((weights == 1).sum()) == len(weights) - len(set(eyes) | set(lips))
    # the same error on an eye point weighs 4x what it weighs on a lip point
    target = torch.zeros(1, len(weights), 2)
    moved_eye, moved_lip = target.clone(), target.clone()
    moved_eye[0, eyes[0], 0] = moved_lip[0, lips[0], 0] = 0.1
    ratio = point_error(moved_eye, target, weights) / point_error(moved_lip, target, weights)
    assert ratio.item() == pytest.approx(4.0)
    assert (point_weights(lips=5.0)[eyes] == 5).all()  # no eye weight of their own: the lips'


def test_warp_flow_loss_is_zero_for_the_warps_own_grid():
    theta = similarity_matrix(10.0, 1.05, 0.05, -0.03)[None]
    size = 32
    grid = F.affine_grid(theta, (1, 2, size, size), align_corners=False)
    axis = (torch.arange(size) * 2 + 1) / size - 1
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    flow = (grid - torch.stack((gx, gy), -1)[None]).permute(0, 3, 1, 2)
    assert warp_flow_loss(flow, theta).item() == pytest.approx(0, abs=1e-6)
    assert warp_flow_loss(torch.zeros_like(flow), theta).item() > 0.05  # the do-nothing flow is wrong


def test_readout_learns_a_linear_map_from_motion_change_to_offsets():
    torch.manual_seed(0)
    truth = torch.randn(20, 10 * 2) * 0.01
    readout = MotionReadout(20, 10)
    optimizer = torch.optim.Adam(readout.parameters(), lr=1e-2)
    motion = torch.randn(256, 20)
    source = torch.zeros(256, 10, 2)
    driver = (motion @ truth).view(256, 10, 2)
    first = readout_loss(readout(motion), source, driver).item()
    for _ in range(300):
        loss = readout_loss(readout(motion), source, driver)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.01 * first


def test_non_rigid_offsets_ignore_head_motion_and_keep_a_moved_lip():
    torch.manual_seed(0)
    source = torch.rand(2, 60, 2) * 1.2 - 0.6
    theta = torch.tensor(0.25)  # 14 degrees, 8 % larger, shifted: a pure head motion
    rotation = torch.stack((torch.stack((theta.cos(), -theta.sin())), torch.stack((theta.sin(), theta.cos()))))
    driver = 1.08 * source @ rotation.T + torch.tensor([0.07, -0.04])
    assert non_rigid_offsets(source, driver).abs().max().item() < 1e-5
    lip = 17
    driver[:, lip, 1] += 0.054  # and the lower lip drops by 0.05 in the source's frame (x 1.08)
    offsets = non_rigid_offsets(source, driver)
    moved = offsets[:, lip].norm(dim=-1)
    assert moved.min().item() == pytest.approx(0.05, rel=0.05)
    others = torch.cat((offsets[:, :lip], offsets[:, lip + 1:]), 1).norm(dim=-1)
    assert others.max().item() < 0.1 * moved.min().item()  # the fit spreads little of it elsewhere
    # weights make the read-out loss count those points more
    weights = torch.ones(60)
    weights[lip] = 5
    predicted = torch.zeros_like(offsets)
    plain = readout_loss(predicted, source, driver, scale=0.01, target=offsets).item()
    weighted = readout_loss(predicted, source, driver, scale=0.01, target=offsets, weights=weights).item()
    assert weighted > 3 * plain


def test_region_weighted_l1_weighs_the_masked_pixels_up():
    target = torch.zeros(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    inside, outside = target.clone(), target.clone()
    inside[..., 0, 0] = 1  # one wrong pixel inside the mask
    outside[..., 7, 7] = 1  # and one outside
    assert region_weighted_l1(inside, target, mask, 4.0) == pytest.approx(5 * region_weighted_l1(outside, target, mask, 4.0))
    assert region_weighted_l1(target, target, mask, 4.0) == 0


@pytest.fixture(scope="module")
def mesh_and_face():
    clip = TALKING_HEADS / "clips" / "055_dreamtalk-m030-front-neutral-level1-001.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} is not here (the shared corpus)")
    frame = read_video(clip, max_frames=1)[0][0]
    side = min(frame.shape[:2])
    face = torch.from_numpy(np.ascontiguousarray(frame[:side, :side])).permute(2, 0, 1)[None].float() / 127.5 - 1
    return FaceMesh.from_pretrained(), F.interpolate(face, size=(128, 128), mode="bilinear", antialias=True)


def test_landmark_loss_is_zero_for_the_same_image_and_grows_with_a_known_shift(mesh_and_face):
    mesh, face = mesh_and_face
    with torch.no_grad():
        points = mesh.on_aligned(face).points[..., :2] / 128 * 2 - 1
        assert landmark_loss(mesh, face, points).item() < 1e-6
        losses = []
        for pixels in (2, 4, 8):  # the output shifted right by this many pixels of 128
            shifted = warp_image(face[0], similarity_matrix(0.0, 1.0, -pixels / 128, 0.0))[None]
            losses.append(landmark_loss(mesh, shifted, points).item())
    # the mesh follows the shift: x error ~ 2 * pixels / 128 in [-1, 1] units (within the mesh's own jitter)
    assert losses[0] < losses[1] < losses[2]
    assert losses[2] == pytest.approx(2 * 8 / 128, rel=0.35)
    face = face.clone().requires_grad_(True)
    landmark_loss(mesh, face, points + 0.05).backward()
    assert face.grad.abs().sum() > 0

"""Explicit retargeting after the model: the driver's blinks, mouth opening and head pose, read by
the face mesh on the driver's face and moved into the face as drawn by image warps
(`blink_transfer`, `mouth_transfer`, `pose_transfer`). One mesh reading of each driver face and of
each shown face serves all three.

Faces are read as MediaPipe tracks them (`tracked_points`): a mesh pass on the whole aligned
crop, then one on the box and angle of those points. On the test drivers that framing follows
dlib's eye opening at r 0.73-0.95, the whole crop alone at 0.35-0.89.
"""

from __future__ import annotations

import torch

from ..pretrained.face_mesh import rois_from_points
from .blink_transfer import BlinkTransfer, close_lids
from .mouth_transfer import MouthTransfer, open_mouth
from .pose_transfer import PoseTransfer

DRIVER_SIDE = 256  # the driver's face crops are read at this side
MIN_PRESENCE = 0.5  # the mesh's face presence under which a face counts as not seen


def tracked_points(mesh, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mesh points (N, 468, 2) in the pixels of aligned faces (N, 3, S, S) in [-1, 1], and whether a
    face was seen (N,): a pass on the whole face, then one on MediaPipe's framing of its points."""
    first = mesh.on_aligned(faces.float())
    boxes, angles = rois_from_points(first.points)
    found = mesh.detect(faces.float(), boxes, angles, passes=1)
    return found.points[..., :2], found.presence > MIN_PRESENCE


class FaceRetargeting:
    """One clip's retargeting: `start` with the reference faces, then call with each batch of driver
    faces and the faces shown for them. `blinks`: close the lids where the driver's close (and
    widen them where the driver's open wider than usual);
    `mouth_strength`: open and close the mouth as the driver's does, times this (0: not at all); `head`:
    move the head as the driver's moved since its reference face."""

    def __init__(self, mesh, blinks: bool = True, mouth_strength: float = 1.0, head: bool = True):
        self.mesh = mesh
        self.blinks = BlinkTransfer() if blinks else None
        self.mouth = MouthTransfer(mouth_strength) if mouth_strength > 0 else None
        self.pose = PoseTransfer() if head else None

    @property
    def active(self) -> bool:
        return self.blinks is not None or self.mouth is not None or self.pose is not None

    @property
    def needs_reference(self) -> bool:
        """Whether `start` wants the face shown at the reference motion (mouth and head transfer)."""
        return self.mouth is not None or self.pose is not None

    @torch.no_grad()
    def start(self, driver_face: torch.Tensor, shown_face: torch.Tensor) -> None:
        """The driver's reference face (1, 3, S, S) and the face shown at its motion, in [-1, 1]; where
        the mesh does not see both, neither mouth nor head is moved in this clip."""
        if self.needs_reference:
            driver, driver_seen = tracked_points(self.mesh, driver_face)
            shown, shown_seen = tracked_points(self.mesh, shown_face)
            if bool(driver_seen[0]) and bool(shown_seen[0]):
                for transfer in (self.mouth, self.pose):
                    if transfer is not None:
                        transfer.start(driver, shown)

    @torch.no_grad()
    def __call__(self, driver_faces: torch.Tensor, faces: torch.Tensor, *more: torch.Tensor) -> list[torch.Tensor]:
        """`faces` (B, 3, S, S) in [-1, 1] and the same faces at other sizes (`more`), retargeted to the
        driver's faces (B, 3, S', S'); the features are found by the mesh on `faces`."""
        shown = [faces, *more]
        if not self.active:
            return shown
        driver_points, driver_seen = tracked_points(self.mesh, driver_faces)
        closure = self.blinks.closures(driver_points, driver_seen) if self.blinks is not None else None
        if self.mouth is None and self.pose is None and not bool((closure != 0).any()):
            return shown
        points, seen = tracked_points(self.mesh, faces)
        if self.mouth is not None:
            extra = self.mouth.shortfall(driver_points, driver_seen, points, seen)
            shown = [open_mouth(x, points * (x.shape[-1] / faces.shape[-1]), extra * (x.shape[-1] / faces.shape[-1]))
                     for x in shown]
        if closure is not None:
            closure = closure.to(points.device) * seen
            shown = [close_lids(x, points * (x.shape[-1] / faces.shape[-1]), closure) for x in shown]
        if self.pose is not None:  # last: the lids and lips were found on the head where it was drawn
            shown = self.pose.apply(shown, driver_points, driver_seen, points, seen)
        return shown

"""Explicit retargeting after the model: the driver's blinks, mouth opening and head pose, read by
the face mesh on the driver's face and moved into the face as drawn by image warps
(`blink_transfer`, `mouth_transfer`, `pose_transfer`), and the inside of the mouth taken from the
driver's (`mouth_inside`). One mesh reading of each driver face and of each shown face serves all.

Faces are read as MediaPipe reads a video (`MeshStreams`): the driver's faces and the faces shown
for them are two streams, each face read in one mesh pass on the box and angle of the previous
face's points in its stream (a frame's two faces in one batch); the first face, or one the mesh
lost, in two, the first on the whole aligned crop (`tracked_points`); a face that has not changed
keeps the points of the face last read. On the test drivers that framing follows dlib's eye
opening at r 0.73-0.95, the whole crop alone at 0.35-0.89. Against framing every face afresh (two
passes each), the streams halve the mesh passes, and their steadier points raised the same
person's mouth r from 0.66 to 0.70 and the eyes r on other people's stills from 0.31 to 0.35
(docs/retargeting.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..pretrained.face_mesh import crop_images, mesh_crop_transforms, points_to_image, rois_from_points
from .blink_transfer import BlinkTransfer, close_lids
from .mouth_inside import paint_mouth_inside
from .mouth_transfer import MouthTransfer, open_mouth, opened_inner_lips
from .pose_transfer import PoseTransfer

DRIVER_SIDE = 256  # the driver's face crops are read at this side
MIN_PRESENCE = 0.5  # the mesh's face presence under which a face counts as not seen
SAME_FACE = 1 / 255  # a face within half a grey level ([-1, 1] units) of the face last read is that face


def tracked_points(mesh, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mesh points (N, 468, 2) in the pixels of aligned faces (N, 3, S, S) in [-1, 1], and whether a
    face was seen (N,): a pass on the whole face, then one on MediaPipe's framing of its points."""
    first = mesh.on_aligned(faces.float())
    boxes, angles = rois_from_points(first.points)
    found = mesh.detect(faces.float(), boxes, angles, passes=1)
    return found.points[..., :2], found.presence > MIN_PRESENCE


class MeshStreams:
    """A clip's streams of faces (its driver faces, the faces shown for them), each read in order as
    MediaPipe reads a video: a face is framed on the box and angle of the previous face's points
    in its stream, one mesh pass, the streams' faces of one frame in one batch; the first face of
    a stream, and a face the mesh loses, are read as `tracked_points` reads them (two passes). A
    face that has not changed since the face last read keeps that face's points (a still driver,
    or a repeated frame, then moves nothing)."""

    def __init__(self, mesh, names: Sequence[str] = ("driver", "shown")):
        self.mesh = mesh
        # per stream: the face last read (1, 3, S, S) and its points (1, 468, 2), or None
        self._last: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = dict.fromkeys(names)

    def restart(self, name: str) -> None:
        """The stream's next face is read afresh (the faces before it went unread)."""
        self._last[name] = None

    def __call__(self, **faces: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Points (B, 468, 2) in each face's pixels and whether a face was seen (B,), per stream
        named; every stream's faces (B, 3, S, S) in [-1, 1] (S may differ between streams)."""
        read: dict[str, tuple[list, list]] = {name: ([], []) for name in faces}
        for i in range(len(next(iter(faces.values())))):
            frame = {name: stream[i:i + 1].float() for name, stream in faces.items()}
            unchanged = {name for name, face in frame.items() if self._unchanged(name, face)}
            found = {name: (self._last[name][1], torch.ones(1, dtype=torch.bool, device=frame[name].device))
                     for name in unchanged}
            framed = [name for name in frame if name not in found and self._last[name] is not None]
            if framed:
                transforms = [mesh_crop_transforms(*rois_from_points(self._last[name][1])) for name in framed]
                out = self.mesh(torch.cat([crop_images(frame[name], t) for name, t in zip(framed, transforms)]))
                for j, (name, t) in enumerate(zip(framed, transforms)):
                    found[name] = (points_to_image(out.points[j:j + 1], t)[..., :2], out.presence[j:j + 1] > MIN_PRESENCE)
            for name, face in frame.items():
                if name not in found or not bool(found[name][1][0]):
                    found[name] = tracked_points(self.mesh, face)
                points, seen = found[name]
                if name not in unchanged:  # the face last read stays the one compared with
                    self._last[name] = (face, points) if bool(seen[0]) else None
                read[name][0].append(points)
                read[name][1].append(seen)
        return {name: (torch.cat(points), torch.cat(seen)) for name, (points, seen) in read.items()}

    def _unchanged(self, name: str, face: torch.Tensor) -> bool:
        last = self._last[name]
        return (last is not None and last[0].shape == face.shape
                and float((face - last[0]).abs().max()) <= SAME_FACE)


class FaceRetargeting:
    """One clip's retargeting: `start` with the reference faces, then call with each batch of driver
    faces and the faces shown for them. `blinks`: close the lids where the driver's close (and
    widen them where the driver's open wider than usual);
    `mouth_strength`: open and close the mouth as the driver's does, times this (0: not at all), its
    inside drawn from the driver's; `head`: move the head as the driver's moved since its reference
    face."""

    def __init__(self, mesh, blinks: bool = True, mouth_strength: float = 1.0, head: bool = True):
        self.mesh = mesh
        self.blinks = BlinkTransfer() if blinks else None
        self.mouth = MouthTransfer(mouth_strength) if mouth_strength > 0 else None
        self.pose = PoseTransfer() if head else None
        self.streams = MeshStreams(mesh)

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
            read = self.streams(driver=driver_face, shown=shown_face)  # each stream's first face
            (driver, driver_seen), (shown, shown_seen) = read["driver"], read["shown"]
            if bool(driver_seen[0]) and bool(shown_seen[0]):
                for transfer in (self.mouth, self.pose):
                    if transfer is not None:
                        transfer.start(driver, shown)

    @torch.no_grad()
    def __call__(self, driver_faces: torch.Tensor, faces: torch.Tensor, *more: torch.Tensor,
                 gains: Sequence[torch.Tensor] = (), maps: Sequence[torch.Tensor] = ()) -> list[torch.Tensor]:
        """`faces` (B, 3, S, S) in [-1, 1] and the same faces at other sizes (`more`), retargeted to the
        driver's faces (B, 3, S', S'); the features are found by the mesh on `faces`. `gains`: the
        fine detail's gain offsets (B, 1, S, S), 0 for none, come back darkened where the mouth
        shades the faces, faded where the lids smooth them (`close_lids`, "gain") and where the mouth's
        inside is the driver's. `maps` of the same faces that are not colours (such as
        `detail_transfer.source_coordinates`) are moved by the same warps, without shading or
        smoothing. Returned: the faces, the gains, the maps."""
        shown, gains, maps = [faces, *more], list(gains), list(maps)
        if not self.active:
            return shown + gains + maps
        if self.mouth is None and self.pose is None:  # the faces shown are read only where the lids move
            driver_points, driver_seen = self.streams(driver=driver_faces)["driver"]
            closure = self.blinks.closures(driver_points, driver_seen)
            if not bool((closure != 0).any()):
                self.streams.restart("shown")  # these faces go unread
                return shown + gains + maps
            points, seen = self.streams(shown=faces)["shown"]
        else:
            read = self.streams(driver=driver_faces, shown=faces)
            (driver_points, driver_seen), (points, seen) = read["driver"], read["shown"]
            closure = self.blinks.closures(driver_points, driver_seen) if self.blinks is not None else None

        def at(x: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:  # from pixels of `faces` to pixels of x
            return pixels * (x.shape[-1] / faces.shape[-1])

        if self.mouth is not None:
            extra = self.mouth.shortfall(driver_points, driver_seen, points, seen)
            shown, gains = ([open_mouth(x, at(x, points), at(x, extra)) for x in group] for group in (shown, gains))
            maps = [open_mouth(x, at(x, points), at(x, extra), shade=False) for x in maps]
            lips = opened_inner_lips(points, extra)  # the inside drawn from the driver's, between them
            shown, gains = ([paint_mouth_inside(x, at(x, lips), seen, driver_faces, driver_points, driver_seen,
                                                content) for x in group]
                            for group, content in ((shown, "colour"), (gains, "gain")))
        if closure is not None:
            closure = closure.to(points.device) * seen
            shown, gains, maps = ([close_lids(x, at(x, points), closure, content) for x in group]
                                  for group, content in ((shown, "colour"), (gains, "gain"), (maps, "map")))
        if self.pose is None:
            return shown + gains + maps
        # last: the lids and lips were found on the head where it was drawn
        return self.pose.apply(shown + gains, driver_points, driver_seen, points, seen, maps=maps)

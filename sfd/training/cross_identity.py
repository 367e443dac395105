"""A training signal for driving *another person's* face: retargeted mesh points.

Every other loss ties a driver to a source of the same person, so nothing asks the generator to
open a mouth that is not the driver's own. Here part of each batch is re-paired: the source of
another item (another person) takes this item's driver with relative motion, as the app does,

    z = Q_id a_id(s') + Q_m (a_m(s') + a_m(d) - a_m(r)),

where r is the driver's reference (its pair's source: the same person, the same clip). There is
no picture of s' moving like d, but there are points: s's own face mesh moved by the driver's
head motion from r to d and by its non-rigid offsets (mouth, lids, brows), scaled to the size of
s's face (`retarget_points`). The generator's flow, read at those points, must land on the
same points of s' (the keypoint-flow loss), so its flow has to carry *this* face's lips and lids
as far as the driver's moved.
"""

from __future__ import annotations

import torch

from ..pretrained.mesh_motion import retarget_points
from .motion_losses import keypoint_flow_loss


def cross_identity_partners(identity: torch.Tensor, flipped: torch.Tensor, usable: torch.Tensor,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each item of a batch, another item of the same batch to lend its source: `(partner, ok)`,
    (B,) each.

    A partner is a different person (`identity`, (B,)), mirrored as the item is (`flipped`: the
    mesh's point numbers name the subject's left and right, so a mirrored face's points would
    trade sides with an unmirrored one's), and `usable` (has points). `ok` is False where no item
    qualifies (or the item itself is not usable). The batch is all the partners come from, so a
    batch of the training split never lends a test person's face. Drawn uniformly, on the device,
    without a host sync.
    """
    same_person = identity[:, None] == identity[None, :]
    allowed = ~same_person & (flipped[:, None] == flipped[None, :]) & usable[None, :]
    scores = torch.rand(allowed.shape, generator=generator, device=allowed.device) + 1
    partner = (scores * allowed).argmax(1)
    ok = allowed.gather(1, partner[:, None])[:, 0] & usable
    return partner, ok


def cross_identity_keypoint_loss(model, out, batch: dict, count: int, weights: torch.Tensor | None = None,
                                 generator: torch.Generator | None = None) -> torch.Tensor:
    """The keypoint-flow loss of the first `count` items of `batch` re-paired across identities (the
    module doc). `model` is the unwrapped `SFDModel`, `out` its training forward on the batch (with
    the sources' features). Drivers that are warped stills are left out: their motion is a warp,
    not a face's."""
    points, valid = batch["source_points"], batch["points_valid"].to(out.source.motion.device)
    usable = valid & ~batch["is_still"].to(valid.device)
    partner, ok = cross_identity_partners(batch["identity"].to(valid.device), batch["flipped"].to(valid.device),
                                          valid, generator)
    partner, ok = partner[:count], ok[:count] & usable[:count]
    source = out.source.select(partner)  # its features too: the generator warps the partner's face
    latent = model.transfer_motion(source, out.driving.motion[:count], reference_motion=out.source.motion[:count])
    _, flow, _ = model.generate(latent, source.features, return_warp=True)
    target = retarget_points(points[partner], batch["driver_points"][:count], points[:count])
    return keypoint_flow_loss(flow, points[partner], target, weights, ok)

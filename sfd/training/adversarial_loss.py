"""Non-saturating GAN losses and the R1 gradient penalty (StyleGAN2's formulation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: softplus(-D(G(x))), i.e. -log sigmoid(D(G(x)))."""
    return F.softplus(-fake_logits.float()).mean()


def discriminator_adversarial_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """softplus(D(fake)) + softplus(-D(real)): the logistic loss of telling real from generated."""
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of |grad_x D(x)|^2 at real images (which must require grad).

    The graph is kept (create_graph) so that the penalty trains D. Multiply by gamma / 2, and by
    the interval when it is applied lazily every k steps.
    """
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()

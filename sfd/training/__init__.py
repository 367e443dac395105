"""Training of `SFDModel` (DESIGN.md, "Training"): losses, the accelerate trainer, checkpoints, CLI.

    from sfd.training import TrainingConfig, train
    result = train(TrainingConfig(data_root="data/vox", preset="vox256"))  # after `python -m sfd weights fetch-aux`

or ``python -m sfd.training --config cfg.yaml`` (see `sfd.training.cli`).
"""

from sfd.pretrained.vgg16 import VGG16PerceptualLoss

from .adversarial_loss import discriminator_adversarial_loss, generator_adversarial_loss, r1_penalty
from .checkpointing import CheckpointManager
from .cli import main
from .config import TrainingConfig
from .descriptor_losses import appearance_consistency_loss, identity_consistency_loss
from .ema import ModelEMA
from .evaluation import reconstruction_l1
from .image_grid import sample_grid
from .trainer import Trainer, TrainResult, train
from .vgg19_perceptual_loss import VGG19PerceptualLoss, vgg19_features

__all__ = [
    "CheckpointManager",
    "ModelEMA",
    "TrainResult",
    "Trainer",
    "TrainingConfig",
    "VGG16PerceptualLoss",
    "VGG19PerceptualLoss",
    "appearance_consistency_loss",
    "discriminator_adversarial_loss",
    "generator_adversarial_loss",
    "identity_consistency_loss",
    "main",
    "r1_penalty",
    "reconstruction_l1",
    "sample_grid",
    "train",
    "vgg19_features",
]

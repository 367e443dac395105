"""Training of `SFDModel` (DESIGN.md, "Training"): losses, the accelerate trainer, checkpoints, CLI.

    from sfd.training import TrainingConfig, train
    result = train(TrainingConfig(data_root="data/vox", preset="vox256"))  # after `python -m sfd weights fetch-aux`

or ``python -m sfd.training --config cfg.yaml`` (see `sfd.training.cli`).
"""

# Where each public name lives; imported on first use (see `__getattr__`), so that the lease
# command (`python -m sfd.training.lease`) starts without diffusers.
_HOMES = {
    "VGG16PerceptualLoss": "sfd.pretrained.vgg16",
    "discriminator_adversarial_loss": ".adversarial_loss", "generator_adversarial_loss": ".adversarial_loss",
    "r1_penalty": ".adversarial_loss",
    "CheckpointManager": ".checkpointing",
    "main": ".cli",
    "TrainingConfig": ".config",
    "appearance_consistency_loss": ".descriptor_losses", "identity_consistency_loss": ".descriptor_losses",
    "ModelEMA": ".ema",
    "reconstruction_l1": ".evaluation",
    "sample_grid": ".image_grid",
    "Trainer": ".trainer", "TrainResult": ".trainer", "train": ".trainer",
    "VGG19PerceptualLoss": "sfd.pretrained.vgg19", "vgg19_features": "sfd.pretrained.vgg19",
}

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


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name], __name__), name)

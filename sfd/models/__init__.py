from .discriminator import Discriminator
from .sfd_model import PRESETS, Descriptors, ReconstructionOutput, SFDModel
from .widen import widen

__all__ = ["Descriptors", "Discriminator", "PRESETS", "ReconstructionOutput", "SFDModel", "widen"]

from .discriminator import Discriminator
from .sfd_model import PRESETS, Descriptors, ReconstructionOutput, SFDModel

__all__ = ["Descriptors", "Discriminator", "PRESETS", "ReconstructionOutput", "SFDModel"]

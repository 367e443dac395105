from pathlib import Path

from .discriminator import Discriminator
from .sfd_model import PRESETS, Descriptors, ReconstructionOutput, SFDModel
from .widen import widen

# The small demo weights that ship inside the package (sfd/weights/sfd-demo64).
BUNDLED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "sfd-demo64"

__all__ = ["BUNDLED_WEIGHTS", "Descriptors", "Discriminator", "PRESETS", "ReconstructionOutput", "SFDModel", "widen"]

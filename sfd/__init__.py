"""sfd: face animation with semantic facial descriptors (ICASSP 2025): model, pipeline and demo."""

__version__ = "0.1.0"

from .models import Descriptors, Discriminator, SFDModel
from .pipeline import SFDPipeline

__all__ = ["Descriptors", "Discriminator", "SFDModel", "SFDPipeline", "__version__"]

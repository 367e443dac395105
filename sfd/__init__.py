"""sfd: face animation with semantic facial descriptors (ICASSP 2025): model, pipeline and demo."""

__version__ = "0.1.0"

__all__ = ["Descriptors", "Discriminator", "SFDModel", "SFDPipeline", "__version__"]


def __getattr__(name: str):
    # Imported on first use, so that `python -m sfd.training.lease` can make diffusers importable
    # (from a carried wheel) before anything needs it.
    if name in ("Descriptors", "Discriminator", "SFDModel"):
        from . import models

        return getattr(models, name)
    if name == "SFDPipeline":
        from .pipeline import SFDPipeline

        return SFDPipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

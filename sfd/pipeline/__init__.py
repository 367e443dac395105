from .motion_smoother import MotionSmoother
from .sfd_pipeline import SFDPipeline
from .source_face import SourceFace

__all__ = ["MotionSmoother", "SFDPipeline", "SourceFace"]

from .animation_result import AnimationResult
from .motion_smoother import MotionSmoother
from .sfd_pipeline import SFDPipeline
from .source_face import SourceFace

__all__ = ["AnimationResult", "MotionSmoother", "SFDPipeline", "SourceFace"]

from .animation_result import AnimationResult
from .motion_smoother import MotionSmoother
from .sfd_pipeline import DRIVER_BOXES, SFDPipeline
from .source_face import SourceFace

__all__ = ["DRIVER_BOXES", "AnimationResult", "MotionSmoother", "SFDPipeline", "SourceFace"]

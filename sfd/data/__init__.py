"""Training data: face-video datasets and the preprocessing command.

* `FaceVideoDataset` -- (source, driving) frame pairs of one video, from a data root with
  ``train/`` and ``test/`` split folders of frame folders or face-cropped video files.
* `IdentityPairDataset` -- the training recipe: a person drawn uniformly per pair (`Manifest`
  labels), stills as sources, the driving frame warped at random (`DriverWarp`).
* ``python -m sfd.data.preprocess RAW_DIR OUT_DIR --size 256`` -- crops raw videos around the face
  into that layout (`preprocess_videos`).
"""

from .color_jitter import ColorJitter, JitterFactors
from .driver_warp import DriverWarp, similarity_matrix, warp_image, warped_position
from .face_video_dataset import FaceVideoDataset, to_tensor
from .frame_cache import FrameCache
from .frame_folder_clip import FrameFolderClip
from .identity_pairs import HELD_OUT_STEMS, IdentityPairDataset
from .layout import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, find_clips, frame_files
from .manifest import Manifest, ManifestEntry, media_stem
from .pair_augmentation import PairAugmentation
from .video_file_clip import VideoFileClip

__all__ = [
    "HELD_OUT_STEMS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ColorJitter",
    "DriverWarp",
    "FaceVideoDataset",
    "FrameCache",
    "FrameFolderClip",
    "IdentityPairDataset",
    "JitterFactors",
    "Manifest",
    "ManifestEntry",
    "PairAugmentation",
    "PreprocessReport",
    "VideoFileClip",
    "find_clips",
    "frame_files",
    "media_stem",
    "preprocess_videos",
    "similarity_matrix",
    "to_tensor",
    "warp_image",
    "warped_position",
]


def __getattr__(name: str):
    # Imported on first use: `python -m sfd.data.preprocess` must not find the module already loaded.
    if name in ("PreprocessReport", "preprocess_videos"):
        from . import preprocess

        return getattr(preprocess, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

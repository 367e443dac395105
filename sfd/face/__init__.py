"""Face detection, square face crops, box smoothing over video, and seamless paste-back.

Typical use::

    from sfd.face import load_face_detector, CropBox, crop, paste_back

    detector = load_face_detector("weights-folder-or-hub-repo")   # RetinaFace, else MTCNN, else Haar
    face = detector.detect_single(image)                           # NoFaceError when none
    box = CropBox.from_face(face)                                  # scale 2.0, offset_y -0.05
    face_crop = crop(image, box, size=256)
    ...                                                            # animate face_crop
    frame = paste_back(image, animated_crop, box)                  # same size as image

For video, `FaceTracker` gives a crop box per frame: one smoothed box that follows the face, or
the first face's box for the whole clip (``mode="fixed"``, how the pipeline crops a driver).
RetinaFace weights are made with ``python -m sfd.face.convert_retinaface IN.pth OUT.safetensors``.
"""

from sfd.face.crop import DEFAULT_OFFSET_X, DEFAULT_OFFSET_Y, DEFAULT_SCALE, CropBox, crop, crop_box
from sfd.face.detector import FaceDetector, as_rgb
from sfd.face.face import Face, box_iou
from sfd.face.haar import HaarCascadeDetector
from sfd.face.load import DETECTORS, default_face_detector, find_face, load_face_detector
from sfd.face.mtcnn import MTCNNDetector
from sfd.face.paste import feather_mask, paste_back
from sfd.face.retinaface import RETINAFACE_FILENAME, RetinaFaceDetector
from sfd.face.smoother import BoxSmoother
from sfd.face.tracker import FaceTracker

__all__ = [
    "DEFAULT_OFFSET_X",
    "DEFAULT_OFFSET_Y",
    "DEFAULT_SCALE",
    "DETECTORS",
    "RETINAFACE_FILENAME",
    "BoxSmoother",
    "CropBox",
    "Face",
    "FaceDetector",
    "FaceTracker",
    "HaarCascadeDetector",
    "MTCNNDetector",
    "RetinaFaceDetector",
    "as_rgb",
    "box_iou",
    "crop",
    "crop_box",
    "default_face_detector",
    "feather_mask",
    "find_face",
    "load_face_detector",
    "paste_back",
]

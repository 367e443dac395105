"""Semantics in the product: calibrated slider ranges and measured names of the motion directions.

* `Calibration` (calibration.json with the weights): per-coefficient mean and std of the motion
  and identity descriptors over real faces; slider ranges are mean +- 3 std, identity sliders
  are ordered by variance. Made by `sfd.semantics.calibration.calibrate(pipeline, data)` or
  ``python -m sfd.semantics.calibrate WEIGHTS DATA``.
* `Atlas` (atlas.json and atlas/direction_XX.png with the weights): for every motion direction
  a name (yaw, roll, mouth open, blink, ...), a group (Head, Mouth, Eyes, Other), the
  measurements behind them and a preview strip. Made by `build_atlas(model, faces)` or
  ``python -m sfd.semantics.atlas WEIGHTS --faces DATA``; the naming rules are in
  `classify_flow`.

The function `calibrate` is imported from `sfd.semantics.calibration`: the name
`sfd.semantics.calibrate` is the command's module (``python -m`` needs it).
"""

from .calibration import CALIBRATION_FILENAME, Calibration
from .direction_atlas import ATLAS_FILENAME, Atlas, AtlasDirection, build_atlas
from .face_samples import FaceCrop, FaceSampler
from .flow_classifier import FlowMeasurements, classify_flow, measure_flow

__all__ = [
    "ATLAS_FILENAME",
    "CALIBRATION_FILENAME",
    "Atlas",
    "AtlasDirection",
    "Calibration",
    "FaceCrop",
    "FaceSampler",
    "FlowMeasurements",
    "build_atlas",
    "classify_flow",
    "measure_flow",
]

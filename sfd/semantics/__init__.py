"""Semantics in the product: calibrated slider ranges and measured names of the motion directions.

* `Calibration` (calibration.json with the weights): per-coefficient mean and std of the motion
  and identity descriptors over real faces; slider ranges are mean +- 3 std, identity sliders
  are ordered by variance. Made by `sfd.semantics.calibration.calibrate(pipeline, data)` or
  ``python -m sfd.semantics.calibrate WEIGHTS DATA``.
* `Atlas` (atlas.json and atlas/direction_XX.png with the weights): for every motion direction
  a name (turn left, tilt right, mouth open, blink, ...), a group (Head, Mouth, Eyes, Brows,
  Other), its effects measured with the face mesh on the rendered faces (`face_measures`; the
  naming rules are in `name_effects`), the flow's measurements as a second opinion
  (`classify_flow`) and a preview strip. Made by `build_atlas(model, faces)` or
  ``python -m sfd atlas WEIGHTS --faces DATA``.
* Expression controls (`expression`): changes in physical units (mouth opening, smile, eyes,
  brows, yaw / pitch / roll) solved on a face for motion offsets: `solve_expression`,
  `ExpressionSolver`.

The function `calibrate` is imported from `sfd.semantics.calibration`: the name
`sfd.semantics.calibrate` is the command's module (``python -m`` needs it).
"""

from .calibration import CALIBRATION_FILENAME, Calibration
from .direction_atlas import ATLAS_FILENAME, Atlas, AtlasDirection, build_atlas
from .expression import EXPRESSION_CONTROLS, ExpressionSolver, solve_expression
from .face_measures import FACE_MEASURES, name_effects
from .face_samples import FaceCrop, FaceSampler
from .flow_classifier import FlowMeasurements, classify_flow, measure_flow

__all__ = [
    "ATLAS_FILENAME",
    "CALIBRATION_FILENAME",
    "EXPRESSION_CONTROLS",
    "FACE_MEASURES",
    "Atlas",
    "AtlasDirection",
    "Calibration",
    "ExpressionSolver",
    "FaceCrop",
    "FaceSampler",
    "FlowMeasurements",
    "build_atlas",
    "classify_flow",
    "measure_flow",
    "name_effects",
    "solve_expression",
]

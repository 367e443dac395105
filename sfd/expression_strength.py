"""The expression-strength control's range, shared by the pipeline, the atlas and the app.

It lives below them all: the pipeline checks the value, the atlas (semantics) scales motion by
it, and the app sets its slider's range from it.
"""

from __future__ import annotations

import math

from .errors import SFDError

MAX_EXPRESSION_STRENGTH = 3.0


def check_expression_strength(strength: float) -> None:
    """SFDError unless 0 <= `strength` <= MAX_EXPRESSION_STRENGTH."""
    if not math.isfinite(strength) or not 0.0 <= strength <= MAX_EXPRESSION_STRENGTH:
        raise SFDError(f"expression strength must lie in [0, {MAX_EXPRESSION_STRENGTH:g}], got {strength}")

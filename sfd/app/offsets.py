"""Descriptor offsets as JSON text: the form the app's API and its "offsets" boxes take.

Either an object of coefficient index to offset, `{"3": 1.5, "7": -0.8}` (sparse), or a list of
one offset per coefficient from index 0, `[0, 0, 0, 1.5]` (dense, may be shorter than the
descriptor). Empty text means no offsets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from ..errors import SFDError


def read_json(text: str | None, what: str, example: str):
    """The JSON value of a text box, None when it is empty; SFDError naming `what` when malformed."""
    if text is None or not str(text).strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SFDError(f"{what} is not valid JSON ({error.msg} at character {error.pos}): give {example}") from None


def parse_offsets(text: str | None, count: int, kind: str) -> dict[int, float]:
    """`{index: offset}` from JSON text; SFDError with a message for the user when malformed."""
    data = read_json(text, f"{kind} offsets", 'an object such as {"3": 1.5} or a list of numbers')
    if data is None:
        return {}
    if isinstance(data, list):
        pairs = list(enumerate(data))
    elif isinstance(data, dict):
        pairs = list(data.items())
    else:
        raise SFDError(f'{kind} offsets must be a JSON object such as {{"3": 1.5}} or a list of numbers, '
                       f"not {type(data).__name__}")
    offsets = {}
    for key, value in pairs:
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise SFDError(f"{kind} offsets: {key!r} is not a coefficient index (0..{count - 1})") from None
        if not 0 <= index < count:
            raise SFDError(f"{kind} coefficient {index} does not exist: this model has {count} (0..{count - 1})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SFDError(f"{kind} offset for coefficient {index} must be a finite number, got {value!r}")
        if value:
            offsets[index] = float(value)
    return offsets


def format_offsets(offsets: Mapping[int, float]) -> str:
    """Compact JSON of the non-zero offsets, by index: what `parse_offsets` reads back."""
    return json.dumps({str(i): round(float(v), 4) for i, v in sorted(offsets.items()) if v})

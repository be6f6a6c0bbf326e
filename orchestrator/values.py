"""A metric's value as a number: the one test of "a finite number, not a bool" that every reader of results
(the objective, seeds, exporters) applies."""

from __future__ import annotations

import math
from typing import Any


def finite(v: Any) -> float | None:
    """`v` as a float when it is a finite int or float (bools are not numbers here); None otherwise."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)

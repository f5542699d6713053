"""Value checks shared by every validator: counts and numbers that are not bools.

Python counts `True` as the int 1, and JSON configs and keyword arguments can carry a bool
where a count or a number belongs, so each check excludes bool explicitly.
"""

from __future__ import annotations

import math
import numbers


def is_int(value, minimum: int | None = None) -> bool:
    """An integer (numpy's too), not a bool, at least `minimum` when given."""
    return bool(isinstance(value, numbers.Integral) and not isinstance(value, bool) and (minimum is None or value >= minimum))


def is_number(value, low: float = -math.inf, high: float = math.inf) -> bool:
    """A finite real number (numpy's too), not a bool, in [low, high]."""
    return bool(
        isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and low <= value <= high
    )

"""The shared value checks: bools are never counts or numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from portfolio.checks import is_int, is_number


@pytest.mark.parametrize("value, minimum, expected", [
    (3, None, True), (np.int64(3), 1, True), (0, 1, False), (True, None, False), (False, 0, False),
    (3.0, None, False), ("3", None, False), (None, None, False),
])
def test_is_int(value, minimum, expected):
    assert is_int(value, minimum) is expected


@pytest.mark.parametrize("value, low, high, expected", [
    (0.5, 0, 1, True), (2, 0, 1, False), (np.float32(0.25), 0, 1, True), (True, 0, 1, False),
    (math.nan, -math.inf, math.inf, False), (math.inf, 0, math.inf, False), ("0.5", 0, 1, False),
])
def test_is_number(value, low, high, expected):
    assert is_number(value, low, high) is expected

"""The one "is this a finite number" test every reader shares (:func:`is_finite_number`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from regtune.platform.results.schema import is_finite_number, is_number


def _id(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 20 else f"{text[:3]}...({len(text)} chars)"


@pytest.mark.parametrize(
    "value",
    [0, -3, 0.5, 1e308, np.float32(0.5), np.float64(-2.0), np.int64(3), np.int8(-1)],
    ids=_id,
)
def test_a_finite_number_numpy_scalars_included(value: Any) -> None:
    assert is_number(value) and is_finite_number(value)


@pytest.mark.parametrize(
    "value",
    [True, False, np.bool_(True), "0.5", None, [0.5], b"1"],
    ids=_id,
)
def test_a_bool_text_or_none_is_no_number(value: Any) -> None:
    assert not is_number(value) and not is_finite_number(value)


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, np.float32("nan"), np.float64("inf"), 10**400],
    ids=_id,
)
def test_nan_infinity_or_an_int_past_floats_is_a_number_but_not_finite(value: Any) -> None:
    """An integer too large for a float was an OverflowError in the helpers this replaces."""
    assert is_number(value) and not is_finite_number(value)

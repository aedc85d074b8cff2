"""Epoch selection under a fairness bound allows float rounding at ``bound - margin``.

``0.3 - 0.1`` is ``0.19999999999999998`` in floats, so a gap of exactly 1/5
used to miss the bound it meets.
"""

from __future__ import annotations

import pytest
import torch

from regtune.trainables import fairness, thresholds
from regtune.trainables.selection import FEASIBLE, GAP_TOLERANCE, SMALLEST_GAP, select_epoch


def _one_fifth_gap() -> float:
    # group 0: 1 of 5 selected, group 1: 0 of 5 -> a demographic-parity gap of 1/5.
    pred = torch.tensor([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    s = torch.tensor([0] * 5 + [1] * 5)
    return float(fairness.dp_difference(pred, s))


def test_a_gap_equal_to_bound_minus_margin_is_within() -> None:
    gap = _one_fifth_gap()
    assert gap == 0.2 and gap > 0.3 - 0.1  # the rounding this guards against
    history = [
        {"epoch": 1, "dp_diff": 0.5, "val_acc": 0.9},
        {"epoch": 2, "dp_diff": gap, "val_acc": 0.8},
    ]
    kept = select_epoch(history, gap_key="dp_diff", bound=0.3, margin=0.1)
    assert (kept.epoch, kept.reason) == (2, FEASIBLE)


@pytest.mark.parametrize(
    ("over", "reason"), [(GAP_TOLERANCE / 2, FEASIBLE), (10 * GAP_TOLERANCE, SMALLEST_GAP)]
)
def test_only_rounding_is_forgiven(over: float, reason: str) -> None:
    history = [{"epoch": 1, "eo_diff": 0.05 + over, "val_acc": 0.7}]
    assert select_epoch(history, gap_key="eo_diff", bound=0.05).reason == reason


def test_the_slack_is_the_thresholds_one() -> None:
    assert GAP_TOLERANCE == thresholds.DEFAULT_TOLERANCE

"""Per-group thresholds: exact DP/EO on hand-made score tables, most accurate first."""

from __future__ import annotations

import itertools

import pytest
import torch

from regtune.errors import DataError
from regtune.trainables.fairness import dp_difference, eo_difference
from regtune.trainables.thresholds import apply_thresholds, fit_thresholds

# Group 0 scores higher overall than group 1: one shared threshold is unfair.
#            group 0 (6 rows)                  group 1 (4 rows)
SCORES = [0.9, 0.8, 0.7, 0.6, 0.4, 0.2, 0.6, 0.5, 0.3, 0.1]
LABELS = [1, 1, 0, 1, 0, 0, 1, 0, 1, 0]
GROUPS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]


def _table() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(SCORES), torch.tensor(LABELS), torch.tensor(GROUPS)


def _brute_force(kind: str) -> float:
    """Best accuracy over every threshold pair whose decisions meet ``kind`` exactly."""
    p, y, s = _table()
    cands = [sorted({*p[s == g].tolist(), 1.01}) for g in (0, 1)]
    best = -1.0
    for pair in itertools.product(*cands):
        pred = apply_thresholds(p, s, pair)
        gap = dp_difference(pred, s) if kind == "dp" else eo_difference(y, pred, s)
        if gap <= 1e-12:
            best = max(best, float((pred == y).double().mean()))
    return best


@pytest.mark.parametrize("kind", ["dp", "eo"])
def test_thresholds_meet_the_constraint_exactly_at_the_best_accuracy(kind: str) -> None:
    p, y, s = _table()
    plain = (p >= 0.5).long()
    assert dp_difference(plain, s) > 0.1 and eo_difference(y, plain, s) > 0.1
    fit = fit_thresholds(p, y, s, 2, kind=kind)
    pred = apply_thresholds(p, s, fit.thresholds)
    gap = dp_difference(pred, s) if kind == "dp" else eo_difference(y, pred, s)
    assert fit.feasible and gap == 0.0 == fit.gap
    assert fit.accuracy == float((pred == y).double().mean()) == _brute_force(kind)
    # Deterministic: the same table gives the same thresholds.
    assert fit_thresholds(p, y, s, 2, kind=kind) == fit


def test_dp_thresholds_on_the_hand_table() -> None:
    p, y, s = _table()
    fit = fit_thresholds(p, y, s, 2, kind="dp")
    # Rates both groups can reach: 0, 1/2, 1 (accuracy 5/10, 6/10, 5/10), so
    # half of each group: the top 3 of group 0 and the top 2 of group 1.
    assert fit.thresholds == pytest.approx((0.7, 0.5))
    assert fit.accuracy == pytest.approx(0.6)


def test_a_tolerance_nothing_meets_returns_the_smallest_gap_marked_infeasible() -> None:
    # Group 1 has one row: selection rates 0 or 1 there, 1/3 steps in group 0.
    p = torch.tensor([0.9, 0.5, 0.1, 0.6])
    y = torch.tensor([1, 0, 0, 1])
    s = torch.tensor([0, 0, 0, 1])
    fit = fit_thresholds(p, y, s, 2, kind="dp", tolerance=0.0)
    assert fit.feasible  # select everyone or no one: rates 1/1 and 3/3 (or 0/0)
    fit = fit_thresholds(p, y, s, 2, kind="dp", tolerance=-1.0)
    assert not fit.feasible and fit.gap == 0.0


def test_more_than_two_groups() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randint(3, (300,), generator=g)
    y = torch.randint(2, (300,), generator=g)
    p = (0.3 * y + 0.2 * s + 0.5 * torch.rand(300, generator=g)).clamp(0, 1)
    fit = fit_thresholds(p, y, s, 3, kind="dp", tolerance=0.02)
    pred = apply_thresholds(p, s, fit.thresholds)
    assert fit.feasible and fit.gap <= 0.02
    assert dp_difference(pred, s) == pytest.approx(fit.gap)


def test_bad_inputs_are_refused() -> None:
    p, y, s = _table()
    with pytest.raises(DataError, match="one equal, non-zero length"):
        fit_thresholds(p[:3], y, s, 2, kind="dp")
    with pytest.raises(DataError, match=r"every group code in \[0, n_groups\)"):
        fit_thresholds(p, y, s, 1, kind="dp")
    with pytest.raises(DataError, match="group 2 has no rows"):
        fit_thresholds(p, y, s, 3, kind="dp")
    with pytest.raises(ValueError, match="kind must be 'dp' or 'eo'; got 'x'"):
        fit_thresholds(p, y, s, 2, kind="x")
    with pytest.raises(DataError, match="2 thresholds but group codes up to 2"):
        apply_thresholds(p, torch.full_like(s, 2), (0.5, 0.5))

"""fit_thresholds with two groups is exact: the most accurate threshold pair
within the tolerance (checked against a brute force over every pair of
candidate thresholds), exact parity as before, and a gap equal to the
tolerance up to float rounding counts as within it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regtune.trainables.fairness import eo_difference
from regtune.trainables.thresholds import (
    DEFAULT_TOLERANCE,
    apply_thresholds,
    fit_thresholds,
    resampled_gap,
    within_tolerance,
)


def _random_table(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two groups of unequal base rates; scores on a 0.01 grid (ties)."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.35 + 0.25 * s).astype(np.int64)
    p = np.clip(0.25 * y + 0.1 * s + rng.random(n) * 0.7, 0, 1).round(2)
    return p, y, s


def _brute_force(p: np.ndarray, y: np.ndarray, s: np.ndarray, kind: str, tol: float) -> float:
    """Best accuracy over every pair of thresholds (each group's distinct
    scores and "select none") whose gap is within ``tol`` and whose accuracy
    beats the majority label's; -1 when no pair does. Counted here, not by
    the module under test."""
    rates, correct = [], []
    for g in (0, 1):
        pg, yg = p[s == g], y[s == g]
        cand = np.append(np.unique(pg), 2.0)
        sel = pg[None, :] >= cand[:, None]
        pos, neg = max(int((yg == 1).sum()), 1), max(int((yg == 0).sum()), 1)
        tpr = (sel & (yg == 1)).sum(1) / pos if (yg == 1).any() else None
        fpr = (sel & (yg == 0)).sum(1) / neg if (yg == 0).any() else None
        rates.append({"sel": sel.mean(1), "tpr": tpr, "fpr": fpr})
        correct.append((sel == (yg == 1)).sum(1))
    keys = ("sel",) if kind == "dp" else ("tpr", "fpr")
    gap = np.zeros((correct[0].size, correct[1].size))
    for key in keys:
        a, b = rates[0][key], rates[1][key]
        if a is not None and b is not None:  # a group without the label: no gap
            gap = np.maximum(gap, np.abs(a[:, None] - b[None, :]))
    accuracy = (correct[0][:, None] + correct[1][None, :]) / p.size
    constant = max(y.mean(), 1 - y.mean())
    ok = (gap <= tol + 1e-9) & (accuracy > constant + 1e-9)
    return float(accuracy[ok].max()) if ok.any() else -1.0


@pytest.mark.parametrize("kind", ["dp", "eo"])
@pytest.mark.parametrize("tol", [0.0, DEFAULT_TOLERANCE, 0.01, 0.03, 0.05, 0.1])
def test_two_groups_fit_is_the_brute_force_optimum(kind: str, tol: float) -> None:
    # The old fit (each group at its closest rates) lost accuracy whenever
    # tol > 0: 30 of 60 such tables at tol 0.05.
    for seed in range(25):
        p, y, s = _random_table(seed)
        fit = fit_thresholds(
            torch.tensor(p), torch.tensor(y), torch.tensor(s), 2, kind=kind, tolerance=tol
        )
        best = _brute_force(p, y, s, kind, tol)
        assert fit.feasible == (best >= 0), (seed, fit)
        if fit.feasible:
            assert fit.accuracy == pytest.approx(best, abs=1e-12), (seed, fit, best)
            assert fit.gap <= tol + 1e-9
        # The reported numbers are those of the returned thresholds.
        decided = apply_thresholds(torch.tensor(p), torch.tensor(s), fit.thresholds).numpy()
        assert fit.accuracy == pytest.approx(float((decided == y).mean()), abs=1e-12)


# Exact parity (tolerance 0) was already optimal: the same thresholds as
# before the exact two-group search, plain and robust (computed with the old
# fit). Group 1 is group 0's rows once, scores mapped by p**1.5, so exact
# parity is reachable; group 0 has each row twice (it is the reference).
OLD_EXACT = [
    (0, "dp", None, (0.81, 0.729), True),
    (0, "eo", 0.8, (0.92, 0.8824), False),
    (1, "dp", None, (0.66, 0.5362), True),
    (1, "eo", 0.8, (0.66, 0.5362), False),
    (2, "eo", None, (0.66, 0.5362), True),
    (2, "eo", 0.8, (0.9, 0.8538), False),
    (3, "dp", 0.8, (0.91, 0.8681), False),
    (3, "eo", None, (0.64, 0.512), True),
    (4, "dp", None, (0.68, 0.5607), True),
    (4, "dp", 0.8, (0.98, 0.9702), False),
    (5, "eo", None, (0.61, 0.4764), True),
    (6, "dp", None, (0.78, 0.6889), True),
    (7, "eo", None, (0.43, 0.282), True),
    (7, "eo", 0.8, (0.43, 0.282), False),
]


@pytest.mark.parametrize(("seed", "kind", "quantile", "thresholds", "feasible"), OLD_EXACT)
def test_exact_parity_keeps_the_old_thresholds(
    seed: int, kind: str, quantile: float | None, thresholds: tuple[float, ...], feasible: bool
) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(30) < 0.4).astype(np.int64)
    p = np.clip(0.3 * y + rng.random(30) * 0.7, 0, 1).round(2)
    scores = torch.tensor(np.concatenate([p, p, (p**1.5).round(4)]))
    labels = torch.tensor(np.concatenate([y, y, y]))
    groups = torch.tensor([0] * 60 + [1] * 30)
    fit = fit_thresholds(
        scores, labels, groups, 2, kind=kind, tolerance=0.0, robust_quantile=quantile, resamples=50
    )
    assert fit.thresholds == thresholds
    assert fit.feasible == feasible


@pytest.mark.parametrize("kind", ["dp", "eo"])
def test_two_group_robust_fit_meets_its_criterion(kind: str) -> None:
    # The robust fit chooses among the nearest tuples (the old search) and the
    # most accurate within tolerance on the rows; what it returns meets both
    # criteria, and its robust_gap is the one resampled_gap recounts.
    for seed in range(6):
        p, y, s = _random_table(seed, n=200)
        args = (torch.tensor(p), torch.tensor(y), torch.tensor(s), 2)
        fit = fit_thresholds(
            *args, kind=kind, tolerance=0.08, robust_quantile=0.6, resamples=40, seed=3
        )
        assert fit.robust_gap is not None
        recount = resampled_gap(
            *args, fit.thresholds, kind=kind, quantile=0.6, resamples=40, seed=3
        )
        assert fit.robust_gap == pytest.approx(recount, abs=1e-12)
        if fit.feasible:
            assert within_tolerance(fit.gap, 0.08) and within_tolerance(fit.robust_gap, 0.08)


def test_gap_equal_to_the_tolerance_up_to_rounding_is_within_it() -> None:
    # Group 0: 11 negatives, 4 positives; group 1: 5 negatives, 20 positives.
    # The most accurate EO tuple has FPR gap 1/5 - 3/20 = 0.05, which computes
    # as 0.050000000000000044: the old fit called it infeasible at 0.05.
    rng = np.random.default_rng(0)
    for _ in range(167):
        s = rng.integers(0, 2, 40)
        y = (rng.random(40) < 0.3 + 0.3 * s).astype(np.int64)
        p = np.clip(0.2 * y + 0.15 * s + rng.random(40) * 0.6, 0, 1).round(2)
    args = (torch.tensor(p), torch.tensor(y), torch.tensor(s))
    fit = fit_thresholds(*args, 2, kind="eo", tolerance=0.05)
    assert fit.gap > 0.05 and fit.gap == pytest.approx(0.05, abs=1e-15)
    assert fit.feasible
    decided = apply_thresholds(args[0], args[2], fit.thresholds)
    assert eo_difference(args[1], decided, args[2]) == pytest.approx(fit.gap, abs=1e-15)
    assert fit.accuracy == pytest.approx(_brute_force(p, y, s, "eo", 0.05), abs=1e-12)


def test_within_tolerance_allows_rounding_only() -> None:
    assert within_tolerance(0.05 + 4.4e-17, 0.05)
    assert not within_tolerance(0.05 + 1e-6, 0.05)
    assert list(within_tolerance(np.array([0.0, 1e-9, 3e-9]), 0.0)) == [True, True, False]

"""Intervals of fairness gaps and per-group rates: right point values, nominal coverage,
seeded; tiny groups get honest (never zero-width) intervals and a warning."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from regtune.errors import DataError
from regtune.trainables.bootstrap import (
    CI_LEVEL,
    fairness_intervals,
    gap_interval,
    newcombe_interval,
    small_cells,
    wilson_interval,
)
from regtune.trainables.fairness import dp_difference, eo_difference
from regtune.trainables.metric_names import safe_group_name

GROUPS = ["Female", "Male"]


def _sample(
    n: int, rates: tuple[float, float], seed: int, *, tpr_gap: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two groups (30% / 70%); P(pred = 1) = rates[group] (+ tpr_gap among group 1's positives)."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(n, generator=g) < 0.7).long()
    y = (torch.rand(n, generator=g) < 0.4).long()
    p = torch.tensor(rates, dtype=torch.float64)[s] + tpr_gap * (s * y)
    y_pred = (torch.rand(n, generator=g, dtype=torch.float64) < p).long()
    return y, y_pred, s


def test_point_values_equal_the_fairness_metrics_and_lie_inside() -> None:
    y, y_pred, s = _sample(3000, (0.3, 0.4), seed=0)
    out = fairness_intervals(y, y_pred, s, ["African-American", "Caucasian"], n_resamples=300)
    assert out["dp_diff_ci_low"] < dp_difference(y_pred, s) < out["dp_diff_ci_high"]
    assert out["eo_diff_ci_low"] < eo_difference(y, y_pred, s) < out["eo_diff_ci_high"]
    female = s == 0
    assert out["selection_rate_African_American"] == pytest.approx(
        float(y_pred[female].double().mean())
    )
    assert out["tpr_Caucasian"] == pytest.approx(float(y_pred[(s == 1) & (y == 1)].double().mean()))
    assert out["fpr_Caucasian"] == pytest.approx(float(y_pred[(s == 1) & (y == 0)].double().mean()))
    for key in ("selection_rate", "tpr", "fpr"):
        name = f"{key}_Caucasian"
        assert out[f"{name}_ci_low"] < out[name] < out[f"{name}_ci_high"]


def test_same_seed_same_interval_other_seed_other_draws() -> None:
    y, y_pred, s = _sample(1000, (0.3, 0.4), seed=1)
    a = fairness_intervals(y, y_pred, s, GROUPS, n_resamples=200, seed=7)
    assert a == fairness_intervals(y, y_pred, s, GROUPS, n_resamples=200, seed=7)
    assert a != fairness_intervals(y, y_pred, s, GROUPS, n_resamples=200, seed=8)


@pytest.mark.parametrize(
    ("metric", "rates", "tpr_gap", "truth"),
    [
        # dp: selection rates 0.30 vs 0.45 in every resample of the population.
        ("dp_diff", (0.30, 0.45), 0.0, 0.15),
        # eo: FPR gap 0.05, TPR gap 0.05 + 0.15 = 0.20 (the larger one counts).
        ("eo_diff", (0.30, 0.35), 0.15, 0.20),
    ],
)
def test_interval_covers_a_known_difference_at_about_its_nominal_rate(
    metric: str, rates: tuple[float, float], tpr_gap: float, truth: float
) -> None:
    trials, hits, wrong_hits = 100, 0, 0
    for seed in range(trials):
        y, y_pred, s = _sample(500, rates, seed=100 + seed, tpr_gap=tpr_gap)
        out = fairness_intervals(y, y_pred, s, GROUPS, n_resamples=100, seed=seed)
        low, high = out[f"{metric}_ci_low"], out[f"{metric}_ci_high"]
        hits += low <= truth <= high
        wrong_hits += low <= truth + 0.2 <= high
    # Nominal 0.95; the observed rate of 100 trials has a standard error of ~0.022.
    assert abs(hits / trials - CI_LEVEL) <= 0.06
    # The intervals are narrow enough to tell a gap 0.2 larger apart.
    assert wrong_hits / trials < 0.2


def test_a_group_without_a_label_has_nan_rate_and_interval() -> None:
    y = torch.tensor([0, 0, 1, 0, 1, 1])
    s = torch.tensor([0, 0, 0, 1, 1, 1])
    y_pred = torch.tensor([0, 1, 1, 0, 1, 0])
    out = fairness_intervals(y, y_pred, s, ["a", "b", "c"], n_resamples=50)
    assert math.isnan(out["tpr_c"]) and math.isnan(out["tpr_c_ci_low"])
    assert out["selection_rate_a"] == pytest.approx(2 / 3)


def test_bad_inputs_are_refused() -> None:
    y = torch.tensor([0, 1, 1])
    with pytest.raises(DataError, match="one equal, non-zero length"):
        fairness_intervals(y, y[:2], y, GROUPS)
    with pytest.raises(DataError, match="one equal, non-zero length"):
        fairness_intervals(y[:0], y[:0], y[:0], GROUPS)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\); got 1.5"):
        fairness_intervals(y, y, y, GROUPS, level=1.5)
    with pytest.raises(ValueError, match="n_resamples must be a positive integer; got 0"):
        fairness_intervals(y, y, y, GROUPS, n_resamples=0)


def test_group_keys_are_metric_safe() -> None:
    assert safe_group_name("African-American") == "African_American"
    assert safe_group_name(" >50K ") == "50K"
    assert safe_group_name("--") == "group"


def _tiny_groups() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group "Black": 8 positives, none selected (TPR 0/8); group "Amer-Indian-Eskimo":
    2 positives, both selected (TPR 2/2); each group also has 4 negatives, none selected."""
    s = torch.tensor([0] * 12 + [1] * 6)
    y = torch.tensor([1] * 8 + [0] * 4 + [1] * 2 + [0] * 4)
    y_pred = torch.tensor([0] * 12 + [1] * 2 + [0] * 4)
    return y, y_pred, s


def _coverage(n: int, p: float) -> float:
    """Exact coverage of the Wilson interval of k of n rows at true rate p."""
    cover = 0.0
    for k in range(n + 1):
        low, high = wilson_interval(k, n)
        cover += math.comb(n, k) * p**k * (1 - p) ** (n - k) * (low <= p <= high)
    return cover


def test_tiny_groups_rates_get_wilson_intervals_not_zero_width() -> None:
    y, y_pred, s = _tiny_groups()
    out = fairness_intervals(y, y_pred, s, ["Black", "Amer-Indian-Eskimo"], n_resamples=200)
    # 0/8 and 2/2: a percentile bootstrap said [0, 0] and [1, 1].
    assert out["tpr_Black"] == 0.0
    assert (out["tpr_Black_ci_low"], out["tpr_Black_ci_high"]) == wilson_interval(0, 8)
    assert out["tpr_Black_ci_high"] == pytest.approx(0.3244, abs=1e-4)
    assert out["tpr_Amer_Indian_Eskimo"] == 1.0
    assert out["tpr_Amer_Indian_Eskimo_ci_low"] == pytest.approx(0.3424, abs=1e-4)
    assert out["fpr_Black_ci_high"] == pytest.approx(wilson_interval(0, 4)[1])
    # The gap keeps its point value and is no longer certain: it could be far smaller.
    assert out["eo_diff_ci_high"] == 1.0 and out["eo_diff_ci_low"] < 0.5
    # A gate on the selection rates' gap cannot pass on six rows per group.
    assert out["dp_diff_ci_high"] > 0.5


@pytest.mark.parametrize("n", [2, 8])
def test_wilson_covers_the_true_rate_of_a_tiny_group(n: int) -> None:
    rates = [i / 100 for i in range(1, 100)]
    coverage = [_coverage(n, p) for p in rates]
    # Nominal 0.95 on average over the rates (exact sums, no sampling); never below 0.8.
    assert 0.93 <= sum(coverage) / len(coverage) <= 0.98
    assert min(coverage) >= 0.8
    # 0 of n and n of n cover the true rates near them (a [0, 0] / [1, 1] interval cannot).
    assert wilson_interval(0, n)[0] <= 0.05 <= wilson_interval(0, n)[1]
    assert wilson_interval(n, n)[0] <= 0.95 <= wilson_interval(n, n)[1]


def test_gap_of_equal_tiny_groups_is_not_certain_to_be_zero() -> None:
    # A constant predictor on 4 + 4 rows: every resample's gap is exactly 0.
    y = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    s = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    out = fairness_intervals(y, torch.zeros(8, dtype=torch.long), s, GROUPS, n_resamples=100)
    assert out["dp_diff_ci_low"] == 0.0 and out["dp_diff_ci_high"] > 0.4
    assert out["eo_diff_ci_high"] > 0.5
    low, high = gap_interval([(0, 4), (0, 4)])
    assert low == 0.0 and high == pytest.approx(wilson_interval(0, 4)[1])


def test_gap_interval_of_known_pairs_and_an_empty_cell() -> None:
    # Newcombe's interval of 56/70 - 48/80 (his example 1: 0.0524 .. 0.3339).
    low, high = newcombe_interval((56, 70), (48, 80))
    assert (low, high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))
    assert gap_interval([(56, 70), (48, 80)]) == (low, high)
    # A group without a row of the cell: its rate is unknown, the gap may reach 1.
    assert gap_interval([(56, 70), (48, 80), (0, 0)]) == (low, 1.0)
    assert gap_interval([(3, 5), (0, 0)]) == (0.0, 1.0)


def test_large_groups_keep_bootstrap_width(caplog: pytest.LogCaptureFixture) -> None:
    # 3000 rows: the binomial floor is no wider than the bootstrap by more than rounding.
    y, y_pred, s = _sample(3000, (0.3, 0.4), seed=0)
    with caplog.at_level(logging.WARNING, logger="regtune.trainables.bootstrap"):
        out = fairness_intervals(y, y_pred, s, GROUPS, n_resamples=300)
    assert out["dp_diff_ci_high"] - out["dp_diff_ci_low"] < 0.08
    assert not caplog.records  # no cell is small


def test_small_cells_of_the_test_split_are_logged_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    y, y_pred, s = _tiny_groups()
    names = ["Black", "Other"]
    y = torch.where(s == 1, 0, y)  # group Other: 6 negatives, no positive
    with caplog.at_level(logging.WARNING, logger="regtune.trainables.bootstrap"):
        fairness_intervals(y, y_pred, s, names, n_resamples=50)
    messages = [r.getMessage() for r in caplog.records]
    assert (
        "group Other has 0 positives in test (fewer than 30): "
        "its TPR, FPR and eo_diff are unreliable"
    ) in messages
    assert (
        "group Black has 12 rows in test (fewer than 30): "
        "its selection rate and dp_diff are unreliable"
    ) in messages
    assert small_cells(y, s, names, labels=True, minimum=5) == [
        ("Black", "negatives", 4),
        ("Other", "positives", 0),
    ]
    assert small_cells(y, s, [*names, "Empty"], labels=False, minimum=1) == [("Empty", "rows", 0)]

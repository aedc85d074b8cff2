"""Bootstrap intervals of fairness gaps: right point values, nominal coverage, seeded."""

from __future__ import annotations

import math

import pytest
import torch

from regtune.errors import DataError
from regtune.trainables.bootstrap import CI_LEVEL, fairness_intervals, group_key
from regtune.trainables.fairness import dp_difference, eo_difference

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
    assert group_key("African-American") == "African_American"
    assert group_key(" >50K ") == "50K"
    assert group_key("--") == "group"

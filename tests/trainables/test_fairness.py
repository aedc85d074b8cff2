"""Fairness penalties and metrics, against fairlearn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from regtune.trainables.fairness import (
    dp_difference,
    dp_penalty,
    eo_difference,
    eo_penalty,
    group_gap,
)


def _random(n_groups: int, seed: int, n: int = 500) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(0, n_groups, (n,), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    # Predictions depend on the group so the gaps are far from 0.
    p = torch.rand(n, generator=g) * (0.5 + 0.5 * s / n_groups) + 0.1 * y
    return p, y, s


@pytest.mark.parametrize(("n_groups", "seed"), [(2, 0), (3, 1), (5, 2)])
def test_metrics_equal_fairlearn(n_groups: int, seed: int) -> None:
    p, y, s = _random(n_groups, seed)
    y_pred = (p > 0.4).long()
    for label in (0, 1):
        assert len(torch.unique(s[y == label])) == n_groups  # fairlearn's rates all defined
    kw = {"sensitive_features": s.numpy()}
    expected_dp = demographic_parity_difference(y.numpy(), y_pred.numpy(), **kw)
    expected_eo = equalized_odds_difference(y.numpy(), y_pred.numpy(), agg="worst_case", **kw)
    assert expected_dp > 0.05
    assert expected_eo > 0.05
    assert dp_difference(y_pred, s) == pytest.approx(expected_dp, abs=1e-12)
    assert eo_difference(y, y_pred, s) == pytest.approx(expected_eo, abs=1e-12)


def test_metrics_accept_numpy_and_non_contiguous_codes() -> None:
    s = np.array([3, 3, 7, 7, 9, 9])
    y = np.array([0, 1, 0, 1, 0, 1])
    y_pred = np.array([0, 1, 1, 1, 0, 0])
    expected = demographic_parity_difference(y, y_pred, sensitive_features=s)
    assert dp_difference(torch.as_tensor(y_pred), torch.as_tensor(s)) == pytest.approx(expected)
    assert eo_difference(y, y_pred, s) == pytest.approx(  # type: ignore[arg-type]
        equalized_odds_difference(y, y_pred, sensitive_features=s)
    )


def test_eo_difference_skips_groups_without_a_label() -> None:
    # Group 1 has no positives: fairlearn scores its TPR as 0 (gap 1.0) even
    # for a perfect classifier; regtune skips it and reports no gap.
    y = torch.tensor([1, 1, 0, 0, 0, 0])
    s = torch.tensor([0, 0, 0, 1, 1, 1])
    assert eo_difference(y, y.clone(), s) == 0.0


@pytest.mark.parametrize(("n_groups", "seed"), [(2, 3), (4, 4)])
def test_penalties_on_hard_predictions_equal_metrics(n_groups: int, seed: int) -> None:
    p, y, s = _random(n_groups, seed)
    hard = (p > 0.4).double()
    assert dp_penalty(hard, s).item() == pytest.approx(dp_difference(hard.long(), s))
    assert eo_penalty(hard, y, s).item() == pytest.approx(eo_difference(y, hard.long(), s))


def test_penalties_on_soft_probabilities() -> None:
    p = torch.tensor([0.9, 0.7, 0.2, 0.4, 0.5, 0.3])
    y = torch.tensor([1, 0, 1, 0, 1, 0])
    s = torch.tensor([0, 0, 1, 1, 2, 2])
    # Group means 0.8, 0.3, 0.4 -> gap 0.5.
    assert dp_penalty(p, s).item() == pytest.approx(0.5)
    # y=1: 0.9, 0.2, 0.5 -> 0.7; y=0: 0.7, 0.4, 0.3 -> 0.4.
    assert eo_penalty(p, y, s).item() == pytest.approx(0.7)


def test_absent_groups_and_single_group() -> None:
    p = torch.tensor([0.9, 0.1, 0.5], requires_grad=True)
    assert dp_penalty(p, torch.tensor([4, 4, 4])).item() == 0.0
    # Only group 1 has a positive: the TPR gap is skipped, the FPR gap counts.
    y = torch.tensor([1, 0, 0])
    s = torch.tensor([1, 1, 2])
    assert eo_penalty(p, y, s).item() == pytest.approx(0.4)
    assert group_gap(p[:0], s[:0]).item() == 0.0


@pytest.mark.parametrize("kind", ["dp", "eo"])
def test_following_the_penalty_gradient_lowers_the_gap(kind: str) -> None:
    p0, y, s = _random(3, 5)
    logit = torch.logit(p0.clamp(0.01, 0.99)).clone().requires_grad_(True)
    opt = torch.optim.SGD([logit], lr=50.0)

    def gap() -> torch.Tensor:
        prob = torch.sigmoid(logit)
        return dp_penalty(prob, s) if kind == "dp" else eo_penalty(prob, y, s)

    start = gap().item()
    for _ in range(50):
        opt.zero_grad()
        gap().backward()
        opt.step()
    assert gap().item() < 0.3 * start


def test_rate_deviations_are_signed_gaps_from_the_overall_mean() -> None:
    from regtune.trainables.fairness import rate_deviations

    p = torch.tensor([0.1, 0.3, 0.9, 0.7, 0.5])
    s = torch.tensor([0, 0, 1, 1, 1])
    y = torch.tensor([0, 1, 0, 1, 1])
    dp = rate_deviations(p, s, 3)
    assert torch.allclose(dp, torch.tensor([0.2 - 0.5, 0.7 - 0.5, 0.0]))
    eo = rate_deviations(p, s, 2, y)
    # label 0: groups {0.1} vs {0.9}, mean 0.5; label 1: {0.3} vs {0.7, 0.5}, mean 0.5
    assert torch.allclose(eo, torch.tensor([-0.4, 0.4, -0.2, 0.1]))
    assert (
        float(rate_deviations(torch.full((4,), 0.3), torch.tensor([0, 1, 0, 1]), 2).abs().sum())
        == 0
    )

"""Per-group thresholds: exact DP/EO on hand-made score tables, most accurate first;
the settings that map a fairness config to a fit (trainer and registry)."""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any

import pytest
import torch

from regtune.errors import DataError
from regtune.trainables.fairness import dp_difference, eo_difference
from regtune.trainables.threshold_settings import ThresholdSettings
from regtune.trainables.thresholds import (
    DEFAULT_TOLERANCE,
    MAX_CANDIDATES,
    apply_thresholds,
    fit_thresholds,
    warn_fit_cells,
)

# Group 0 scores higher overall than group 1: one shared threshold is unfair.
#            group 0 (6 rows)                  group 1 (4 rows)
SCORES = [0.9, 0.8, 0.7, 0.6, 0.4, 0.2, 0.6, 0.5, 0.3, 0.1]
LABELS = [1, 1, 0, 1, 0, 0, 1, 0, 1, 0]
GROUPS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
# For EO, group 1 with three rows of each label: its threshold 0.5 gives
# TPR 2/3 and FPR 0, as group 0's 0.8 does (the first table reaches exact EO
# only by selecting everyone or no one, which the fit refuses).
EO_SCORES = [*SCORES[:6], 0.6, 0.5, 0.2, 0.45, 0.3, 0.1]
EO_LABELS = [*LABELS[:6], 1, 1, 1, 0, 0, 0]
EO_GROUPS = [0] * 6 + [1] * 6


def _table(kind: str = "dp") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if kind == "eo":
        return torch.tensor(EO_SCORES), torch.tensor(EO_LABELS), torch.tensor(EO_GROUPS)
    return torch.tensor(SCORES), torch.tensor(LABELS), torch.tensor(GROUPS)


def _brute_force(kind: str) -> float:
    """Best accuracy over every threshold pair whose decisions meet ``kind`` exactly."""
    p, y, s = _table(kind)
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
    p, y, s = _table(kind)
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
    p = torch.tensor([0.9, 0.5, 0.1, 0.6, 0.3, 0.2])
    y = torch.tensor([1, 0, 0, 1, 0, 0])
    s = torch.tensor([0, 0, 0, 1, 0, 0])
    fit = fit_thresholds(p, y, s, 2, kind="dp", tolerance=0.25)
    # Group 1 selected (rate 1) needs group 0 at 1 too: everyone, accuracy 2/6.
    # Group 1 not selected: group 0 at rate 1/5 (the 0.9 row), accuracy 5/6.
    assert fit.feasible and fit.gap == pytest.approx(0.2) and fit.accuracy == pytest.approx(5 / 6)
    fit = fit_thresholds(p, y, s, 2, kind="dp", tolerance=0.1)
    # Only "no one anywhere" (or "everyone") has a gap under 0.1: both trivial.
    assert not fit.feasible and fit.gap == pytest.approx(0.2)
    assert fit.accuracy == pytest.approx(5 / 6) and fit.constant_accuracy == pytest.approx(4 / 6)


@pytest.mark.parametrize("kind", ["dp", "eo"])
def test_tied_scores_give_no_trivial_parity(kind: str) -> None:
    """Group 1's scores all tie (as COMPAS's few discrete features do): exact
    parity is reachable only by selecting everyone or no one everywhere, which
    is no better than a constant decision; the fit says so instead."""
    p = torch.tensor([0.9, 0.9, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5])
    y = torch.tensor([1, 1, 0, 0, 1, 0, 1, 0])
    s = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    fit = fit_thresholds(p, y, s, 2, kind=kind)
    pred = apply_thresholds(p, s, fit.thresholds)
    assert not fit.feasible and fit.constant_accuracy == 0.5
    assert fit.accuracy == float((pred == y).double().mean()) == 0.75
    # A decision that actually separates: group 0 at its perfect threshold.
    assert pred[:4].tolist() == [1, 1, 0, 0] and len(set(pred[4:].tolist())) == 1
    assert fit.gap == pytest.approx(0.5 if kind == "dp" else 1.0)


def test_many_distinct_scores_are_thinned_to_max_candidates() -> None:
    g = torch.Generator().manual_seed(1)
    n = 3 * MAX_CANDIDATES
    s = (torch.rand(n, generator=g) < 0.3).long()
    y = (torch.rand(n, generator=g) < 0.4).long()
    p = (0.35 * y + 0.1 * s + 0.55 * torch.rand(n, generator=g, dtype=torch.float64)).clamp(0, 1)
    fit = fit_thresholds(p, y, s, 2, kind="eo", tolerance=0.01)
    pred = apply_thresholds(p, s, fit.thresholds)
    assert fit.feasible and fit.gap <= 0.01
    assert eo_difference(y, pred, s) == pytest.approx(fit.gap)
    assert fit.accuracy == pytest.approx(float((pred == y).double().mean()))
    # Every threshold is one of the group's own scores (or "select none").
    for code, cut in enumerate(fit.thresholds):
        assert cut in set(p[s == code].tolist()) or cut > float(p[s == code].max())


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


def _fair_config(seed: int = 0, **fairness: Any) -> dict[str, Any]:
    return {
        "dataset": "adult",
        "training": {"seed": seed},
        "penalties": {"fairness": {"kind": "eo", "method": "postprocess", **fairness}},
    }


@pytest.mark.parametrize(
    ("config", "rows", "want"),
    [
        (_fair_config(bound=0.05, margin=0.01), None, ThresholdSettings("eo", 0.05 - 0.01)),
        (
            _fair_config(kind="dp", method="penalty+postprocess", strength=1.0),
            "train+val",
            ThresholdSettings("dp", DEFAULT_TOLERANCE, rows="train+val"),
        ),
        (
            _fair_config(
                seed=-4, bound=0.02, threshold_rows="train+val", robust_quantile=0.75,
                robust_resamples=50,
            ),
            None,
            ThresholdSettings("eo", 0.02, "train+val", robust_quantile=0.75, resamples=50, seed=-4),
        ),
        # resamples and seed only count for a robust fit: kept at their defaults.
        (
            _fair_config(seed=9, bound=0.02, robust_resamples=50),
            "val",
            ThresholdSettings("eo", 0.02),
        ),
    ],
)  # fmt: skip
def test_threshold_settings_map_a_config_and_survive_the_stored_form(
    config: dict[str, Any], rows: str | None, want: ThresholdSettings
) -> None:
    got = ThresholdSettings.from_config(config, rows=rows)
    assert got == want
    assert ThresholdSettings.from_constraint(want.as_constraint()) == want
    assert json.loads(json.dumps(want.as_constraint())) == want.as_constraint()


def test_threshold_settings_of_a_config_without_thresholds_are_none() -> None:
    assert ThresholdSettings.from_config({"dataset": "adult"}) is None
    penalty = _fair_config(method="lagrangian", strength=1.0, bound=0.05)
    assert ThresholdSettings.from_config(penalty) is None


def test_threshold_settings_fit_is_fit_thresholds_with_the_mapped_arguments() -> None:
    p, y, s = _table("eo")
    robust = ThresholdSettings("eo", 0.2, robust_quantile=0.6, resamples=30, seed=4)
    direct = fit_thresholds(
        p, y, s, 2, kind="eo", tolerance=0.2, robust_quantile=0.6, resamples=30, seed=4
    )
    assert robust.fit(p, y, s, 2) == direct and direct.robust_gap is not None
    assert robust.robust_gap(p, y, s, 2, direct.thresholds) == direct.robust_gap
    plain = ThresholdSettings("eo", 0.2)
    assert plain.fit(p, y, s, 2) == fit_thresholds(p, y, s, 2, kind="eo", tolerance=0.2)
    assert plain.robust_gap(p, y, s, 2, direct.thresholds) is None


def test_a_stored_constraint_of_an_older_version_reads_with_defaults() -> None:
    """Versions stored before threshold rows or robust fits existed."""
    old = {"kind": "dp", "tolerance": 0.03}
    assert ThresholdSettings.from_constraint(old) == ThresholdSettings("dp", 0.03, "val")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"kind": "none", "tolerance": 0.1}, r"kind must be 'dp' or 'eo'; got 'none'"),
        (
            {"kind": "eo", "tolerance": 0.1, "rows": "test"},
            r"threshold_rows must be one of \('val', 'train\+val'\); got 'test'",
        ),
    ],
)
def test_threshold_settings_refuse_a_bad_kind_or_rows_by_name(
    fields: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        ThresholdSettings(**fields)


def test_small_fitting_cells_are_warned_about_by_group_cell_and_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scores, y, s = _table()
    names = ["White", "Other"]
    y = torch.where(s == 1, 0, y)  # group Other: 4 negatives, no positive
    with caplog.at_level(logging.WARNING, logger="regtune.trainables.bootstrap"):
        messages = warn_fit_cells(y, s, names, kind="eo")
        fit = fit_thresholds(scores, y, s, 2, kind="eo")  # warned, not refused
    assert len(fit.thresholds) == 2
    assert messages == [r.getMessage() for r in caplog.records]
    assert (
        "group Other has 0 positives in validation (fewer than 30): "
        "the thresholds fitted on it are unreliable"
    ) in messages
    assert "group White has 3 positives in validation" in messages[0]
    # dp rests on a group's rows; train+val rows are named so; a lower minimum is quiet.
    assert warn_fit_cells(y, s, names, kind="dp", rows="train+val", minimum=5) == [
        "group Other has 4 rows in training+validation (fewer than 5): "
        "the thresholds fitted on it are unreliable"
    ]
    assert warn_fit_cells(y, s, names, kind="dp", minimum=4) == []


def test_warn_fit_cells_refuses_a_bad_kind_or_rows_by_name() -> None:
    _, y, s = _table()
    with pytest.raises(ValueError, match="kind must be 'dp' or 'eo'; got 'tpr'"):
        warn_fit_cells(y, s, ["a", "b"], kind="tpr")
    with pytest.raises(ValueError, match=r"threshold_rows must be one of .*; got 'test'"):
        warn_fit_cells(y, s, ["a", "b"], kind="dp", rows="test")

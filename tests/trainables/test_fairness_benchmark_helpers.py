"""The fairness benchmarks' helpers: the validation-only choice of settings
(``fairness_selection.choose``) and out-of-sample thresholded decisions
(``fairness_contenders.crossfit_thresholds``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.fairness_contenders import crossfit_folds, crossfit_thresholds
from benchmarks.fairness_selection import choose, dominated
from regtune.trainables.thresholds import apply_thresholds, fit_thresholds

REFERENCES = {"EG": {"acc": 0.80, "gap": 0.05}, "TO": {"acc": 0.78, "gap": 0.02}}


def test_choose_prefers_matching_more_references_then_accuracy() -> None:
    candidates = {
        "matches EG only, most accurate": {"acc": 0.90, "gap": 0.04},
        "matches both": {"acc": 0.81, "gap": 0.01},
        "matches both, more accurate": {"acc": 0.82, "gap": 0.02},
        "matches none": {"acc": 0.99, "gap": 0.30},
    }
    assert dominated(candidates["matches both"], REFERENCES) == ["EG", "TO"]
    assert dominated(candidates["matches none"], REFERENCES) == []
    name, why = choose(candidates, REFERENCES)
    assert name == "matches both, more accurate"
    assert why.startswith("matches 2 of 2 fairlearn contenders")


def test_choose_without_a_match_takes_the_most_accurate_under_the_smallest_reference_gap() -> None:
    candidates = {
        "under the target": {"acc": 0.70, "gap": 0.015},
        "under the target, more accurate": {"acc": 0.75, "gap": 0.02},
        "over the target": {"acc": 0.95, "gap": 0.06},
    }
    name, why = choose(candidates, REFERENCES)
    assert name == "under the target, more accurate"
    assert "gap <= 0.0200" in why


def test_choose_with_nothing_under_the_target_takes_the_smallest_gap_first_on_ties() -> None:
    candidates = {
        "a": {"acc": 0.70, "gap": 0.03},
        "b": {"acc": 0.72, "gap": 0.03},
        "c": {"acc": 0.99, "gap": 0.2},
    }
    name, why = choose(candidates, REFERENCES)
    assert name == "b" and why.endswith("smallest gap")
    tied = {"first": {"acc": 0.7, "gap": 0.03}, "second": {"acc": 0.7, "gap": 0.03}}
    assert choose(tied, REFERENCES)[0] == "first"


def test_choose_refuses_empty_inputs() -> None:
    with pytest.raises(ValueError, match="at least one candidate and one reference"):
        choose({}, REFERENCES)
    with pytest.raises(ValueError, match="at least one candidate and one reference"):
        choose({"a": {"acc": 0.5, "gap": 0.1}}, {})


def _scores(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(n, generator=g) < 0.35).long()
    y = (torch.rand(n, generator=g) < 0.3 + 0.2 * s).long()
    p = (0.4 * y + 0.15 * s + 0.45 * torch.rand(n, generator=g, dtype=torch.float64)).clamp(0, 1)
    return p, y, s


def test_crossfit_folds_halve_every_group_label_cell() -> None:
    _, y, s = _scores(401, 0)
    fold = crossfit_folds(y, s, seed=3)
    assert set(np.unique(fold)) == {0, 1}
    for g in (0, 1):
        for label in (0, 1):
            cell = ((s == g) & (y == label)).numpy()
            ones = int(fold[cell].sum())
            assert ones == int(cell.sum()) // 2  # fold 1: the smaller half
    assert np.array_equal(fold, crossfit_folds(y, s, seed=3))
    assert not np.array_equal(fold, crossfit_folds(y, s, seed=4))


def test_crossfit_decides_each_half_with_thresholds_fitted_on_the_other() -> None:
    p, y, s = _scores(600, 1)
    out = crossfit_thresholds(p, y, s, 2, kind="eo", tolerance=0.05, seed=7)
    fold = torch.from_numpy(crossfit_folds(y, s, seed=7))
    for held_out in (0, 1):
        fit_rows, eval_rows = fold != held_out, fold == held_out
        fit = fit_thresholds(p[fit_rows], y[fit_rows], s[fit_rows], 2, kind="eo", tolerance=0.05)
        expected = apply_thresholds(p[eval_rows], s[eval_rows], fit.thresholds)
        assert torch.equal(out[eval_rows], expected)
    # Not the in-sample decisions: thresholds fitted on all rows decide differently.
    whole = fit_thresholds(p, y, s, 2, kind="eo", tolerance=0.05)
    assert not torch.equal(out, apply_thresholds(p, s, whole.thresholds))

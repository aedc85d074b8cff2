"""The best trial's curves, calibration and per-group rates; spec differences."""

from __future__ import annotations

import pytest

from regtune.platform.analysis.best import NO_GROUPS, NO_RELIABILITY_BINS, best_trial, best_trial_id
from regtune.platform.analysis.compare import MISSING, NO_SPEC, spec_differences
from regtune.platform.analysis.curves import segments
from regtune.platform.analysis.summary import trial_summary
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import HEALTHY, OVERFIT, epochs_table


def test_best_trial_groups_and_notes() -> None:
    n = len(HEALTHY["train_loss"])
    extra = {
        "good": {
            "acc.f": [0.9] * n,
            "acc.m": [0.8] * n,
            "positive_rate.f": [0.3] * n,
            "positive_rate.m": [0.5] * n,
            "dp_diff": [0.2] * n,
            "ece": [0.05] * n,
        },
        "bad": {
            "acc.f": [0.5] * n,
            "acc.m": [0.5] * n,
            "positive_rate.f": [0.1] * n,
            "positive_rate.m": [0.1] * n,
            "dp_diff": [0.0] * n,
            "ece": [0.05] * n,
        },
    }
    epochs = epochs_table({"good": HEALTHY, "bad": OVERFIT}, extra=extra)
    summary = trial_summary(epochs, ("val_acc", "max"))
    summary["degenerate"] = [False, True]
    assert best_trial_id(summary, ("val_acc", "max")) == "good"
    assert best_trial_id(summary, ("val_loss", "min")) == "good"
    best = best_trial(epochs, summary, "good", segments(epochs))
    assert best.groups.loc["f", "acc"] == pytest.approx(0.9)
    assert best.groups.loc["m", "positive_rate"] == pytest.approx(0.5)
    assert best.gaps == {"dp_diff": pytest.approx(0.2)}
    assert list(best.curves.index) == list(range(1, n + 1))
    assert list(best.calibration.columns) == ["ece"]
    assert best.notes == [NO_RELIABILITY_BINS]
    plain = epochs_table({"t": HEALTHY})
    alone = best_trial(plain, trial_summary(plain, ("val_acc", "max")), "t")
    assert NO_GROUPS in alone.notes and alone.calibration.empty


def test_spec_differences() -> None:
    base = load_spec("quickstart")
    wider = base.with_overrides(["penalties.l2={loguniform: [1e-8, 1.0]}", "budget.samples=9"])
    table = spec_differences({"a": base, "b": wider, "c": None})
    assert set(table.index) >= {"penalties.l2", "budget.samples"}
    assert table.loc["budget.samples", "b"] == "9"
    assert (table["c"] == NO_SPEC).all()
    same = spec_differences({"a": base, "b": base})
    assert same.empty and list(same.columns) == ["a", "b"]


def test_spec_differences_mark_a_key_one_spec_lacks() -> None:
    """ASHA has a grace period, no scheduler has none: the row shows MISSING there."""
    base = load_spec("quickstart")
    plain = base.with_overrides(["scheduler={kind: none}"])
    table = spec_differences({"asha": base, "none": plain})
    assert table.loc["scheduler.grace_period", "asha"] == str(base.scheduler.grace_period)
    assert table.loc["scheduler.grace_period", "none"] == MISSING
    assert table.loc["scheduler.kind"].tolist() == ["asha", "none"]

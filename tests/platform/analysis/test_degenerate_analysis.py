"""Issue #8 end to end on real Parquet stores: constant predictors (the store's ``degenerate``
trials) are labelled so, never ``healthy``; the verdict leads with them; the path's best
leaves them out; with no eligible trial the analysis says ``no best:`` in the sweep
summary's words, and an empty front says why it is empty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from regtune.platform.analysis.diagnosis import explain
from regtune.platform.analysis.run import Analysis, analyze_experiment
from regtune.platform.results import SweepOutcome
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import HEALTHY, write_experiment

#: A loss that barely leaves its start (ends at 0.97 of it): a model held at one class.
STUCK = {
    "train_loss": [0.100, 0.099, 0.098, 0.098, 0.097, 0.097, 0.097, 0.097],
    "val_loss": [0.101, 0.100, 0.099, 0.099, 0.098, 0.098, 0.098, 0.098],
}
#: A churn label with 1.78% positives: "always no" scores 0.9822 (as in tests/platform/results).
MAJORITY = 0.9822


def _spec() -> dict[str, Any]:
    return load_spec("quickstart", overrides=["penalties.l2={loguniform: [1e-6, 1.0]}"]).to_dict()


def _store(exp: Path, trials: dict[str, tuple[dict[str, list[float]], float, float, float]]) -> str:
    """``{id: (curves, l2, final val_acc, final group gap)}``; a gap of 0.0 on both
    dp_diff and eo_diff is what the store marks as a constant predictor."""
    configs = {
        t: {"penalties": {"l2": l2}, "model": {"dropout": 0.1}}
        for t, (_, l2, _, _) in trials.items()
    }
    final = {
        t: {"val_acc": acc, "dp_diff": gap, "eo_diff": gap}
        for t, (_, _, acc, gap) in trials.items()
    }
    write_experiment(
        str(exp), {t: c for t, (c, _, _, _) in trials.items()}, configs, spec=_spec(), final=final
    )
    return str(exp)


@pytest.fixture(scope="module")
def all_constant(tmp_path_factory: pytest.TempPathFactory) -> str:
    exp = tmp_path_factory.mktemp("runs") / "churn"
    return _store(
        exp,
        {
            "a": (STUCK, 1e-4, MAJORITY, 0.0),
            "b": (STUCK, 1e-2, MAJORITY, 0.0),
            "c": (STUCK, 1.0, MAJORITY, 0.0),
        },
    )


@pytest.fixture(scope="module")
def some_constant(tmp_path_factory: pytest.TempPathFactory) -> str:
    exp = tmp_path_factory.mktemp("runs") / "mixed"
    return _store(
        exp,
        {
            "learned": (HEALTHY, 1e-5, 0.95, 0.04),
            "strong": (STUCK, 0.1, MAJORITY, 0.0),
            "stronger": (STUCK, 1.0, 0.98, 0.0),
        },
    )


def test_every_trial_constant_no_trial_is_healthy_and_the_advice_fits(all_constant: str) -> None:
    analysis = analyze_experiment(all_constant)
    table = analysis.diagnosis
    assert table["diagnosis"].to_dict() == {"a": "degenerate", "b": "degenerate", "c": "degenerate"}
    assert table["degenerate"].all() and not table["underfit"].any()
    assert table["class_share"].tolist() == pytest.approx([MAJORITY] * 3)
    text = explain(table.loc["c"].to_dict(), analysis.swept)
    assert text.startswith("degenerate: predicts one class for every row")
    assert "healthy" not in text
    # Its own evidence: a train loss at 0.97 of its start, a class of 98.2% of the rows.
    assert "its train loss ended at 0.97 of its first epoch's (>= 0.7)" in text
    assert "or weaken model.dropout, penalties.l2 (a strong penalty holds" in text
    assert "the other classes hold only 1.8% of the val rows" in text and "resample" in text
    assert "penalties.l2: lower" in text
    assert "unstable" not in text and "lower training.lr" not in text  # not true of this run
    examples = analysis.examples()
    assert set(examples) == {"degenerate"}


def test_every_trial_constant_the_verdict_leads_and_the_path_has_no_best(
    all_constant: str,
) -> None:
    analysis = analyze_experiment(all_constant)
    assert analysis.verdict[0].startswith(
        "all 3 trials are degenerate (each predicts one class for every row, a constant "
        "predictor): by default no trial is best and the front is empty"
    )
    assert "3 barely left their starting loss" in analysis.verdict[0]
    path = analysis.paths["penalties.l2"]
    assert not path["best"].any()
    main = path[path["metric"] == "val_acc"]
    assert main["n_trials"].tolist() == [0, 0, 0]
    assert main["n_degenerate"].tolist() == [1, 1, 1]
    assert analysis.edges.empty  # no best strength, no edge to move


def test_every_trial_constant_no_best_in_the_sweep_summarys_words(all_constant: str) -> None:
    analysis = analyze_experiment(all_constant)
    assert analysis.best is None
    reason = analysis.no_best_reason()
    # regtune sweep's summary says the same of the same store.
    assert reason == SweepOutcome.from_path(all_constant).no_best_reason()
    assert reason is not None and reason.startswith(
        "every trial predicts one class for every row (a constant predictor)"
    )
    assert analysis.empty_front_reason() == (
        "the front is empty: every trial was left out (3 degenerate: each predicts one class "
        "for every row; --include-degenerate keeps them)"
    )
    data = analysis.to_dict()
    assert data["no_best"] == reason and data["front"]["empty"] == analysis.empty_front_reason()
    kept = analyze_experiment(all_constant, include_degenerate=True)
    assert kept.best is not None and kept.no_best_reason() is None
    assert kept.empty_front_reason() is None
    assert kept.paths["penalties.l2"]["best"].any()


def _mixed(some_constant: str) -> Analysis:
    return analyze_experiment(some_constant)


def test_some_constant_the_top_trial_is_named_and_the_learned_one_is_best(
    some_constant: str,
) -> None:
    analysis = _mixed(some_constant)
    assert analysis.diagnosis["diagnosis"].to_dict() == {
        "learned": "healthy",
        "strong": "degenerate",
        "stronger": "degenerate",
    }
    # Accuracy ranks the constant predictor first (0.9822 > 0.95): the verdict says so first.
    assert analysis.verdict[0].startswith(
        "the top trial by val_acc, strong (val_acc 0.9822), is degenerate: 2 of 3 trials are "
        "degenerate"
    )
    assert analysis.verdict[1] == (
        "every degenerate trial has penalties.l2 >= 0.1, every other trial <= 1e-05: a "
        "penalty this strong holds the model at one class; keep the next sweep's penalties.l2 "
        "below 0.1"
    )
    assert analysis.best is not None and analysis.best.trial_id == "learned"
    assert analysis.no_best_reason() is None and analysis.empty_front_reason() is None
    assert analysis.front is not None and list(analysis.front.front.index) == ["learned"]


def test_some_constant_the_paths_best_is_the_learned_strength(some_constant: str) -> None:
    path = _mixed(some_constant).paths["penalties.l2"]
    main = path[path["metric"] == "val_acc"].reset_index(drop=True)
    assert main["strength"].tolist() == pytest.approx([1e-5, 0.1, 1.0])
    # The constant predictors' 0.98 would have been the best median; they are left out.
    assert main["best"].tolist() == [True, False, False]
    assert main["median"].iloc[0] == pytest.approx(0.95)
    assert main["median"].iloc[1:].isna().all()
    assert main["n_degenerate"].tolist() == [0, 1, 1]


def test_every_analysis_reads_a_missing_degenerate_flag_as_not_degenerate() -> None:
    """A summary joined from stores with and without the flag holds NaN/NA in it;
    best trial, front and path all read it as "not degenerate" (best trial used
    to read NaN as True and skip the trial the front kept)."""
    import numpy as np
    import pandas as pd

    from regtune.platform.analysis.best import best_trial_id
    from regtune.platform.analysis.front import pareto_table
    from regtune.platform.analysis.summary import degenerate_flags

    summary = pd.DataFrame(
        {"val_acc": [0.91, 0.85, 0.95], "degenerate": [np.nan, False, True]},
        index=pd.Index(["a", "b", "c"], name="trial_id"),
    )
    assert degenerate_flags(summary).tolist() == [False, False, True]
    # Aligned to another order, with a trial the summary lacks.
    order = pd.Index(["c", "zz", "a"])
    assert degenerate_flags(summary, order).tolist() == [True, False, False]
    assert degenerate_flags(None, order).tolist() == [False, False, False]
    assert degenerate_flags(summary.drop(columns="degenerate")).tolist() == [False] * 3
    # Object column (None where unknown) and a nullable boolean one read the same.
    for column in ([None, False, True], pd.array([pd.NA, False, True], dtype="boolean")):
        assert degenerate_flags(summary.assign(degenerate=column)).tolist() == [False, False, True]
    assert best_trial_id(summary, ("val_acc", "max")) == "a"
    assert best_trial_id(summary, ("val_acc", "max"), include_degenerate=True) == "c"
    table = pareto_table(summary, [("val_acc", "max")]).table
    assert table.index[table["on_front"]].tolist() == ["a"]
    assert table.loc["c", "excluded"] == "degenerate" and table.loc["a", "excluded"] == ""

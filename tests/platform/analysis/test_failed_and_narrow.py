"""What each path point counts, failed trials kept out of the path and the verdict, when
"narrow" is advised, a best trial off the front, and the hypervolume reference: known
answers on hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regtune.errors import SpecError
from regtune.platform.analysis import analyze_tables
from regtune.platform.analysis.diagnosis import explain
from regtune.platform.analysis.front import best_off_front, pareto_table
from regtune.platform.analysis.path import heatmap, regularization_path
from regtune.platform.analysis.summary import trial_summary
from regtune.platform.analysis.swept import SweptParameter
from regtune.platform.analysis.verdict import NARROW_MAX_SHARE, edges, sweep_verdict
from tests.platform.analysis.tables import HEALTHY, OVERFIT, epochs_table

L2 = SweptParameter("penalties.l2", "loguniform", 1e-6, 1e-2, True, True)
DROPOUT = SweptParameter("model.dropout", "uniform", 0.0, 0.3, False, True)


def _summary(rows: dict[str, dict[str, object]]) -> pd.DataFrame:
    """A per-trial table: index trial_id, the given columns."""
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "trial_id"
    return table


# --- D3: n_trials counts the trials a point's numbers are over -----------------------------


def test_n_trials_counts_only_trials_with_a_value_of_that_metric() -> None:
    """Two trials at one strength, one without a test_acc (stopped before its final report):
    the test_acc row of that point is over 1 trial, the val_acc row over 2; a strength whose
    only trial has no test_acc has n_trials 0 for test_acc."""
    summary = _summary(
        {
            "a": {"config.penalties.l2": 1e-5, "val_acc": 0.9, "test_acc": 0.88},
            "b": {"config.penalties.l2": 1e-5, "val_acc": 0.8, "test_acc": np.nan},
            "c": {"config.penalties.l2": 1e-3, "val_acc": 0.7, "test_acc": np.nan},
        }
    )
    path = regularization_path(summary, L2, ("val_acc", "max"), ["val_acc", "test_acc"])
    counts = {(row.metric, row.strength): row.n_trials for row in path.itertuples(index=False)}
    assert counts == {
        ("val_acc", 1e-5): 2,
        ("test_acc", 1e-5): 1,
        ("val_acc", 1e-3): 1,
        ("test_acc", 1e-3): 0,
    }


# --- D4: failed trials are out of the path, the heat map and the verdict --------------------


def _failing_sweep(statuses: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four 8-epoch trials along l2; statuses as given. The failed ones have the best
    val_acc, so they would decide the path if they counted."""
    curves = {"t0": OVERFIT, "t1": OVERFIT, "t2": HEALTHY, "t3": HEALTHY}
    l2 = {"t0": 1e-6, "t1": 1e-5, "t2": 1e-4, "t3": 1e-3}
    extra = {t: {"val_acc": [0.5 + 0.1 * k] * 8} for k, t in enumerate(["t2", "t3", "t0", "t1"])}
    epochs = epochs_table(curves, {t: {"penalties.l2": v} for t, v in l2.items()}, extra=extra)
    trials = pd.DataFrame({"trial_id": list(statuses), "status": list(statuses.values())})
    return epochs, trials


def test_failed_trials_are_left_out_of_the_path_and_counted() -> None:
    epochs, trials = _failing_sweep(
        {"t0": "error", "t1": "error", "t2": "finished", "t3": "finished"}
    )
    summary = trial_summary(epochs, ("val_acc", "max"), trials=trials)
    path = regularization_path(summary, L2, ("val_acc", "max"), ["val_acc"])
    assert path["n_failed"].tolist() == [1, 1, 0, 0]
    assert path["n_trials"].tolist() == [0, 0, 1, 1]
    assert np.isnan(path["median"].iloc[:2]).all()
    # The best strength is the best of the trials that did not fail (t3: val_acc 0.6).
    assert path.loc[path["best"], "strength"].tolist() == [1e-3]
    assert path.attrs["n_failed"] == 2


def test_failed_trials_are_in_no_heatmap_cell() -> None:
    epochs, trials = _failing_sweep(
        {"t0": "error", "t1": "finished", "t2": "finished", "t3": "finished"}
    )
    epochs["config.model.dropout"] = epochs["trial_id"].map(
        {"t0": 0.1, "t1": 0.1, "t2": 0.2, "t3": 0.2}
    )
    summary = trial_summary(epochs, ("val_acc", "max"), trials=trials)
    cells = heatmap(summary, L2, DROPOUT, "val_acc")
    assert 1e-6 not in set(cells["x"]) and int(cells["n_trials"].sum()) == 3
    assert cells.attrs["n_failed"] == 1


def test_every_trial_failed_gives_one_verdict_line_and_no_range_advice() -> None:
    epochs, trials = _failing_sweep({t: "error" for t in ("t0", "t1", "t2", "t3")})
    analysis = analyze_tables(epochs, trials=trials)
    assert len(analysis.verdict) == 1
    assert analysis.verdict[0].startswith("every trial failed (4 of 4, status error)")
    assert "narrow" not in analysis.verdict[0] and "overfit" not in analysis.verdict[0]
    assert analysis.edges.empty


def test_some_failed_trials_are_said_and_not_counted_in_the_shares() -> None:
    """t0 and t1 overfit and failed; the two healthy trials that finished are the only ones
    the shares are over, so no "overfit" line."""
    epochs, trials = _failing_sweep(
        {"t0": "error", "t1": "error", "t2": "finished", "t3": "finished"}
    )
    analysis = analyze_tables(epochs, trials=trials)
    assert analysis.verdict[0].startswith("2 of 4 trials failed (status error): they are left out")
    assert not any("overfit" in line for line in analysis.verdict)
    # Without the statuses, the same curves give the overfit line (the test has teeth).
    plain = analyze_tables(epochs)
    assert any("50% of 4 trials overfit" in line for line in plain.verdict)


# --- D8: "narrow" only when the new range is materially narrower -----------------------------


def _path(strengths: list[float], medians: list[float], parameter: SweptParameter) -> pd.DataFrame:
    summary = _summary(
        {
            f"t{i}": {parameter.column: s, "val_acc": m}
            for i, (s, m) in enumerate(zip(strengths, medians, strict=True))
        }
    )
    return regularization_path(summary, parameter, ("val_acc", "max"), ["val_acc"])


def test_an_almost_whole_range_is_not_called_narrower() -> None:
    """The review's case: best at 3.39e-05, the only lower strength tried 1.25e-06, none
    above it in [1e-6, 1e-2]: [1.25e-06, 0.01] spans 97.6 % of the decades: keep the range,
    never "narrow" to it."""
    path = _path([1.25e-6, 3.39e-5], [0.95, 0.97], L2)
    table = edges({L2.name: path}, [L2])
    row = table.iloc[0]
    assert (row["next_low"], row["next_high"]) == (1e-6, 1e-2)
    lines = sweep_verdict({L2.name: path}, pd.DataFrame(), [L2])
    assert "narrow the next sweep" not in lines[0]
    assert "too few strengths were tried around it to narrow the range by 25% or more" in lines[0]


def test_a_materially_narrower_range_is_advised() -> None:
    """Five strengths over four decades, best in the middle: its neighbours span two of the
    four decades (50 % <= NARROW_MAX_SHARE)."""
    path = _path([1e-6, 1e-5, 1e-4, 1e-3, 1e-2], [0.90, 0.92, 0.97, 0.93, 0.91], L2)
    row = edges({L2.name: path}, [L2]).iloc[0]
    assert (row["next_low"], row["next_high"]) == (1e-5, 1e-3)
    assert NARROW_MAX_SHARE >= 0.5
    lines = sweep_verdict({L2.name: path}, pd.DataFrame(), [L2])
    assert "narrow the next sweep to [1e-05, 0.001]" in lines[0]


def test_the_low_end_of_a_linear_range_is_narrowed_only_when_narrower() -> None:
    """dropout [0, 0.3] best at 0 with the next strength tried at 0.29: "sweep the low end"
    to [0, 0.29] would be the whole range, so it is not offered."""
    path = _path([0.0, 0.29], [0.97, 0.90], DROPOUT)
    lines = sweep_verdict({DROPOUT.name: path}, pd.DataFrame(), [DROPOUT])
    assert "cannot go lower" in lines[0] and "sweep the low end" not in lines[0]
    near = _path([0.0, 0.05, 0.29], [0.97, 0.95, 0.90], DROPOUT)
    lines = sweep_verdict({DROPOUT.name: near}, pd.DataFrame(), [DROPOUT])
    assert "sweep the low end, e.g. [0, 0.05]" in lines[0]


# --- D9: a best trial the front does not hold -------------------------------------------------


def test_best_off_front_names_the_trial_that_dominates_it() -> None:
    summary = _summary(
        {
            "best": {"val_acc": 0.9259, "ece": 0.0753, "val_loss": 0.20},
            "calib": {"val_acc": 0.9259, "ece": 0.0658, "val_loss": 0.25},
            "worse": {"val_acc": 0.80, "ece": 0.03, "val_loss": 0.5},
        }
    )
    front = pareto_table(summary, [("val_acc", "max"), ("ece", "min")])
    assert not front.table.loc["best", "on_front"]
    line = best_off_front(front, "best", ["val_acc"])
    assert line is not None
    assert line.startswith("not on the Pareto front: calib dominates it (val_acc 0.9259 vs 0.9259")
    assert "ranked by val_acc, ties by val_loss" in line and line.endswith("not by ece")
    assert best_off_front(front, "calib", ["val_acc"]) is None


# --- D10: the hypervolume reference ---------------------------------------------------------


def _two() -> pd.DataFrame:
    return _summary({"a": {"val_acc": 0.9, "ece": 0.05}, "b": {"val_acc": 0.8, "ece": 0.02}})


def test_a_reference_key_that_is_not_an_objective_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        pareto_table(
            _two(),
            [("val_acc", "max"), ("ece", "min")],
            reference={"val_acc": 0.5, "ece": 0.5, "brier": 1.0},
        )
    assert str(info.value) == (
        "reference: 'brier' is not an objective of this analysis; allowed: val_acc, ece (one "
        "metric=value per objective; --objective chooses the objectives)"
    )


def test_a_reference_no_trial_beats_is_said() -> None:
    objectives = [("val_acc", "max"), ("ece", "min")]
    front = pareto_table(_two(), objectives, reference={"val_acc": 0.99, "ece": 0.5})
    assert front.hypervolume == 0.0
    assert front.notes == (
        "hypervolume 0: no trial on the front beats the reference (val_acc=0.99, ece=0.5) on "
        "every objective (val_acc: none above 0.99); a reference point must be worse than the "
        "trials on each objective (the default: the worst value seen, 10 % of the range "
        "further out)",
    )
    fine = pareto_table(_two(), objectives, reference={"val_acc": 0.5, "ece": 0.5})
    assert fine.hypervolume > 0 and fine.notes == ()
    assert pareto_table(_two(), objectives).notes == ()


def test_a_failed_trials_evidence_says_it_failed_and_gives_no_directions() -> None:
    epochs, trials = _failing_sweep(
        {"t0": "error", "t1": "finished", "t2": "finished", "t3": "finished"}
    )
    analysis = analyze_tables(epochs, trials=trials)
    assert bool(analysis.diagnosis.loc["t0", "failed"])
    assert not analysis.diagnosis.loc[["t1", "t2", "t3"], "failed"].any()
    text = explain(analysis.diagnosis.loc["t0"].to_dict(), [L2])
    assert text.startswith(
        "failed (status error: left out of the path, the front, the best and the verdict); "
        "its curves read overfit: "
    )
    assert "penalties.l2:" not in text
    assert "penalties.l2: raise" in explain(analysis.diagnosis.loc["t1"].to_dict(), [L2])


# --- the front leaves incomplete trials out ---------------------------------------------------


def test_incomplete_trials_are_named_and_kept_off_the_front() -> None:
    """The trials pareto_table is told are incomplete stay in its table, marked
    ``"incomplete"`` whatever else holds (here a failed one), and are neither on the front
    nor in the default reference: the hypervolume is that of the table without them."""
    objectives = [("val_acc", "max"), ("ece", "min")]
    summary = _summary(
        {
            "lost": {"val_acc": 0.99, "ece": 0.01, "status": "ok"},
            "lost_failed": {"val_acc": 0.98, "ece": 0.01, "status": "error"},
            "failed": {"val_acc": 0.97, "ece": 0.01, "status": "error"},
            "a": {"val_acc": 0.9, "ece": 0.05, "status": "ok"},
            "b": {"val_acc": 0.8, "ece": 0.02, "status": "ok"},
        }
    )
    front = pareto_table(summary, objectives, incomplete=["lost", "lost_failed"])
    assert front.table["excluded"].to_dict() == {
        "lost": "incomplete",
        "lost_failed": "incomplete",
        "failed": "error",
        "a": "",
        "b": "",
    }
    assert front.table.index[front.table["on_front"]].tolist() == ["a", "b"]
    without = pareto_table(summary.drop(index=["lost", "lost_failed"]), objectives)
    assert front.hypervolume == without.hypervolume
    assert front.reference == without.reference

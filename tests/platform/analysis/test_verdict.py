"""The sweep verdict: an edge is where the best strength sits in the swept range, never a
narrowed range equal to the range swept, a best at 0 of a penalty may be unneeded, the
path and the loss curves named when they disagree, and short trials told from stopped ones."""

from __future__ import annotations

import pandas as pd
import pytest

from regtune.platform.analysis.diagnosis import diagnose
from regtune.platform.analysis.path import regularization_path
from regtune.platform.analysis.swept import SweptParameter
from regtune.platform.analysis.verdict import edges, range_position, sweep_verdict
from tests.platform.analysis.tables import (
    NO_DIAGNOSIS,
    SHORT,
    UNDERFIT,
    epochs_table,
    val_acc_path,
)

L2 = SweptParameter("penalties.l2", "loguniform", 1e-6, 0.1, True, True)
FAIR = SweptParameter("penalties.fairness.strength", "uniform", 0.0, 1.0, False, True)


def test_position_is_read_on_the_log_scale() -> None:
    assert range_position(0.00217, 1e-6, 0.1, log=True) == pytest.approx(0.667, abs=1e-3)
    assert range_position(0.5, 0.0, 1.0, log=False) == 0.5
    assert range_position(0.0, 0.0, 1.0, log=True) == 0.0


def test_a_best_1_7_decades_below_the_top_is_inside_not_at_the_upper_edge() -> None:
    """The user's 3-trial sweep: the best (largest) strength 0.00217 of [1e-6, 0.1]."""
    path = val_acc_path(L2, {5.48e-5: 0.80, 3e-4: 0.82, 0.00217: 0.85})
    row = edges({L2.name: path}, [L2]).iloc[0]
    assert row["edge"] == "" and 0.6 < row["position"] < 0.7
    # Past the largest strength tried, up to the range's own end (untried, not ruled out).
    assert (row["next_low"], row["next_high"]) == (3e-4, 0.1)
    (line,) = sweep_verdict({L2.name: path}, NO_DIAGNOSIS, [L2])
    assert "upper edge" not in line and "widen" not in line
    assert "is inside its range [1e-06, 0.1] (67% of the way up): narrow the next sweep to " in line
    assert line.endswith("[0.0003, 0.1]")


def test_two_trials_narrow_to_a_range_that_contains_the_untried_side() -> None:
    path = val_acc_path(L2, {5.48e-5: 0.80, 0.00217: 0.85})
    row = edges({L2.name: path}, [L2]).iloc[0]
    assert row["edge"] == "" and (row["next_low"], row["next_high"]) == (5.48e-5, 0.1)


def test_a_narrowed_range_is_never_the_range_swept() -> None:
    wide = SweptParameter("penalties.l2", "loguniform", 1e-4, 1.0, True, True)
    path = val_acc_path(wide, {1e-4: 0.8, 1e-2: 0.9, 1.0: 0.7})
    row = edges({wide.name: path}, [wide]).iloc[0]
    assert row["edge"] == "" and (row["next_low"], row["next_high"]) == (1e-4, 1.0)
    (line,) = sweep_verdict({wide.name: path}, NO_DIAGNOSIS, [wide])
    assert "narrow the next sweep" not in line and "too few strengths were tried" in line


def test_a_best_at_zero_of_a_linear_penalty_may_be_unneeded() -> None:
    path = val_acc_path(FAIR, {0.0: 0.9, 1.0: 0.8})
    row = edges({FAIR.name: path}, [FAIR]).iloc[0]
    assert row["edge"] == "lower"
    (line,) = sweep_verdict({FAIR.name: path}, NO_DIAGNOSIS, [FAIR])
    assert "is at the lower end of its range [0, 1], which cannot go lower" in line
    assert "the penalty may be unneeded" in line
    assert "narrow the next sweep" not in line and "sweep the low end" not in line
    # With a strength tried between: the low end up to it.
    path = val_acc_path(FAIR, {0.0: 0.9, 0.25: 0.85, 1.0: 0.8})
    (line,) = sweep_verdict({FAIR.name: path}, NO_DIAGNOSIS, [FAIR])
    assert line.endswith(
        "may be unneeded; compare with a run without it, or sweep the low end, e.g. [0, 0.25]"
    )


def test_a_best_near_an_edge_with_a_worse_strength_tried_past_it_is_bracketed() -> None:
    path = val_acc_path(FAIR, {0.0: 0.7, 0.05: 0.9, 0.5: 0.8})
    row = edges({FAIR.name: path}, [FAIR]).iloc[0]
    assert row["edge"] == "" and (row["next_low"], row["next_high"]) == (0.0, 0.5)


def test_upper_edge_and_underfit_curves_say_which_evidence_is_which() -> None:
    path = val_acc_path(L2, {1e-6: 0.7, 1e-3: 0.8, 0.1: 0.9})
    epochs = epochs_table({"a": UNDERFIT, "b": UNDERFIT})
    lines = sweep_verdict({L2.name: path}, diagnose(epochs), [L2])
    assert lines[0].startswith(
        "best penalties.l2 (0.1, by median val_acc) is at the upper edge of its range "
        "[1e-06, 0.1]: widen it upward, e.g. to [1e-06, 1]"
    )
    assert lines[1].startswith("100% of 2 trials underfit: shift penalties.l2 toward less")
    assert "this reads the trials' loss curves, while the path of penalties.l2 above" in lines[1]
    assert "points toward more regularization" in lines[1]


def test_short_trials_are_too_short_unless_the_table_says_stopped_early() -> None:
    epochs = epochs_table({"a": SHORT, "b": SHORT})
    diagnosis = diagnose(epochs)
    finished = pd.Series({"a": "finished", "b": "finished"})
    (line,) = sweep_verdict({}, diagnosis, [], finished)
    assert line.startswith("2 trial(s) too short to diagnose (2 epochs < 3)")
    assert "early" not in line and "budget.max_epochs" in line
    stopped = pd.Series({"a": "stopped early", "b": "finished"})
    (line,) = sweep_verdict({}, diagnosis, [], stopped)
    assert "(2 epochs < 3): 1 stopped early (by the scheduler or early stopping)" in line


def test_underfit_curves_and_a_best_inside_name_their_evidence() -> None:
    """The user's sweep: best l2 inside the range, most trials underfit."""
    path = val_acc_path(L2, {5.48e-5: 0.80, 3e-4: 0.82, 0.00217: 0.85})
    epochs = epochs_table({"a": UNDERFIT, "b": UNDERFIT})
    lines = sweep_verdict({L2.name: path}, diagnose(epochs), [L2])
    assert "is inside its range" in lines[0]
    assert lines[1].startswith("100% of 2 trials underfit: shift penalties.l2 toward less")
    assert "this reads the trials' loss curves, while the path of penalties.l2" in lines[1]
    assert "which is best inside the range" in lines[1]


def _degenerate_sweep(
    flags: dict[str, bool], include_degenerate: bool = False
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """Four trials with the same flat (underfit) curves, the store's ``degenerate`` flag as
    given (a gap of exactly 0 where it is set): paths (built with ``include_degenerate``),
    diagnosis and summary."""
    from regtune.platform.analysis.summary import trial_summary

    curves = {t: UNDERFIT for t in flags}
    l2 = dict(zip(flags, (1e-5, 1e-4, 1e-2, 0.1), strict=True))
    epochs = epochs_table(
        curves,
        configs={t: {"penalties.l2": v} for t, v in l2.items()},
        extra={
            t: {"dp_diff": [0.0 if d else 0.05] * 8, "eo_diff": [0.0 if d else 0.05] * 8}
            for t, d in flags.items()
        },
    )
    trials = pd.DataFrame(
        {"trial_id": list(flags), "status": "finished", "degenerate": list(flags.values())}
    )
    summary = trial_summary(epochs, ("val_acc", "max"), trials=trials)
    path = regularization_path(
        summary, L2, ("val_acc", "max"), include_degenerate=include_degenerate
    )
    return {"penalties.l2": path}, diagnose(epochs, summary), summary


def test_degenerate_trials_lead_the_verdict_and_stay_out_of_the_label_shares() -> None:
    """Two trials underfit, two are constant predictors with the same flat curves at the
    strongest l2: the first line names them, the underfit share is over the other two."""
    flags = {"u1": False, "u2": False, "k1": True, "k2": True}
    paths, diagnosis, summary = _degenerate_sweep(flags)
    lines = sweep_verdict(paths, diagnosis, [L2], summary=summary, objective=("val_acc", "max"))
    assert lines[0].startswith(
        "2 of 4 trials are degenerate (each predicts one class for every row, a constant "
        "predictor); by default they are left off the front and the best; 2 barely left their "
        "starting loss"
    )
    assert lines[1].startswith("every degenerate trial has penalties.l2 >= 0.01, every other")
    assert "100% of 2 trials underfit" in " ".join(lines)
    # The verdict reads the diagnosis alone too: the first line still names them.
    alone = sweep_verdict(paths, diagnosis, [L2])
    assert alone[0].startswith("2 of 4 trials are degenerate")


def _verdict_lines(degenerate: dict[str, bool], *, include: bool) -> list[str]:
    """The verdict of :func:`_degenerate_sweep`'s sweep, run with ``include_degenerate``."""
    paths, diagnosis, summary = _degenerate_sweep(degenerate, include_degenerate=include)
    return sweep_verdict(
        paths,
        diagnosis,
        [L2],
        summary=summary,
        objective=("val_acc", "max"),
        include_degenerate=include,
    )


def test_with_include_degenerate_the_first_line_says_they_were_kept() -> None:
    """--include-degenerate: the front and the best may hold constant predictors, and the
    verdict's first line says so instead of 'by default ... left off' (some of them) or
    'by default no trial is best and the front is empty' (all of them)."""
    some = {"u1": False, "u2": False, "k1": True, "k2": True}
    lines = _verdict_lines(some, include=True)
    assert lines[0].startswith(
        "2 of 4 trials are degenerate (each predicts one class for every row, a constant "
        "predictor); --include-degenerate keeps them eligible for the front and the best; "
        "2 barely left their starting loss"
    )
    assert "by default" not in " ".join(lines)
    every = dict.fromkeys(some, True)
    for include, said in (
        (False, "by default no trial is best and the front is empty"),
        (
            True,
            "--include-degenerate keeps them eligible, so any best trial or front point is a "
            "constant predictor",
        ),
    ):
        lines = _verdict_lines(every, include=include)
        assert lines[0].startswith(
            "all 4 trials are degenerate (each predicts one class for every row, a constant "
            f"predictor): {said}; 4 barely left their starting loss"
        ), lines[0]


def _judged(n: int, **labels: bool) -> pd.DataFrame:
    """A diagnosis of ``n`` judged trials carrying the given labels."""
    names = ("overfit", "underfit", "unstable", "biased")
    frame = {name: [labels.get(name, False)] * n for name in names}
    return pd.DataFrame(
        {"too_short": [False] * n, "degenerate": [False] * n, **frame},
        index=[f"t{i}" for i in range(n)],
    )


def test_a_group_gap_asks_for_more_fairness_only_where_fairness_was_swept() -> None:
    biased = _judged(3, biased=True)
    swept = sweep_verdict({"penalties.fairness.strength": pd.DataFrame()}, biased, [FAIR])
    assert any("show a group gap: sweep penalties.fairness.strength higher" in x for x in swept)
    plain = sweep_verdict({"penalties.l2": pd.DataFrame()}, biased, [L2])
    line = next(x for x in plain if "show a group gap" in x)
    assert "strength higher" not in line and "add or tighten a fairness constraint" in line
    # A fairness key other than the strength swept: the strength is not named either.
    bound = SweptParameter("penalties.fairness.bound", "uniform", 0.01, 0.1, False, True)
    other = sweep_verdict({bound.name: pd.DataFrame()}, biased, [bound])
    line = next(x for x in other if "show a group gap" in x)
    assert "strength higher" not in line and "add or tighten a fairness constraint" in line


def test_one_degenerate_trial_that_learnt_little_is_said_in_the_singular() -> None:
    flags = {"u1": False, "u2": False, "u3": False, "k1": True}
    paths, diagnosis, summary = _degenerate_sweep(flags)
    lines = sweep_verdict(paths, diagnosis, [L2], summary=summary, objective=("val_acc", "max"))
    assert "1 barely left its starting loss" in lines[0]

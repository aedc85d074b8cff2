"""A tie for best whose neighbouring strengths were tried, but whose trials have no value of
the objective (``--objective test_acc``, trials stopped before the test split was scored):
the sentence names those trials, as the inside and edge sentences do, rather than saying too
few strengths were tried."""

from __future__ import annotations

import math

import pandas as pd

from regtune.platform.analysis.path import regularization_path
from regtune.platform.analysis.swept import SweptParameter
from regtune.platform.analysis.verdict import edges, sweep_verdict

L2 = SweptParameter("penalties.l2", "grid", 1e-6, 1e-2, True, True)
NO_DIAGNOSIS = pd.DataFrame(columns=["too_short"])
OBJECTIVE = ("test_acc", "max")


def _summary(test_acc: dict[float, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(len(test_acc))],
            L2.column: list(test_acc),
            "test_acc": list(test_acc.values()),
            "status": ["stopped early"] * len(test_acc),
        }
    ).set_index("trial_id")


def _lines(test_acc: dict[float, float]) -> tuple[pd.Series, list[str]]:
    summary = _summary(test_acc)
    path = regularization_path(summary, L2, OBJECTIVE)
    row = edges({L2.name: path}, [L2]).iloc[0]
    lines = sweep_verdict({L2.name: path}, NO_DIAGNOSIS, [L2], summary=summary, objective=OBJECTIVE)
    return row, lines


def test_a_tie_with_trials_lacking_the_objective_names_them() -> None:
    row, (line,) = _lines({1e-6: 0.93, 1e-5: 0.93, 1e-3: math.nan, 1e-2: math.nan})
    assert row["tied"] == 2 and (row["next_low"], row["next_high"]) == (1e-6, 1e-2)
    assert "too few strengths were tried" not in line
    assert line == (
        "2 values of penalties.l2 tie for best (by median test_acc), from 1e-06 to 1e-05 "
        "(range swept [1e-06, 0.01]): the objective cannot tell them apart; judge them on "
        "another metric (too few strengths have a value of test_acc to narrow the range: "
        "2 trials have no test_acc (t2, t3); rank by a metric every trial reports or let "
        "those trials finish)"
    )


def test_a_tie_with_every_trial_valued_still_asks_for_more_strengths() -> None:
    _, (line,) = _lines({1e-6: 0.93, 1e-2: 0.93})
    assert line.endswith(
        "judge them on another metric (too few strengths were tried around them to narrow "
        "the range)"
    )

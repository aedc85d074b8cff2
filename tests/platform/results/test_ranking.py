"""One best trial: the sweep summary, the analysis and the registry break ties alike."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from regtune.platform.analysis import best_trial_id
from regtune.platform.registry.selection import rank
from regtune.platform.results import SweepOutcome, TrialSummary
from regtune.platform.results.ranking import best_first

# Three trials share the best val_acc (as in the quickstart on digits); c has the
# lowest val_loss among them, e has no val_loss, d is worse, f has no val_acc.
ROWS = {
    "a": {"val_acc": 0.96, "val_loss": 0.20, "ece": 0.03},
    "b": {"val_acc": 0.96, "val_loss": 0.25, "ece": 0.01},
    "c": {"val_acc": 0.96, "val_loss": 0.15, "ece": 0.05},
    "d": {"val_acc": 0.90, "val_loss": 0.10, "ece": 0.01},
    "e": {"val_acc": 0.96, "ece": 0.02},
    "f": {"val_loss": 0.01},
}


def _order(ids: list[str], objectives: list[tuple[str, str]]) -> list[str]:
    return [ids[i] for i in best_first([ROWS[t] for t in ids], ids, objectives)]


def test_ties_go_to_the_lower_val_loss_then_the_trial_id_in_any_row_order() -> None:
    ids = list(ROWS)
    want = ["c", "a", "b", "e", "d"]
    for perm in itertools.permutations(ids):
        assert _order(list(perm), [("val_acc", "max")]) == want
    # The remaining objectives come before val_loss.
    assert _order(ids, [("val_acc", "max"), ("ece", "min")]) == ["b", "e", "a", "c", "d"]
    # Equal on everything: the trial id decides.
    same = [{"val_acc": 0.5}] * 3
    assert best_first(same, ["z", "x", "y"], [("val_acc", "max")]) == [1, 2, 0]


def test_only_finite_numbers_rank() -> None:
    rows = [
        {"val_acc": math.nan},
        {"val_acc": True},
        {"val_acc": "0.9"},
        {"val_acc": np.float32(0.5)},
        {"val_acc": np.int64(1)},
        {"val_acc": math.inf},
    ]
    assert best_first(rows, list("abcdef"), [("val_acc", "max")]) == [4, 3]
    assert best_first(rows, list("abcdef"), [("val_acc", "min")]) == [3, 4]
    with pytest.raises(ValueError, match="at least one objective"):
        best_first(rows, list("abcdef"), [])
    with pytest.raises(ValueError, match="6 rows but 2 trial ids"):
        best_first(rows, ["a", "b"], [("val_acc", "max")])


def _summary(trial_id: str) -> TrialSummary:
    row = ROWS[trial_id]
    return TrialSummary(
        trial_id=trial_id,
        status="finished",
        iterations=8,
        params={},
        objectives={"val_acc": row.get("val_acc", math.nan)},
        metrics=dict(row),
        checkpoint=None,
    )


def test_sweep_analysis_and_registry_name_the_same_best_trial() -> None:
    for perm in itertools.permutations(["a", "b", "c", "e"]):
        ids = [*perm, "d", "f"]
        outcome = SweepOutcome("x", "/tmp/x", (("val_acc", "max"),), list(map(_summary, ids)), 1.0)
        assert outcome.best is not None and outcome.best.trial_id == "c"
        summary = pd.DataFrame([ROWS[t] for t in ids], index=ids)
        assert best_trial_id(summary, ("val_acc", "max")) == "c"
        order = rank([ROWS[t] for t in ids], [("val_acc", "max")], ids)
        assert ids[order[0]] == "c"
    # A degenerate trial is never the sweep's or the analysis' best, even when tied first.
    degenerate = pd.DataFrame([ROWS[t] for t in ROWS], index=list(ROWS))
    degenerate["degenerate"] = [False, False, True, False, False, False]
    assert best_trial_id(degenerate, ("val_acc", "max")) == "a"
    assert best_trial_id(degenerate, ("val_acc", "max"), include_degenerate=True) == "c"

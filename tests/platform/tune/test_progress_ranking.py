"""The progress line's best trial is the sweep summary's (no Ray needed).

The summary ranks each trial on the epoch whose weights it keeps
(:func:`regtune.platform.analysis.summary.trial_summary` with ``at="kept"``,
ordered by :func:`regtune.platform.results.ranking.best_first`); the progress
line must name the same trial once every trial is done, not the trial with the
best epoch ever reported.
"""

from __future__ import annotations

import random
from typing import Any

import pandas as pd
import pytest

from regtune.platform.analysis.summary import trial_summary
from regtune.platform.results.ranking import best_first
from regtune.platform.tune.progress import SweepProgress, progress_text

OBJECTIVES = [("val_acc", "max")]


def _summary_best(rows: list[dict[str, Any]], objectives: list[tuple[str, str]]) -> str | None:
    """The summary's best trial for these reported epochs (as ``SweepOutcome.best``)."""
    epochs = pd.DataFrame(rows)
    table = trial_summary(epochs, objectives[0], at="kept")
    ids = [str(t) for t in table.index]
    records = [
        {k: v for k, v in r.items() if isinstance(v, float) and v == v}
        for r in table.to_dict("records")
    ]
    order = best_first(records, ids, objectives)
    return ids[order[0]] if order else None


def _run(
    rows: list[dict[str, Any]], objectives: list[tuple[str, str]], max_t: int
) -> SweepProgress:
    trials = sorted({r["trial_id"] for r in rows})
    progress = SweepProgress(objectives=objectives, total=len(trials), max_t=max_t)
    for row in rows:
        result = {k: v for k, v in row.items() if k not in ("trial_id", "iteration")}
        progress.result(row["trial_id"], {"training_iteration": row["iteration"], **result})
    for tid in trials:
        progress.completed(tid)
    return progress


def test_a_trial_whose_best_epoch_is_not_the_one_it_keeps_is_not_named() -> None:
    # The reviewer's rs1: b reached 0.9593 at epoch 11 but keeps epoch 12
    # (0.9556); d has 0.9593 at the epoch it keeps. The summary names d.
    rows = []
    for i in range(1, 13):
        b_acc = 0.9593 if i == 11 else 0.9556 if i == 12 else 0.90
        rows.append(
            {
                "trial_id": "b96f71a7",
                "iteration": i,
                "val_acc": b_acc,
                "val_loss": 0.2,
                "kept_epoch": i,
            }
        )
        d_acc = 0.9593 if i == 12 else 0.90
        rows.append(
            {
                "trial_id": "d5950f91",
                "iteration": i,
                "val_acc": d_acc,
                "val_loss": 0.3,
                "kept_epoch": i,
            }
        )
    progress = _run(rows, OBJECTIVES, max_t=12)
    snap = progress.snapshot()
    assert _summary_best(rows, OBJECTIVES) == "d5950f91"
    assert snap["best_trial"] == "d5950f91"
    assert progress_text(snap).endswith("best val_acc 0.9593 (trial d5950f91)")


def test_early_stopping_ranks_a_trial_on_its_kept_epoch() -> None:
    # a keeps its epoch 2 (early stopping's best): its later, better-looking
    # epoch 3 is not what it ships.
    rows = [
        {"trial_id": "a", "iteration": 1, "val_acc": 0.70, "val_loss": 0.5, "kept_epoch": 1},
        {"trial_id": "a", "iteration": 2, "val_acc": 0.80, "val_loss": 0.4, "kept_epoch": 2},
        {"trial_id": "a", "iteration": 3, "val_acc": 0.90, "val_loss": 0.6, "kept_epoch": 2},
        {"trial_id": "b", "iteration": 1, "val_acc": 0.85, "val_loss": 0.5, "kept_epoch": 1},
    ]
    progress = _run(rows, OBJECTIVES, max_t=3)
    assert progress.best_trial == _summary_best(rows, OBJECTIVES) == "b"
    assert progress.best == {"val_acc": 0.85}


@pytest.mark.parametrize("seed", range(40))
def test_the_last_line_names_the_summarys_best_trial(seed: int) -> None:
    # Random sweeps: coarse accuracies (ties), a loss, a second objective and
    # a kept epoch that moves forward as early stopping's best does.
    rng = random.Random(seed)
    objectives = [("val_acc", "max"), ("ece", "min")] if seed % 2 else OBJECTIVES
    rows = []
    for t in range(rng.randint(2, 6)):
        kept, best_loss = 0, float("inf")
        for i in range(1, rng.randint(1, 8) + 1):
            loss = round(rng.uniform(0.1, 1.0), 2)
            if rng.random() < 0.5 or loss < best_loss:
                kept, best_loss = i, min(loss, best_loss)
            rows.append(
                {
                    "trial_id": f"t{t}",
                    "iteration": i,
                    "val_acc": rng.choice([0.8, 0.85, 0.9]),
                    "val_loss": loss,
                    "ece": rng.choice([0.05, 0.1]),
                    "kept_epoch": kept,
                }
            )
    progress = _run(rows, objectives, max_t=8)
    assert progress.best_trial == _summary_best(rows, objectives)

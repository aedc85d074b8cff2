"""``outcome_from_grid`` with the trials an interrupt (Ctrl+C) cut off: each that
reported an epoch is ``running`` as the outcome is built (what the results store
holds, and what ``--resume`` continues), not the ``stopped early`` its epochs
alone say; one that never reported stays ``not started``, a failed one ``error``.
(It used to say ``stopped early`` for all of them, and ``run_sweep`` corrected
its own outcome afterwards.)"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from regtune.platform.results import outcome_from_grid
from regtune.platform.results.trials import ERROR, NOT_STARTED, RUNNING, STOPPED_EARLY
from regtune.search_spaces import load_spec
from tests.platform.tune.stubs import TINY_SPEC


def _row(tid: str, epochs: int, *, error: bool = False) -> Any:
    metrics: dict[str, Any] = {"trial_id": tid, "training_iteration": epochs}
    if epochs:
        metrics["val_acc"] = 0.5
    return SimpleNamespace(
        metrics=metrics,
        config={},
        path=f"/nowhere/trial_{tid}",
        error="failed" if error else None,
        checkpoint=None,
    )


def test_trials_cut_off_by_an_interrupt_are_running_in_the_outcome_as_built(
    tmp_path: Path,
) -> None:
    spec = load_spec(TINY_SPEC | {"budget": {"samples": 5, "max_epochs": 3}})
    grid = [_row("cut", 2), _row("stopped", 2), _row("queued", 0), _row("failed", 1, error=True)]
    outcome = outcome_from_grid(
        spec,
        grid,
        name="x",
        path=str(tmp_path / "x"),
        elapsed_s=1.0,
        unfinished={"cut", "queued", "failed"},
    )
    assert {t.trial_id: t.status for t in outcome.trials} == {
        "cut": RUNNING,
        "stopped": STOPPED_EARLY,
        "queued": NOT_STARTED,
        "failed": ERROR,
    }
    assert outcome.counts() == {RUNNING: 1, STOPPED_EARLY: 1, NOT_STARTED: 1, ERROR: 1}
    # Without an interrupt, as before: every trial ended.
    ended = outcome_from_grid(spec, grid, name="x", path=str(tmp_path / "x"), elapsed_s=1.0)
    assert ended.trials[0].status == STOPPED_EARLY

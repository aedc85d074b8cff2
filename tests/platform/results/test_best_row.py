"""The sweep summary and the analysis rank the same trials on the same epoch row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regtune.platform.analysis import analyze_experiment
from regtune.platform.results import SweepOutcome
from tests.platform.results.conftest import tune_result
from tests.platform.results.test_store import _config, _metrics, _writer


def _es_config(patience: int) -> dict[str, Any]:
    config = _config(1e-4)
    config["training"]["early_stopping"] = {
        "metric": "val_loss",
        "mode": "min",
        "patience": patience,
    }
    return config


def _sweep(exp: str) -> None:
    """a (early stopping on val_loss) peaks at epoch 2 (0.95) and ends at 0.7: it keeps
    epoch 2's weights; d (no early stopping) peaks at 0.97 and ends at 0.6: it keeps its
    last; b ends at its best, 0.9; c failed after one epoch at 0.99."""
    w = _writer(exp)
    trials = {
        "a": ([0.6, 0.95, 0.7], 2),
        "b": ([0.8, 0.85, 0.9], 0),
        "c": ([0.99], 0),
        "d": ([0.5, 0.97, 0.6], 0),
    }
    for tid, (accs, patience) in trials.items():
        for i, acc in enumerate(accs, start=1):
            w.add(tid, tune_result(i, _es_config(patience), **_metrics(acc)))
        w.end_trial(tid, error=tid == "c")
    w.close()


def test_errored_trials_are_never_best_and_trials_rank_on_their_kept_epoch(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "ranked")
    _sweep(exp)
    outcome = SweepOutcome.from_path(exp)
    best = outcome.best
    # Not c (error), not d (its best epoch's weights are not the ones it keeps).
    assert best is not None and best.trial_id == "a"
    assert best.epoch == 2 and best.objectives["val_acc"] == 0.95
    assert best.metrics["val_acc"] == 0.7  # the last epoch's values stay in metrics
    assert best.ranked["val_loss"] == 1.1 - 0.95  # ties break on the same row
    d = next(t for t in outcome.trials if t.trial_id == "d")
    assert d.epoch == 3 and d.objectives["val_acc"] == 0.6
    analysis = analyze_experiment(exp)
    assert analysis.best is not None and analysis.best.trial_id == "a"
    assert analysis.summary["iteration"].to_dict() == {"a": 2, "b": 3, "c": 1, "d": 3}
    assert analysis.front is not None
    table = analysis.front.table
    assert table.loc["c", "excluded"] == "error" and not table.loc["c", "on_front"]
    on_sweep_front = {outcome.trials[i].trial_id for i in outcome.front}
    assert on_sweep_front == set(analysis.front.front.index)
    assert outcome.to_dict()["trials"][0]["epoch"] == 2


class _GridRow:
    """One ResultGrid entry as outcome_from_grid reads it: Tune's last result."""

    def __init__(self, trial_id: str, acc: float, iteration: int, error: bool = False) -> None:
        self.metrics = {"trial_id": trial_id, "training_iteration": iteration, **_metrics(acc)}
        self.config = _config(1e-4)
        self.path = f"/nowhere/trial_{trial_id}"
        self.error = "failed" if error else None
        self.checkpoint = None


def test_the_sweeps_own_outcome_ranks_on_the_stored_rows_or_else_the_last(
    tmp_path: Path,
) -> None:
    from regtune.platform.results import outcome_from_grid
    from regtune.search_spaces import load_spec
    from tests.platform.results.test_store import SPEC

    exp = str(tmp_path / "ranked")
    _sweep(exp)
    grid = [
        _GridRow("a", 0.7, 3),
        _GridRow("b", 0.9, 3),
        _GridRow("c", 0.99, 1, error=True),
        _GridRow("d", 0.6, 3),
    ]
    spec = load_spec(SPEC)
    stored = outcome_from_grid(spec, grid, name="ranked", path=exp, elapsed_s=1.0)
    assert stored.best is not None and stored.best.trial_id == "a" and stored.best.epoch == 2
    rebuilt = SweepOutcome.from_path(exp)
    for ours, disk in zip(stored.trials, rebuilt.trials, strict=True):
        assert (ours.trial_id, ours.epoch, ours.objectives, ours.ranked) == (
            disk.trial_id,
            disk.epoch,
            disk.objectives,
            disk.ranked,
        )
    # No store there (or unreadable): Tune's last results rank, the error still never best.
    bare = outcome_from_grid(spec, grid, name="bare", path=str(tmp_path / "none"), elapsed_s=1.0)
    assert bare.best is not None and bare.best.trial_id == "b" and bare.best.epoch is None

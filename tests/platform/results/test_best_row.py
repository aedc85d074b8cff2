"""The sweep summary and the analysis rank the same trials on the same epoch row."""

from __future__ import annotations

from pathlib import Path

from regtune.platform.analysis import analyze_experiment
from regtune.platform.results import SweepOutcome
from tests.platform.results.conftest import tune_result
from tests.platform.results.test_store import _config, _metrics, _writer


def _sweep(exp: str) -> None:
    """a peaks at epoch 2 (0.95) and ends at 0.7; b ends at its best, 0.9; c failed
    after one epoch at 0.99."""
    w = _writer(exp)
    for tid, accs in (("a", [0.6, 0.95, 0.7]), ("b", [0.8, 0.85, 0.9]), ("c", [0.99])):
        for i, acc in enumerate(accs, start=1):
            w.add(tid, tune_result(i, _config(1e-4 * len(tid)), **_metrics(acc)))
        w.end_trial(tid, error=tid == "c")
    w.close()


def test_errored_trials_are_never_best_and_trials_rank_on_their_best_epoch(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "ranked")
    _sweep(exp)
    outcome = SweepOutcome.from_path(exp)
    best = outcome.best
    assert best is not None and best.trial_id == "a"  # not c (error), not b (best last epoch)
    assert best.epoch == 2 and best.objectives["val_acc"] == 0.95
    assert best.metrics["val_acc"] == 0.7  # the last epoch's values stay in metrics
    assert best.ranked["val_loss"] == 1.1 - 0.95  # ties break on the same row
    analysis = analyze_experiment(exp)
    assert analysis.best is not None and analysis.best.trial_id == "a"
    assert analysis.summary.loc["a", "iteration"] == 2
    assert analysis.front is not None
    table = analysis.front.table
    assert table.loc["c", "excluded"] == "error" and not table.loc["c", "on_front"]
    on_sweep_front = {outcome.trials[i].trial_id for i in outcome.front}
    assert on_sweep_front == set(analysis.front.front.index)
    assert outcome.to_dict()["trials"][0]["epoch"] == 2

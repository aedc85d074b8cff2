"""--resume's look-up of a sweep with nothing left (no Ray): a trial that
ended before its first epoch (``not started``, a sweep cut by
``budget.time_limit_s``) is ended, and Tune starts it no more."""

from __future__ import annotations

from pathlib import Path

from regtune.platform.tune.sweep import finished_experiment
from tests.platform.results.test_not_started import EXPECTED, _store


def test_a_store_whose_trials_all_ended_some_not_started_has_nothing_left(
    tmp_path: Path,
) -> None:
    # The stored spec asks for 2 trials (a grid of two); the store holds 3:
    # finished, stopped early and not started.
    _store(str(tmp_path / "store"))
    outcome = finished_experiment("store", storage=str(tmp_path))
    assert outcome is not None
    assert {t.trial_id: t.status for t in outcome.trials} == EXPECTED


def test_a_store_with_a_trial_still_running_is_resumed(tmp_path: Path) -> None:
    from tests.platform.results.conftest import tune_result
    from tests.platform.results.test_store import _config, _metrics, _writer

    w = _writer(str(tmp_path / "store"))
    w.add("t1", tune_result(1, _config(1e-4), **_metrics(0.5)))
    w.end_trial("t1", error=False)
    w.add("t2", tune_result(1, _config(0.0), **_metrics(0.6)))  # not ended
    w.close()
    assert finished_experiment("store", storage=str(tmp_path)) is None

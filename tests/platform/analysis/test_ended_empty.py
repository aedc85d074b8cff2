"""Analysis of an experiment with no epoch rows: 'every trial ended' only when the
trial table holds every trial the spec starts, each ended; else 'wait'."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtune.errors import DataError
from regtune.platform.analysis.load import ENDED_ERRORS, MSG_ENDED_EMPTY, load_experiment
from regtune.platform.results.trials import NOT_STARTED, TrialState
from tests.platform.results.test_store import _config, _writer


def test_one_early_failure_of_a_running_sweep_says_wait(tmp_path: Path) -> None:
    """The spec starts 2 trials; t1 failed before its first epoch and t2 has not
    reported yet (a trial enters the table at its first epoch or its end): it said
    'every trial ended (1 trials: t1 error)' mid-sweep."""
    exp = str(tmp_path / "store")
    w = _writer(exp)
    w.end_trial("t1", error=True, config=_config(1e-4))
    w.flush(trials=True)
    with pytest.raises(DataError, match="Wait for its first trial to report"):
        load_experiment(exp, columns=["val_acc"])


def test_trials_that_never_started_are_not_sent_to_their_errors(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    w = _writer(exp)
    w.close(final={"t1": TrialState(NOT_STARTED), "t2": TrialState(NOT_STARTED)})
    with pytest.raises(DataError) as info:
        load_experiment(exp, columns=["val_acc"])
    states = "t1 not started, t2 not started"
    assert str(info.value) == MSG_ENDED_EMPTY.format(exp=exp, n=2, states=states, errors="")
    assert ENDED_ERRORS not in str(info.value)

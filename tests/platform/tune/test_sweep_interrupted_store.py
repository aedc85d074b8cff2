"""--resume's look-up (no Ray) of an experiment Ctrl+C interrupted under an earlier
regtune, which stored its cut-off trials ``stopped early``: Tune's own saved
experiment state still holds them RUNNING, so the resume goes ahead (it used to
say "nothing left to resume", and the trials never finished)."""

from __future__ import annotations

import json
from pathlib import Path

from regtune.platform.tune.sweep import finished_experiment, tune_unfinished_trials
from tests.platform.results.conftest import tune_result
from tests.platform.results.test_store import _config, _metrics, _writer


def _tune_state(exp: Path, session: str, statuses: dict[str, str]) -> None:
    """An ``experiment_state-<session>.json`` as Ray Tune 2.60 writes it (the
    fields read here: ``trial_data`` of ``[trial JSON, run metadata JSON]``)."""
    trial_data = [
        [json.dumps({"trial_id": tid, "status": status, "stub": False}), json.dumps({})]
        for tid, status in statuses.items()
    ]
    state = {"trial_data": trial_data, "runner_data": {}, "stats": {}}
    (exp / f"experiment_state-{session}.json").write_text(json.dumps(state))


def _stored_stopped_early(exp: Path) -> None:
    """The store as the old callback left it: both trials ended, 'stopped early'
    (1 of 3 epochs). The spec of _writer asks for 2 trials (a grid of two)."""
    w = _writer(str(exp))
    for tid, l2 in (("t1", 1e-4), ("t2", 0.0)):
        w.add(tid, tune_result(1, _config(l2), **_metrics(0.5)))
        w.end_trial(tid, error=False)
    w.close()


def test_trials_tunes_state_holds_running_are_resumed_whatever_the_store_says(
    tmp_path: Path,
) -> None:
    exp = tmp_path / "old"
    _stored_stopped_early(exp)
    assert finished_experiment("old", storage=str(tmp_path)) is not None  # the store alone
    _tune_state(exp, "2026-12-01_10-00-00", {"t1": "TERMINATED", "t2": "TERMINATED"})
    # The newest session's state is the one Tuner.restore reads.
    _tune_state(exp, "2026-12-02_10-00-00", {"t1": "RUNNING", "t2": "TERMINATED"})
    assert tune_unfinished_trials(str(exp)) == ["t1"]
    assert finished_experiment("old", storage=str(tmp_path)) is None


def test_a_tune_state_with_every_trial_ended_changes_nothing(tmp_path: Path) -> None:
    exp = tmp_path / "done"
    _stored_stopped_early(exp)
    _tune_state(exp, "2026-12-02_10-00-00", {"t1": "TERMINATED", "t2": "ERROR"})
    assert tune_unfinished_trials(str(exp)) == []
    assert finished_experiment("done", storage=str(tmp_path)) is not None


def test_an_unreadable_tune_state_leaves_it_to_the_store(tmp_path: Path) -> None:
    exp = tmp_path / "odd"
    _stored_stopped_early(exp)
    (exp / "experiment_state-2026-12-02_10-00-00.json").write_text("{not json")
    assert tune_unfinished_trials(str(exp)) == []
    assert tune_unfinished_trials(str(tmp_path / "missing")) == []
    assert finished_experiment("odd", storage=str(tmp_path)) is not None

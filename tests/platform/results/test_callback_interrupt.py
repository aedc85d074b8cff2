"""An interrupted sweep's trials are not stored as ended (the results callback alone).

The hooks are driven in the order Ray Tune 2.60's ``tune.run`` calls them
(``ray/tune/tune.py`` and ``execution/tune_controller.py``):

- Ctrl+C: the loop stops, the experiment state is saved (``get_state``) with
  the running trials still RUNNING, then ``cleanup`` stops their actors,
  which sets them TERMINATED without ``on_trial_complete``, and calls
  ``on_experiment_end``;
- ``budget.time_limit_s``: the trials are stopped (TERMINATED, no
  ``on_trial_complete`` either), the loop ends, then the state is saved;
- a trial that ran out its epochs: ``on_trial_complete``, then the save.

A real sweep interrupted with SIGINT and resumed is in
tests/platform/tune/test_sweep_interrupt.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.cloudpickle as cloudpickle

from regtune.platform.results.callback import ResultsCallback
from regtune.platform.results.files import locate
from regtune.platform.results.read import load_trial_states
from regtune.platform.results.trials import NOT_STARTED, RUNNING, STOPPED_EARLY
from regtune.search_spaces import load_spec
from tests.platform.results.conftest import tune_result
from tests.platform.results.test_store import SPEC, _config, _metrics

MAX_T = 3  # SPEC's budget.max_epochs


@dataclass
class _Checkpoint:
    path: str


@dataclass
class _Trial:
    """What the callback reads of a Tune ``Trial``."""

    trial_id: str
    status: str = "RUNNING"
    checkpoint: _Checkpoint | None = None
    config: dict[str, Any] | None = None


def _callback(exp: str) -> ResultsCallback:
    spec = load_spec(SPEC)
    assert spec.budget.max_epochs == MAX_T
    callback = ResultsCallback(exp, max_t=MAX_T, spec=spec.to_dict())
    callback.setup()
    return callback


def _report(callback: ResultsCallback, trials: list[_Trial], trial: _Trial, epoch: int) -> None:
    callback.on_step_begin(iteration=epoch, trials=trials)
    result = tune_result(epoch, _config(1e-4), **_metrics(0.5 + epoch / 100))
    callback.on_trial_result(iteration=epoch, trials=trials, trial=trial, result=result)
    callback.on_step_end(iteration=epoch, trials=trials)


def _statuses(exp: str) -> dict[str, str]:
    return {tid: s.status for tid, s in load_trial_states(locate(exp)).states.items()}


def _two_running(exp: str) -> tuple[ResultsCallback, list[_Trial]]:
    """Trials a and b ran 2 of 3 epochs; a checkpointed at epoch 2."""
    callback = _callback(exp)
    trials = [_Trial("a"), _Trial("b")]
    for epoch in (1, 2):
        for trial in trials:
            _report(callback, trials, trial, epoch)
    trials[0].checkpoint = _Checkpoint(f"{exp}/trial_a/checkpoint_000000")
    callback.on_checkpoint(
        iteration=2, trials=trials, trial=trials[0], checkpoint=trials[0].checkpoint
    )
    return callback, trials


def test_trials_cut_off_by_ctrl_c_stay_running_with_their_checkpoint(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    callback, trials = _two_running(exp)
    queued = _Trial("c", status="PENDING")  # created, never started
    trials.append(queued)
    callback.get_state()  # tune.run's last save, trials still RUNNING
    for trial in trials[:2]:  # cleanup: actors stopped, no on_trial_complete
        trial.status = "TERMINATED"
    callback.on_experiment_end(trials=trials)

    assert callback.unfinished == {"a", "b", "c"}
    # Not "stopped early" (2 < 3 epochs): --resume continues them.
    assert _statuses(exp) == {"a": RUNNING, "b": RUNNING}
    states = load_trial_states(locate(exp)).states
    assert states["a"].checkpoint == f"{exp}/trial_a/checkpoint_000000"


def test_a_time_limit_still_ends_trials_stopped_early_or_not_started(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    callback, trials = _two_running(exp)
    trials.append(_Trial("c", status="PENDING"))
    for trial in trials:  # the time limit stops every trial, then Tune saves
        trial.status = "TERMINATED"
    callback.get_state()
    callback.on_experiment_end(trials=trials)

    assert callback.unfinished == frozenset()
    assert _statuses(exp) == {"a": STOPPED_EARLY, "b": STOPPED_EARLY, "c": NOT_STARTED}


def test_a_trial_that_ended_before_the_interrupt_keeps_its_status(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    callback, (a, b) = _two_running(exp)
    trials = [a, b]
    _report(callback, trials, a, 3)
    a.status = "TERMINATED"
    callback.on_trial_complete(iteration=3, trials=trials, trial=a)
    callback.get_state()  # a periodic save
    _report(callback, trials, b, 3)  # b's last epoch lands, then Ctrl+C
    callback.get_state()  # the last save: b RUNNING (its end not yet processed)
    b.status = "TERMINATED"
    callback.on_experiment_end(trials=trials)

    assert callback.unfinished == {"b"}
    assert _statuses(exp) == {"a": "finished", "b": RUNNING}


def test_an_errored_trial_is_an_error_even_when_the_run_was_interrupted(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    callback, (a, b) = _two_running(exp)
    b.status = "ERROR"
    callback.on_trial_error(iteration=3, trials=[a, b], trial=b)
    callback.get_state()
    a.status = "TERMINATED"
    callback.on_experiment_end(trials=[a, b])

    assert callback.unfinished == {"a"}
    assert _statuses(exp) == {"a": RUNNING, "b": "error"}


def test_a_resumed_session_starts_with_nothing_unfinished(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    callback, trials = _two_running(exp)
    callback.get_state()
    for trial in trials:
        trial.status = "TERMINATED"
    callback.on_experiment_end(trials=trials)
    assert callback.unfinished
    # Tune pickles the callback; the run's trials and findings do not travel.
    copy = cloudpickle.loads(cloudpickle.dumps(callback))
    assert copy._trials is None and copy.unfinished == frozenset()
    copy.setup()
    resumed = [_Trial("a"), _Trial("b")]
    for trial in resumed:
        _report(copy, resumed, trial, 3)
        trial.status = "TERMINATED"
        copy.on_trial_complete(iteration=3, trials=resumed, trial=trial)
    copy.get_state()
    copy.on_experiment_end(trials=resumed)
    assert copy.unfinished == frozenset()
    assert _statuses(exp) == {"a": "finished", "b": "finished"}


def test_a_callback_pickled_by_an_older_regtune_loads_with_the_new_attributes(
    tmp_path: Path,
) -> None:
    callback = _callback(str(tmp_path / "exp"))
    state = callback.__getstate__()
    for name in ("_trials", "_saved_unfinished", "_ended", "unfinished"):
        del state[name]
    old = ResultsCallback.__new__(ResultsCallback)
    old.__setstate__(state)
    assert old.unfinished == frozenset() and old._saved_unfinished == set()

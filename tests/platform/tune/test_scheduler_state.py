"""PersistentScheduler: a scheduler's state saved next to the experiment and restored.

Real Ray Tune schedulers (ASHA, HyperBand, pareto-asha) and real Tune
``Trial`` objects with a real storage folder; no cluster is needed because
a scheduler only sees trials and results. "A resumed run" is a second
wrapper built from scratch (as Tune's ``tuner.pkl`` holds it) that meets the
same trials again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler
from ray.tune.schedulers.trial_scheduler import TrialScheduler

from regtune.platform.tune.pareto_asha import ParetoASHA
from regtune.platform.tune.scheduler_state import STATE_FILE, PersistentScheduler
from tests.platform.tune.stubs import acc_result as _result
from tests.platform.tune.stubs import stub_trial as _trial

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def _asha() -> PersistentScheduler:
    wrapped = PersistentScheduler(
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=8,
            grace_period=1,
            reduction_factor=2,
            metric="val_acc",
            mode="max",
        )
    )
    return wrapped


def test_a_resumed_asha_judges_against_rungs_recorded_before_the_kill(tmp_path: Path) -> None:
    first = _asha()
    a, b = _trial(tmp_path, "a"), _trial(tmp_path, "b")
    for trial in (a, b):
        first.on_trial_add(None, trial)
    # a sets the bar at rungs 1 and 2; b is worse at rung 1 and is stopped.
    assert first.on_trial_result(None, a, _result(1, 0.9)) == CONTINUE
    assert first.on_trial_result(None, a, _result(2, 0.9)) == CONTINUE
    assert first.on_trial_result(None, b, _result(1, 0.1)) == STOP
    assert (tmp_path / "exp" / STATE_FILE).is_file()

    # A new driver: a fresh wrapper, the same trials again (Tune re-adds them).
    resumed = _asha()
    a2, b2, c = _trial(tmp_path, "a"), _trial(tmp_path, "b"), _trial(tmp_path, "c")
    resumed.on_trial_add(None, a2)
    resumed.on_trial_add(None, b2)
    resumed.on_trial_add(None, c)  # a new trial from the searcher
    # c is judged against a's rung-1 record from before the kill: stopped.
    # (A fresh ASHA would let the first trial at a rung continue.)
    assert resumed.on_trial_result(None, c, _result(1, 0.2)) == STOP
    # a's epoch 2 is rerun after restoring from its epoch-1 checkpoint: same
    # answer, and rung 2 does not get a second record from it.
    assert resumed.on_trial_result(None, a2, _result(2, 0.0)) == CONTINUE
    # b stays stopped from the epoch it was stopped at.
    assert resumed.on_trial_result(None, b2, _result(1, 0.99)) == STOP
    rungs = resumed.inner._brackets[0]._rungs  # type: ignore[attr-defined]
    recorded = {milestone: dict(values) for milestone, values in rungs}
    assert recorded[2] == {"a": 0.9}
    assert set(recorded[1]) == {"a", "b", "c"}


def test_a_trial_ended_before_the_kill_can_be_ended_again_after_it(tmp_path: Path) -> None:
    # The driver told the scheduler a trial ended, then was killed before its
    # own state said so: the resumed driver reruns the trial and ends it again.
    # ASHA forgets an ended trial (a second on_trial_complete raised KeyError,
    # so every --resume failed); the wrapper tells it only once.
    first = _asha()
    a = _trial(tmp_path, "a")
    first.on_trial_add(None, a)
    assert first.on_trial_result(None, a, _result(1, 0.9)) == CONTINUE
    first.on_trial_complete(None, a, _result(8, 0.9))

    resumed = _asha()
    a2 = _trial(tmp_path, "a")
    resumed.on_trial_add(None, a2)
    # Its rerun epoch is stopped (it had ended), and ending it again is no error.
    assert resumed.on_trial_result(None, a2, _result(2, 0.9)) == STOP
    resumed.on_trial_complete(None, a2, _result(2, 0.9))
    resumed.on_trial_error(None, a2)
    resumed.on_trial_remove(None, a2)
    # An unwrapped ASHA fails on the repeat, as the wrapper's guard assumes.
    bare = _asha().inner
    b = _trial(tmp_path, "b")
    bare.on_trial_add(None, b)
    bare.on_trial_complete(None, b, _result(8, 0.9))
    with pytest.raises(KeyError):
        bare.on_trial_complete(None, b, _result(8, 0.9))


def test_pareto_asha_objective_vectors_survive_a_resume(tmp_path: Path) -> None:
    def make() -> PersistentScheduler:
        return PersistentScheduler(
            ParetoASHA(
                objectives=[("val_acc", "max"), ("val_loss", "min")],
                max_t=8,
                grace_period=1,
                reduction_factor=2,
            )
        )

    first = make()
    a = _trial(tmp_path, "a")
    first.on_trial_add(None, a)
    assert first.on_trial_result(None, a, _result(1, 0.9)) == CONTINUE
    resumed = make()
    a2, b = _trial(tmp_path, "a"), _trial(tmp_path, "b")
    resumed.on_trial_add(None, a2)
    resumed.on_trial_add(None, b)
    inner = resumed.inner
    assert isinstance(inner, ParetoASHA)
    assert set(inner.rung_records()[1]) == {"a"}
    # Dominated by a's vector recorded before the kill: stopped.
    assert resumed.on_trial_result(None, b, _result(1, 0.5)) == STOP


def test_hyperband_brackets_hold_the_resumed_runs_trials(tmp_path: Path) -> None:
    def make() -> PersistentScheduler:
        return PersistentScheduler(
            HyperBandScheduler(
                time_attr="training_iteration", max_t=4, metric="val_acc", mode="max"
            )
        )

    first = make()
    trials = [_trial(tmp_path, f"t{i}") for i in range(3)]
    for trial in trials:
        first.on_trial_add(None, trial)
    resumed = make()
    again = [_trial(tmp_path, f"t{i}") for i in range(2)]  # t2 was never snapshotted
    for trial in again:
        resumed.on_trial_add(None, trial)
    resumed.on_trial_add(None, _trial(tmp_path, "new"))
    inner = resumed.inner
    assert isinstance(inner, HyperBandScheduler)
    placed = {t.trial_id: t for t in inner._trial_info}  # type: ignore[attr-defined]
    # The restored brackets hold this run's Trial objects, not copies...
    assert all(placed[t.trial_id] is t for t in again)
    # ...the lost trial is gone from every bracket, and the new one is placed.
    live = {
        t.trial_id
        for band in inner._hyperbands  # type: ignore[attr-defined]
        for bracket in band
        for t in bracket._live_trials
    }
    assert "t2" not in live
    assert {"t0", "t1", "new"} <= live


def test_a_fresh_experiment_starts_empty(tmp_path: Path) -> None:
    scheduler = _asha()
    trial = _trial(tmp_path, "x")
    scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, trial, _result(1, 0.5)) == CONTINUE


def test_save_and_restore_through_a_file(tmp_path: Path) -> None:
    first = _asha()
    a = _trial(tmp_path, "a")
    first.on_trial_add(None, a)
    first.on_trial_result(None, a, _result(1, 0.9))
    path = tmp_path / "state.pkl"
    first.save(str(path))
    other = _asha()
    other.restore(str(path))
    other.on_trial_add(None, _trial(tmp_path, "a"))
    b = _trial(tmp_path, "b")
    other.on_trial_add(None, b)
    assert other.on_trial_result(None, b, _result(1, 0.1)) == STOP

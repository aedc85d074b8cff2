"""PersistentScheduler and a trial Tune retries after its worker died.

Tune 2.60 retries a failed trial (``FailureConfig.max_retries``) in
``TuneController._requeue_trial``: it calls the scheduler's
``on_trial_error``, sets the trial ``PENDING`` and calls ``on_trial_add``;
the restored trial then reports the epochs after its checkpoint again. These
tests drive the wrapper through exactly that order, on real Tune schedulers
and real ``Trial`` objects (the real sweep is in ``test_faults.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, MedianStoppingRule
from ray.tune.schedulers.trial_scheduler import TrialScheduler

from regtune.platform.tune.pareto_asha import ParetoASHA
from regtune.platform.tune.scheduler_state import PersistentScheduler
from tests.platform.tune.stubs import acc_result as _result
from tests.platform.tune.stubs import stub_trial as _trial

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
MAX_T = 8


# Each scheduler as regtune builds it, with nothing that may stop a lone
# trial before MAX_T (no rung, no median to compare with).
SCHEDULERS: dict[str, Callable[[], TrialScheduler]] = {
    "asha": lambda: ASHAScheduler(
        time_attr="training_iteration",
        max_t=MAX_T,
        grace_period=MAX_T,
        reduction_factor=2,
        metric="val_acc",
        mode="max",
    ),
    "hyperband": lambda: HyperBandScheduler(
        time_attr="training_iteration", max_t=MAX_T, metric="val_acc", mode="max"
    ),
    "median": lambda: MedianStoppingRule(
        time_attr="training_iteration", grace_period=MAX_T, metric="val_acc", mode="max"
    ),
    "pareto-asha": lambda: ParetoASHA(
        objectives=[("val_acc", "max"), ("val_loss", "min")],
        max_t=MAX_T,
        grace_period=MAX_T,
        reduction_factor=2,
    ),
}


def _requeue(scheduler: PersistentScheduler, trial: Trial) -> None:
    """What ``TuneController._requeue_trial`` does with the scheduler."""
    scheduler.on_trial_error(None, trial)
    trial.set_status(Trial.PENDING)
    scheduler.on_trial_add(None, trial)


@pytest.mark.parametrize("kind", sorted(SCHEDULERS))
def test_a_retried_trial_runs_on_past_the_epochs_it_reruns(tmp_path: Path, kind: str) -> None:
    scheduler = PersistentScheduler(SCHEDULERS[kind]())
    trial = _trial(tmp_path, "a")
    scheduler.on_trial_add(None, trial)
    trial.set_status(Trial.RUNNING)
    for epoch in range(1, 6):
        assert scheduler.on_trial_result(None, trial, _result(epoch, 0.5)) == CONTINUE
    # The worker dies after epoch 5; the newest checkpoint holds epoch 4.
    _requeue(scheduler, trial)
    trial.set_status(Trial.RUNNING)
    # Epoch 5 again (the first run's answer), then on to the end.
    decisions = [
        scheduler.on_trial_result(None, trial, _result(epoch, 0.5)) for epoch in range(5, MAX_T)
    ]
    assert decisions == [CONTINUE] * len(decisions), kind
    scheduler.on_trial_complete(None, trial, _result(MAX_T, 0.5))


def test_a_retried_trial_is_still_judged_at_its_rungs(tmp_path: Path) -> None:
    scheduler = PersistentScheduler(
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=MAX_T,
            grace_period=4,
            reduction_factor=2,
            metric="val_acc",
            mode="max",
        )
    )
    good, bad = _trial(tmp_path, "good"), _trial(tmp_path, "bad")
    for trial in (good, bad):
        scheduler.on_trial_add(None, trial)
    for epoch in range(1, 5):
        assert scheduler.on_trial_result(None, good, _result(epoch, 0.9)) == CONTINUE
    for epoch in range(1, 4):
        assert scheduler.on_trial_result(None, bad, _result(epoch, 0.1)) == CONTINUE
    _requeue(scheduler, bad)
    # Rerun epoch 3 keeps its answer; epoch 4 is rung 4, where bad is worse.
    assert scheduler.on_trial_result(None, bad, _result(3, 0.1)) == CONTINUE
    assert scheduler.on_trial_result(None, bad, _result(4, 0.1)) == STOP


def test_a_trial_that_failed_for_good_stays_ended(tmp_path: Path) -> None:
    # Retries exhausted: Tune calls on_trial_error alone. A result arriving
    # afterwards (a driver killed before its snapshot said so) ends it again.
    scheduler = PersistentScheduler(SCHEDULERS["asha"]())
    trial = _trial(tmp_path, "a")
    scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, trial, _result(1, 0.5)) == CONTINUE
    scheduler.on_trial_error(None, trial)
    assert scheduler.on_trial_result(None, trial, _result(2, 0.5)) == STOP
    # Retried twice: each retry is live again.
    other = _trial(tmp_path, "b")
    scheduler.on_trial_add(None, other)
    for _ in range(2):
        _requeue(scheduler, other)
        assert scheduler.on_trial_result(None, other, _result(1, 0.5)) == CONTINUE


def test_a_trial_that_failed_before_a_kill_runs_on_after_resume(tmp_path: Path) -> None:
    # `regtune sweep --resume` runs errored trials again (Tune's
    # resume_errored: the trial is re-added PENDING); a trial the restored
    # wrapper remembered as ended by an error is live again.
    first = PersistentScheduler(SCHEDULERS["asha"]())
    failed, done = _trial(tmp_path, "failed"), _trial(tmp_path, "done")
    for trial in (failed, done):
        first.on_trial_add(None, trial)
    for epoch in range(1, 4):
        assert first.on_trial_result(None, failed, _result(epoch, 0.5)) == CONTINUE
    first.on_trial_error(None, failed)  # retries exhausted
    first.on_trial_complete(None, done, _result(MAX_T, 0.5))

    resumed = PersistentScheduler(SCHEDULERS["asha"]())
    failed2, done2 = _trial(tmp_path, "failed"), _trial(tmp_path, "done")
    failed2.set_status(Trial.PENDING)
    done2.set_status(Trial.TERMINATED)
    resumed.on_trial_add(None, failed2)
    resumed.on_trial_add(None, done2)
    decisions = [
        resumed.on_trial_result(None, failed2, _result(epoch, 0.5)) for epoch in range(3, MAX_T)
    ]
    assert decisions == [CONTINUE] * len(decisions)
    # A finished trial rerun (its end missed by Tune's snapshot) still ends again.
    assert resumed.on_trial_result(None, done2, _result(MAX_T, 0.5)) == STOP

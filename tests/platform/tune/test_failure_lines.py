"""A trial's worker dying: one regtune line, not Ray's traceback and raylet notice.

Real Ray exceptions through Tune's own logger and Ray's own printer of pushed
errors (the real sweep with a killed worker is in ``test_faults.py``).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray.exceptions import ActorDiedError, RayTaskError
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial

from regtune.platform.tune import banners
from regtune.platform.tune.banners import (
    CONTROLLER_LOGGER,
    TRIAL_FAILED_NOTICE,
    TUNE_OUTPUT_ENV,
    WORKER_DIED_NOTICE,
    apply_verbosity,
    is_worker_death,
    set_verbose,
)
from regtune.platform.tune.progress import ProgressCallback, failure_cause

#: Ray's notice for a dead worker, as a sweep's driver received it (ids shortened).
RAYLET_NOTICE = (
    f"{WORKER_DIED_NOTICE}. To troubleshoot the problem, check the logs for the dead "
    "worker. Worker ID: 3359d8ac Worker IP address: 127.0.0.1 Worker port: 45281 "
    "Worker PID: {pid} Worker exit type: SYSTEM_ERROR Worker exit detail: Worker "
    "unexpectedly exits with a connection error code 2. End of file. Some common causes ..."
)
#: The text of the ActorDiedError Tune logged for it.
DIED_TEXT = (
    "The actor died unexpectedly before finishing this task.\n\tclass_name: "
    "with_resources.<locals>.ResourceTrainable\n\tactor_id: 63cae380\n\tpid: 9248\n"
    "\tnamespace: 55a297e0\n\tip: 127.0.0.1\nThe actor is dead because its worker process "
    "has died. Worker exit type: SYSTEM_ERROR Worker exit detail: Worker unexpectedly "
    "exits with a connection error code 2. End of file. Some common causes include: ..."
)


class _Died(ActorDiedError):
    """A real ActorDiedError carrying the text a killed trial worker's has."""

    def __str__(self) -> str:
        return DIED_TEXT


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(TUNE_OUTPUT_ENV, raising=False)
    before = dict(banners._state)
    banners._state["set_tune_env"] = False
    set_verbose(False)
    yield
    apply_verbosity(True)  # removes the filters again
    banners._state.update(before)
    banners.forget_trial_workers()


def _tune_logged(exc: BaseException) -> list[str]:
    """What reaches a handler on Tune's controller logger when it logs a failed
    trial task as Tune 2.60 does (``logger.error(..., exc_info=exception)``)."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger(CONTROLLER_LOGGER)
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.error(f"{TRIAL_FAILED_NOTICE}trial_a55e555e", exc_info=exc)
        logger.error("Some other controller error")
    finally:
        logger.removeHandler(handler)
    return seen


def test_tunes_traceback_is_dropped_for_a_dead_worker_only(quiet: None) -> None:
    died = _Died()
    bug = RayTaskError("train", "Traceback ...\nValueError: bad lr", ValueError("bad lr"))
    # A dead worker: Ray's traceback of its own internals goes; the rest stays.
    assert _tune_logged(died) == ["Some other controller error"]
    # An error of the trial's own code keeps its record (and traceback).
    assert _tune_logged(bug)[0] == f"{TRIAL_FAILED_NOTICE}trial_a55e555e"
    set_verbose(True)
    assert _tune_logged(died)[0] == f"{TRIAL_FAILED_NOTICE}trial_a55e555e"


def test_raylets_notice_is_dropped_for_a_sweeps_trial_worker_only(
    quiet: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray._private.worker as ray_worker

    def printed(pid: int, tag: str) -> str:
        # Ray skips a line like one it printed moments ago (numbers masked): a tag each.
        line = RAYLET_NOTICE.format(pid=pid) + f" ({tag})"
        ray_worker.print_to_stdstream(
            {"lines": [line], "pid": "raylet", "is_err": False}, ignore_prefix=False
        )
        return capsys.readouterr().out

    banners.filter_ray_messages()
    banners.note_trial_worker(9248)
    assert printed(9248, "first") == ""
    # Another process (not a trial's worker, e.g. outside a sweep) still prints.
    assert "Worker PID: 1111" in printed(1111, "other")
    banners.forget_trial_workers()
    assert "Worker PID: 9248" in printed(9248, "after the sweep")
    banners.note_trial_worker(7777)
    set_verbose(True)
    assert "Worker PID: 7777" in printed(7777, "verbose")


def test_the_cause_says_the_worker_died_or_names_the_trials_error() -> None:
    assert failure_cause(_Died()) == (
        "its worker process died (pid 9248: Worker unexpectedly exits with a "
        "connection error code 2. End of file.)"
    )
    assert failure_cause(ActorDiedError()) == "its worker process died"
    bug = RayTaskError("train", "Traceback ...\nValueError: bad lr", ValueError("bad lr"))
    assert failure_cause(bug) == "ValueError: bad lr"
    assert failure_cause(RuntimeError("first\nsecond")) == "RuntimeError: first"
    assert failure_cause(None) == "it failed (no error recorded)"


def _setup_failure() -> ActorDiedError:
    """The ActorDiedError Ray raises for a trainable whose ``setup`` raised
    (a failed creation task, as a sweep's error.pkl holds it)."""
    from regtune.errors import SpecError

    def setup() -> None:
        raise SpecError("penalties.fairness.kind='dp' needs two classes\nDeclare 'sensitive'.")

    try:
        setup()
    except SpecError as err:
        task = RayTaskError(
            "ResourceTrainable.__init__", traceback.format_exc(), err, actor_id="21380c33"
        )
    return ActorDiedError(task)


def test_a_trial_failing_in_setup_is_reported_by_its_error_not_as_a_dead_worker() -> None:
    died = _setup_failure()
    assert "creation task" in str(died)
    assert not is_worker_death(died)
    assert failure_cause(died) == "SpecError: penalties.fairness.kind='dp' needs two classes"
    # As the cause of a RayTaskError too.
    wrapped = RayTaskError("train", "Traceback ...", died)
    assert failure_cause(wrapped) == "SpecError: penalties.fairness.kind='dp' needs two classes"
    # A real worker death stays one.
    assert is_worker_death(_Died())
    assert failure_cause(_Died()).startswith("its worker process died (pid 9248")


def test_tunes_record_of_a_setup_failure_is_kept_when_quiet(quiet: None) -> None:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger(CONTROLLER_LOGGER)
    handler = Keep()
    logger.addHandler(handler)
    try:
        for exc in (_setup_failure(), _Died()):
            try:
                raise exc
            except ActorDiedError:
                logger.error(f"{TRIAL_FAILED_NOTICE} trial_x", exc_info=True)
    finally:
        logger.removeHandler(handler)
    assert seen == [f"{TRIAL_FAILED_NOTICE} trial_x"]


def test_tunes_closing_list_of_failed_trials_is_dropped_when_quiet(quiet: None) -> None:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger(banners.TUNE_RUN_LOGGER)
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.error("Trials did not complete: %s", ["trial_cc1421b7"])
        set_verbose(True)
        logger.error("Trials did not complete: %s", ["trial_cc1421b7"])
    finally:
        logger.removeHandler(handler)
    assert seen == ["Trials did not complete: ['trial_cc1421b7']"]


def _failed_trial(tmp_path: Path, exc: BaseException, *, max_failures: int) -> Trial:
    """A real Tune trial that failed with ``exc``, recorded as Tune records it."""
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp")
    trial = Trial("__fake", config={}, trial_id="cc1421b7", storage=storage, stub=True)
    trial.storage.trial_dir_name = "trial_cc1421b7"
    trial.max_failures = max_failures
    trial.init_local_path()
    trial.handle_error(exc)
    return trial


@pytest.mark.ray
def test_one_line_per_retry_and_per_trial_failed_for_good(
    ray_local: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tune keeps a trial's error files in the session's staging folder: Ray runs."""
    callback = ProgressCallback(objectives=[("val_acc", "max")], total=1, max_t=4)
    caplog.set_level(logging.WARNING)
    retried = _failed_trial(tmp_path / "a", _Died(), max_failures=2)
    callback.on_trial_recover(0, [retried], retried)
    bug = RayTaskError("train", "Traceback ...\nValueError: bad lr", ValueError("bad lr"))
    failed = _failed_trial(tmp_path / "b", bug, max_failures=0)
    callback.on_trial_error(0, [failed], failed)
    said = [r.getMessage() for r in caplog.records if r.name == "regtune.platform.tune.progress"]
    assert said == [
        "trial cc1421b7: its worker process died (pid 9248: Worker unexpectedly exits with a "
        "connection error code 2. End of file.); retry 1 of 2 (failure.max_retries) from epoch 1",
        "trial cc1421b7 failed: ValueError: bad lr; status error; Tune's report: "
        f"{failed.storage.trial_fs_path}/error.txt",
    ]
    assert callback.state.snapshot()["errors"] == 1
    assert str(failed.storage.trial_fs_path).startswith(str(tmp_path / "b" / "exp"))

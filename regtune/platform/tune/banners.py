"""Ray's and Tune's own banners: hidden by default, shown with ``--verbose``.

What a regtune user does not need to read, and how each is kept out when
not verbose (all set before ``ray.init`` and before Tune runs):

- Ray's token-authentication notice, "Token authentication is enabled for
  this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out..." (a WARNING of
  logger ``ray._private.authentication.authentication_token_setup``, logged
  by every ``ray.init`` that starts a cluster, or finds a local one, while
  ``RAY_AUTH_MODE`` is unset): dropped by a logging filter on that logger.
  Token authentication itself stays on. Ray's warning that authentication is
  *disabled* is never dropped.
- Ray's INFO lines ("Started a local Ray instance.", "Connecting to existing
  Ray cluster..."): ``ray.init`` gets ``logging_level`` :func:`ray_log_level`.
- Serve's INFO lines ("Started Serve in namespace ...", "Application ...
  is ready at ...": regtune prints where it serves): a logging filter on
  logger ``ray.serve`` drops its records below WARNING.
- "(raylet) Task ServeController.graceful_shutdown failed. There are
  infinite retries remaining ...": an error Ray pushes to the driver every
  time Serve shuts down (the controller ends itself while that call runs);
  dropped from what the driver prints (:func:`filter_ray_messages`, which
  :mod:`~regtune.platform.tune.runtime` calls before Ray starts). Every
  other pushed error prints.
- Tune's "Remote file not found: .../trial_<id>/result.json" (a WARNING of
  logger ``ray.tune.logger.logger``): Tune's result loggers look for the
  files they would have written when a trial restarts from a checkpoint
  (every PBT exploit), and regtune stores results in its own Parquet store
  instead; dropped by a logging filter on that logger, which keeps every
  other record.
- Tune's "Failed to fetch metrics for N trial(s): ... FileNotFoundError" (a
  WARNING of logger ``ray.tune.analysis.experiment_analysis``): the result
  grid reads each trial's result file into a data frame regtune never uses,
  and a trial a time limit never started has none; dropped the same way.
- A trial's worker dying (killed, out of memory, crashed): Ray pushes
  "(raylet) A worker died or was killed while executing a task by an
  unexpected system error. ..." to the driver, and Tune logs "Trial task
  failed for trial ..." (an ERROR of logger
  ``ray.tune.execution.tune_controller``) with Ray's own traceback
  (``ActorDiedError``, Ray's internals only). Both are dropped (the
  notice only when it names a worker the running sweep saw report, see
  :func:`note_trial_worker`; the record when :func:`is_worker_death`);
  regtune says it in one line per failure instead
  (:class:`~regtune.platform.tune.progress.ProgressCallback`: the trial, why,
  and whether it is retried or failed for good). A trial that raised an
  error of its own (``RayTaskError``: a bug, a bad value; or, raised in its
  ``setup``, an ``ActorDiedError`` of a failed creation task) keeps Tune's
  whole record, traceback included: that traceback is the trial's code. Other
  pushed errors (e.g. "Task was killed due to the node running low on
  memory") print as Ray prints them. Tune's closing "Trials did not
  complete: [trial_...]" (an ERROR of logger ``ray.tune.tune``) is dropped
  too: each failed trial had its own line, and the summary marks it
  ``error``.
- Tune's Ctrl+C warnings, "Stop signal received (e.g. via SIGINT/Ctrl+C),
  ending Ray Tune run. ..." and "Experiment has been interrupted, but the
  most recent state was saved. Resume experiment with: Tuner.restore(...)"
  (WARNINGs of logger ``ray.tune.tune``): dropped; ``regtune sweep`` says
  instead that the sweep was interrupted and prints the ``regtune sweep ...
  --resume`` line that continues it.
- Tune's configuration box ("Configuration for experiment ...") and "View
  detailed results here: ...": printed by Tune's new output engine even at
  ``verbose=0``; ``RAY_AIR_NEW_OUTPUT=0`` selects Tune's older engine, which
  at ``verbose=0`` prints nothing. A value the user set is left alone.

Usage (the CLI's ``--verbose`` flag)::

    from regtune.platform.tune.runtime import set_verbose
    set_verbose(True)     # before the command starts Ray
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

__all__ = [
    "CONTROLLER_LOGGER",
    "INCOMPLETE_NOTICE",
    "INTERRUPTED_NOTICE",
    "RESULT_FILE_NOTICE",
    "RESULT_LOGGER",
    "SERVE_LOGGER",
    "SERVE_SHUTDOWN_NOTICE",
    "STOP_SIGNAL_NOTICE",
    "TOKEN_NOTICE_LOGGER",
    "TRIAL_FAILED_NOTICE",
    "TUNE_OUTPUT_ENV",
    "TUNE_RUN_LOGGER",
    "WORKER_DIED_NOTICE",
    "actor_error",
    "apply_verbosity",
    "filter_ray_messages",
    "forget_trial_workers",
    "is_verbose",
    "is_worker_death",
    "note_trial_worker",
    "ray_log_level",
    "set_verbose",
]

#: The logger Ray's token-authentication notices come from.
TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
#: The start of the notice that token authentication is on (dropped unless verbose).
TOKEN_ENABLED_NOTICE = "Token authentication is enabled for this Ray cluster"
#: Tune's switch between its output engines ("0": the older, silent at verbose=0).
TUNE_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"

#: Serve's logger in the driver (its INFO records dropped unless verbose).
SERVE_LOGGER = "ray.serve"
#: The start of the error Ray pushes whenever Serve shuts down (dropped unless verbose).
SERVE_SHUTDOWN_NOTICE = "Task ServeController.graceful_shutdown failed"

#: The start of the error Ray pushes when a worker process dies (dropped unless verbose).
WORKER_DIED_NOTICE = (
    "A worker died or was killed while executing a task by an unexpected system error"
)
#: Tune's controller logger, and the start of its record of a failed trial task
#: (dropped unless verbose when the trial's worker died).
CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"
TRIAL_FAILED_NOTICE = "Trial task failed for trial "

#: Tune's logger of ``tune.run``, and the start of its closing error naming the
#: failed trials (dropped unless verbose: each failed trial has its own line).
TUNE_RUN_LOGGER = "ray.tune.tune"
INCOMPLETE_NOTICE = "Trials did not complete"
#: The starts of ``tune.run``'s warnings on Ctrl+C (dropped unless verbose:
#: ``regtune sweep`` says how to resume in its own words).
STOP_SIGNAL_NOTICE = "Stop signal received"
INTERRUPTED_NOTICE = "Experiment has been interrupted"

#: Tune's result-file logger, and the start of its notice that a result file it
#: would restore is absent (dropped unless verbose).
RESULT_LOGGER = "ray.tune.logger.logger"
RESULT_FILE_NOTICE = "Remote file not found: "
#: Tune's result-grid logger, and the start of its warning that a trial had no
#: result file to read (a trial a time limit never started); regtune reads its
#: own results store, never Tune's per-trial data frames (dropped unless verbose).
ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"
METRICS_FETCH_NOTICE = "Failed to fetch metrics for "

_state = {"verbose": False, "set_tune_env": False, "drop_notice": True}
#: Worker processes of the running sweep's trials (their deaths regtune reports itself).
_TRIAL_WORKERS: set[int] = set()
_WORKER_PID = re.compile(r"Worker PID: (\d+)")


class _NoticeFilter(logging.Filter):
    """Drops the records whose message starts with one of ``prefixes``, nothing else."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


#: Ray's "token authentication is enabled" notice.
_TOKEN_FILTER = _NoticeFilter(TOKEN_ENABLED_NOTICE)


class _ServeInfoFilter(logging.Filter):
    """Drops Serve's records below WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_SERVE_FILTER = _ServeInfoFilter()


#: Tune's notice that a result file (``result.json``, ...) it would restore is absent.
_RESULT_FILTER = _NoticeFilter(RESULT_FILE_NOTICE)
#: Tune's warning that it could not read a trial's result file into a data frame.
_FETCH_FILTER = _NoticeFilter(METRICS_FETCH_NOTICE)


def actor_error(exc: BaseException | None) -> Any:
    """The ``RayActorError`` (e.g. ``ActorDiedError``) ``exc`` is or carries as
    a ``RayTaskError``'s cause; None when it is neither."""
    from ray.exceptions import RayActorError

    for candidate in (exc, getattr(exc, "cause", None)):
        if isinstance(candidate, RayActorError):
            return candidate
    return None


def is_worker_death(exc: BaseException | None) -> bool:
    """Whether a trial failed because its worker process died (Ray's
    ``RayActorError``, e.g. ``ActorDiedError``, also as a ``RayTaskError``'s
    cause), not because the trial's own code raised. An actor that died of
    an error raised in its creation task (the trainable's ``setup``: Ray's
    ``actor_init_failed``) is the trial's own error, not a worker death."""
    died = actor_error(exc)
    return died is not None and not bool(getattr(died, "actor_init_failed", False))


class _WorkerDeathFilter(logging.Filter):
    """Drops Tune's "Trial task failed" records whose cause is a dead worker."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(TRIAL_FAILED_NOTICE):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return not is_worker_death(exc)


_WORKER_DEATH_FILTER = _WorkerDeathFilter()
#: Tune's closing "Trials did not complete: [...]", and its Ctrl+C warnings.
_INCOMPLETE_FILTER = _NoticeFilter(INCOMPLETE_NOTICE, STOP_SIGNAL_NOTICE, INTERRUPTED_NOTICE)


def note_trial_worker(pid: int) -> None:
    """A running sweep's trial reported from worker process ``pid``: Ray's
    notice of that worker's death is dropped (while not verbose), since the
    sweep reports the trial's failure itself."""
    _TRIAL_WORKERS.add(int(pid))


def forget_trial_workers() -> None:
    """The sweep ended: Ray's notices of any worker's death print again."""
    _TRIAL_WORKERS.clear()


def _is_shutdown_notice(line: str) -> bool:
    """Whether a pushed error is Serve's shutdown notice, or the notice that a
    trial's worker died (:func:`note_trial_worker`), while not verbose (as
    :func:`apply_verbosity` last applied it)."""
    if not _state["drop_notice"]:
        return False
    if SERVE_SHUTDOWN_NOTICE in line:
        return True
    pid = _WORKER_PID.search(line) if WORKER_DIED_NOTICE in line else None
    return pid is not None and int(pid.group(1)) in _TRIAL_WORKERS


def filter_ray_messages() -> None:
    """Keep Serve's shutdown notice and a dead worker's notice out of what the
    driver prints while not verbose (idempotent; imports Ray: call it where
    Ray is about to start)."""
    from regtune.platform.tune.ray_private import drop_pushed_errors

    drop_pushed_errors(_is_shutdown_notice)


def set_verbose(flag: bool) -> None:
    """Show (``True``) or hide (``False``, the default) Ray's and Tune's banners.

    Takes effect at once for this process: the next ``ray.init`` and the
    next Tune run follow it.
    """
    _state["verbose"] = bool(flag)
    apply_verbosity()


def is_verbose() -> bool:
    """What :func:`set_verbose` last set (``False`` until it is called)."""
    return _state["verbose"]


def ray_log_level(verbose: bool | None = None) -> int:
    """The ``logging_level`` for ``ray.init``: INFO when verbose, else WARNING."""
    verbose = is_verbose() if verbose is None else verbose
    return logging.INFO if verbose else logging.WARNING


def apply_verbosity(verbose: bool | None = None) -> None:
    """Install (not verbose) or remove (verbose) the filters and settings above.

    ``verbose`` defaults to :func:`is_verbose`. Idempotent.
    """
    verbose = is_verbose() if verbose is None else verbose
    filters = (
        (TOKEN_NOTICE_LOGGER, _TOKEN_FILTER),
        (SERVE_LOGGER, _SERVE_FILTER),
        (RESULT_LOGGER, _RESULT_FILTER),
        (ANALYSIS_LOGGER, _FETCH_FILTER),
        (CONTROLLER_LOGGER, _WORKER_DEATH_FILTER),
        (TUNE_RUN_LOGGER, _INCOMPLETE_FILTER),
    )
    _state["drop_notice"] = not verbose
    if verbose:
        for name, dropped in filters:
            logging.getLogger(name).removeFilter(dropped)
        # Undo only what regtune itself set: a value someone put there since stays.
        if _state["set_tune_env"] and os.environ.get(TUNE_OUTPUT_ENV) == "0":
            os.environ.pop(TUNE_OUTPUT_ENV, None)
        _state["set_tune_env"] = False
        return
    for name, dropped in filters:
        logger = logging.getLogger(name)
        if dropped not in logger.filters:
            logger.addFilter(dropped)
    if TUNE_OUTPUT_ENV not in os.environ:
        os.environ[TUNE_OUTPUT_ENV] = "0"
        _state["set_tune_env"] = True

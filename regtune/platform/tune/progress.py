"""Live sweep progress: trials running / finished / stopped early, best so far.

"Best so far" is the trial the sweep summary would name if the sweep ended
now: each trial is ranked on the epoch whose weights it keeps (the
``kept_epoch`` its latest epoch reports: a fairness bound's choice, early
stopping's best epoch, else that latest epoch itself; see
:mod:`~regtune.platform.analysis.kept`), with a final-report objective
(``test_*``) taken from its latest report, and trials are ordered by the
results store's order (:func:`regtune.platform.results.ranking.best_first`:
the first objective, ties broken by the others, the validation loss, the
trial id). The line shows that trial's id and *its own* values of the
objectives at that epoch: in a multi-objective sweep the line never combines
values from different trials, and once every trial is done it names the
summary's best trial with the summary's numbers. (It keeps a trial's rows
from its kept epoch on; under PBT an exploit can move a trial's kept epoch
back to one it no longer holds, and the line then ranks that trial on its
latest epoch, where the summary reads the stored rows.)

It leaves out what the summary at the end never calls best: a trial whose
latest epoch is a constant predictor (one class for every row, see
:mod:`~regtune.platform.results.degenerate`) and a trial that failed. When
such a trial held the best, the best goes back to the best of the trials
still eligible. The line counts the constant predictors left out, and
while they are all there is, it shows their score marked as such (on a
2%-positive label a constant predictor's ``val_acc`` is 0.98, which the line
must not present as a result).

:class:`SweepProgress` is plain bookkeeping (tested without Ray);
:class:`ProgressCallback` feeds it from Tune's driver-side callback hooks and
hands a snapshot to whoever displays it: the CLI's rich status line on a
terminal, or :class:`PeriodicLines` (one plain line every few seconds) when
the output is a log file or a pipe, where a status line would show nothing.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray import cloudpickle
from ray.tune import Callback

from regtune.platform.analysis.columns import is_final_report
from regtune.platform.results.degenerate import is_constant_predictor
from regtune.platform.results.ranking import TIE_BREAK, best_first
from regtune.platform.results.schema import is_finite_number
from regtune.platform.results.trials import NOT_STARTED, STOPPED_EARLY, trial_status
from regtune.platform.tune.banners import (
    actor_error,
    forget_trial_workers,
    is_worker_death,
    note_trial_worker,
)
from regtune.platform.tune.ray_private import trial_storage

__all__ = [
    "FAILED_LINE",
    "LINE_PERIOD_S",
    "RETRY_LINE",
    "PeriodicLines",
    "ProgressCallback",
    "SweepProgress",
    "claim_default_result",
    "failure_cause",
    "progress_text",
]

log = logging.getLogger(__name__)

#: Said once per retry of a failed trial (Tune's ``FailureConfig.max_retries``).
RETRY_LINE = "trial {trial}: {cause}; retry {n} of {max} (failure.max_retries) {start}"
#: Said once for a trial that failed for good.
FAILED_LINE = "trial {trial} failed: {cause}{after}; status error{where}"
#: Tune's text file of a trial's errors (in the trial's folder).
ERROR_FILE = "error.txt"
_PID = re.compile(r"\bpid: (\d+)")
_EXIT = re.compile(r"Worker exit detail: (.*?)(?: Some common causes|$)", re.S)
#: A terminal colour code (Ray colours the task name in an error's text).
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: The line naming an exception in a formatted traceback ("pkg.Error: message").
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")

#: Seconds between progress lines when the output is not a terminal: often
#: enough that a CI log shows the sweep is alive, rare enough to stay readable.
LINE_PERIOD_S = 5.0


@dataclass
class SweepProgress:
    """Counts of a running sweep and its best trial so far.

    ``best`` maps each objective to the best trial's value at the epoch it
    keeps (an objective that epoch did not report, or reported as NaN, is
    left out); ``best_trial`` is that trial. Trials whose latest epoch is a
    constant predictor (``constant``) and failed trials (``failed``) are never
    the best (see the module).
    """

    objectives: Sequence[tuple[str, str]]
    total: int
    max_t: int
    running: set[str] = field(default_factory=set)
    finished: int = 0
    stopped_early: int = 0
    not_started: int = 0
    errors: int = 0
    best: dict[str, float] = field(default_factory=dict)
    best_trial: str | None = None
    constant: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    clock: Callable[[], float] = time.monotonic
    _last_iter: dict[str, int] = field(default_factory=dict)
    _best_row: dict[str, float] | None = None
    #: each trial's row at the epoch it keeps (while it is not a constant predictor)
    _trial_rows: dict[str, dict[str, float]] = field(default_factory=dict)
    #: each trial's rows from the epoch it keeps on (the kept epoch never goes
    #: back, so earlier rows can never be ranked again)
    _epoch_rows: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    #: each constant predictor's latest epoch (shown only while nothing else is)
    _constant_rows: dict[str, dict[str, float]] = field(default_factory=dict)
    _started_at: float | None = None

    def __post_init__(self) -> None:
        self._started_at = self.clock()

    def started(self, trial_id: str) -> None:
        """A trial started (or restarted after a failure)."""
        self.running.add(trial_id)

    def result(self, trial_id: str, result: dict[str, Any]) -> None:
        """A trial reported an epoch."""
        self.running.add(trial_id)
        epoch = int(result.get("training_iteration", 0))
        self._last_iter[trial_id] = epoch
        if not self.objectives:
            return
        keys = {metric for metric, _ in self.objectives} | {TIE_BREAK[0]}
        row = {k: float(result[k]) for k in keys if is_finite_number(result.get(k))}
        ranked = self._ranked_row(trial_id, epoch, row, result.get("kept_epoch"))
        if is_constant_predictor(result):
            self.constant.add(trial_id)
            self._constant_rows[trial_id] = row
            self._trial_rows.pop(trial_id, None)
            if trial_id == self.best_trial:
                self._rebuild_best()
            return
        self.constant.discard(trial_id)
        self._constant_rows.pop(trial_id, None)
        if not best_first([ranked], [trial_id], self.objectives):
            # No finite first objective where it is ranked: not the best.
            self._trial_rows.pop(trial_id, None)
            if trial_id == self.best_trial:
                self._rebuild_best()
            return
        self._trial_rows[trial_id] = ranked
        if trial_id in self.failed:
            return
        current, holder = self._best_row, self.best_trial
        if current is None or holder is None:
            self._set_best(ranked, trial_id)
        elif trial_id == holder:
            if self._beats(current, holder, ranked, trial_id):
                self._rebuild_best()  # the best trial now keeps a worse epoch
            else:
                self._set_best(ranked, trial_id)
        elif self._beats(ranked, trial_id, current, holder):
            self._set_best(ranked, trial_id)

    def _ranked_row(
        self, trial_id: str, epoch: int, row: dict[str, float], kept: object
    ) -> dict[str, float]:
        """The trial's row at the epoch it keeps (the summary's rule, see the
        module): its row of epoch ``kept`` (the latest row when ``kept`` is not
        a known epoch), with final-report objectives from the latest row.
        Rows before the kept epoch are dropped (a PBT exploit that moves it
        back is then ranked on the latest row; see the module)."""
        rows = self._epoch_rows.setdefault(trial_id, {})
        rows[epoch] = row
        kept_at = _whole(kept)
        if kept_at is None or kept_at > epoch:
            kept_at = epoch
        for old in [e for e in rows if e < kept_at]:
            del rows[old]
        chosen = rows.get(kept_at, row)
        # As the summary: the tie-break's loss from the latest row where the
        # kept one lacks it; an objective the kept epoch lacks stays missing.
        out = {k: v for k, v in row.items() if k == TIE_BREAK[0]}
        out.update((k, v) for k, v in chosen.items() if not is_final_report(k))
        out.update((k, v) for k, v in row.items() if is_final_report(k))
        return out

    def completed(self, trial_id: str, *, error: bool = False) -> None:
        """A trial ended: ran all epochs, was stopped, or failed for good."""
        self.running.discard(trial_id)
        status = trial_status(self._last_iter.get(trial_id, 0), self.max_t, error=error)
        if status == "error":
            self.errors += 1
            self.failed.add(trial_id)
            if trial_id == self.best_trial:
                self._rebuild_best()
        elif status == STOPPED_EARLY:
            self.stopped_early += 1
        elif status == NOT_STARTED:
            # Ended before its first epoch (budget.time_limit_s): never trained.
            self.not_started += 1
        else:
            self.finished += 1

    def _beats(self, row: dict[str, float], tid: str, other: dict[str, float], oid: str) -> bool:
        """Whether ``row`` (of trial ``tid``) ranks before ``other`` (of ``oid``)."""
        return best_first([other, row], [oid, tid], self.objectives)[:1] == [1]

    def _set_best(self, row: dict[str, float] | None, trial_id: str | None) -> None:
        self._best_row, self.best_trial = row, trial_id
        self.best = {m: row[m] for m, _ in self.objectives if m in row} if row else {}

    def _rebuild_best(self) -> None:
        """The best over the trials still eligible (the best one just left)."""
        ids = [t for t in self._trial_rows if t not in self.constant and t not in self.failed]
        order = best_first([self._trial_rows[t] for t in ids], ids, self.objectives)
        if order:
            self._set_best(self._trial_rows[ids[order[0]]], ids[order[0]])
        else:
            self._set_best(None, None)

    def _constant_best(self) -> tuple[dict[str, float], str | None]:
        """The best constant predictor's objectives and trial, shown while no trial is best."""
        ids = [t for t in self._constant_rows if t not in self.failed]
        order = best_first([self._constant_rows[t] for t in ids], ids, self.objectives)
        if not order:
            return {}, None
        row = self._constant_rows[ids[order[0]]]
        return {m: row[m] for m, _ in self.objectives if m in row}, ids[order[0]]

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able view for display."""
        constant_best, constant_trial = (
            self._constant_best() if self.best_trial is None else ({}, None)
        )
        return {
            "total": self.total,
            "running": len(self.running),
            "finished": self.finished,
            "stopped_early": self.stopped_early,
            "not_started": self.not_started,
            "errors": self.errors,
            "done": self.finished + self.stopped_early + self.not_started + self.errors,
            "best": dict(self.best),
            "best_trial": self.best_trial,
            "constant": len(self.constant - self.failed),
            "constant_best": constant_best,
            "constant_trial": constant_trial,
            "elapsed_s": self.clock() - (self._started_at or 0.0),
        }


def progress_text(snap: dict[str, Any]) -> str:
    """One line for a :meth:`SweepProgress.snapshot`: counts, then the best
    epoch so far (its objectives' values, all from one trial, and that trial),
    and how many constant predictors were left out of it; with no best but
    constant predictors, their best score, marked as theirs."""
    best = "  ".join(f"{k} {v:.4f}" for k, v in snap["best"].items())
    if best and snap.get("best_trial"):
        best += f" (trial {snap['best_trial']})"
    constant = int(snap.get("constant") or 0)
    left_out = ""
    if constant:
        left_out = f"{constant} constant predictor{'' if constant == 1 else 's'} left out"
    if not best and snap.get("constant_trial"):
        values = "  ".join(f"{k} {v:.4f}" for k, v in snap.get("constant_best", {}).items())
        best = f"- ({left_out}: one class for every row; {values}, trial {snap['constant_trial']})"
    elif left_out:
        best = f"{best or '-'} ({left_out})"
    not_started = int(snap.get("not_started") or 0)
    unstarted = f"{not_started} not started, " if not_started else ""
    return (
        f"[{snap.get('elapsed_s', 0.0):.0f} s] trials {snap['done']}/{snap['total']} done: "
        f"{snap['finished']} finished, {snap['stopped_early']} stopped early, {unstarted}"
        f"{snap['errors']} failed; {snap['running']} running | best {best or '-'}"
    )


def _whole(value: object) -> int | None:
    """A whole number (an epoch, as a result reports it), else None."""
    if not is_finite_number(value):
        return None
    number = float(value)  # type: ignore[arg-type]
    return int(number) if number.is_integer() else None


class PeriodicLines:
    """Writes a progress line at most every ``period_s`` seconds.

    For output that is not a terminal (CI logs, ``tee``): call it with every
    snapshot; it writes the first at once and then one every ``period_s``
    seconds, and :meth:`close` writes the last one if it has not been written.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        period_s: float = LINE_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._period_s = period_s
        self._clock = clock
        self._last_at: float | None = None
        self._pending: str | None = None

    def __call__(self, snap: dict[str, Any]) -> None:
        """Take a snapshot; write its line if ``period_s`` has passed since the last line."""
        now = self._clock()
        self._pending = progress_text(snap)
        if self._last_at is None or now - self._last_at >= self._period_s:
            self._write(self._pending)
            self._pending = None
            self._last_at = now

    def close(self) -> None:
        """Write the latest snapshot's line if it was held back."""
        if self._pending is not None:
            self._write(self._pending)
            self._pending = None


class ProgressCallback(Callback):
    """Tune callback feeding :class:`SweepProgress` (runs on the driver)."""

    def __init__(
        self,
        *,
        objectives: Sequence[tuple[str, str]],
        total: int,
        max_t: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.state = SweepProgress(objectives=objectives, total=total, max_t=max_t)
        self._emit = on_progress

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks into its experiment state; the display hook
        # holds terminal locks and belongs to this process only.
        state = self.__dict__.copy()
        state["_emit"] = None
        return state

    def _push(self) -> None:
        if self._emit is not None:
            self._emit(self.state.snapshot())

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook."""
        self.state.started(trial.trial_id)
        self._push()

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        """Tune hook."""
        pid = result.get("pid")
        if isinstance(pid, int):
            note_trial_worker(pid)  # its death is said by on_trial_recover/on_trial_error
        self.state.result(trial.trial_id, result)
        self._push()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Tune hook: Ray's notices of dead workers are no longer this sweep's."""
        forget_trial_workers()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook."""
        self.state.completed(trial.trial_id)
        self._push()

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook: a failed trial is retried. Says so in one line (see
        :mod:`~regtune.platform.tune.banners`: Ray's own notice of a dead
        worker is hidden unless ``--verbose``)."""
        limit = trial.max_failures
        start = "from its newest checkpoint" if trial.checkpoint is not None else "from epoch 1"
        log.warning(
            RETRY_LINE.format(
                trial=trial.trial_id,
                cause=failure_cause(_trial_error(trial)),
                n=trial.num_failures,
                max="unlimited" if limit < 0 else limit,
                start=start,
            )
        )
        self._push()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook (called once retries are exhausted): one line says why."""
        claim_default_result(trial)
        self.state.completed(trial.trial_id, error=True)
        retries = max(int(trial.num_failures) - 1, 0)
        error_file = _stored_error_file(trial)
        log.warning(
            FAILED_LINE.format(
                trial=trial.trial_id,
                cause=failure_cause(_trial_error(trial)),
                after=f" (after {retries} retr{'y' if retries == 1 else 'ies'})" if retries else "",
                where=f"; Tune's report: {error_file}" if error_file else "",
            )
        )
        self._push()

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Tune hook, once per turn of Tune's event loop: keeps the elapsed time
        moving while no trial reports (the display throttles it)."""
        self._push()


def claim_default_result(trial: Any) -> None:
    """Make the result Tune keeps for a trial that never reported its own.

    Tune asks a trial's actor for a default result (trial id, config, pid, ...)
    when it gives the trial an actor, *before* it resets a reused actor
    (``reset_config``) for it. A reused actor answers as the trial that ran in
    it before; when the new trial then fails without reporting (its
    ``reset_config`` or first epoch raised), Tune's ``ResultGrid`` returned
    that default as the failed trial's result: the sweep summary showed a
    second row with the earlier trial's id and config, marked error, and not
    the failed trial. Here, at the failure, such a result is given the trial's
    own id and config (what Tune ran it with); the actor's pid and host stay.
    A trial that reported, or whose default result is its own, is left as is.
    """
    meta = getattr(trial, "run_metadata", None)
    if meta is None or any(key != "trial_id" for key in meta.last_result):
        return  # it reported: the result is its own
    default = dict(trial.last_result)  # resolves Tune's default result
    if default.get("trial_id") in (None, trial.trial_id):
        return
    default["trial_id"] = trial.trial_id
    default["config"] = dict(trial.config)
    meta.last_result = default


def _trial_error(trial: Any) -> BaseException | None:
    """The exception Tune recorded for ``trial``'s latest failure (None if unreadable)."""
    path = getattr(trial, "pickled_error_file", None)
    if not path:
        return None
    with contextlib.suppress(Exception), open(path, "rb") as handle:
        exc = cloudpickle.load(handle)
        return exc if isinstance(exc, BaseException) else None
    return None


def failure_cause(exc: BaseException | None) -> str:
    """Why a trial failed, in a few words: its worker died (with the worker's
    pid and Ray's exit detail), or the error its own code raised (type and
    first line), also when it raised in the trainable's ``setup`` (Ray then
    reports an ``ActorDiedError`` of a failed creation task, whose text ends
    in the trial's traceback)."""
    if exc is None:
        return "it failed (no error recorded)"
    text = str(exc)
    died = actor_error(exc)
    if died is not None and not is_worker_death(exc):
        return _creation_error(str(died))
    if is_worker_death(exc):
        pid = _PID.search(text)
        detail = _EXIT.search(text)
        parts = [f"pid {pid.group(1)}"] if pid else []
        if detail:
            parts.append(" ".join(detail.group(1).split()))
        return "its worker process died" + (f" ({': '.join(parts)})" if parts else "")
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc, text = cause, str(cause)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _creation_error(text: str) -> str:
    """The exception (type and first line of its message) at the end of the
    traceback Ray put in the text of an actor that died of an error raised in
    its creation task (the trainable's ``setup``: Ray keeps only that text);
    Ray's own words when no traceback's exception line is found."""
    lines = _ANSI.sub("", text).splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    after = lines[frames[-1] + 1 :] if frames else lines[1:]
    for line in after:
        if line.strip() and not line[0].isspace():
            found = _EXCEPTION_LINE.match(line.rstrip())
            if found:
                name = found.group(1).rsplit(".", 1)[-1]
                message = (found.group(2) or "").strip()
                return f"{name}: {message}" if message else name
            break
    first = next((line.strip() for line in lines if line.strip()), "")
    return f"its setup failed: {first}" if first else "its setup failed"


def _stored_error_file(trial: Any) -> str | None:
    """Where Tune stores ``trial``'s error report (its folder in the experiment)."""
    try:
        where = trial_storage(trial)
    except Exception:  # a detail of a line: never fail the sweep for it
        return None
    if not where.trial_path:
        return None
    kind = str(getattr(where.filesystem, "type_name", "local"))
    path = f"{where.trial_path}/{ERROR_FILE}"
    return path if kind == "local" else f"{kind}://{path.lstrip('/')}"

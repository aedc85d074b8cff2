"""Append a sweep's results to its results folder (the driver side, without Ray).

:class:`ResultsWriter` receives Tune result dicts (from
:mod:`~regtune.platform.results.callback`, or anything else), buffers them
and writes them as Parquet parts, and rewrites the trial table beside them.
It is plain Python so it is tested and benchmarked without a cluster.

When rows reach disk: every :data:`FLUSH_S` seconds (``$REGTUNE_RESULTS_FLUSH_S``;
0 writes every row at once), whenever a trial ends, whenever Tune saves its
experiment state (so every epoch Tune would not rerun after a driver crash
is already stored), and at the end. A restored trial re-reports epochs;
their rows replace the earlier ones on read. At the end, and every
:data:`COMPACT_EVERY_PARTS` parts, the parts are merged into one.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from regtune.errors import DataError, SpecError
from regtune.platform.results.files import PART_PREFIX, PART_SUFFIX, ResultsLocation, locate
from regtune.platform.results.read import ResultsWarning, epoch_parts, load_trial_states
from regtune.platform.results.schema import (
    FIXED_EPOCH_COLUMNS,
    FIXED_TRIAL_COLUMNS,
    KIND_EPOCHS,
    KIND_TRIALS,
    META_RUN_S,
    epoch_row,
    rows_to_table,
)
from regtune.platform.results.trials import (
    ERROR,
    RUNNING,
    TrialState,
    summarize_rows,
    trial_status,
)

__all__ = [
    "COMPACT_EVERY_PARTS",
    "FLUSH_ENV",
    "FLUSH_S",
    "TRIALS_EVERY_S",
    "ResultsWriter",
    "flush_seconds",
]

log = logging.getLogger(__name__)

#: Seconds between writes of buffered rows: a reader of a running sweep is at
#: most this far behind, and a part per epoch would mean thousands of files.
FLUSH_S = 2.0
FLUSH_ENV = "REGTUNE_RESULTS_FLUSH_S"
#: Seconds between rewrites of the trial table by a periodic flush (it is
#: also rewritten when a trial ends, when Tune saves its state, and at the
#: end); readers recompute best/last from the epochs anyway.
TRIALS_EVERY_S = 10.0
#: Parts after which they are merged into one (readers open each part).
COMPACT_EVERY_PARTS = 200

BAD_FLUSH = "${env}={value!r}: expected a number of seconds >= 0 (0 writes every row at once)"
WRITE_FAILED = "results store: writing %s failed (%s); the rows stay buffered and are retried"
#: A resumed sweep found a trial table it cannot read: kept under a hidden name.
MOVED_ASIDE = (
    "{path}: the stored trial table cannot be used ({reason}); it was moved to {aside} "
    "(kept, readers skip it) and the table is rebuilt: statuses and checkpoints of trials "
    "that do not run again show as 'running'. Copy it back to recover them"
)
CANNOT_MOVE_ASIDE = (
    "{path}: the stored trial table cannot be used ({reason}), and moving it aside to "
    "{aside} failed ({error}); refusing to overwrite it. Move or remove it, then resume"
)
#: Prefix of the hidden name an unusable trial table is kept under (readers skip ``_``).
UNREADABLE_TRIALS = "_trials.unreadable-"


def flush_seconds() -> float:
    """:data:`FLUSH_S`, or ``$REGTUNE_RESULTS_FLUSH_S`` when set.

    Raises:
        SpecError: the variable is not a number >= 0.
    """
    raw = os.environ.get(FLUSH_ENV)
    if raw is None:
        return FLUSH_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise SpecError(BAD_FLUSH.format(env=FLUSH_ENV, value=raw))
    return value


class ResultsWriter:
    """Writes one experiment's epoch parts and trial table.

    Args:
        exp: the experiment directory (path or URI), ``<storage>/<name>``.
        max_t: epochs a trial runs unless stopped (``budget.max_epochs``):
            fewer means ``stopped early``.
        spec: the sweep spec as plain data (``SweepSpec.to_dict()``),
            written once to ``results/spec.json``.
        flush_s: seconds between writes (default :func:`flush_seconds`).
    """

    def __init__(
        self,
        exp: str,
        *,
        max_t: int,
        spec: Mapping[str, Any] | None = None,
        flush_s: float | None = None,
    ) -> None:
        self.exp = exp
        self.experiment = exp.rstrip("/").rsplit("/", 1)[-1]
        self.max_t = max_t
        self.flush_s = flush_seconds() if flush_s is None else flush_s
        self._spec = dict(spec) if spec is not None else None
        self._loc: ResultsLocation | None = None
        self._rows: dict[str, dict[int, dict[str, Any]]] = {}
        self._pending: list[dict[str, Any]] = []
        self._states: dict[str, TrialState] = {}
        #: Per-trial summary (best/last...), recomputed after the trial's rows change.
        self._summaries: dict[str, dict[str, Any]] = {}
        self._parts: list[str] = []
        self._session = uuid.uuid4().hex[:8]
        self._seq = 0
        self._last_ns = 0
        self._run_before = 0.0
        self._started = time.monotonic()
        self._last_flush = time.monotonic()
        self._last_trials = 0.0
        self._dirty = False

    # -- lifecycle ---------------------------------------------------------------

    @property
    def location(self) -> ResultsLocation:
        """Where this writer writes (opened on first use)."""
        if self._loc is None:
            self.open()
        assert self._loc is not None
        return self._loc

    def open(self) -> None:
        """Write the spec (once) and load what an earlier session stored, so a
        resumed sweep continues the same tables. Idempotent.

        A stored trial table that cannot be read (corrupt, not regtune's) is
        moved aside to ``_trials.unreadable-<session>.parquet`` with a
        :class:`~regtune.platform.results.ResultsWarning`, never overwritten.

        Raises:
            DataError: that move failed (nothing was written), or a stored
                file has another schema version.
            OSError: the stored trial table exists but could not be read.
        """
        if self._loc is not None:
            return
        loc = locate(self.exp)
        # The trial table first: if it is unusable and cannot be kept, nothing is written.
        stored = load_trial_states(loc)
        if stored.unusable is not None:
            self._move_aside(loc, stored.unusable)
        if self._spec is not None and not loc.exists(loc.spec):
            loc.write_bytes(loc.spec, json.dumps(self._spec, indent=2).encode())
        for name, table in epoch_parts(loc):
            self._parts.append(name)
            self._last_ns = max(self._last_ns, _part_ns(name))
            for row in table.to_pylist():
                self._rows.setdefault(row["trial_id"], {})[int(row["iteration"])] = row
        self._states, self._run_before = stored.states, stored.run_s
        self._loc = loc
        self._started = time.monotonic()

    def _move_aside(self, loc: ResultsLocation, reason: str) -> None:
        """Keep an unusable trial table under a hidden name before it is rewritten."""
        aside = f"{loc.root}/{UNREADABLE_TRIALS}{self._session}.parquet"
        shown = {"path": loc.display(loc.trials), "reason": reason, "aside": loc.display(aside)}
        try:
            loc.fs.move(loc.trials, aside)
        except OSError as exc:
            raise DataError(CANNOT_MOVE_ASIDE.format(**shown, error=exc)) from exc
        warnings.warn(MOVED_ASIDE.format(**shown), ResultsWarning, 3)

    def close(self, final: Mapping[str, TrialState] | None = None) -> None:
        """Write everything, merge the parts, write the final trial table.

        ``final``: statuses known at the end (e.g. from Tune's trial list),
        overriding what the writer saw.
        """
        if final:
            self._states.update(final)
            self._dirty = True
        self.flush()
        if len(self._parts) > 1:
            self.compact()

    # -- events ------------------------------------------------------------------

    def add(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """One reported epoch (a Tune result dict); written at the next flush."""
        self.open()  # rows stored earlier must load first: the new ones replace them
        row = epoch_row(
            result, experiment=self.experiment, trial_id=trial_id, timestamp=time.time()
        )
        self._rows.setdefault(trial_id, {})[row["iteration"]] = row
        self._summaries.pop(trial_id, None)
        self._pending.append(row)
        state = self._states.get(trial_id)
        if state is None or state.status != RUNNING:  # restarted after a restore
            self._states[trial_id] = TrialState(RUNNING, state.checkpoint if state else None)
        self._dirty = True
        self.maybe_flush()

    def checkpoint(self, trial_id: str, path: str | None) -> None:
        """A trial saved a checkpoint at ``path``."""
        state = self._states.get(trial_id, TrialState())
        self._states[trial_id] = TrialState(state.status, path)
        self._dirty = True

    def end_trial(self, trial_id: str, *, error: bool, checkpoint: str | None = None) -> None:
        """A trial ended (ran out its epochs, was stopped, or failed for good)."""
        self._states[trial_id] = self.ended_state(trial_id, error=error, checkpoint=checkpoint)
        self._dirty = True
        self.flush()

    def ended_state(
        self, trial_id: str, *, error: bool, checkpoint: str | None = None
    ) -> TrialState:
        """The state of a trial that ended now, from the rows stored for it."""
        iterations = max(self._rows.get(trial_id, {0: {}}))
        status = ERROR if error else trial_status(iterations, self.max_t, error=False)
        old = self._states.get(trial_id, TrialState())
        return TrialState(status, checkpoint or old.checkpoint)

    # -- writing -----------------------------------------------------------------

    def maybe_flush(self) -> None:
        """Flush if :attr:`flush_s` has passed since the last flush."""
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush(trials=None)

    def flush(self, *, trials: bool | None = True) -> None:
        """Write the buffered rows as one part, and the trial table if it
        changed: always (``trials=True``), never (``False``), or when
        :data:`TRIALS_EVERY_S` have passed since its last write (``None``).

        A failed write (e.g. storage unreachable) is logged and retried at
        the next flush: nothing buffered is dropped.
        """
        self._last_flush = time.monotonic()
        loc = self.location
        if self._pending:
            name = self._part_name()
            table = rows_to_table(
                self._pending,
                kind=KIND_EPOCHS,
                experiment=self.experiment,
                fixed=FIXED_EPOCH_COLUMNS,
            )
            try:
                loc.write_table(f"{loc.epochs}/{name}", table)
            except (OSError, pa.ArrowException) as exc:
                log.warning(WRITE_FAILED, loc.display(f"{loc.epochs}/{name}"), exc)
                return
            self._parts.append(name)
            self._pending = []
            if len(self._parts) >= COMPACT_EVERY_PARTS:
                self.compact()
        if trials is None:
            trials = time.monotonic() - self._last_trials >= TRIALS_EVERY_S
        if trials and self._dirty:
            try:
                self.write_trials()
            except (OSError, pa.ArrowException) as exc:
                log.warning(WRITE_FAILED, loc.display(loc.trials), exc)

    def write_trials(self) -> None:
        """Rewrite ``trials.parquet`` from every row and state known."""
        loc = self.location
        trials = []
        for tid in sorted(set(self._rows) | set(self._states)):
            summary = self._summaries.get(tid)
            if summary is None:
                by_iter = self._rows.get(tid, {})
                summary = summarize_rows([by_iter[i] for i in sorted(by_iter)])
                self._summaries[tid] = summary
            state = self._states.get(tid, TrialState())
            trials.append(
                {
                    "experiment": self.experiment,
                    "trial_id": tid,
                    "status": state.status,
                    "checkpoint": state.checkpoint,
                    **summary,
                }
            )
        run_s = self._run_before + time.monotonic() - self._started
        table = rows_to_table(
            trials,
            kind=KIND_TRIALS,
            experiment=self.experiment,
            fixed=FIXED_TRIAL_COLUMNS,
            extra_metadata={META_RUN_S: f"{run_s:.3f}".encode()},
        )
        loc.write_table(loc.trials, table)
        self._dirty = False
        self._last_trials = time.monotonic()

    def compact(self) -> None:
        """Merge every part this writer knows into one (latest row per epoch),
        then delete the merged parts. Files it did not read are left alone."""
        loc = self.location
        if self._pending:
            return  # a failed write is pending: merge after it lands
        rows = [self._rows[t][i] for t in sorted(self._rows) for i in sorted(self._rows[t])]
        if not rows:
            return
        name = self._part_name()
        table = rows_to_table(
            rows, kind=KIND_EPOCHS, experiment=self.experiment, fixed=FIXED_EPOCH_COLUMNS
        )
        try:
            loc.write_table(f"{loc.epochs}/{name}", table)
        except (OSError, pa.ArrowException) as exc:
            log.warning(WRITE_FAILED, loc.display(f"{loc.epochs}/{name}"), exc)
            return
        merged, self._parts = self._parts, [name]
        for old in merged:
            loc.delete(f"{loc.epochs}/{old}")

    def _part_name(self) -> str:
        # Names sort in write order, across sessions too: a resumed driver's
        # parts come after the ones it found, even if the clock went back.
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        self._seq += 1
        return f"{PART_PREFIX}{self._last_ns:020d}-{self._session}-{self._seq:06d}{PART_SUFFIX}"


def _part_ns(name: str) -> int:
    try:
        return int(name[len(PART_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return 0

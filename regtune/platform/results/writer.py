"""Append a sweep's results to its results folder (the driver side, without Ray).

:class:`ResultsWriter` receives Tune result dicts (from
:mod:`~regtune.platform.results.callback`, or anything else), buffers them
and writes them as Parquet parts, and rewrites the trial table beside them.
It is plain Python so it is tested and benchmarked without a cluster.

When rows reach disk: every :data:`FLUSH_S` seconds (``$REGTUNE_RESULTS_FLUSH_S``;
0 writes every row at once), whenever Tune saves its experiment state (so
every epoch Tune would not rerun after a driver crash is already stored),
and at the end. A restored trial re-reports epochs; their rows replace the
earlier ones on read. At the end, and every :data:`COMPACT_EVERY_PARTS`
parts, the parts are merged into one (by Arrow, from the stored parts).

The trial table is rewritten at most every :data:`TRIALS_EVERY_S` while
trials end or rows arrive, whenever Tune saves its experiment state after a
trial's status or checkpoint changed (:meth:`ResultsWriter.save_state`: the
table is never behind Tune's own snapshot on those), and at the end. Each
rewrite rebuilds only the rows of trials that changed since the last one
and reuses the stored Arrow columns of the others, so a sweep's writing
cost grows with its trials, not with their square.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
import warnings
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from regtune.errors import DataError, SpecError
from regtune.platform.results.files import PART_PREFIX, PART_SUFFIX, ResultsLocation, locate
from regtune.platform.results.read import (
    ResultsWarning,
    check_part,
    concat_parts,
    epoch_parts,
    load_trial_states,
)
from regtune.platform.results.schema import (
    CONFIG_PREFIX,
    FIXED_EPOCH_COLUMNS,
    FIXED_TRIAL_COLUMNS,
    KIND_EPOCHS,
    KIND_TRIALS,
    META_EXPERIMENT,
    META_KIND,
    META_RUN_S,
    META_VERSION,
    SCHEMA_VERSION,
    epoch_row,
    flatten_config,
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
    "latest_rows",
    "replace_rows",
]

log = logging.getLogger(__name__)

#: Seconds between writes of buffered rows: a reader of a running sweep is at
#: most this far behind, and a part per epoch would mean thousands of files.
FLUSH_S = 2.0
FLUSH_ENV = "REGTUNE_RESULTS_FLUSH_S"
#: Seconds between rewrites of the trial table while trials end or rows
#: arrive (it is also rewritten when Tune saves its state after a status or
#: checkpoint changed, and at the end); readers recompute best/last from the
#: epochs anyway.
TRIALS_EVERY_S = 10.0
#: Parts after which they are merged into one (readers open each part).
COMPACT_EVERY_PARTS = 200

BAD_FLUSH = "${env}={value!r}: expected a number of seconds >= 0 (0 writes every row at once)"
WRITE_FAILED = "results store: writing %s failed (%s); the rows stay buffered and are retried"
READ_BACK_FAILED = (
    "results store: reading %s back for trial %s failed (%s); its stored best values "
    "may miss those rows (readers recompute them from the epochs)"
)
COMPACT_FAILED = "results store: merging the parts in %s failed (%s); they are kept as they are"
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
            fewer means ``stopped early`` (none: ``not started``).
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
        #: The newest row time written (or stored), so row times only grow, across
        #: sessions too: readers tell abandoned rows by them (read.abandoned_rows).
        self._last_stamp = -math.inf
        self._run_before = 0.0
        self._started = time.monotonic()
        self._last_flush = time.monotonic()
        self._last_trials = 0.0
        self._dirty = False
        #: Trials whose trial-table row changed since the table was last written.
        self._changed: set[str] = set()
        #: A status or checkpoint changed since then (what resume relies on).
        self._states_changed = False
        #: The trial table last written (sorted by trial_id, no metadata).
        self._table: pa.Table | None = None
        #: Ended trials whose epoch rows were dropped from memory (their
        #: summary is kept; the rows are read back if the trial reports again).
        self._settled: set[str] = set()
        #: ``config.*`` of ended trials, for those that reported no epoch
        #: (their rows are where a trial's config is read from otherwise).
        self._configs: dict[str, dict[str, Any]] = {}

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
                stamp = row.get("timestamp")
                if isinstance(stamp, float) and stamp > self._last_stamp:
                    self._last_stamp = stamp
        self._rows = {tid: current_rows(rows) for tid, rows in self._rows.items()}
        self._run_before = stored.run_s
        # The stored config of a trial without rows is kept (a resumed session rewrites
        # the table); the states themselves hold status and checkpoint only.
        self._states = {tid: TrialState(s.status, s.checkpoint) for tid, s in stored.states.items()}
        self._configs = {
            tid: dict(s.config)
            for tid, s in stored.states.items()
            if s.config and tid not in self._rows
        }
        self._loc = loc
        for tid, state in self._states.items():
            if state.status != RUNNING and tid in self._rows:
                self._settle(tid)
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
        self.open()  # as add(): opened later, the stored states would replace ``final``
        if final:
            for tid, state in final.items():
                self._set_state(tid, state)
        self.flush()
        if len(self._parts) > 1:
            self.compact()

    # -- events ------------------------------------------------------------------

    def add(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """One reported epoch (a Tune result dict); written at the next flush."""
        self.open()  # rows stored earlier must load first: the new ones replace them
        # Never before a row already written: a clock set back between sessions must not
        # make a resumed trial's rows look older than the ones they replace.
        self._last_stamp = max(time.time(), math.nextafter(self._last_stamp, math.inf))
        row = epoch_row(
            result, experiment=self.experiment, trial_id=trial_id, timestamp=self._last_stamp
        )
        if trial_id in self._settled:  # an ended trial runs again (a retried error)
            self._rows[trial_id] = current_rows(self._stored_rows(trial_id))
            self._settled.discard(trial_id)
        rows = self._rows.setdefault(trial_id, {})
        iteration = row["iteration"]
        if rows and iteration <= next(reversed(rows)):
            # Back to a checkpoint (a retried worker, a resumed driver, an exploit): the
            # epochs after it belong to weights no checkpoint holds; readers drop them too
            # (read.abandoned_rows), and the trial table must not count them.
            for later in [i for i in rows if i > iteration]:
                del rows[later]
        rows[iteration] = row
        self._summaries.pop(trial_id, None)
        self._pending.append(row)
        state = self._states.get(trial_id)
        if state is None or state.status != RUNNING:  # restarted after a restore
            self._set_state(trial_id, TrialState(RUNNING, state.checkpoint if state else None))
        self._changed.add(trial_id)
        self._dirty = True
        self.maybe_flush()

    def checkpoint(self, trial_id: str, path: str | None) -> None:
        """A trial saved a checkpoint at ``path``."""
        self.open()  # as add(): stored states load first, or they would replace this one
        state = self._states.get(trial_id, TrialState())
        self._set_state(trial_id, TrialState(state.status, path))

    def end_trial(
        self,
        trial_id: str,
        *,
        error: bool,
        checkpoint: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """A trial ended (ran out its epochs, was stopped, or failed for good).

        ``config`` is the trial's config (Tune's ``trial.config``): the trial
        table's ``config.*`` of a trial that reported no epoch (e.g. it failed
        building its model), which otherwise come from its epoch rows.

        Cheap: its rows and status reach disk at the next periodic flush, at
        :meth:`save_state` (Tune saving its experiment state) or at
        :meth:`close`, whichever comes first."""
        # As add(): what an earlier session stored loads first; opened later (at the
        # first flush) it would replace this trial's state with the stored one.
        self.open()
        if config is not None:
            self._configs[trial_id] = flatten_config(config)
            self._changed.add(trial_id)
            self._dirty = True
        self._set_state(trial_id, self.ended_state(trial_id, error=error, checkpoint=checkpoint))
        self._settle(trial_id)
        self.maybe_flush()

    def _settle(self, trial_id: str) -> None:
        """Keep an ended trial's summary, not its epoch rows (driver memory
        stays with the running trials)."""
        self._trial_row(trial_id)  # computes and caches the summary
        self._rows.pop(trial_id, None)
        self._settled.add(trial_id)

    def _stored_rows(self, trial_id: str) -> dict[int, dict[str, Any]]:
        """A settled trial's rows, read back from its parts and the buffer."""
        loc = self.location
        rows: dict[int, dict[str, Any]] = {}
        for part in self._parts:  # oldest first: a later row replaces an earlier one
            path = f"{loc.epochs}/{part}"
            try:
                mine = [("trial_id", "==", trial_id)]
                table = pq.read_table(path, filesystem=loc.fs, filters=mine)
            except (OSError, pa.ArrowException) as exc:
                log.warning(READ_BACK_FAILED, loc.display(path), trial_id, exc)
                continue
            for row in table.to_pylist():
                rows[int(row["iteration"])] = row
        for row in self._pending:
            if row["trial_id"] == trial_id:
                rows[row["iteration"]] = row
        return rows

    def _set_state(self, trial_id: str, state: TrialState) -> None:
        if self._states.get(trial_id) != state:
            self._states[trial_id] = state
            self._changed.add(trial_id)
            self._states_changed = True
            self._dirty = True

    def ended_state(
        self, trial_id: str, *, error: bool, checkpoint: str | None = None
    ) -> TrialState:
        """The state of a trial that ended now, from the rows stored for it."""
        if trial_id in self._rows:
            iterations = max(self._rows[trial_id], default=0)
        else:
            iterations = int(self._summaries.get(trial_id, {}).get("iterations", 0))
        status = ERROR if error else trial_status(iterations, self.max_t, error=False)
        old = self._states.get(trial_id, TrialState())
        return TrialState(status, checkpoint or old.checkpoint)

    def unfinished_state(
        self, trial_id: str, *, checkpoint: str | None = None
    ) -> TrialState | None:
        """The state of a trial a run left unfinished (interrupted: a resume
        continues it): ``running``, with its newest checkpoint; None for a
        trial this store has never seen (queued, never started: it gets no
        row until it reports or ends)."""
        old = self._states.get(trial_id)
        if old is None and trial_id not in self._rows and trial_id not in self._settled:
            return None
        checkpoint = checkpoint or (old.checkpoint if old is not None else None)
        return TrialState(RUNNING, checkpoint)

    # -- writing -----------------------------------------------------------------

    def maybe_flush(self) -> None:
        """Flush if :attr:`flush_s` has passed since the last flush."""
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush(trials=None)

    def save_state(self) -> None:
        """Tune is saving its experiment state: write every buffered row, and
        the trial table if a status or checkpoint changed since it was last
        written (else at most every :data:`TRIALS_EVERY_S`). After this, a
        killed driver loses no row, status or checkpoint path that Tune's
        snapshot holds."""
        self.flush(trials=True if self._states_changed else None)

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
        """Rewrite ``trials.parquet`` from every row and state known.

        Only the rows of trials that changed since the last write are built
        from Python; the others are the Arrow rows written last time."""
        loc = self.location
        table = self._trial_table()
        run_s = self._run_before + time.monotonic() - self._started
        metadata = {
            META_VERSION: str(SCHEMA_VERSION).encode(),
            META_KIND: KIND_TRIALS.encode(),
            META_EXPERIMENT: self.experiment.encode(),
            META_RUN_S: f"{run_s:.3f}".encode(),
        }
        loc.write_table(loc.trials, table.replace_schema_metadata(metadata))
        self._table = table
        self._changed = set()
        self._states_changed = False
        self._dirty = False
        self._last_trials = time.monotonic()

    def _trial_table(self) -> pa.Table:
        """The trial table now: the last one written with the changed rows replaced."""
        every = set(self._rows) | set(self._states) | self._settled
        if self._table is not None:
            changed = sorted(self._changed & every)
            fresh = rows_to_table(
                [self._trial_row(tid) for tid in changed],
                kind=KIND_TRIALS,
                experiment=self.experiment,
                fixed=FIXED_TRIAL_COLUMNS,
            )
            merged = replace_rows(self._table, fresh)
            if merged is not None:
                return merged
        full = rows_to_table(
            [self._trial_row(tid) for tid in sorted(every)],
            kind=KIND_TRIALS,
            experiment=self.experiment,
            fixed=FIXED_TRIAL_COLUMNS,
        )
        return full.replace_schema_metadata(None)

    def _trial_row(self, tid: str) -> dict[str, Any]:
        summary = self._summaries.get(tid)
        if summary is None:
            by_iter = self._rows.get(tid, {})
            summary = summarize_rows([by_iter[i] for i in sorted(by_iter)])
            self._summaries[tid] = summary
        state = self._states.get(tid, TrialState())
        given = self._configs.get(tid, {})
        if given and any(name.startswith(CONFIG_PREFIX) for name in summary):
            given = {}  # the rows' config: what the trial ran with (PBT changes it)
        return {
            "experiment": self.experiment,
            "trial_id": tid,
            "status": state.status,
            "checkpoint": state.checkpoint,
            **given,
            **summary,
        }

    def compact(self) -> None:
        """Merge every part this writer knows into one (latest row per epoch,
        sorted by trial and epoch), then delete the merged parts. Files it did
        not read are left alone. Merged by Arrow from the stored parts, so it
        costs no Python per row."""
        loc = self.location
        if self._pending or len(self._parts) < 2:
            return  # a failed write is pending: merge after it lands
        try:
            tables = []
            for part in self._parts:
                table = pq.read_table(f"{loc.epochs}/{part}", filesystem=loc.fs)
                check_part(loc.display(f"{loc.epochs}/{part}"), table.schema)
                tables.append(table)
        except (OSError, pa.ArrowException, DataError) as exc:
            log.warning(COMPACT_FAILED, loc.display(loc.epochs), exc)
            return
        merged_table = latest_rows(concat_parts(tables)).replace_schema_metadata(
            {
                META_VERSION: str(SCHEMA_VERSION).encode(),
                META_KIND: KIND_EPOCHS.encode(),
                META_EXPERIMENT: self.experiment.encode(),
            }
        )
        name = self._part_name()
        try:
            loc.write_table(f"{loc.epochs}/{name}", merged_table)
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


def current_rows(rows: Mapping[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """One trial's rows (epoch -> its latest row) in epoch order, less those a restore
    abandoned: a row written before the row of an earlier epoch (the store's readers'
    rule, :func:`~regtune.platform.results.read.abandoned_rows`)."""
    out: dict[int, dict[str, Any]] = {}
    newest = -math.inf
    for iteration in sorted(rows):
        row = rows[iteration]
        stamp = row.get("timestamp")
        if isinstance(stamp, (int, float)) and not math.isnan(stamp):
            if stamp < newest:
                continue
            newest = stamp
        out[iteration] = row
    return out


def _part_ns(name: str) -> int:
    try:
        return int(name[len(PART_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return 0


def latest_rows(epochs: pa.Table) -> pa.Table:
    """One row per ``(trial_id, iteration)``: the last one in ``epochs``
    (parts concatenated oldest first), sorted by trial and iteration."""
    index = "__regtune_row"
    numbered = epochs.append_column(index, pa.array(range(len(epochs)), type=pa.int64()))
    last = numbered.group_by(["trial_id", "iteration"], use_threads=False).aggregate(
        [(index, "max")]
    )
    kept = epochs.take(last[f"{index}_max"])
    return kept.sort_by([("trial_id", "ascending"), ("iteration", "ascending")])


def replace_rows(old: pa.Table, fresh: pa.Table) -> pa.Table | None:
    """``old`` (a trial table sorted by trial_id) with the rows of the trials
    in ``fresh`` replaced or added, sorted by trial_id, typed as
    :func:`~regtune.platform.results.schema.rows_to_table` types all the
    rows at once; None when a column's kept and fresh values have different
    types (a number in one, text in the other): the caller rebuilds it whole.

    Both tables come from ``rows_to_table``, whose column types depend only
    on the values present (not null), so a column null on one side takes
    the other side's type, and a column left with no value at all is
    dropped, as a rebuild (whose rows would not have that key) drops it.
    """
    if len(fresh) == 0:
        return old
    kept = old.filter(pc.invert(pc.is_in(old["trial_id"], value_set=fresh["trial_id"])))
    fixed = [name for name, _ in FIXED_TRIAL_COLUMNS]
    names = list(old.column_names) + [n for n in fresh.column_names if n not in old.column_names]
    configs = sorted(n for n in names if n.startswith(CONFIG_PREFIX))
    rest = [n for n in names if n not in fixed and not n.startswith(CONFIG_PREFIX)]
    columns: dict[str, pa.ChunkedArray] = {}
    for name in fixed + configs + rest:
        a = kept[name] if name in kept.column_names else None
        b = fresh[name] if name in fresh.column_names else None
        a_empty = a is None or a.null_count == len(a)
        b_empty = b is None or b.null_count == len(b)
        if a_empty and b_empty and name not in fixed:
            if b is None:
                continue  # no row has it any more
            type_ = b.type
        elif a_empty:
            assert b is not None
            type_ = b.type
        elif b_empty:
            assert a is not None
            type_ = a.type
        else:
            assert a is not None and b is not None
            if a.type != b.type:
                return None
            type_ = a.type
        left = pa.nulls(len(kept), type_) if a is None or a_empty else a
        right = pa.nulls(len(fresh), type_) if b is None or b_empty else b
        columns[name] = pa.chunked_array([*_chunks(left), *_chunks(right)], type=type_)
    return pa.table(columns).combine_chunks().sort_by("trial_id")


def _chunks(values: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(values.chunks) if isinstance(values, pa.ChunkedArray) else [values]

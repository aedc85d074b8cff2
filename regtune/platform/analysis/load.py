"""Read an experiment for analysis: the adapter between the results store and the analysis.

Two ways in, same result shape (:class:`Experiment`):

- everything (``columns=None``): the results store's own readers
  (:func:`~regtune.platform.results.read_epochs`, ``read_trials``,
  ``read_spec``), for reports on sweeps of any ordinary size;
- a column projection (``columns=[...]``): only those columns of each part
  are read (Parquet is columnar, so the rest is never decoded), ``trial_id``
  as a dictionary (categorical), with the same skipping rules as the store's
  reader (foreign or unreadable parts are named in :attr:`Experiment.notes`
  and left in place; another schema version is an error) and the same
  "latest row wins" deduplication. This is what keeps 10^7 rows within a
  few hundred MB.

Files skipped by the store (its :class:`~regtune.platform.results.ResultsWarning`)
and trials still running are surfaced in ``notes``, never hidden.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from regtune.errors import DataError, SpecError
from regtune.platform.analysis.curves import Segments, segment_values, segments
from regtune.platform.results import ResultsWarning, read_epochs, read_spec
from regtune.platform.results.degenerate import GROUP_GAPS, constant_predictors
from regtune.platform.results.files import ResultsLocation, locate
from regtune.platform.results.read import (
    SKIPPED,
    StoredTrials,
    abandoned_rows,
    check_part,
    concat_parts,
    incomplete_message,
    incomplete_trials,
    mark_unknown,
    read_store,
    scan_epoch_parts,
    skipped_parts,
    stored_trials,
    trials_frame,
)
from regtune.platform.results.trials import ERROR, RUNNING, UNKNOWN, TrialState
from regtune.search_spaces import SweepSpec

__all__ = [
    "MSG_ALL_SKIPPED",
    "MSG_EMPTY",
    "MSG_ENDED_EMPTY",
    "MSG_INCOMPLETE",
    "MSG_NO_SPEC",
    "MSG_RUNNING",
    "MSG_UNKNOWN_STATUS",
    "RUNNING_NOTE",
    "UNKNOWN",
    "Experiment",
    "StoredSpec",
    "final_values",
    "load_experiment",
    "row_groups_holding",
    "stored_columns",
    "stored_spec",
]

MSG_EMPTY = (
    "{exp}: the experiment has no reported epochs yet; nothing to analyze. Wait for its first "
    "trial to report, or check the path"
)
#: No epoch rows, and the trial table says every trial ended having reported none:
#: waiting will not help.
MSG_ENDED_EMPTY = (
    "{exp}: every trial ended without reporting an epoch ({n} trials: {states}); nothing to "
    "analyze{errors}"
)
#: MSG_ENDED_EMPTY's ending when a trial failed.
ENDED_ERRORS = (
    ". Each failed trial's error is in its folder's error.txt (regtune sweep's summary named it)"
)
MSG_ALL_SKIPPED = (
    "{exp}: no epoch part could be read, so there is nothing to analyze: {skipped}. Replace or "
    "remove the unreadable part(s) (e.g. restore them from a copy), or re-run the experiment"
)
MSG_NO_SPEC = "{exp}: no usable stored spec ({reason}); swept parameters are inferred from the data"
#: Said of an experiment with trials stored ``running``: a sweep still going, or one
#: interrupted (Ctrl+C, a killed driver), which nobody runs until it is resumed.
RUNNING_NOTE = (
    "not finished ({running} of {total} trials running or interrupted; "
    "`regtune sweep SPEC --name {name} --resume` continues interrupted ones): "
    "analyzed as far as it got"
)
MSG_RUNNING = "{exp}: " + RUNNING_NOTE
MSG_UNKNOWN_STATUS = (
    "{exp}: the trial table could not be read, so every trial's status is unknown "
    "('{unknown}'): whether the sweep has ended, and which of its {total} trials finished, "
    "failed or were stopped, cannot be told; analyzed from the epochs that could be read"
)
#: Trials that lost epochs with a skipped part (:data:`regtune.platform.results.read.INCOMPLETE`)
#: and what the analysis does with them.
MSG_INCOMPLETE = (
    "{message}; the analysis leaves them off the best trial, the front, the paths, the heat "
    "map and the diagnosis"
)
#: The store's own words for a part it skipped (:data:`regtune.platform.results.read.SKIPPED`).
MSG_SKIPPED = SKIPPED

#: In every skipped-part note: the words between the path and the reason.
_SKIPPED_MARK = SKIPPED.removeprefix("{path}").partition("{reason}")[0]

T = TypeVar("T")

_KEYS = ("trial_id", "iteration")
#: Read with every projection: it tells the rows a restore abandoned
#: (:func:`~regtune.platform.results.read.abandoned_rows`); dropped after unless asked for.
_STAMP = "timestamp"


@dataclass(frozen=True)
class StoredSpec:
    """The stored spec as the analysis reads it (:func:`stored_spec`): ``spec``, or ``None``
    when there is none usable; ``notes``: its problems in the analysis' words (the keys it
    was read without; why there is no spec)."""

    spec: SweepSpec | None
    notes: tuple[str, ...] = ()


def stored_spec(exp: str) -> StoredSpec:
    """Read experiment ``exp``'s stored spec once, for :func:`load_experiment` and for the
    caller that needs it before (the columns to read depend on it): a missing or unusable
    spec and the keys a lenient read left out are notes, not errors."""
    notes: list[str] = []
    spec: SweepSpec | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultsWarning)
        try:
            spec = read_spec(exp)
        except DataError as exc:
            notes.append(MSG_NO_SPEC.format(exp=exp, reason=exc))
    _record(caught, notes)
    return StoredSpec(spec=spec, notes=tuple(notes))


@dataclass
class Experiment:
    """One experiment as the analysis sees it.

    ``epochs``: the epochs table (contract columns; with a projection only the
    requested ones); ``trials``: ``trial_id``, ``status``, ``degenerate`` (and
    with a full read everything the store's trial table has), one row per trial
    the epochs or the stored trial table name (a trial that failed before its
    first epoch has a row here and none in ``epochs``); ``spec``: the
    stored SweepSpec, or ``None`` if there is none; ``notes``: what a reader
    must know (skipped files, still running, no spec).
    """

    name: str
    path: str
    epochs: pd.DataFrame
    trials: pd.DataFrame
    spec: SweepSpec | None
    notes: list[str] = field(default_factory=list)
    #: The epochs table's per-trial segments, when the reader computed them (reused by analysis).
    segments: Segments | None = None
    #: Trials that lost epochs with a skipped part: trial -> which epochs are missing.
    incomplete: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> int:
        """How many trials are still running."""
        if "status" not in self.trials.columns:
            return 0
        return int((self.trials["status"] == "running").sum())


def _record(caught: list[warnings.WarningMessage], notes: list[str]) -> None:
    for item in caught:
        if issubclass(item.category, ResultsWarning):
            notes.append(str(item.message))
        else:  # not ours to swallow
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _scan(
    exp: str, read: Callable[[str], T], notes: list[str], skipped: list[str] | None = None
) -> list[T]:
    """``read(path)`` of every epoch part the store would read (the store's own walk,
    :func:`~regtune.platform.results.read.scan_epoch_parts`: a part merged away
    mid-read makes it start over, so no row is lost); skipped parts are noted (and
    their paths appended to ``skipped`` when given)."""
    loc = locate(exp)
    if not loc.exists(loc.root):
        # The store's reader words this error; let it.
        read_epochs(exp)

    def skip(path: str, reason: str) -> None:
        notes.append(MSG_SKIPPED.format(path=loc.display(path), reason=reason))
        if skipped is not None:
            skipped.append(loc.display(path))

    return [value for _name, value in scan_epoch_parts(loc, read, skip)]


def _checked_schema(exp: str, path: str) -> pa.Schema:
    """A part's schema, refused (:class:`ForeignFileError`) unless the store would read it."""
    loc = locate(exp)
    shown = loc.display(path)
    schema = pq.read_schema(path, filesystem=loc.fs)
    check_part(shown, schema)
    return schema


def _readable_parts(exp: str, notes: list[str]) -> list[tuple[str, pa.Schema]]:
    """``(path, schema)`` of every epoch part the store would read; the others are noted."""
    return _scan(exp, lambda path: (path, _checked_schema(exp, path)), notes)


def stored_columns(exp: str) -> tuple[list[str], list[str]]:
    """Every column name stored in the experiment's readable epoch parts (in first-seen
    order), and notes on the parts skipped; reads only the Parquet footers."""
    notes: list[str] = []
    names: dict[str, None] = {}
    for _path, schema in _readable_parts(exp, notes):
        names.update(dict.fromkeys(schema.names))
    return list(names), notes


def _read_projected(
    exp: str, columns: Sequence[str], notes: list[str], skipped: list[str]
) -> pd.DataFrame:
    """The requested epoch columns of every readable part, latest row per (trial, iteration).

    Columns no part holds are left out (the caller checks names against
    :func:`stored_columns`)."""
    loc = locate(exp)
    wanted = list(dict.fromkeys([*_KEYS, *columns, _STAMP]))

    def read(path: str) -> pa.Table:
        schema = _checked_schema(exp, path)
        present = [c for c in wanted if c in schema.names]
        table = pq.read_table(
            path, columns=present, filesystem=loc.fs, read_dictionary=["trial_id"]
        )
        # Decompression buffers of this part go back before the next part is read.
        pa.default_memory_pool().release_unused()
        return table

    tables = _scan(exp, read, notes, skipped)
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in _KEYS})
    holder = [concat_parts(tables)]
    del tables
    return _latest_rows(_to_pandas(holder), keep_stamp=_STAMP in columns)


def row_groups_holding(part: pq.ParquetFile, trial_id: str) -> list[int]:
    """Row groups whose ``trial_id`` statistics (min/max) admit ``trial_id`` (all of
    them where a group has no statistics): the others are never decoded."""
    index = part.schema_arrow.get_field_index("trial_id")
    groups = []
    for i in range(part.num_row_groups):
        stats = part.metadata.row_group(i).column(index).statistics
        if stats is None or not stats.has_min_max or stats.min <= trial_id <= stats.max:
            groups.append(i)
    return groups


def final_values(
    exp: str, trial_id: str, columns: Sequence[str], notes: list[str] | None = None
) -> dict[str, float]:
    """One trial's last non-null value of each of ``columns`` (its final report: the
    reliability bins and interval ends a summary does not carry).

    Reads only those columns, only of the row groups whose ``trial_id``
    statistics admit the trial, and keeps that trial's rows, with the same
    skipping rules and "latest row wins" as :func:`load_experiment`; a column
    the store holds but the trial never reported a value for is NaN (e.g. a
    trial stopped before its final report).
    Skipped parts are added to ``notes`` (once).
    """
    loc = locate(exp)
    found: list[str] = []
    wanted = list(dict.fromkeys([*_KEYS, *columns, _STAMP]))

    def read(path: str) -> pa.Table | None:
        present = [c for c in wanted if c in _checked_schema(exp, path).names]
        if not set(present) - {*_KEYS, _STAMP}:
            return None
        with loc.fs.open_input_file(path) as handle:
            part = pq.ParquetFile(handle)
            groups = row_groups_holding(part, trial_id)
            if not groups:
                return None
            table = part.read_row_groups(groups, columns=present)
            return table.filter(pc.equal(table["trial_id"], trial_id))

    tables = [t for t in _scan(exp, read, found) if t is not None]
    if notes is not None:
        notes.extend(n for n in dict.fromkeys(found) if n not in notes)
    if not tables:
        return {}
    rows = _latest_rows(concat_parts(tables).to_pandas())
    rows = rows.sort_values("iteration")
    out: dict[str, float] = {}
    for column in columns:
        if column in rows.columns:
            values = pd.to_numeric(rows[column], errors="coerce").dropna()
            out[column] = float(values.iloc[-1]) if len(values) else float("nan")
    return out


def _to_pandas(holder: list[pa.Table]) -> pd.DataFrame:
    """Convert the one table in ``holder`` column by column, freeing each Arrow column
    once converted, so the peak is the table plus one column rather than two copies.
    The table is passed in a list the function empties, so no caller keeps it alive."""
    table = holder.pop()
    data: dict[str, pd.Series] = {}
    pool = pa.default_memory_pool()
    for name in list(table.column_names):
        column = table.column(name)
        table = table.drop_columns([name])
        data[name] = column.to_pandas()
        del column
        pool.release_unused()
    return pd.DataFrame(data, copy=False)


def _latest_rows(frame: pd.DataFrame, *, keep_stamp: bool = True) -> pd.DataFrame:
    """Keep the last row per (trial_id, iteration), rows sorted by trial then iteration,
    less the rows a restore abandoned (the store's rule,
    :func:`~regtune.platform.results.read.abandoned_rows`, when ``timestamp`` was read;
    that column is then dropped unless ``keep_stamp``).

    Parts come oldest first, so "last" is the latest write. Already sorted and
    unique input (the usual case) is returned as is, after O(n) checks.
    """
    frame = _unique_rows(frame)
    if _STAMP not in frame.columns:
        return frame
    codes = frame["trial_id"].cat.codes.to_numpy(dtype=np.int64)
    abandoned = abandoned_rows(codes, frame[_STAMP].to_numpy(dtype=np.float64))
    if abandoned.any():
        frame = frame[~abandoned].reset_index(drop=True)
    return frame if keep_stamp else frame.drop(columns=[_STAMP])


def _unique_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The last row per (trial_id, iteration), sorted (``trial_id`` made categorical)."""
    trial = frame["trial_id"]
    if not isinstance(trial.dtype, pd.CategoricalDtype):
        trial = trial.astype("category")
        frame = frame.assign(trial_id=trial)
    codes = trial.cat.codes.to_numpy(dtype=np.int64)
    iteration = frame["iteration"].to_numpy(dtype=np.int64)
    width = int(iteration.max()) + 1 if iteration.size else 1
    key = codes * width + iteration
    if key.size < 2 or bool(np.all(key[1:] > key[:-1])):
        return frame
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    last = np.ones(ordered.size, dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    return frame.iloc[order[last]].reset_index(drop=True)


def _trial_states(
    epochs: pd.DataFrame, seg: Segments, states: Mapping[str, TrialState]
) -> pd.DataFrame:
    """Status (stored in ``states``, else ``running``) and degenerate (the store's rule on
    the last epoch: every gap in ``GROUP_GAPS`` reported and exactly 0), without reading the
    trial rows again; then the trials ``states`` names that have no epoch row (status as
    stored, not degenerate), as the full read's trial table has them."""
    present = [str(t) for t in seg.trial_ids]
    status = [states[t].status if t in states else "running" for t in present]
    degenerate = np.zeros(seg.n_trials, dtype=bool)
    if all(g in epochs.columns for g in GROUP_GAPS):
        last = [segment_values(epochs, gap, seg)[seg.last] for gap in GROUP_GAPS]
        degenerate = constant_predictors(np.column_stack(last))
    # Trials the stored table names without a row read (failed before their first epoch,
    # not started; or every row in a skipped part): listed, as the full read lists them.
    seen = set(present)
    absent = sorted(t for t in states if t not in seen)
    return pd.DataFrame(
        {
            "trial_id": present + absent,
            "status": status + [states[t].status for t in absent],
            "degenerate": np.concatenate([degenerate, np.zeros(len(absent), dtype=bool)]),
        }
    )


def _spec_trials_quietly(exp: str, given: StoredSpec | None) -> float:
    """How many trials the stored spec starts (``given``: the spec already read); infinity
    when it cannot be read (then whether every trial ended cannot be told)."""
    if given is not None:
        return given.spec.n_trials if given.spec is not None else math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultsWarning)
        try:
            return read_spec(exp).n_trials
        except (DataError, SpecError):
            return math.inf


def _stored_states_quietly(
    loc: ResultsLocation,
) -> tuple[dict[str, TrialState], dict[str, int]]:
    """The stored trial statuses and epochs reported per trial, or none when the
    table is missing or unusable (its own warning is for the readers that use it,
    not for this check)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultsWarning)
        try:
            stored = stored_trials(loc)
        except DataError:
            return {}, {}
    return stored.states, stored.iterations


def load_experiment(
    exp: str, columns: Sequence[str] | None = None, *, spec: StoredSpec | None = None
) -> Experiment:
    """Read experiment ``exp`` (a path or URI) for analysis.

    ``columns``: the metric and ``config.*`` columns to read (``trial_id`` and
    ``iteration`` always come); ``None`` reads everything through the
    results store's readers. ``spec``: the stored spec when the caller has read it
    (:func:`stored_spec`), so it is not read again; its notes are the experiment's
    as they would be had it been read here.

    Raises:
        DataError: no such experiment, no reported epoch yet, no readable epoch
            part (the skipped ones named), or a part of
            another schema version (the store's messages name the path).
    """
    notes: list[str] = []
    skipped: list[str] = []
    parts: list[str] = []
    incomplete: dict[str, str] = {}
    stored = StoredTrials()
    name = str(exp).rstrip("/").rsplit("/", 1)[-1]
    loc = locate(exp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultsWarning)
        if columns is None:
            read = read_store(loc, exp, "epoch rows", trials_without_epochs=False)
            epochs, stored, parts, incomplete = read.epochs, read.stored, read.parts, read.lost
            trials = pd.DataFrame()
            if not epochs.empty:
                trials = trials_frame(loc, epochs, stored=stored)
        else:
            epochs = _read_projected(exp, columns, notes, skipped)
            trials = pd.DataFrame()
    _record(caught, notes)
    # A full read warns per skipped file twice (epochs, then trials): say it once.
    notes = list(dict.fromkeys(notes))
    if epochs.empty:
        # Parts that exist but were skipped (unreadable, foreign): waiting will not help.
        unread = [note for note in notes if _SKIPPED_MARK in note]
        if unread:
            raise DataError(MSG_ALL_SKIPPED.format(exp=exp, skipped="; ".join(unread)))
        ended, iterations = _stored_states_quietly(loc)
        if (
            ended
            and all(s.status != RUNNING for s in ended.values())
            and not any(iterations.values())
            # A trial enters the table at its first epoch or its end: the sweep is over
            # only when every trial its spec starts is there.
            and len(ended) >= _spec_trials_quietly(exp, spec)
        ):
            shown = ", ".join(f"{tid} {s.status}" for tid, s in sorted(ended.items())[:5])
            more = f", ... ({len(ended) - 5} more)" if len(ended) > 5 else ""
            failed = any(s.status == ERROR for s in ended.values())
            raise DataError(
                MSG_ENDED_EMPTY.format(
                    exp=exp,
                    n=len(ended),
                    states=shown + more,
                    errors=ENDED_ERRORS if failed else "",
                )
            )
        raise DataError(MSG_EMPTY.format(exp=exp))
    seg: Segments | None = None
    if columns is not None:
        seg = segments(epochs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResultsWarning)
            stored = stored_trials(loc)
            # The store's rule, as trials_frame applies it to the full read.
            trials = mark_unknown(_trial_states(epochs, seg, stored.states), stored)
        _record(caught, notes)
        parts = skipped_parts(skipped)
        incomplete = incomplete_trials(epochs, stored.iterations) if parts else {}
    notes = list(dict.fromkeys(notes))
    if incomplete:
        message = incomplete_message(parts, incomplete)
        notes.append(MSG_INCOMPLETE.format(message=message))
    if spec is None:
        spec = stored_spec(exp)
    notes.extend(spec.notes)
    if "experiment" in epochs.columns and len(epochs):
        name = str(epochs["experiment"].iloc[0])
    result = Experiment(
        name=name,
        path=str(exp),
        epochs=epochs,
        trials=trials,
        spec=spec.spec,
        segments=seg,
        incomplete=incomplete,
    )
    if stored.unusable is not None:
        result.notes.append(MSG_UNKNOWN_STATUS.format(exp=exp, total=len(trials), unknown=UNKNOWN))
    elif result.running:
        result.notes.append(
            MSG_RUNNING.format(exp=exp, running=result.running, total=len(trials), name=name)
        )
    result.notes[:0] = notes
    return result

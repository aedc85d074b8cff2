"""Read a sweep's stored results back as pandas DataFrames (no Ray needed).

Works on a local experiment directory, a copy of one, or a URI
(``s3://bucket/runs/name``), also while the sweep is still running: a part
is visible only once written whole, and a re-reported epoch (after a
restore) replaces the earlier row.

Files in the results folder that regtune did not write (a foreign or
corrupted Parquet file, anything not named ``part-*.parquet``) are skipped
with a :class:`ResultsWarning` naming them, and never deleted. A part of
another schema version stops the read with a :class:`~regtune.errors.DataError`.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from regtune.errors import DataError, SpecError
from regtune.platform.results.files import (
    PART_PREFIX,
    PART_SUFFIX,
    ResultsLocation,
    locate,
)
from regtune.platform.results.schema import (
    EPOCH_KEY_COLUMNS,
    FIXED_EPOCH_COLUMNS,
    KIND_EPOCHS,
    KIND_TRIALS,
    META_RUN_S,
    ForeignFileError,
    check_metadata,
    config_columns,
    metric_columns,
)
from regtune.platform.results.trials import (
    RUNNING,
    TrialState,
    trial_frame,
)

if TYPE_CHECKING:
    from regtune.search_spaces import SweepSpec

__all__ = [
    "ResultsWarning",
    "StoredTrials",
    "check_part",
    "concat_parts",
    "load_trial_states",
    "read_epochs",
    "read_spec",
    "read_trials",
    "scan_epoch_parts",
    "trials_frame",
]

#: Times a read starts over when a part vanished under it (a compaction).
LIST_RETRIES = 3

NO_RESULTS = (
    "{path}: no results folder; expected the {what} of a regtune sweep. Is {exp!r} an "
    "experiment directory (<storage>/<name>) of a sweep that has started?"
)
SKIPPED = "{path}: skipped ({reason}); the file was left in place"
NOT_A_PART = "not a results part: parts are named part-<...>.parquet"
UNREADABLE = "not readable as Parquet: {error}"
NO_SPEC = "{path}: no stored sweep spec; the sweep that wrote {exp!r} did not record one"
BAD_SPEC = "{path}: the stored sweep spec cannot be used ({error})"
SPEC_READ_WITHOUT = (
    "{path}: the stored sweep spec does not validate under this regtune version; read "
    "without the keys named here: {problems}"
)
#: Times a stored spec is trimmed and validated again (each pass may reveal new problems).
LENIENT_PASSES = 5
#: Top-level keys a stored spec is never read without: trials would be ranked wrongly.
KEPT_SPEC_KEYS = frozenset({"objectives", "<root>"})
MISSING_COLUMNS = "a results part without the columns {missing}"
TRIALS_UNREACHABLE = (
    "{path}: the trial table could not be read ({error}); nothing was changed. Check the "
    "storage and read again"
)


class ResultsWarning(UserWarning):
    """A file in a results folder was skipped (it is named in the message)."""


def _require(loc: ResultsLocation, exp: str, what: str) -> None:
    if not loc.exists(loc.root):
        raise DataError(NO_RESULTS.format(path=loc.display(loc.root), what=what, exp=exp))


def _skip(loc: ResultsLocation, path: str, reason: str) -> None:
    warnings.warn(SKIPPED.format(path=loc.display(path), reason=reason), ResultsWarning, 3)


T = TypeVar("T")


def scan_epoch_parts(
    loc: ResultsLocation,
    read: Callable[[str], T],
    skip: Callable[[str, str], None],
) -> list[tuple[str, T]]:
    """``(name, read(path))`` for every epoch part, oldest first: the one way
    the store and the analysis walk the parts.

    A file not named ``part-*.parquet`` is passed to ``skip(path, reason)``,
    as is a part ``read`` fails on with a :class:`ForeignFileError` or an
    Arrow/OS error (the reason says which). A part that vanished between the
    listing and the read (a running sweep merged it into a new part) makes
    the whole walk start over from a new listing, so no row is lost, up to
    :data:`LIST_RETRIES` times; only the last walk's skips are reported.

    Raises:
        FileNotFoundError: parts kept vanishing for :data:`LIST_RETRIES` walks.
        DataError: what ``read`` raises besides the errors above (e.g. another
            schema version).
    """
    for attempt in range(LIST_RETRIES):
        skipped: list[tuple[str, str]] = []
        try:
            out = _scan_once(loc, read, skipped)
        except FileNotFoundError:  # compacted away between listing and reading
            if attempt == LIST_RETRIES - 1:
                raise
            continue
        for path, reason in skipped:
            skip(path, reason)
        return out
    return []  # pragma: no cover


def _scan_once(
    loc: ResultsLocation, read: Callable[[str], T], skipped: list[tuple[str, str]]
) -> list[tuple[str, T]]:
    out: list[tuple[str, T]] = []
    for name in loc.list_files(loc.epochs):
        path = f"{loc.epochs}/{name}"
        if not (name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX)):
            skipped.append((path, NOT_A_PART))
            continue
        try:
            out.append((name, read(path)))
        except FileNotFoundError:
            raise
        except ForeignFileError as exc:
            skipped.append((path, str(exc).split(": ", 1)[-1]))
        except (pa.ArrowException, OSError) as exc:
            skipped.append((path, UNREADABLE.format(error=exc)))
    return out


def check_part(path: str, schema: pa.Schema) -> None:
    """Refuse a part the store would not read: the store's and the analysis' one rule.

    Raises:
        ForeignFileError: not a regtune epoch part, or one without the fixed
            epoch columns (``path`` is named; the part is then skipped).
        DataError: another schema version.
    """
    check_metadata(path, schema.metadata, kind=KIND_EPOCHS)
    missing = sorted({name for name, _ in FIXED_EPOCH_COLUMNS} - set(schema.names))
    if missing:
        raise ForeignFileError(f"{path}: {MISSING_COLUMNS.format(missing=', '.join(missing))}")


def epoch_parts(loc: ResultsLocation) -> list[tuple[str, pa.Table]]:
    """Every readable regtune epoch part, oldest first, as ``(name, table)``.

    Raises:
        DataError: a part of another schema version.
    """

    def read(path: str) -> pa.Table:
        table = pq.read_table(path, filesystem=loc.fs)
        check_part(loc.display(path), table.schema)
        return table

    return scan_epoch_parts(loc, read, lambda path, reason: _skip(loc, path, reason))


def concat_parts(tables: list[pa.Table]) -> pa.Table:
    """Parts (oldest first) as one table: the one way the store and the analysis merge them.

    Types are promoted as Arrow does (an int column meeting a float one
    becomes float). A column that changed type between parts beyond that (a
    config value that was a number in one part and text in another) takes
    the one type of its non-null values when only all-null parts disagree
    (e.g. a value unset, stored as a null text column, then set to a
    number); otherwise it is read as text (numbers and booleans as JSON).
    """
    if not tables:
        raise ValueError("concat_parts needs at least one table")
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    types: dict[str, set[pa.DataType]] = {}
    first: dict[str, pa.DataType] = {}
    for table in tables:
        for column in table.schema:
            first.setdefault(column.name, column.type)
            if table[column.name].null_count < len(table):
                types.setdefault(column.name, set()).add(column.type)
    unified = []
    for table in tables:
        for i, column in enumerate(table.schema):
            kinds = types.get(column.name, set())
            mixed = len(kinds) > 1 and not _promotable(kinds)
            if table[column.name].null_count == len(table):
                if len(kinds) == 1:
                    target = next(iter(kinds))
                elif kinds:
                    target = pa.string() if mixed else pa.float64()
                else:
                    target = first[column.name]
                table = table.set_column(i, column.name, pa.nulls(len(table), type=target))
            elif mixed:
                table = table.set_column(i, column.name, _as_text(table[column.name]))
        unified.append(table)
    return pa.concat_tables(unified, promote_options="permissive")


def _promotable(kinds: set[pa.DataType]) -> bool:
    """Whether Arrow's permissive promotion merges these types (numbers of any width)."""
    return all(pa.types.is_integer(k) or pa.types.is_floating(k) for k in kinds)


def _as_text(column: pa.ChunkedArray) -> pa.Array:
    return pa.array(
        [
            None if value is None else value if isinstance(value, str) else json.dumps(value)
            for value in column.to_pylist()
        ],
        type=pa.string(),
    )


def _frame(tables: list[pa.Table]) -> pd.DataFrame:
    return concat_parts(tables).to_pandas()


def epochs_frame(tables: list[pa.Table]) -> pd.DataFrame:
    """Concatenate parts (oldest first), keep the latest row per
    ``(trial_id, iteration)``, order columns and rows."""
    if not tables:
        return pd.DataFrame(
            {n: pd.Series(dtype=t.to_pandas_dtype()) for n, t in FIXED_EPOCH_COLUMNS}
        )
    frame = _frame(tables)
    frame = frame.drop_duplicates(subset=list(EPOCH_KEY_COLUMNS), keep="last")
    frame = frame.sort_values(list(EPOCH_KEY_COLUMNS), kind="stable", ignore_index=True)
    columns = [n for n, _ in FIXED_EPOCH_COLUMNS]
    columns += config_columns(frame.columns) + metric_columns(frame.columns)
    frame = frame[columns]
    frame["iteration"] = frame["iteration"].astype("int64")
    return frame


def read_epochs(exp: str) -> pd.DataFrame:
    """One row per reported epoch of experiment ``exp`` (a path or URI).

    Columns: ``experiment``, ``trial_id``, ``iteration`` (int64, 1-based),
    ``time_total_s``, ``timestamp`` (unix s), then ``config.<path>`` for
    every config value, then every metric (float64; null where an epoch did
    not report it). One row per ``(trial_id, iteration)``: the latest
    written wins. Sorted by trial, then iteration.

    Raises:
        DataError: ``exp`` has no results folder, or a part has another
            schema version.
    """
    loc = locate(exp)
    _require(loc, exp, "epoch rows")
    return epochs_frame([table for _, table in epoch_parts(loc)])


@dataclass(frozen=True)
class StoredTrials:
    """What the stored trial table says, as :func:`load_trial_states` found it.

    ``states``: status and checkpoint per trial; ``run_s``: seconds the sweep
    has run; ``unusable``: ``None``, or why a ``trials.parquet`` that exists
    cannot be used (not Parquet, not regtune's, truncated): then ``states`` is
    empty, and the file must not be overwritten, since it may hold the only
    record of statuses and checkpoints.
    """

    states: dict[str, TrialState] = field(default_factory=dict)
    run_s: float = 0.0
    unusable: str | None = None


def load_trial_states(loc: ResultsLocation) -> StoredTrials:
    """The stored trial table's statuses, checkpoints and run time.

    The file is read whole first, so a failure to *reach* it (permissions,
    a network error) is told apart from a file that is there but cannot be
    parsed: only the latter is reported as ``unusable``.

    Raises:
        OSError: the file exists but could not be read (propagated as is).
        DataError: a trial table of another schema version.
    """
    if not loc.exists(loc.trials):
        return StoredTrials()
    try:
        data = loc.read_bytes(loc.trials)
    except FileNotFoundError:  # removed between the check and the read
        return StoredTrials()
    try:
        # In memory: any error now is the bytes', not the storage's.
        table = pq.read_table(pa.BufferReader(data))
        check_metadata(loc.display(loc.trials), table.schema.metadata, kind=KIND_TRIALS)
    except ForeignFileError as exc:
        return StoredTrials(unusable=str(exc).split(": ", 1)[-1])
    except (pa.ArrowException, OSError) as exc:
        return StoredTrials(unusable=UNREADABLE.format(error=exc))
    states = {
        str(row["trial_id"]): TrialState(
            status=str(row.get("status") or RUNNING), checkpoint=row.get("checkpoint")
        )
        for row in table.select(
            [c for c in ("trial_id", "status", "checkpoint") if c in table.column_names]
        ).to_pylist()
    }
    run_s = float((table.schema.metadata or {}).get(META_RUN_S, b"0") or 0)
    return StoredTrials(states, run_s)


def stored_trial_states(loc: ResultsLocation) -> tuple[dict[str, TrialState], float]:
    """Status and checkpoint per trial from the stored trial table, and the
    seconds the sweep has run; ``({}, 0.0)`` when there is none, and also,
    with a :class:`ResultsWarning` naming it, when it cannot be used (readers
    then fall back to the epochs; the file is left in place).

    Raises:
        DataError: the table exists but could not be read (a storage error,
            named with the file: nothing is guessed from the epochs then), or
            has another schema version.
    """
    try:
        stored = load_trial_states(loc)
    except FileNotFoundError:
        return {}, 0.0
    except OSError as exc:
        raise DataError(TRIALS_UNREACHABLE.format(path=loc.display(loc.trials), error=exc)) from exc
    if stored.unusable is not None:
        _skip(loc, loc.trials, stored.unusable)
    return stored.states, stored.run_s


def read_trials(exp: str) -> pd.DataFrame:
    """One row per trial of experiment ``exp`` (a path or URI).

    Columns: ``experiment``, ``trial_id``, ``status`` (``finished``,
    ``stopped early``, ``error`` or ``running``), ``iterations`` (int64),
    ``checkpoint`` (path or null), ``degenerate`` (bool: a constant
    predictor, see :mod:`~regtune.platform.results.degenerate`), the last
    epoch's ``config.*``, then ``best.<metric>`` and ``last.<metric>``.

    Status and checkpoint come from the stored trial table; the rest is
    computed from :func:`read_epochs`'s rows, so the two agree even while
    the sweep runs. A trial with no stored status yet is ``running``.

    Raises:
        DataError: as :func:`read_epochs`.
    """
    loc = locate(exp)
    _require(loc, exp, "trial table")
    return trials_frame(loc, epochs_frame([table for _, table in epoch_parts(loc)]))


def trials_frame(
    loc: ResultsLocation,
    epochs: pd.DataFrame,
    *,
    states: Mapping[str, TrialState] | None = None,
    best: bool = True,
) -> pd.DataFrame:
    """:func:`read_trials`' table from epoch rows already read (:func:`read_epochs`'s)
    and the stored statuses, for a caller that needs both without reading twice.
    ``states``: the statuses when the caller has read them already
    (:func:`stored_trial_states`); ``best=False`` leaves out the ``best.*``
    columns (built column by column: see :func:`~regtune.platform.results.trials.trial_frame`).

    Raises:
        DataError: as :func:`stored_trial_states`.
    """
    if states is None:
        states, _ = stored_trial_states(loc)
    return trial_frame(epochs, states, experiment=_experiment_name(loc, epochs), best=best)


def _experiment_name(loc: ResultsLocation, epochs: pd.DataFrame) -> str:
    if not epochs.empty:
        return str(epochs["experiment"].iloc[0])
    return loc.root.rstrip("/").rsplit("/", 2)[-2]


def read_spec(exp: str) -> SweepSpec:
    """The :class:`~regtune.search_spaces.SweepSpec` the sweep ran.

    A stored spec is read leniently: one that no longer validates under this
    regtune version (a rule added since it ran, e.g. ``test_fraction`` refused
    for a dataset with an official test split, or a key since removed) is read
    without the keys the problems name, with a :class:`ResultsWarning` naming
    each of them, so an old experiment stays readable.

    Raises:
        DataError: no stored spec, it is not JSON, or it cannot be read even
            so (a problem with its objectives or the whole spec; the message
            names the file and the problems).
    """
    from regtune.search_spaces import load_spec

    loc = locate(exp)
    _require(loc, exp, "sweep spec")
    if not loc.exists(loc.spec):
        raise DataError(NO_SPEC.format(path=loc.display(loc.spec), exp=exp))
    try:
        raw = json.loads(loc.read_bytes(loc.spec))
        # The data may live only where the sweep ran: do not require it here.
        return load_spec(raw, check_data=False)
    except SpecError as exc:
        if not isinstance(raw, dict):
            raise DataError(BAD_SPEC.format(path=loc.display(loc.spec), error=exc)) from exc
        first = exc
    except ValueError as exc:  # not JSON
        raise DataError(BAD_SPEC.format(path=loc.display(loc.spec), error=exc)) from exc
    spec, dropped = _read_leniently(raw, first)
    if spec is None:
        raise DataError(BAD_SPEC.format(path=loc.display(loc.spec), error=first)) from first
    warnings.warn(
        SPEC_READ_WITHOUT.format(path=loc.display(loc.spec), problems="; ".join(dropped)),
        ResultsWarning,
        2,
    )
    return spec


def _read_leniently(raw: dict[str, object], error: SpecError) -> tuple[SweepSpec | None, list[str]]:
    """``raw`` without the keys ``error`` (and each next attempt's error) names, as a
    spec, and those problems; ``(None, ...)`` when a problem is not at a key that can
    be left out (the whole spec, the objectives) or it never validates."""
    from regtune.search_spaces import load_spec

    trimmed = copy.deepcopy(raw)
    dropped: list[str] = []
    for _ in range(LENIENT_PASSES):
        problems = list(error.problems)
        if not problems:
            return None, dropped
        for problem in problems:
            top = problem.path.split(".", 1)[0]
            if top in KEPT_SPEC_KEYS or not _drop_key(trimmed, problem.path):
                return None, dropped
            dropped.append(str(problem))
        try:
            return load_spec(trimmed, check_data=False), dropped
        except SpecError as exc:
            error = exc
    return None, dropped


def _drop_key(node: dict[str, object], path: str) -> bool:
    """Remove the value at dotted ``path`` from nested mappings; whether it was there."""
    *parents, leaf = path.split(".")
    current: object = node
    for key in parents:
        if not isinstance(current, dict) or key not in current:
            return False
        current = current[key]
    if not isinstance(current, dict) or leaf not in current:
        return False
    del current[leaf]
    return True

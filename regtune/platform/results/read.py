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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from regtune.errors import DataError, SpecError
from regtune.platform.results.files import (
    EPOCHS_DIR,
    HIDDEN_PREFIXES,
    PART_PREFIX,
    PART_SUFFIX,
    RESULTS_DIR,
    TRIALS_FILE,
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
    UNKNOWN,
    TrialState,
    stored_status,
    trial_frame,
)

if TYPE_CHECKING:
    from regtune.search_spaces import SweepSpec

__all__ = [
    "EpochsRead",
    "ResultsWarning",
    "StoredTrials",
    "check_part",
    "concat_parts",
    "incomplete_trials",
    "load_trial_states",
    "mark_unknown",
    "read_epochs",
    "read_spec",
    "read_store",
    "read_trials",
    "scan_epoch_parts",
    "trials_frame",
]

#: Times a read starts over when a part vanished under it (a compaction).
LIST_RETRIES = 3

NO_RESULTS = "{path}: no results folder; expected the {what} of a regtune sweep. {why} {listing}"
#: What is at the experiment path itself, in :data:`NO_RESULTS`.
EXP_MISSING = "{exp!r} does not exist."
EXP_IS_FILE = "{exp!r} is a file, not an experiment directory (<storage>/<name>)."
EXP_IS_RESULTS = "{exp!r} is an experiment's results folder itself: pass its parent, {parent!r}."
EXP_NOT_STARTED = (
    "{exp!r} exists but is not an experiment directory (<storage>/<name>) of a sweep that "
    "has started."
)
#: The experiments found beside (or, for a storage root, under) the path asked for.
EXPERIMENTS_UNDER = "Experiments under {root!r}: {names}."
EXPERIMENTS_INSIDE = "It holds experiments: {names}; pass one of them, e.g. {example!r}."
NO_EXPERIMENTS_UNDER = "No experiment is under {root!r}."
ROOT_MISSING = "{root!r} does not exist either."
#: At most this many experiment names are listed (then "and N more").
LISTED_EXPERIMENTS = 10
#: At most this many folders are looked into when listing experiments.
LOOKED_INTO = 500
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
#: Trials whose rows were (some of them) in a part that was skipped.
INCOMPLETE = (
    "stored epochs incomplete: {n} trial{s} lost epochs with the skipped part(s) {parts}: "
    "{trials}. Their numbers are of the epochs that could be read"
)
TRIALS_UNREACHABLE = (
    "{path}: the trial table could not be read ({error}); nothing was changed. Check the "
    "storage and read again"
)


class ResultsWarning(UserWarning):
    """A file in a results folder was skipped (it is named in the message)."""


def _require(loc: ResultsLocation, exp: str, what: str) -> None:
    if not loc.exists(loc.root):
        raise DataError(missing_results(loc, exp, what))


def missing_results(loc: ResultsLocation, exp: str, what: str) -> str:
    """Why ``exp`` has no results folder, in words a user can act on: whether the path
    exists, is a file, or is a results folder itself, and which experiments exist under
    its parent (or, for a storage root, under it), up to :data:`LISTED_EXPERIMENTS`."""
    folder = loc.root.rsplit("/", 1)[0]
    parent = folder.rsplit("/", 1)[0] or "/"
    kind = loc.fs.get_file_info(folder).type
    shown = exp.rstrip("/") or exp
    listing = ""
    if kind == pafs.FileType.NotFound:
        why = EXP_MISSING.format(exp=shown)
        listing = _experiments_line(loc, parent, EXPERIMENTS_UNDER)
    elif kind != pafs.FileType.Directory:
        why = EXP_IS_FILE.format(exp=shown)
        listing = _experiments_line(loc, parent, EXPERIMENTS_UNDER)
    elif folder.rsplit("/", 1)[-1] == RESULTS_DIR and (
        loc.exists(f"{folder}/{EPOCHS_DIR}") or loc.exists(f"{folder}/{TRIALS_FILE}")
    ):
        why = EXP_IS_RESULTS.format(exp=shown, parent=loc.display(parent))
    else:
        why = EXP_NOT_STARTED.format(exp=shown)
        inside = experiments_under(loc, folder)
        if inside:
            example = f"{shown}/{inside[0]}"
            listing = EXPERIMENTS_INSIDE.format(names=_cut(inside), example=example)
        else:
            listing = _experiments_line(loc, parent, EXPERIMENTS_UNDER)
    return NO_RESULTS.format(
        path=loc.display(loc.root), what=what, why=why, listing=listing
    ).rstrip()


def _experiments_line(loc: ResultsLocation, root: str, template: str) -> str:
    if loc.fs.get_file_info(root).type != pafs.FileType.Directory:
        return ROOT_MISSING.format(root=loc.display(root))
    names = experiments_under(loc, root)
    if not names:
        return NO_EXPERIMENTS_UNDER.format(root=loc.display(root))
    return template.format(root=loc.display(root), names=_cut(names))


def _cut(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_EXPERIMENTS])
    more = len(names) - LISTED_EXPERIMENTS
    return f"{shown} (and {more} more)" if more > 0 else shown


def experiments_under(loc: ResultsLocation, root: str) -> list[str]:
    """Names of the folders directly under ``root`` that hold a results folder (the
    experiments of a storage root), sorted; at most :data:`LOOKED_INTO` folders are
    looked into."""
    try:
        infos = loc.fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except (OSError, pa.ArrowException):
        return []
    folders = sorted(
        info.base_name
        for info in infos
        if info.type == pafs.FileType.Directory and not info.base_name.startswith(HIDDEN_PREFIXES)
    )
    names = []
    for name in folders[:LOOKED_INTO]:
        try:
            if loc.exists(f"{root.rstrip('/')}/{name}/{RESULTS_DIR}"):
                names.append(name)
        except (OSError, pa.ArrowException):
            continue
    return names


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


def epoch_parts(
    loc: ResultsLocation, skipped: list[str] | None = None
) -> list[tuple[str, pa.Table]]:
    """Every readable regtune epoch part, oldest first, as ``(name, table)``; the
    paths of the files skipped (each with a :class:`ResultsWarning`) are appended
    to ``skipped`` when given.

    Raises:
        DataError: a part of another schema version.
    """

    def read(path: str) -> pa.Table:
        table = pq.read_table(path, filesystem=loc.fs)
        check_part(loc.display(path), table.schema)
        return table

    def skip(path: str, reason: str) -> None:
        if skipped is not None:
            skipped.append(loc.display(path))
        _skip(loc, path, reason)

    return scan_epoch_parts(loc, read, skip)


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
    abandoned = abandoned_rows(frame["trial_id"], frame["timestamp"])
    if abandoned.any():
        frame = frame[~abandoned].reset_index(drop=True)
    columns = [n for n, _ in FIXED_EPOCH_COLUMNS]
    columns += config_columns(frame.columns) + metric_columns(frame.columns)
    frame = frame[columns]
    frame["iteration"] = frame["iteration"].astype("int64")
    return frame


def abandoned_rows(
    trial_id: pd.Series | np.ndarray, timestamp: pd.Series | np.ndarray
) -> np.ndarray:
    """Which rows a restore abandoned: given one row per ``(trial, epoch)`` (the latest),
    sorted by trial then epoch, a row written before a row of an *earlier* epoch of the
    same trial. That later write means the trial went back to a checkpoint (a retried
    worker, a resumed driver, a population-based exploit) and trained from there: the
    epochs after it that it has not reported again belong to weights no checkpoint holds
    any more. A row without a timestamp is never dropped."""
    stamps = np.asarray(timestamp, dtype=np.float64)
    if stamps.size < 2:
        return np.zeros(stamps.size, dtype=bool)
    owner = pd.Series(np.asarray(trial_id)).to_numpy()
    same = np.zeros(stamps.size, dtype=bool)
    same[1:] = owner[1:] == owner[:-1]
    if bool(np.all(stamps[1:][same[1:]] >= stamps[:-1][same[1:]])):
        return np.zeros(stamps.size, dtype=bool)  # the usual case: written in epoch order
    # The latest write among each row's earlier epochs (NaN where a trial starts).
    before = pd.Series(stamps).groupby(owner, sort=False).cummax().to_numpy()
    earlier = np.full(stamps.size, np.nan)
    earlier[1:] = np.where(same[1:], before[:-1], np.nan)
    with np.errstate(invalid="ignore"):
        return stamps < earlier


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

    ``states``: status, checkpoint and stored ``config.*`` per trial; ``run_s``: seconds the sweep
    has run; ``unusable``: ``None``, or why a ``trials.parquet`` that exists
    cannot be used (not Parquet, not regtune's, truncated): then ``states`` is
    empty, and the file must not be overwritten, since it may hold the only
    record of statuses and checkpoints.
    """

    states: dict[str, TrialState] = field(default_factory=dict)
    run_s: float = 0.0
    unusable: str | None = None
    #: Per trial, the epochs the table says it reported (its ``iterations``).
    iterations: dict[str, int] = field(default_factory=dict)


def load_trial_states(loc: ResultsLocation) -> StoredTrials:
    """The stored trial table's statuses, checkpoints, configs and run time.

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
    # A table written before "not started" existed says "stopped early" for a trial that
    # ended with 0 iterations: read in today's words (stored_status).
    # The config.* it holds: a trial that reported no epoch has no rows to read its
    # config from (the config it was given, stored by the writer's end_trial).
    configs = config_columns(table.column_names)
    states = {
        str(row["trial_id"]): TrialState(
            status=stored_status(str(row.get("status") or RUNNING), row.get("iterations")),
            checkpoint=row.get("checkpoint"),
            config={name: row[name] for name in configs if row[name] is not None} or None,
        )
        for row in table.select(
            [
                c
                for c in ("trial_id", "status", "checkpoint", "iterations")
                if c in table.column_names
            ]
            + configs
        ).to_pylist()
    }
    run_s = float((table.schema.metadata or {}).get(META_RUN_S, b"0") or 0)
    iterations: dict[str, int] = {}
    if "iterations" in table.column_names:
        for tid, n in zip(
            table["trial_id"].to_pylist(), table["iterations"].to_pylist(), strict=True
        ):
            if n is not None:
                iterations[str(tid)] = int(n)
    return StoredTrials(states, run_s, iterations=iterations)


def stored_trials(loc: ResultsLocation) -> StoredTrials:
    """The stored trial table as :func:`load_trial_states` reads it; an empty one when
    there is none, and also, with a :class:`ResultsWarning` naming it, when it cannot be
    used (``unusable`` says why; the file is left in place).

    Raises:
        DataError: the table exists but could not be read (a storage error,
            named with the file: nothing is guessed from the epochs then), or
            has another schema version.
    """
    try:
        stored = load_trial_states(loc)
    except FileNotFoundError:
        return StoredTrials()
    except OSError as exc:
        raise DataError(TRIALS_UNREACHABLE.format(path=loc.display(loc.trials), error=exc)) from exc
    if stored.unusable is not None:
        _skip(loc, loc.trials, stored.unusable)
    return stored


def stored_trial_states(loc: ResultsLocation) -> tuple[dict[str, TrialState], float]:
    """Status and checkpoint per trial from the stored trial table, and the
    seconds the sweep has run; ``({}, 0.0)`` when there is none, and also,
    with a :class:`ResultsWarning` naming it, when it cannot be used (readers
    then fall back to the epochs; the file is left in place).

    Raises:
        DataError: as :func:`stored_trials`.
    """
    stored = stored_trials(loc)
    return stored.states, stored.run_s


def incomplete_trials(epochs: pd.DataFrame, stored_iterations: Mapping[str, int]) -> dict[str, str]:
    """Trials whose epoch rows, as read, are not all the epochs they reported: trial ->
    which epochs are missing (``"epochs 1-15, 47-60 of 60"``), sorted by trial.

    ``epochs``: the rows read (``trial_id``, ``iteration``; deduplicated, any order);
    ``stored_iterations``: the trial table's ``iterations`` per trial (its last epoch
    when the table was written). A trial misses epochs when its rows do not start at
    epoch 1, have a gap, or stop before the table's ``iterations``; a trial the table
    names with epochs but no row read misses all of them. Meant for a read that skipped
    a part: a population-based schedule's exploit can skip epochs on its own.
    """
    out: dict[str, str] = {}
    seen: set[str] = set()
    if len(epochs):
        trial = epochs["trial_id"].astype(str)
        iteration = epochs["iteration"].to_numpy(dtype=np.int64)
        groups = pd.Series(iteration).groupby(trial.to_numpy(), sort=True)
        per = groups.agg(["min", "max", "count"])
        seen = {str(t) for t in per.index}
        for tid, low, high, count in per.itertuples(name=None):
            last = max(int(high), int(stored_iterations.get(str(tid), 0)))
            if int(low) == 1 and int(count) == last:
                continue
            have = set(groups.get_group(tid).tolist())
            gaps = _ranges([i for i in range(1, last + 1) if i not in have])
            out[str(tid)] = f"epochs {gaps} of {last}"
    for tid, n in stored_iterations.items():
        if n > 0 and tid not in seen:
            out[tid] = f"all {n} epochs" if n > 1 else "its 1 epoch"
    return dict(sorted(out.items()))


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 7]`` as ``"1-3, 7"``."""
    spans: list[str] = []
    start = prev = None
    for value in values:
        if prev is not None and value == prev + 1:
            prev = value
            continue
        if start is not None:
            spans.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = value
    if start is not None:
        spans.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ", ".join(spans)


@dataclass(frozen=True)
class EpochsRead:
    """What :func:`read_store` read: the epoch rows (``epochs``), the stored trial table
    (``stored``), the epoch parts it skipped (``parts``) and the trials they cost epochs
    (``lost``: trial -> which, as :func:`incomplete_trials` gives them; empty when no part
    was skipped). The caller says ``lost`` (:func:`incomplete_message`) as it must: a
    warning, or a note."""

    epochs: pd.DataFrame
    stored: StoredTrials
    parts: list[str]
    lost: dict[str, str]


def read_store(
    loc: ResultsLocation, exp: str, what: str, *, trials_without_epochs: bool = True
) -> EpochsRead:
    """Every epoch row of experiment ``exp`` (at ``loc``) and its stored trial table, read
    once each, with the trials whose epochs a skipped part held: the one read behind
    :func:`read_trials`, the sweep's outcome and the analysis. ``what``: what the caller
    reads, in the error for a missing results folder. ``trials_without_epochs=False``
    leaves the trial table unread (empty) when there is no epoch row.

    Raises:
        DataError: no results folder, or as :func:`epoch_parts` and :func:`stored_trials`.
    """
    _require(loc, exp, what)
    skipped: list[str] = []
    epochs = epochs_frame([table for _, table in epoch_parts(loc, skipped)])
    stored = stored_trials(loc) if trials_without_epochs or not epochs.empty else StoredTrials()
    parts = skipped_parts(skipped)
    lost = incomplete_trials(epochs, stored.iterations) if parts else {}
    return EpochsRead(epochs=epochs, stored=stored, parts=parts, lost=lost)


def skipped_parts(skipped: list[str]) -> list[str]:
    """The epoch parts among the files ``skipped`` (once each, in order): only a skipped
    part can have held rows (a file not named ``part-*.parquet`` never did)."""
    return [p for p in dict.fromkeys(skipped) if p.rsplit("/", 1)[-1].startswith(PART_PREFIX)]


def read_trials(exp: str) -> pd.DataFrame:
    """One row per trial of experiment ``exp`` (a path or URI).

    Columns: ``experiment``, ``trial_id``, ``status`` (``finished``,
    ``stopped early``, ``error``, ``running`` or ``not started``; a table
    stored before ``not started`` existed reads so too; ``unknown`` for every
    trial when the stored table cannot be used, with a :class:`ResultsWarning`
    naming it), ``iterations`` (int64),
    ``checkpoint`` (path or null), ``degenerate`` (bool: a constant
    predictor, see :mod:`~regtune.platform.results.degenerate`), the last
    epoch's ``config.*`` (for a trial with no epoch row, e.g. one that failed
    before its first report, the config it was given, as the trial table
    stored it), then ``best.<metric>`` and ``last.<metric>``.

    Status and checkpoint come from the stored trial table; the rest is
    computed from :func:`read_epochs`'s rows, so the two agree even while
    the sweep runs. A trial with no stored status yet is ``running``.

    Raises:
        DataError: as :func:`read_epochs`.
    """
    loc = locate(exp)
    read = read_store(loc, exp, "trial table")
    if read.lost:
        warnings.warn(incomplete_message(read.parts, read.lost), ResultsWarning, 2)
    return trials_frame(loc, read.epochs, stored=read.stored)


def incomplete_message(skipped: list[str], lost: Mapping[str, str]) -> str:
    """:data:`INCOMPLETE`'s words for the parts ``skipped`` and the trials they cost
    epochs (``lost``: trial -> which, as :func:`incomplete_trials` gives them)."""
    trials = "; ".join(f"{tid} ({what})" for tid, what in lost.items())
    return INCOMPLETE.format(
        parts=", ".join(skipped), n=len(lost), s="" if len(lost) == 1 else "s", trials=trials
    )


def trials_frame(
    loc: ResultsLocation,
    epochs: pd.DataFrame,
    *,
    stored: StoredTrials | None = None,
    best: bool = True,
) -> pd.DataFrame:
    """:func:`read_trials`' table from epoch rows already read (:func:`read_epochs`'s)
    and the stored trial table, for a caller that needs both without reading twice.
    ``stored``: the stored trial table when the caller has read it already
    (:func:`stored_trials`, :func:`read_store`), else it is read here; one that cannot be
    used gives every trial the status ``unknown`` (:func:`mark_unknown`), as in
    :func:`read_trials`. ``best=False`` leaves out the ``best.*`` columns (built column by
    column: see :func:`~regtune.platform.results.trials.trial_frame`).

    Raises:
        DataError: as :func:`stored_trials`.
    """
    if stored is None:
        stored = stored_trials(loc)
    table = trial_frame(epochs, stored.states, experiment=_experiment_name(loc, epochs), best=best)
    return mark_unknown(table, stored)


def mark_unknown(table: pd.DataFrame, stored: StoredTrials) -> pd.DataFrame:
    """``table`` (one row per trial, with ``status``), every status ``unknown`` when the
    stored trial table ``stored`` cannot be used: no status is stored and the epochs cannot
    tell one. The one place of that rule: :func:`trials_frame` (so :func:`read_trials` and
    the sweep's outcome) and the analysis' trial table apply it."""
    if stored.unusable is not None:
        table["status"] = UNKNOWN
    return table


def _experiment_name(loc: ResultsLocation, epochs: pd.DataFrame) -> str:
    if not epochs.empty:
        return str(epochs["experiment"].iloc[0])
    return loc.root.rstrip("/").rsplit("/", 2)[-2]


def read_spec(exp: str) -> SweepSpec:
    """The :class:`~regtune.search_spaces.SweepSpec` the sweep ran.

    It is read as it ran (``load_spec(stored=True)``): the rules that guard
    only new input do not apply to it (a scheduler that could stop no trial
    early, e.g. asha with grace_period 1 at budget.max_epochs 1; a value
    listed twice in a choice or grid; a searcher seed out of range; a GPU no
    trial uses; PBT factors all 1.0), so its scheduler and distributions are
    the ones that ran, not defaults in their place.

    Beyond those it is read leniently: one that no longer validates under this
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
        return load_spec(raw, check_data=False, stored=True)
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
            return load_spec(trimmed, check_data=False, stored=True), dropped
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

"""What a stored result row looks like: columns, types, the schema version.

Pure functions on plain dicts and Arrow tables (no Ray): a Tune result dict
becomes one epoch row (:func:`epoch_row`), rows become an Arrow table with
fixed types (:func:`rows_to_table`), and a stored table's metadata is
checked against :data:`SCHEMA_VERSION` (:func:`check_metadata`). The
columns are documented in ``docs/results.md``.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from regtune.errors import DataError
from regtune.trainables.config import METRIC_MODES

__all__ = [
    "CONFIG_PREFIX",
    "EPOCH_KEY_COLUMNS",
    "FIXED_EPOCH_COLUMNS",
    "FIXED_TRIAL_COLUMNS",
    "KIND_EPOCHS",
    "KIND_TRIALS",
    "META_EXPERIMENT",
    "META_KIND",
    "META_RUN_S",
    "META_VERSION",
    "NOT_METRICS",
    "SCHEMA_VERSION",
    "ForeignFileError",
    "check_metadata",
    "config_columns",
    "epoch_row",
    "flatten_config",
    "is_finite_number",
    "is_number",
    "metric_columns",
    "metric_mode",
    "rows_to_table",
]

#: Version of the stored layout and columns; bumped on any incompatible change.
#: Readers refuse parts of another version (with a DataError naming the file).
SCHEMA_VERSION = 1

#: Parquet key-value metadata every part carries.
META_VERSION = b"regtune.results.schema_version"
META_KIND = b"regtune.results.kind"
META_EXPERIMENT = b"regtune.results.experiment"
#: On the trial table: seconds the sweep has run, summed over resumed sessions.
META_RUN_S = b"regtune.results.run_s"
KIND_EPOCHS = "epochs"
KIND_TRIALS = "trials"

CONFIG_PREFIX = "config."
#: Columns every epoch row has, in this order, with their Arrow types.
FIXED_EPOCH_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("experiment", pa.string()),
    ("trial_id", pa.string()),
    ("iteration", pa.int64()),
    ("time_total_s", pa.float64()),
    ("timestamp", pa.float64()),
)
#: Columns every trial-table row has, in this order, with their Arrow types.
FIXED_TRIAL_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("experiment", pa.string()),
    ("trial_id", pa.string()),
    ("status", pa.string()),
    ("iterations", pa.int64()),
    ("checkpoint", pa.string()),
    ("degenerate", pa.bool_()),
)
#: A row is identified by these: a re-reported epoch replaces the earlier row.
EPOCH_KEY_COLUMNS = ("trial_id", "iteration")

#: Keys of a Tune result that are not metrics: Ray Tune's bookkeeping (see
#: ``ray.tune.result.AUTO_RESULT_KEYS``; a test keeps this list a superset of
#: it) and regtune's own markers (``epoch`` repeats the iteration,
#: ``stopped_early`` is the trial's status).
NOT_METRICS = frozenset(
    {
        "training_iteration",
        "time_total_s",
        "time_this_iter_s",
        "timestamp",
        "date",
        "pid",
        "hostname",
        "node_ip",
        "done",
        "trial_id",
        "experiment_id",
        "experiment_tag",
        "config",
        "time_since_restore",
        "iterations_since_restore",
        "timesteps_since_restore",
        "timesteps_total",
        "episodes_total",
        "episode_reward_mean",
        "checkpoint_dir_name",
        "should_checkpoint",
        "__duplicate__",
        "__trial_info__",
        "trial_resources",
        "epoch",
        "stopped_early",
    }
)

#: Directions of metric families that are not in METRIC_MODES by name
#: (``test_acc``, ``test_loss``, timings): the stem after ``test_``/``val_``.
_STEM_MODES: dict[str, str] = {"acc": "max", "loss": "min"}
_TIME_SUFFIX = "_time_s"
#: A group's accuracy is ``test_acc_<group>``; its interval ends carry these suffixes.
_GROUP_ACC_PREFIX = "acc_"
_INTERVAL_SUFFIXES = ("_ci_low", "_ci_high")

ROW_BAD_ITERATION = (
    "result of trial {trial!r} has training_iteration={value!r}; expected a positive integer"
)
META_MISSING = (
    "{path}: not a regtune results part (no {key} in its Parquet metadata); "
    "expected a file written by regtune's results store"
)
META_WRONG_KIND = "{path}: holds {found!r} rows; expected {expected!r}"
META_WRONG_VERSION = (
    "{path}: results schema version {found}; this regtune reads version {expected}. "
    "Read it with the regtune version that wrote it, or rerun the sweep."
)


def metric_mode(name: str) -> str | None:
    """``"min"``/``"max"`` for a metric, or ``None`` when no direction is better.

    Known names come from :data:`~regtune.trainables.config.METRIC_MODES`;
    ``test_<m>`` follows ``<m>``; ``*_acc`` and a group's accuracy
    (``test_acc_<group>``, ``val_acc_<group>``) are ``max``, ``*_loss`` and
    ``*_time_s`` are ``min``; an interval's ends (``*_ci_low``, ``*_ci_high``)
    have no direction.
    """
    if name in METRIC_MODES:
        return METRIC_MODES[name]
    stem = name.removeprefix("test_")
    if stem in METRIC_MODES:
        return METRIC_MODES[stem]
    if name.endswith(_TIME_SUFFIX):
        return "min"
    group = stem.removeprefix("val_")
    if group.startswith(_GROUP_ACC_PREFIX) and not group.endswith(_INTERVAL_SUFFIXES):
        return "max"
    return _STEM_MODES.get(stem.rsplit("_", 1)[-1])


def flatten_config(config: Mapping[str, Any], prefix: str = CONFIG_PREFIX) -> dict[str, Any]:
    """Every leaf of a nested config as ``{"config.a.b": value}``.

    Mappings are walked; any other value (lists included) is a leaf.
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_config(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def is_number(value: Any) -> bool:
    """Whether ``value`` is a metric-like number: any real number, numpy scalars
    included (``np.float32``, ``np.int64``), but not a boolean (Python's or numpy's)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is an :func:`is_number` that is neither NaN nor infinite
    (numpy scalars included, booleans not). An integer too large for a float
    is not: every reader of such a value takes it as a float."""
    if not is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def epoch_row(
    result: Mapping[str, Any], *, experiment: str, trial_id: str, timestamp: float
) -> dict[str, Any]:
    """One stored row from a Tune result dict.

    Metrics are the numeric values (:func:`is_number`: numpy scalars too) that
    are not in :data:`NOT_METRICS` (booleans and text are not metrics); the config comes from
    ``result["config"]``, flattened.

    Raises:
        DataError: the result has no positive integer ``training_iteration``.
    """
    iteration: Any = result.get("training_iteration")
    if not is_number(iteration) or int(iteration) != iteration or iteration < 1:
        raise DataError(ROW_BAD_ITERATION.format(trial=trial_id, value=iteration))
    row: dict[str, Any] = {
        "experiment": experiment,
        "trial_id": trial_id,
        "iteration": int(iteration),
        "time_total_s": float(result.get("time_total_s") or math.nan),
        "timestamp": float(timestamp),
    }
    row.update(flatten_config(result.get("config") or {}))
    for key, value in result.items():
        if key not in NOT_METRICS and is_number(value):
            row[key] = float(value)
    return row


def config_columns(names: Iterable[str]) -> list[str]:
    """The ``config.*`` names among ``names``, sorted."""
    return sorted(n for n in names if n.startswith(CONFIG_PREFIX))


def metric_columns(names: Iterable[str]) -> list[str]:
    """The metric names among epoch-table columns: platform metrics first
    (in :data:`METRIC_MODES` order), then the rest sorted."""
    fixed = {name for name, _ in FIXED_EPOCH_COLUMNS}
    present = [n for n in names if n not in fixed and not n.startswith(CONFIG_PREFIX)]
    known = [m for m in METRIC_MODES if m in present]
    return known + sorted(set(present) - set(known))


def _config_array(values: Sequence[Any]) -> pa.Array:
    """One config column: bool, float64 (any number), or text (JSON for lists)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.bool_())
    if present and all(is_number(v) for v in present):
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    if not present:
        return pa.nulls(len(values), type=pa.string())
    return pa.array(
        [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
        type=pa.string(),
    )


def rows_to_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    kind: str,
    experiment: str,
    fixed: Sequence[tuple[str, pa.DataType]],
    extra_metadata: Mapping[bytes, bytes] | None = None,
) -> pa.Table:
    """Rows (dicts) as an Arrow table with the store's types and metadata.

    Columns: the ``fixed`` ones first, with their types, then ``config.*``
    (see :func:`_config_array`), then every other column as float64 (null
    where a row lacks it) unless its values are booleans or text.
    """
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    arrays: dict[str, pa.Array] = {}
    for name, type_ in fixed:
        arrays[name] = pa.array([row.get(name) for row in rows], type=type_)
    for name in config_columns(names):
        arrays[name] = _config_array([row.get(name) for row in rows])
    for name in [n for n in names if n not in arrays and not n.startswith(CONFIG_PREFIX)]:
        values = [row.get(name) for row in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bool) for v in present):
            arrays[name] = pa.array(values, type=pa.bool_())
        elif present and any(isinstance(v, str) for v in present):
            arrays[name] = pa.array([None if v is None else str(v) for v in values])
        else:
            arrays[name] = pa.array(
                [None if v is None else float(v) for v in values], type=pa.float64()
            )
    metadata = {
        META_VERSION: str(SCHEMA_VERSION).encode(),
        META_KIND: kind.encode(),
        META_EXPERIMENT: experiment.encode(),
        **(extra_metadata or {}),
    }
    return pa.table(arrays).replace_schema_metadata(metadata)


class ForeignFileError(DataError):
    """A file in the results folder that regtune did not write (or not as this kind)."""


def check_metadata(path: str, metadata: Mapping[bytes, bytes] | None, *, kind: str) -> None:
    """Refuse a stored table that is not a regtune ``kind`` part of this version.

    Raises:
        ForeignFileError: no regtune metadata, or another kind of table.
        DataError: another schema version. Messages name ``path`` and what
            was expected.
    """
    meta = dict(metadata or {})
    if META_VERSION not in meta:
        raise ForeignFileError(META_MISSING.format(path=path, key=META_VERSION.decode()))
    found_kind = meta.get(META_KIND, b"").decode()
    if found_kind != kind:
        raise ForeignFileError(META_WRONG_KIND.format(path=path, found=found_kind, expected=kind))
    version = meta[META_VERSION].decode()
    if version != str(SCHEMA_VERSION):
        raise DataError(
            META_WRONG_VERSION.format(path=path, found=version, expected=SCHEMA_VERSION)
        )

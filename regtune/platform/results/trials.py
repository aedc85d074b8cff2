"""What each trial did, from its epoch rows: status, iterations, best and last of each metric.

The writer summarises each ended trial in plain Python (:func:`summarize_rows`);
the readers rebuild the whole table from the epoch rows they read, column by
column with pandas and numpy (:func:`trial_frame`; :func:`trial_table` gives its
rows as dicts). A test keeps the two agreeing, key by key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from regtune.platform.results.degenerate import (
    GROUP_GAPS,
    constant_predictors,
    is_constant_predictor,
)
from regtune.platform.results.schema import (
    CONFIG_PREFIX,
    FIXED_EPOCH_COLUMNS,
    FIXED_TRIAL_COLUMNS,
    config_columns,
    metric_columns,
    metric_mode,
)

__all__ = [
    "NOT_STARTED",
    "RUNNING",
    "STATUSES",
    "UNKNOWN",
    "TrialState",
    "config_of",
    "empty_trial_table",
    "stored_status",
    "summarize_rows",
    "trial_frame",
    "trial_status",
    "trial_table",
]

FINISHED = "finished"
STOPPED_EARLY = "stopped early"
ERROR = "error"
RUNNING = "running"
#: A trial that ended without reporting an epoch and without an error: no scheduler
#: stopped it, it never trained (``budget.time_limit_s`` ended the sweep first).
NOT_STARTED = "not started"
#: Every value of the trial table's ``status`` column.
STATUSES = (FINISHED, STOPPED_EARLY, ERROR, RUNNING, NOT_STARTED)
#: What the readers give every trial when the stored trial table cannot be used
#: (never stored): whether each one finished, failed, was stopped or still runs is
#: not known, and the epochs cannot tell.
UNKNOWN = "unknown"


def trial_status(iterations: int, max_t: int, *, error: bool, ended: bool = True) -> str:
    """``error``; ``running`` (not ended yet); ``not started`` (ended without an
    epoch: cut by ``budget.time_limit_s`` before its first report); ``stopped
    early`` (ended before ``max_t`` epochs, by a scheduler or early stopping);
    else ``finished``."""
    if error:
        return ERROR
    if not ended:
        return RUNNING
    if iterations == 0:
        return NOT_STARTED
    return STOPPED_EARLY if iterations < max_t else FINISHED


def stored_status(status: str, iterations: int | None) -> str:
    """A status as a trial table stored it, in today's words: a table written before
    :data:`NOT_STARTED` existed says ``stopped early`` for a trial that ended with 0
    ``iterations``; that trial never started."""
    if status == STOPPED_EARLY and iterations == 0:
        return NOT_STARTED
    return status


@dataclass(frozen=True)
class TrialState:
    """What the epoch rows cannot say about a trial: its status and checkpoint, and
    the ``config.*`` the stored trial table holds for it (``config``: nulls left
    out; ``None`` when none is stored), which is the config it was given for a
    trial that reported no epoch (it failed before its first report): the readers
    use it for a trial without epoch rows; a trial's rows, where they exist, win."""

    status: str = RUNNING
    checkpoint: str | None = None
    config: Mapping[str, Any] | None = field(default=None, hash=False)


def empty_trial_table() -> pd.DataFrame:
    """A trial table with no rows and the fixed columns."""
    return pd.DataFrame(
        {name: pd.Series(dtype=type_.to_pandas_dtype()) for name, type_ in FIXED_TRIAL_COLUMNS}
    )


def summarize_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One trial's ``iterations``, ``degenerate``, ``config.*``, ``best.*`` and
    ``last.*`` from its epoch rows (dicts, sorted by iteration), in plain
    Python: what :func:`trial_table` computes with pandas, fast for the
    writer's few rows per trial (the tests check they agree)."""
    fixed = {name for name, _ in FIXED_EPOCH_COLUMNS}
    last: dict[str, Any] = {}
    for row in rows:
        for key, value in row.items():
            if key not in fixed and not _missing(value):
                last[key] = value
    metrics = metric_columns(last)
    best: dict[str, float] = {}
    for m in metrics:
        mode = metric_mode(m)
        values = [float(r[m]) for r in rows if not _missing(r.get(m))]
        best[m] = math.nan if mode is None else max(values) if mode == "max" else min(values)
    last_metrics = {m: float(last[m]) for m in metrics}
    out: dict[str, Any] = {
        "iterations": max((int(r["iteration"]) for r in rows), default=0),
        "degenerate": is_constant_predictor(last_metrics),
    }
    out.update({name: last[name] for name in config_columns(last)})
    out.update({f"best.{m}": best[m] for m in metrics})
    out.update({f"last.{m}": last_metrics[m] for m in metrics})
    return out


def trial_table(
    epochs: pd.DataFrame, states: Mapping[str, TrialState], *, experiment: str
) -> list[dict[str, Any]]:
    """One row per trial: the fixed columns, ``config.*`` (the last epoch's),
    ``best.<metric>`` (by :func:`~regtune.platform.results.schema.metric_mode`;
    NaN for metrics with no better direction) and ``last.<metric>`` (its last
    reported value).

    ``epochs`` holds deduplicated epoch rows (any order); a trial in
    ``states`` without rows (failed before its first report) gets
    ``iterations`` 0, the fixed columns and the ``config.*`` its state holds
    (the config it was given, when the trial table stored one). A trial
    without a state is ``running``. The rows of :func:`trial_frame`, as plain
    Python values.
    """
    frame = trial_frame(epochs, states, experiment=experiment)
    fixed = [name for name, _ in FIXED_TRIAL_COLUMNS]
    configs = config_columns(frame.columns)
    reported = set() if epochs.empty else {str(tid) for tid in epochs["trial_id"]}
    rows = []
    for row in frame.to_dict("records"):
        row["checkpoint"] = states.get(row["trial_id"], TrialState()).checkpoint  # None, not NaN
        if row["trial_id"] not in reported:
            given = {name: row[name] for name in configs if not _missing(row[name])}
            row = {name: row[name] for name in fixed} | given
        else:
            row.update({name: None if _missing(row[name]) else row[name] for name in configs})
        rows.append(row)
    return rows


def trial_frame(
    epochs: pd.DataFrame,
    states: Mapping[str, TrialState],
    *,
    experiment: str,
    best: bool = True,
) -> pd.DataFrame:
    """:func:`trial_table`'s rows as one frame, built column by column (a sweep
    of 10,000 trials with per-group and reliability metrics holds over a million
    cells: no per-cell lookups). Columns: the fixed ones, ``config.*``, then
    ``best.<metric>`` (left out with ``best=False``, for a caller that needs
    only the last values) and ``last.<metric>``; one row per trial, sorted by
    ``trial_id``; ``iterations`` int64, ``degenerate`` bool, metrics float64.
    A trial without epoch rows has the ``config.*`` its state holds (stored
    for a trial that failed before its first report), NaN elsewhere; a
    trial's rows, where they exist, give its config. A frame with the fixed
    columns (and those ``config.*``) alone when no trial has epoch rows.
    """
    metrics = metric_columns(epochs.columns)
    configs = config_columns(epochs.columns)
    if epochs.empty:
        reported: list[str] = []
    else:
        ordered = epochs.sort_values(["trial_id", "iteration"], kind="stable")
        groups = ordered.groupby("trial_id", sort=True)
        # groupby's last/max/min skip nulls and NaN: the last reported value,
        # and a diverged (NaN) epoch is never the best.
        last = groups[configs + metrics].last()
        reported = [str(tid) for tid in last.index]
    # The stored config of each trial without rows (one that failed before its first report).
    rows_of = set(reported)
    given = {str(t): s.config for t, s in states.items() if s.config and str(t) not in rows_of}
    configs = config_columns(set(configs).union(*(c.keys() for c in given.values())))
    ids = sorted(set(reported) | {str(tid) for tid in states})
    if not ids:
        return empty_trial_table()
    at = {tid: i for i, tid in enumerate(ids)}
    order = np.array([at[tid] for tid in reported], dtype=np.int64)
    n = len(ids)
    kept = [states.get(tid, TrialState()) for tid in ids]
    columns: dict[str, Any] = {
        "experiment": [experiment] * n,
        "trial_id": ids,
        "status": [s.status for s in kept],
        "iterations": np.zeros(n, dtype=np.int64),
        "checkpoint": [s.checkpoint for s in kept],
        "degenerate": np.zeros(n, dtype=bool),
    }
    if not reported:
        columns.update({name: _given(ids, given, name) for name in configs})
        frame = pd.DataFrame(columns)
        return frame.astype({"iterations": "int64", "degenerate": bool})
    columns["iterations"][order] = groups["iteration"].max().to_numpy(dtype=np.int64)
    last_values = _spread(last[metrics].to_numpy(dtype=float), order, n)
    if all(gap in metrics for gap in GROUP_GAPS):
        gaps = last[list(GROUP_GAPS)].to_numpy(dtype=float)
        columns["degenerate"][order] = constant_predictors(gaps)
    for name in configs:
        # A trial without rows has the config stored for it, else none (NaN, as a
        # missing key in a list of rows); a trial's rows give its config.
        values = _given(ids, given, name)
        if name in last.columns:
            for i, value in zip(order.tolist(), last[name].tolist(), strict=True):
                values[i] = None if _missing(value) else _plain(value)
        else:
            for i in order.tolist():
                values[i] = None
        columns[name] = values
    parts = [pd.DataFrame(columns)]
    if best:
        best_values = _best_values(ordered, metrics, last.index).to_numpy(dtype=float)
        parts.append(_metric_frame("best.", metrics, _spread(best_values, order, n)))
    parts.append(_metric_frame("last.", metrics, last_values))
    frame = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
    return frame


def _given(ids: list[str], given: Mapping[str, Mapping[str, Any]], name: str) -> list[Any]:
    """Config column ``name`` from the configs ``given`` per trial (NaN where none)."""
    return [_plain(given[tid].get(name, math.nan)) if tid in given else math.nan for tid in ids]


def _spread(values: np.ndarray, order: np.ndarray, n: int) -> np.ndarray:
    """``values`` (a row per reported trial) at rows ``order`` of ``n``; NaN elsewhere."""
    out = np.full((n, values.shape[1]), math.nan)
    out[order] = values
    return out


def _metric_frame(prefix: str, metrics: list[str], values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, columns=[f"{prefix}{m}" for m in metrics], dtype=float)


def _best_values(ordered: pd.DataFrame, metrics: list[str], trials: pd.Index) -> pd.DataFrame:
    """Each trial's (``trials``) best value of each metric (by its
    :func:`~regtune.platform.results.schema.metric_mode`; NaN for metrics with
    no better direction), one column per metric in ``metrics`` order.

    Built as one frame from two groupby reductions: a column assigned per
    metric fragments the frame (pandas' ``PerformanceWarning`` past ~100
    metrics, which a sweep with per-group test metrics reaches)."""
    by_trial = ordered[metrics].astype(float).groupby(ordered["trial_id"], sort=True)
    maxes = [m for m in metrics if metric_mode(m) == "max"]
    mins = [m for m in metrics if metric_mode(m) == "min"]
    parts = ([by_trial[maxes].max()] if maxes else []) + ([by_trial[mins].min()] if mins else [])
    if not parts:
        return pd.DataFrame(math.nan, index=trials, columns=metrics, dtype=float)
    return pd.concat(parts, axis=1).reindex(index=trials, columns=metrics)


def _missing(value: Any) -> bool:
    """None, NaN, or pandas' NA (a null in a text column)."""
    if value is None or isinstance(value, (list, dict, str)):
        return value is None
    return bool(pd.isna(value))


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (Arrow and JSON take those)."""
    return value.item() if hasattr(value, "item") else value


def config_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The nested config from a row's ``config.*`` columns (nulls left out)."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if not name.startswith(CONFIG_PREFIX) or _missing(value):
            continue
        node = out
        *parents, leaf = name[len(CONFIG_PREFIX) :].split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = _plain(value)
    return out

"""Regularization paths (every metric vs one strength) and heat maps (two strengths vs a metric).

Input is the per-trial table of :func:`regtune.platform.analysis.summary.trial_summary`.
A grid sweep gives one path point per grid value; a random or TPE sweep samples
continuous strengths, which are grouped into :data:`PATH_BINS` bins (log-spaced
when the distribution was log-scaled). Each point carries the median and the
spread (:data:`SPREAD_QUANTILES`) over the trials and seeds that fall in it.

Degenerate trials (constant predictors: the results store's ``degenerate``
column) are left out of each point's statistics, and so of its ``best``, as
the best trial and the front leave them out
(:mod:`~regtune.platform.analysis.best`); their strengths still make path
points (``n_degenerate`` counts them, with a NaN median where a point has
nothing else), so a range whose strong end only gave constant predictors
shows it rather than looking untried. The heat map's cells (:func:`heatmap`)
leave them out and count them the same way.

Failed trials (``status`` ``error``) are left out of every statistic too, as
they are off the front and never the best (``n_failed`` counts them per
point; the heat map leaves them out of every cell). A point's ``n_trials``
counts the trials its numbers are over: eligible trials with a value of that
row's metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from regtune.errors import DataError
from regtune.platform.analysis.summary import check_metric, degenerate_flags, failed_flags
from regtune.platform.analysis.swept import SweptParameter

__all__ = [
    "BOOKKEEPING_SUFFIXES",
    "HEATMAP_BINS",
    "MSG_NOT_NUMERIC",
    "PATH_BINS",
    "PATH_COLUMNS",
    "SPREAD_QUANTILES",
    "Bins",
    "best_strength",
    "bin_strengths",
    "heatmap",
    "regularization_path",
]

#: Continuous strengths are grouped into at most this many bins along a path:
#: enough to see a U-shaped validation curve, few enough that each bin holds
#: several trials in a sweep of a few dozen.
PATH_BINS = 10
#: Bins per axis of a heat map (it needs ~HEATMAP_BINS² trials to be filled).
HEATMAP_BINS = 6
#: The spread shown around each median: the inter-quartile range.
SPREAD_QUANTILES = (0.25, 0.75)

#: Reported numbers that are timings or markers, not model quality: left off default paths.
BOOKKEEPING_SUFFIXES = ("_time_s", "_epoch")

#: Columns of a path table, one row per (strength bin, metric).
PATH_COLUMNS = [
    "parameter",
    "strength",
    "low",
    "high",
    "n_trials",
    "n_degenerate",
    "n_failed",
    "metric",
    "median",
    "q25",
    "q75",
    "min",
    "max",
    "best",
]

MSG_NOT_NUMERIC = (
    "{what}: parameter {name!r} takes non-numeric values; a path needs a numeric strength"
)


@dataclass(frozen=True)
class Bins:
    """Strength bins: each row's bin, and per bin its representative value and bounds."""

    index: NDArray[np.intp]
    strength: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]


def bin_strengths(values: NDArray[np.float64], log: bool, bins: int) -> Bins:
    """Group strengths: one bin per distinct value if there are at most ``bins``, else
    ``bins`` equal-width bins (in log space when ``log``; zeros then get a bin of their own).

    A bin's strength is the median of the values in it (its geometric median
    on a log axis, which is the same for an odd count). Rows with NaN get
    index ``-1``.
    """
    index = np.full(values.shape, -1, dtype=np.intp)
    finite = np.isfinite(values)
    distinct = np.unique(values[finite])
    if distinct.size == 0:
        empty = np.empty(0, dtype=np.float64)
        return Bins(index, empty, empty, empty)
    if distinct.size <= bins:
        index[finite] = np.searchsorted(distinct, values[finite])
    else:
        positive = distinct[distinct > 0]
        if log and positive.size >= 2:
            edges = np.geomspace(positive[0], positive[-1], bins + 1)
            zero = finite & (values <= 0)
            rest = finite & ~zero
            offset = 1 if zero.any() else 0
            index[zero] = 0
            index[rest] = offset + np.clip(
                np.searchsorted(edges, values[rest], side="right") - 1, 0, bins - 1
            )
        else:
            edges = np.linspace(distinct[0], distinct[-1], bins + 1)
            index[finite] = np.clip(
                np.searchsorted(edges, values[finite], side="right") - 1, 0, bins - 1
            )
        # Renumber so that empty bins disappear.
        used, index[finite] = np.unique(index[finite], return_inverse=True)
        del used
    count = int(index.max()) + 1
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    sorted_values = values[order]
    start = np.searchsorted(sorted_index, np.arange(count))
    stop = np.searchsorted(sorted_index, np.arange(count), side="right")
    strength = np.array([np.median(sorted_values[a:b]) for a, b in zip(start, stop, strict=True)])
    low = np.array([sorted_values[a:b].min() for a, b in zip(start, stop, strict=True)])
    high = np.array([sorted_values[a:b].max() for a, b in zip(start, stop, strict=True)])
    return Bins(index, strength, low, high)


def _strengths(summary: pd.DataFrame, parameter: SweptParameter, what: str) -> NDArray:
    if not parameter.numeric:
        raise DataError(MSG_NOT_NUMERIC.format(what=what, name=parameter.name))
    return pd.to_numeric(summary[parameter.column], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def _group_stats(values: NDArray[np.float64], index: NDArray[np.intp], count: int) -> NDArray:
    """(count, 5) array: median, q25, q75, min, max of the finite values in each bin."""
    out = np.full((count, 5), np.nan)
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(count + 1))
    for b in range(count):
        part = values[order[bounds[b] : bounds[b + 1]]]
        part = part[np.isfinite(part)]
        if part.size:
            q = np.quantile(part, [0.5, *SPREAD_QUANTILES])
            out[b] = (q[0], q[1], q[2], part.min(), part.max())
    return out


def regularization_path(
    summary: pd.DataFrame,
    parameter: SweptParameter,
    objective: tuple[str, str],
    metrics: Sequence[str] | None = None,
    *,
    bins: int = PATH_BINS,
    include_degenerate: bool = False,
) -> pd.DataFrame:
    """The path of ``parameter``: for each strength bin and metric, median and spread.

    Returns a long table with :data:`PATH_COLUMNS`: one row per (bin, metric),
    bins in increasing strength. ``best`` marks the bin whose median of the
    objective's metric is best (``mode`` ``"max"``/``"min"``; ties: the lowest
    strength, i.e. the least regularization that reaches it). Metrics default
    to every numeric metric column of ``summary`` that has a value.
    ``n_trials`` counts the trials a row's statistics are over (eligible, with
    a value of that row's metric, so it can differ between metrics);
    ``n_degenerate`` the degenerate trials (``summary["degenerate"]``) of its
    strength that were left out of them (kept in with ``include_degenerate``,
    then counted in both); ``n_failed`` the failed trials (``status``
    ``error``) of its strength, always left out; ``attrs["n_degenerate"]`` and
    ``attrs["n_failed"]`` are their totals. A point's strength is still binned
    from every trial, so a strength whose trials all failed is a point with
    ``n_trials`` 0 and a NaN median.

    Raises:
        SpecError: a metric (or the objective's) is not in ``summary``; the
            message lists the ones present.
        DataError: the parameter is not numeric.
    """
    metric_name, mode = objective
    present = _metric_names(summary)
    check_metric(metric_name, present, "objective")
    chosen = (
        list(metrics)
        if metrics is not None
        else [
            m for m in present if not m.endswith(BOOKKEEPING_SUFFIXES) and summary[m].notna().any()
        ]
    )
    for metric in chosen:
        check_metric(metric, present, "metric")
    grouped = bin_strengths(_strengths(summary, parameter, "path"), parameter.log, bins)
    count = grouped.strength.size
    degenerate = degenerate_flags(summary)
    failed = failed_flags(summary)
    # Every strength tried makes a point; only the eligible trials make its statistics:
    # failed trials never, degenerate ones unless asked for.
    left_out = failed | (degenerate & ~include_degenerate)
    counted = np.where(left_out, -1, grouped.index)
    placed = grouped.index >= 0
    n_degenerate = np.bincount(grouped.index[placed & degenerate & ~failed], minlength=count)
    n_failed = np.bincount(grouped.index[placed & failed], minlength=count)
    best = best_strength(_group_stats(_column(summary, metric_name), counted, count)[:, 0], mode)
    frames = []
    for metric in chosen:
        values = _column(summary, metric)
        stats = _group_stats(values, counted, count)
        # The trials this metric's numbers are over: eligible and with a value of it.
        has_value = (counted >= 0) & np.isfinite(values)
        n_trials = np.bincount(counted[has_value], minlength=count)
        frames.append(
            pd.DataFrame(
                {
                    "parameter": parameter.name,
                    "strength": grouped.strength,
                    "low": grouped.low,
                    "high": grouped.high,
                    "n_trials": n_trials.astype(np.int64),
                    "n_degenerate": n_degenerate.astype(np.int64),
                    "n_failed": n_failed.astype(np.int64),
                    "metric": metric,
                    "median": stats[:, 0],
                    "q25": stats[:, 1],
                    "q75": stats[:, 2],
                    "min": stats[:, 3],
                    "max": stats[:, 4],
                    "best": np.arange(count) == best,
                }
            )
        )
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PATH_COLUMNS)
    table.attrs["log"] = parameter.log
    table.attrs["objective"] = f"{metric_name} ({mode})"
    table.attrs["objective_metric"] = metric_name
    table.attrs["n_degenerate"] = int((degenerate & ~failed).sum())
    table.attrs["n_failed"] = int(failed.sum())
    return table


def best_strength(medians: NDArray[np.float64], mode: str) -> int:
    """Index of the best median (first one on ties); ``-1`` when all are NaN."""
    if medians.size == 0 or np.all(np.isnan(medians)):
        return -1
    signed = np.where(np.isnan(medians), -np.inf, medians if mode == "max" else -medians)
    return int(np.argmax(signed))


def heatmap(
    summary: pd.DataFrame,
    x: SweptParameter,
    y: SweptParameter,
    metric: str,
    *,
    bins: int = HEATMAP_BINS,
    include_degenerate: bool = False,
) -> pd.DataFrame:
    """Median of ``metric`` over the trials in each (x bin, y bin) cell.

    Returns a long table with columns ``x``, ``y`` (bin strengths), ``n_trials``,
    ``n_degenerate`` and ``median``, one row per cell holding a trial with a value of
    ``metric``. As in :func:`regularization_path`, degenerate trials
    (``summary["degenerate"]``) are left out of each cell's ``n_trials`` and ``median``
    and counted in its ``n_degenerate`` (kept in with ``include_degenerate``, then
    counted in both); strengths are binned over every trial, so a cell of only
    degenerate trials stays, with ``n_trials`` 0 and a NaN median. Failed trials
    (``status`` ``error``) are in no cell. ``attrs`` records both parameter names
    and their scales, the metric, ``include_degenerate``, ``n_degenerate`` (the
    cells' total) and ``n_failed`` (the failed trials left out).

    Raises:
        SpecError: ``metric`` is not in ``summary`` (the message lists the metrics).
        DataError: a parameter is not numeric.
    """
    check_metric(metric, _metric_names(summary), "heatmap metric")
    bx = bin_strengths(_strengths(summary, x, "heatmap"), x.log, bins)
    by = bin_strengths(_strengths(summary, y, "heatmap"), y.log, bins)
    values = _column(summary, metric)
    degenerate = degenerate_flags(summary)
    failed = failed_flags(summary)
    # A failed trial is in no cell (as it is on no path's statistics and not on the front).
    placed = (bx.index >= 0) & (by.index >= 0) & np.isfinite(values) & ~failed
    eligible = ~degenerate | include_degenerate
    frame = pd.DataFrame(
        {
            "bx": bx.index[placed],
            "by": by.index[placed],
            # NaN for a left-out trial: not in the median or the count ("count" skips NaN).
            "v": np.where(eligible, values, np.nan)[placed],
            "d": degenerate[placed].astype(np.int64),
        }
    )
    cells = frame.groupby(["bx", "by"]).agg(
        n_trials=("v", "count"), n_degenerate=("d", "sum"), median=("v", "median")
    )
    cells = cells.reset_index()
    table = pd.DataFrame(
        {
            "x": bx.strength[cells["bx"].to_numpy(dtype=np.intp)],
            "y": by.strength[cells["by"].to_numpy(dtype=np.intp)],
            "n_trials": cells["n_trials"].to_numpy(dtype=np.int64),
            "n_degenerate": cells["n_degenerate"].to_numpy(dtype=np.int64),
            "median": cells["median"].to_numpy(dtype=np.float64),
        }
    )
    table.attrs.update(
        {
            "x": x.name,
            "y": y.name,
            "metric": metric,
            "x_log": x.log,
            "y_log": y.log,
            "include_degenerate": include_degenerate,
            "n_degenerate": int(table["n_degenerate"].sum()),
            "n_failed": int(failed.sum()),
        }
    )
    return table


def _metric_names(summary: pd.DataFrame) -> list[str]:
    skip = {"epochs", "iteration", "status", "degenerate"}
    return [
        str(c)
        for c in summary.columns
        if not str(c).startswith("config.")
        and c not in skip
        and pd.api.types.is_numeric_dtype(summary[c])
        and not pd.api.types.is_bool_dtype(summary[c])
    ]


def _column(summary: pd.DataFrame, name: str) -> NDArray[np.float64]:
    return pd.to_numeric(summary[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

"""One row per trial: its config and every metric at the epoch that represents it.

A trial is represented by the epoch whose weights it keeps (``at="kept"``,
the default: the fairness bound's choice, else early stopping's best epoch,
else its last epoch; :mod:`~regtune.platform.analysis.kept`), so a trial is
judged by the model it ends with, as ``regtune sweep`` and ``regtune
promote`` rank it. ``at="best"`` takes instead the first epoch where the
primary objective reaches its best, ``at="last"`` the last epoch. Every
metric of the row, and the config, come from that one epoch, so a trial's
accuracy, calibration and size are read together, against the penalty
strengths in force then (PBT perturbs them). ``test_*`` metrics and
reliability bins exist on the final epoch only and are taken from it
(:func:`~regtune.platform.analysis.columns.is_final_report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from regtune.errors import SpecError, did_you_mean
from regtune.platform.analysis.columns import is_final_report, metric_choices
from regtune.platform.analysis.curves import Segments, segment_values, segments
from regtune.platform.analysis.kept import kept_positions
from regtune.platform.results.trials import ERROR

__all__ = [
    "BOOKKEEPING_COLUMNS",
    "MSG_BAD_AT",
    "MSG_UNKNOWN_METRIC",
    "config_columns",
    "degenerate_flags",
    "failed_flags",
    "list_metrics",
    "metric_columns",
    "select_epochs",
    "trial_summary",
]

#: Columns of the epochs table that are neither config nor metrics.
BOOKKEEPING_COLUMNS = frozenset(
    {"experiment", "trial_id", "iteration", "time_total_s", "timestamp", "epoch"}
)

MSG_UNKNOWN_METRIC = "{what}: unknown metric {metric!r}; metrics present: {present}"
MSG_BAD_AT = "at: {value!r} is not allowed; allowed: 'kept', 'best', 'last'"

At = Literal["kept", "best", "last"]


def _summary_column(
    summary: pd.DataFrame | None, name: str, index: pd.Index | None
) -> pd.Series | None:
    """The summary's column ``name`` aligned to ``index`` (the summary's own
    rows when None); None without a summary or that column."""
    if summary is None or name not in summary.columns:
        return None
    column = summary[name]
    if index is not None and summary.index is not index:
        column = column.reindex(index)
    return column


def _rows(summary: pd.DataFrame | None, index: pd.Index | None) -> int:
    return len(index) if index is not None else 0 if summary is None else len(summary)


def degenerate_flags(
    summary: pd.DataFrame | None, index: pd.Index | None = None
) -> NDArray[np.bool_]:
    """Per trial, whether it is a constant predictor: the summary's
    ``degenerate`` column, aligned to ``index`` when given (the summary's own
    rows otherwise). A trial the column says nothing about (missing value,
    no column, no summary) is not degenerate. The one reading every analysis
    that leaves degenerate trials out uses (path, heat map, front, best trial,
    diagnosis), so they agree on which trials those are."""
    column = _summary_column(summary, "degenerate", index)
    if column is None:
        return np.zeros(_rows(summary, index), dtype=bool)
    return column.astype("boolean").fillna(False).to_numpy(dtype=bool)


def failed_flags(summary: pd.DataFrame | None, index: pd.Index | None = None) -> NDArray[np.bool_]:
    """Per trial, whether it failed: the summary's ``status`` is ``error`` (aligned to
    ``index`` when given). A trial with no status (no column, no summary) has not failed.
    The one reading the path, the heat map and the verdict use to leave failed trials
    out, as the front and the best trial do."""
    column = _summary_column(summary, "status", index)
    if column is None:
        return np.zeros(_rows(summary, index), dtype=bool)
    return (column.astype(object) == ERROR).to_numpy(dtype=bool)


def config_columns(table: pd.DataFrame) -> list[str]:
    """The ``config.*`` columns, in table order."""
    return [c for c in table.columns if str(c).startswith("config.")]


def metric_columns(epochs: pd.DataFrame) -> list[str]:
    """Numeric metric columns of an epochs table (not keys, not config)."""
    return [
        str(c)
        for c in epochs.columns
        if c not in BOOKKEEPING_COLUMNS
        and not str(c).startswith("config.")
        and (pd.api.types.is_numeric_dtype(epochs[c]) and not pd.api.types.is_bool_dtype(epochs[c]))
    ]


def check_metric(metric: str, present: Sequence[str], what: str) -> None:
    """Raise :class:`SpecError` naming the metrics present when ``metric`` is not one of them."""
    if metric not in present:
        raise SpecError(
            MSG_UNKNOWN_METRIC.format(what=what, metric=metric, present=list_metrics(present))
            + did_you_mean(metric, present)
        )


def list_metrics(present: Sequence[str]) -> str:
    """The metrics a user would pick, for a message: reliability bins, per-group values
    and interval ends collapsed into patterns
    (:func:`~regtune.platform.analysis.columns.metric_choices`)."""
    return ", ".join(metric_choices(present)) or "(none)"


def select_epochs(
    seg: Segments, objective: NDArray[np.float64], mode: str, at: str = "best"
) -> NDArray[np.intp]:
    """Sorted-row index of the representative epoch of each trial.

    ``at="best"``: the first epoch where the objective reaches its best
    (``mode`` ``"max"`` or ``"min"``, NaN ignored); a trial whose objective is
    NaN throughout falls back to its last epoch. ``at="last"``: the last epoch.
    """
    if at not in ("kept", "best", "last"):
        raise SpecError(MSG_BAD_AT.format(value=at))
    if at == "last" or seg.n_trials == 0:
        return seg.last
    signed = objective if mode == "max" else -objective
    signed = np.where(np.isnan(signed), -np.inf, signed)
    best = seg.reduce(np.maximum, signed)
    hits = np.flatnonzero(signed == np.repeat(best, seg.lengths))
    owner = seg.segment_of_rows()[hits]
    first_owner, first_pos = np.unique(owner, return_index=True)
    chosen = seg.last.copy()
    found = np.isfinite(best[first_owner])
    chosen[first_owner[found]] = hits[first_pos[found]]
    return chosen


def trial_summary(
    epochs: pd.DataFrame,
    objective: tuple[str, str],
    *,
    trials: pd.DataFrame | None = None,
    at: At = "kept",
    seg: Segments | None = None,
) -> pd.DataFrame:
    """One row per trial (index ``trial_id``), its config and metrics at one epoch.

    Columns: every ``config.*`` column (at the representative epoch: a
    population-based schedule changes a trial's config as it trains), ``epochs``
    (how many it reported), ``iteration`` (the representative epoch), every
    metric column at that epoch, and, when ``trials`` (the results store's
    trial table) is given, its ``status`` and ``degenerate``.

    Raises:
        SpecError: the objective's metric is not a column (the message lists
            the metrics present), or ``at`` is not ``"kept"``, ``"best"`` or
            ``"last"``.
        DataError: ``trial_id`` or ``iteration`` is missing.
    """
    metric, mode = objective
    seg = seg if seg is not None else segments(epochs)
    metrics = metric_columns(epochs)
    check_metric(metric, metrics, "objective")
    if at == "kept":
        chosen = kept_positions(epochs, seg)
    else:
        chosen = select_epochs(seg, segment_values(epochs, metric, seg), mode, at)
    last = seg.last
    out: dict[str, object] = {}
    # The config at the chosen row: PBT changes a trial's penalties as it trains, so
    # the metric of the chosen epoch belongs with the strength in force at that epoch.
    chosen_rows = chosen if seg.order is None else seg.order[chosen]
    for column in config_columns(epochs):
        out[column] = epochs[column].to_numpy()[chosen_rows]
    out["epochs"] = seg.lengths.astype(np.int64)
    iterations = segment_values(epochs, "iteration", seg)
    out["iteration"] = iterations[chosen].astype(np.int64) if seg.n_trials else []
    for column in metrics:
        values = segment_values(epochs, column, seg)
        out[column] = values[last if is_final_report(column) else chosen]
    table = pd.DataFrame(out, index=seg.index)
    if trials is not None and "trial_id" in trials.columns:
        extra = trials.set_index(trials["trial_id"].astype(str))
        for column in ("status", "degenerate"):
            if column in extra.columns:
                table[column] = extra[column].reindex(table.index)
    if "degenerate" in table.columns:
        table["degenerate"] = table["degenerate"].fillna(False).astype(bool)
    return table

"""The best trial up close: its learning curves, calibration and per-group rates.

Calibration: the trainable reports ``ece`` and ``brier`` every epoch but no
reliability bins (confidence vs accuracy per bin), so the calibration view is
ECE and Brier along training; :data:`NO_RELIABILITY_BINS` says so wherever it
is shown. Per-group accuracy and positive rates appear when the epochs table
has per-group columns (see :data:`~regtune.platform.analysis.diagnosis.GROUP_COLUMN`);
``dp_diff``/``eo_diff`` when the dataset has a sensitive attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from regtune.platform.analysis.curves import Segments
from regtune.platform.analysis.diagnosis import group_columns

__all__ = [
    "CALIBRATION_METRICS",
    "CURVE_METRICS",
    "NO_GROUPS",
    "NO_RELIABILITY_BINS",
    "BestTrial",
    "best_trial",
    "best_trial_id",
]

#: Metrics drawn as the best trial's learning curves, when present.
CURVE_METRICS = ("train_loss", "val_loss", "val_acc", "gap", "robust_acc")
#: Metrics drawn as its calibration along training, when present.
CALIBRATION_METRICS = ("ece", "brier")

NO_RELIABILITY_BINS = (
    "reliability bins (confidence vs accuracy per bin) are not stored by the trainable; "
    "calibration is shown as ECE and Brier score per epoch"
)
NO_GROUPS = (
    "no per-group metrics stored (the dataset has no sensitive attribute, or per-group "
    "rates were not reported)"
)


@dataclass(frozen=True)
class BestTrial:
    """The best trial's id, its row of the summary, and its curves.

    ``curves`` and ``calibration`` are indexed by ``iteration``; ``groups`` has
    one row per group and one column per stat (``acc``, ``positive_rate``, ...)
    at the selected epoch, plus ``gaps`` (dp_diff, eo_diff); ``notes`` says
    what is not available.
    """

    trial_id: str
    row: pd.Series
    curves: pd.DataFrame
    calibration: pd.DataFrame
    groups: pd.DataFrame
    gaps: dict[str, float]
    notes: list[str] = field(default_factory=list)


def best_trial_id(
    summary: pd.DataFrame, objective: tuple[str, str], *, include_degenerate: bool = False
) -> str | None:
    """The trial with the best objective value (degenerate trials left out by default);
    ``None`` when no trial has a value."""
    metric, mode = objective
    values = pd.to_numeric(summary[metric], errors="coerce")
    if not include_degenerate and "degenerate" in summary.columns:
        values = values[~summary["degenerate"].astype(bool)]
    values = values.dropna()
    if values.empty:
        return None
    return str(values.idxmax() if mode == "max" else values.idxmin())


def best_trial(
    epochs: pd.DataFrame, summary: pd.DataFrame, trial_id: str, seg: Segments | None = None
) -> BestTrial:
    """Curves, calibration and groups of ``trial_id`` (which must be in ``summary``);
    ``seg`` (the table's segments) finds its rows without scanning the table."""
    if seg is not None:
        rows = epochs.iloc[seg.rows_of(trial_id)]
    else:
        rows = epochs[(epochs["trial_id"] == trial_id).to_numpy(dtype=bool)]
    rows = rows.sort_values("iteration").set_index("iteration")
    curves = rows[[m for m in CURVE_METRICS if m in rows.columns]].astype(np.float64)
    calibration = rows[[m for m in CALIBRATION_METRICS if m in rows.columns]].astype(np.float64)
    row = summary.loc[trial_id]
    notes = [NO_RELIABILITY_BINS]
    stats = group_columns(list(summary.columns))
    groups = pd.DataFrame(
        {
            stat: {group: float(row[column]) for group, column in columns.items()}
            for stat, columns in stats.items()
        }
    )
    gaps = {g: float(row[g]) for g in ("dp_diff", "eo_diff") if g in row.index}
    if groups.empty and not gaps:
        notes.append(NO_GROUPS)
    return BestTrial(trial_id, row, curves, calibration, groups, gaps, notes)

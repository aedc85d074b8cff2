"""The best trial up close: its learning curves, calibration curve and per-group rates.

- **Learning curves**: :data:`CURVE_METRICS` per epoch, and ECE/Brier per epoch.
- **Calibration curve** (reliability diagram): the trainable's final report
  stores, for the kept model on the test split, each ECE confidence slot's
  mean confidence, accuracy and count (``test_reliability.bNN.*``, see
  :mod:`regtune.trainables.metric_names`). :attr:`BestTrial.reliability` is
  that table and :attr:`BestTrial.reliability_ece` the ECE recomputed from it
  (it equals the stored ``test_ece``). Stores written before the trainable
  reported bins, and trials that never reached their final report, have
  none: :data:`NO_RELIABILITY_BINS` / :data:`UNFINISHED` say so.
- **Per-group rates**: every per-group column
  (:func:`~regtune.platform.analysis.columns.group_rate_columns`: the
  trainable's ``test_acc_<g>``, ``test_selection_rate_<g>``, ``test_tpr_<g>``,
  ``test_fpr_<g>`` with their ``_ci_low``/``_ci_high``, and the other
  spellings), with their intervals where stored; ``dp_diff``/``eo_diff``
  (and ``test_*`` ones with intervals) as gaps. Datasets without a sensitive
  attribute have none: :data:`NO_GROUPS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from regtune.platform.analysis.columns import (
    SPLIT_PREFERENCE,
    detail_columns,
    group_rate_columns,
    reliability_columns,
)
from regtune.platform.analysis.curves import Segments
from regtune.platform.analysis.summary import degenerate_flags
from regtune.platform.results.ranking import TIE_BREAK, best_first

__all__ = [
    "CALIBRATION_METRICS",
    "CURVE_METRICS",
    "GAP_METRICS",
    "GROUP_RATE_COLUMNS",
    "NO_GROUPS",
    "NO_RELIABILITY_BINS",
    "RELIABILITY_COLUMNS",
    "UNFINISHED",
    "BestTrial",
    "best_trial",
    "best_trial_id",
    "group_rates",
    "reliability_table",
    "reliability_view",
]

#: Metrics drawn as the best trial's learning curves, when present.
CURVE_METRICS = ("train_loss", "val_loss", "val_acc", "gap", "robust_acc")
#: Metrics drawn as its calibration along training, when present.
CALIBRATION_METRICS = ("ece", "brier")
#: Group gaps shown with the per-group rates (with their intervals where stored).
GAP_METRICS = ("dp_diff", "eo_diff", "test_dp_diff", "test_eo_diff")
#: Columns of :attr:`BestTrial.reliability`.
RELIABILITY_COLUMNS = ["split", "slot", "low", "high", "count", "conf", "acc"]
#: Columns of :attr:`BestTrial.group_rates`.
GROUP_RATE_COLUMNS = ["split", "stat", "group", "value", "ci_low", "ci_high", "column"]

NO_RELIABILITY_BINS = (
    "no reliability bins stored for this trial (results written before the trainable "
    "reported test_reliability.* at its end); calibration is shown as ECE and Brier per epoch"
)
UNFINISHED = (
    "no reliability bins for this trial: it has not reached its final report (still running, "
    "stopped by the scheduler or failed); calibration is shown as ECE and Brier per epoch"
)
NO_GROUPS = (
    "no per-group metrics stored (the dataset has no sensitive attribute, or per-group "
    "rates were not reported)"
)


@dataclass(frozen=True)
class BestTrial:
    """The best trial's id, its row of the summary, and its curves.

    ``curves`` and ``calibration`` are indexed by ``iteration``; ``groups`` has
    one row per group and one column per stat (``acc``, ``positive_rate``,
    ``tpr``, ``fpr``), the values of :attr:`group_rates`; ``gaps`` maps
    dp_diff/eo_diff (and their ``test_`` and interval-end forms) to values;
    ``reliability`` has :data:`RELIABILITY_COLUMNS` (one row per confidence
    slot of one split, empty when none is stored); ``reliability_ece`` is the
    ECE recomputed from it (NaN without bins); ``group_rates`` has
    :data:`GROUP_RATE_COLUMNS` (one row per group and stat); ``notes`` says
    what is not available and why.
    """

    trial_id: str
    row: pd.Series
    curves: pd.DataFrame
    calibration: pd.DataFrame
    groups: pd.DataFrame
    gaps: dict[str, float]
    notes: list[str] = field(default_factory=list)
    reliability: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=RELIABILITY_COLUMNS)
    )
    reliability_ece: float = math.nan
    group_rates: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=GROUP_RATE_COLUMNS)
    )

    @property
    def split(self) -> str:
        """The split the calibration curve describes (``""`` when none or unnamed)."""
        return str(self.reliability["split"].iloc[0]) if len(self.reliability) else ""


def best_trial_id(
    summary: pd.DataFrame,
    objective: tuple[str, str],
    *,
    others: Sequence[tuple[str, str]] = (),
    include_degenerate: bool = False,
) -> str | None:
    """The trial with the best ``objective`` value; ``None`` when no trial has a value.

    Errored trials (``status`` ``error``) are left out, and degenerate ones
    unless ``include_degenerate``, as in the sweep summary's best.

    Ties go by ``others`` (the remaining objectives), then as everywhere else
    (:mod:`~regtune.platform.results.ranking`), so this is the trial the sweep
    summary and ``regtune promote`` call best.
    """
    rows = summary
    if "status" in rows.columns:
        rows = rows[(rows["status"] != "error").to_numpy(dtype=bool)]
    if not include_degenerate:
        rows = rows[~degenerate_flags(rows)]
    wanted = [objective, *others]
    columns = [c for c in dict.fromkeys([m for m, _ in wanted] + [TIE_BREAK[0]]) if c in rows]
    values = rows[columns].apply(pd.to_numeric, errors="coerce")
    order = best_first(values.to_dict("records"), [str(i) for i in values.index], wanted)
    return str(values.index[order[0]]) if order else None


def _number(values: Mapping[str, object], name: str | None) -> float:
    if name is None or name not in values:
        return math.nan
    try:
        return float(values[name])  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def reliability_table(values: Mapping[str, object]) -> pd.DataFrame:
    """The reliability bins among ``values`` (metric name -> value) as a table with
    :data:`RELIABILITY_COLUMNS`, for the first split of
    :data:`~regtune.platform.analysis.columns.SPLIT_PREFERENCE` that has any count.

    Slots ``0 .. K-2`` span ``[k/(K-1), (k+1)/(K-1))``; the last slot holds
    confidences of exactly 1.0 (``low == high == 1``). Empty when no bins are stored.
    """
    by_split = reliability_columns(values)
    for split in SPLIT_PREFERENCE:
        slots = by_split.get(split)
        if not slots:
            continue
        counts = [_number(values, slots[k].get("count")) for k in sorted(slots)]
        if not any(np.isfinite(counts)):
            continue
        n_bins = max(slots)  # the last slot is the conf == 1.0 one
        rows = []
        for slot in sorted(slots):
            names = slots[slot]
            rows.append(
                {
                    "split": split,
                    "slot": slot,
                    "low": slot / n_bins if slot < n_bins else 1.0,
                    "high": (slot + 1) / n_bins if slot < n_bins else 1.0,
                    "count": _number(values, names.get("count")),
                    "conf": _number(values, names.get("conf")),
                    "acc": _number(values, names.get("acc")),
                }
            )
        return pd.DataFrame(rows, columns=RELIABILITY_COLUMNS)
    return pd.DataFrame(columns=RELIABILITY_COLUMNS)


def _ece(reliability: pd.DataFrame) -> float:
    """``sum_b n_b |acc_b - conf_b| / sum_b n_b`` over the non-empty slots."""
    if reliability.empty:
        return math.nan
    table = reliability[reliability["count"] > 0]
    total = float(table["count"].sum())
    if total <= 0:
        return math.nan
    return float((table["count"] * (table["acc"] - table["conf"]).abs()).sum() / total)


def group_rates(values: Mapping[str, object]) -> pd.DataFrame:
    """Per-group rates among ``values`` (metric name -> value) with their interval ends
    (NaN where not stored), one row per (stat, group): :data:`GROUP_RATE_COLUMNS`."""
    rows = [
        {
            "split": rate.split,
            "stat": rate.stat,
            "group": rate.group,
            "value": _number(values, rate.value),
            "ci_low": _number(values, rate.low),
            "ci_high": _number(values, rate.high),
            "column": rate.value,
        }
        for rate in group_rate_columns(values)
    ]
    return pd.DataFrame(rows, columns=GROUP_RATE_COLUMNS)


def reliability_view(best: BestTrial) -> pd.DataFrame:
    """The non-empty reliability slots as a table a reader scans: confidence range,
    count, mean confidence, accuracy and their gap."""
    table = best.reliability[best.reliability["count"] > 0]
    return pd.DataFrame(
        {
            "confidence": [
                "= 1.0" if lo == hi else f"[{lo:.3f}, {hi:.3f})"
                for lo, hi in zip(table["low"], table["high"], strict=True)
            ],
            "count": table["count"].astype(int).to_numpy(),
            "mean confidence": table["conf"].to_numpy(),
            "accuracy": table["acc"].to_numpy(),
            "gap": (table["acc"] - table["conf"]).to_numpy(),
        }
    )


def best_trial(
    epochs: pd.DataFrame,
    summary: pd.DataFrame,
    trial_id: str,
    seg: Segments | None = None,
    *,
    detail: Mapping[str, float] | None = None,
) -> BestTrial:
    """Curves, calibration curve and groups of ``trial_id`` (which must be in ``summary``).

    ``seg`` (the table's segments) finds its rows without scanning the table;
    ``detail``: the trial's final values of columns the summary lacks (the
    reliability bins and interval ends an analysis reads for this trial only);
    they take precedence over the summary row.
    """
    if seg is not None:
        rows = epochs.iloc[seg.rows_of(trial_id)]
    else:
        rows = epochs[(epochs["trial_id"] == trial_id).to_numpy(dtype=bool)]
    rows = rows.sort_values("iteration").set_index("iteration")
    curves = rows[[m for m in CURVE_METRICS if m in rows.columns]].astype(np.float64)
    calibration = rows[[m for m in CALIBRATION_METRICS if m in rows.columns]].astype(np.float64)
    row = summary.loc[trial_id]
    values: dict[str, object] = {str(k): v for k, v in row.items()}
    values.update(detail or {})
    notes: list[str] = []
    reliability = reliability_table(values)
    if reliability.empty:
        stored = reliability_columns(values)
        notes.append(UNFINISHED if stored else NO_RELIABILITY_BINS)
    rates = group_rates(values)
    groups = pd.DataFrame()
    if len(rates):
        groups = rates.pivot(index="group", columns="stat", values="value")
        groups = groups[list(dict.fromkeys(rates["stat"]))].astype(np.float64)
        groups.columns.name = None
    gaps: dict[str, float] = {}
    for name in GAP_METRICS:
        if name in values:
            gaps[name] = _number(values, name)
            for end in ("_ci_low", "_ci_high"):
                if f"{name}{end}" in values:
                    gaps[f"{name}{end}"] = _number(values, f"{name}{end}")
    if groups.empty and not gaps:
        notes.append(NO_GROUPS)
    shown = row.drop(labels=detail_columns(row.index), errors="ignore")
    return BestTrial(
        trial_id,
        shown,
        curves,
        calibration,
        groups,
        gaps,
        notes,
        reliability,
        _ece(reliability),
        rates,
    )

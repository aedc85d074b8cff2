"""Which epoch's weights each trial keeps, from its stored rows: the trainer's rule.

A trial ends with the weights of one epoch (``Trainer.restore_kept`` in
:mod:`regtune.trainables.loop`), and its final report (``test_*``) scores
those. The trainer reports that epoch in every row, ``kept_epoch``
(:func:`regtune.trainables.loop.kept_epoch`), so a trial's last row names it
exactly. Results stored before it did (``kept_epoch`` only in a fairness
bound's final report) get the trainer's rule rebuilt from their rows, in its
order:

1. the epoch a fairness bound keeps: ``kept_epoch`` in the final report; before
   the final report (a trial still running, or stopped by the scheduler) the
   same choice, :func:`~regtune.trainables.selection.select_epoch`, on the rows
   so far (``config.penalties.fairness``: a ``training_method``, a ``bound``
   and the gap it bounds reported);
2. else, with early stopping on (``config.training.early_stopping.patience``
   > 0), the epoch it found best: the first value of its ``metric``, then each
   one better by more than ``min_delta`` in its ``mode``;
3. else the last epoch (no weights are restored).

The sweep summary, ``regtune analyze`` and ``regtune promote`` rank a trial on
this epoch's row, so they compare the numbers of the weights a trial ships.
Per-trial numbers are segment operations (:mod:`~regtune.platform.analysis.curves`);
only rule 1 before a final report loops over the trials it applies to.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from regtune.platform.analysis.curves import Segments, segment_values

__all__ = ["ES_PREFIX", "FAIRNESS_PREFIX", "KEPT_COLUMNS", "KEPT_EPOCH", "kept_positions"]

#: The final report's record of the epoch a fairness bound kept.
KEPT_EPOCH = "kept_epoch"
ES_PREFIX = "config.training.early_stopping."
FAIRNESS_PREFIX = "config.penalties.fairness."
#: Columns the rule reads (besides the early-stopping metric and the gaps it bounds).
KEPT_COLUMNS = (
    KEPT_EPOCH,
    f"{ES_PREFIX}patience",
    f"{ES_PREFIX}metric",
    f"{ES_PREFIX}mode",
    f"{ES_PREFIX}min_delta",
    f"{FAIRNESS_PREFIX}kind",
    f"{FAIRNESS_PREFIX}training_method",
    f"{FAIRNESS_PREFIX}bound",
    f"{FAIRNESS_PREFIX}margin",
    "val_acc",
    "val_loss",
    "dp_diff",
    "eo_diff",
)
#: The trainer's early-stopping defaults (``EarlyStoppingConfig``), for rows that lack them.
_ES_DEFAULTS = {"metric": "val_loss", "mode": "min", "min_delta": 0.0}


def _last_config(epochs: pd.DataFrame, column: str, seg: Segments, default: object) -> list:
    """A config value per trial, at its last row (``default`` where absent)."""
    if column not in epochs.columns:
        return [default] * seg.n_trials
    values = epochs[column].to_numpy()
    rows = seg.last if seg.order is None else seg.order[seg.last]
    return [default if _missing(v) else v for v in values[rows]]


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _position_of(
    seg: Segments, iterations: NDArray[np.float64], wanted: NDArray[np.float64]
) -> NDArray[np.intp]:
    """Per trial, the sorted row whose iteration is ``wanted`` (-1 where none is)."""
    hits = np.flatnonzero(iterations == np.repeat(wanted, seg.lengths))
    out = np.full(seg.n_trials, -1, dtype=np.intp)
    owner = seg.segment_of_rows()[hits]
    first_owner, first_pos = np.unique(owner, return_index=True)
    out[first_owner] = hits[first_pos]
    return out


def _fairness_choice(
    epochs: pd.DataFrame, seg: Segments, trials: NDArray[np.intp]
) -> dict[int, int]:
    """Trial index -> kept iteration by the fairness bound's rule, for ``trials``
    (no ``kept_epoch`` reported yet) whose config sets a bound it can apply."""
    from regtune.trainables.selection import gap_metric, select_epoch

    kinds = _last_config(epochs, f"{FAIRNESS_PREFIX}kind", seg, "none")
    methods = _last_config(epochs, f"{FAIRNESS_PREFIX}training_method", seg, None)
    bounds = _last_config(epochs, f"{FAIRNESS_PREFIX}bound", seg, None)
    margins = _last_config(epochs, f"{FAIRNESS_PREFIX}margin", seg, 0.0)
    iterations = segment_values(epochs, "iteration", seg)
    out: dict[int, int] = {}
    for i in trials:
        if kinds[i] == "none" or methods[i] is None or bounds[i] is None:
            continue
        key = gap_metric(str(kinds[i]))
        if key not in epochs.columns or "val_acc" not in epochs.columns:
            continue  # the trainer's kept_selection is None without the gap
        rows = slice(seg.starts[i], seg.starts[i] + seg.lengths[i])
        gaps = segment_values(epochs, key, seg)[rows]
        scores = segment_values(epochs, "val_acc", seg)[rows]
        history = [
            {"epoch": float(e), key: float(g), "val_acc": float(s)}
            for e, g, s in zip(iterations[rows], gaps, scores, strict=True)
        ]
        try:
            out[int(i)] = select_epoch(
                history, gap_key=key, bound=float(bounds[i]), margin=float(margins[i])
            ).epoch
        except ValueError:
            continue
    return out


def _early_stopping_best(
    epochs: pd.DataFrame, seg: Segments, trials: NDArray[np.intp]
) -> NDArray[np.intp]:
    """Per trial, the sorted row early stopping found best (-1: none, or not on)."""
    out = np.full(seg.n_trials, -1, dtype=np.intp)
    settings = {
        name: _last_config(epochs, f"{ES_PREFIX}{name}", seg, default)
        for name, default in _ES_DEFAULTS.items()
    }
    groups: dict[tuple[str, str, float], list[int]] = {}
    for i in trials:
        key = (
            str(settings["metric"][i]),
            str(settings["mode"][i]),
            float(settings["min_delta"][i]),
        )
        groups.setdefault(key, []).append(int(i))
    for (metric, mode, delta), members in groups.items():
        if metric not in epochs.columns:
            continue  # never reported: the trainer never updated its best
        values = segment_values(epochs, metric, seg)
        idx = np.asarray(members, dtype=np.intp)
        starts, lengths = seg.starts[idx], seg.lengths[idx]
        best = np.full(idx.size, np.nan)
        where = np.full(idx.size, -1, dtype=np.intp)
        for k in range(int(lengths.max())):
            inside = k < lengths
            rows = np.where(inside, starts + k, starts)
            value = values[rows]
            with np.errstate(invalid="ignore"):
                beats = value < best - delta if mode == "min" else value > best + delta
            # A value not reported (NaN) never updates: the trainer skips a missing metric.
            better = inside & np.isfinite(value) & (np.isnan(best) | beats)
            best = np.where(better, value, best)
            where = np.where(better, rows, where)
        out[idx] = where
    return out


def kept_positions(epochs: pd.DataFrame, seg: Segments) -> NDArray[np.intp]:
    """Per trial (segment order), the sorted-row index of the epoch whose weights it
    keeps (see the module). Columns the rule needs but the table lacks count as not
    set: without them a trial keeps its last epoch."""
    chosen = seg.last.copy()
    if seg.n_trials == 0:
        return chosen
    iterations = segment_values(epochs, "iteration", seg)
    decided = np.zeros(seg.n_trials, dtype=bool)
    if KEPT_EPOCH in epochs.columns:
        # The last row's: every row names the epoch kept so far (a PBT exploit
        # can move it back); older results report it in the final row only.
        kept = segment_values(epochs, KEPT_EPOCH, seg)[seg.last]
        position = _position_of(seg, iterations, np.where(np.isfinite(kept), kept, np.nan))
        found = position >= 0
        chosen[found] = position[found]
        decided |= found
    fair = _fairness_choice(epochs, seg, np.flatnonzero(~decided))
    if fair:
        trials = np.fromiter(fair, dtype=np.intp)
        wanted = np.full(seg.n_trials, np.nan)
        wanted[trials] = [fair[int(t)] for t in trials]
        position = _position_of(seg, iterations, wanted)
        found = position >= 0
        chosen[found] = position[found]
        decided |= found
    patience = np.asarray(
        pd.to_numeric(
            pd.Series(_last_config(epochs, f"{ES_PREFIX}patience", seg, 0)), errors="coerce"
        ).fillna(0),
        dtype=np.float64,
    )
    on = np.flatnonzero(~decided & (patience > 0))
    if on.size:
        position = _early_stopping_best(epochs, seg, on)
        found = position >= 0
        chosen[found] = position[found]
    return chosen

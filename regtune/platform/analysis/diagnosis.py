"""Diagnosis of each trial from its learning curves, and where the next sweep should look.

The checklist the platform exists for, applied to every trial at once:

- **overfit**: train loss well below val loss (``gap_ratio``), the gap growing
  (``gap_growth``) and val loss no longer improving -> more regularization (or more data);
- **underfit**: train loss still high (``train_progress``: end / start) and flat
  over the second half (``train_flat``) -> less regularization or more capacity;
- **unstable**: the optimiser's trouble, read where it shows: NaN/inf losses;
  a first epoch that exploded (its mean train loss :data:`EXPLODE_RATIO` times
  and :data:`EXPLODE_MIN_EXCESS` nats above the val loss at its end); a
  train-loss spike (a jump to :data:`SPIKE_RATIO` times the epoch before, by
  at least :data:`SPIKE_MIN_RISE` of the trial's first-epoch loss); or a
  val-loss spike that is also :data:`VAL_SPIKE_NOISE` times the trial's own
  epoch-to-epoch val noise (a bump of a small validation split is not
  instability) -> smaller steps (learning rate);
- **biased**: a per-group gap (``dp_diff``, ``eo_diff`` or the spread of a
  per-group accuracy / positive rate / TPR / FPR, in any spelling
  :func:`~regtune.platform.analysis.columns.group_columns` reads, e.g. the
  trainable's ``test_selection_rate_<group>``) of :data:`BIAS_GAP` or more at
  the trial's selected epoch -> a stronger fairness penalty;
- **degenerate**: the results store marked the trial a constant predictor (it
  predicts one class for every row; the summary's ``degenerate`` column, see
  :mod:`~regtune.platform.results.degenerate`). Such a trial is never
  ``healthy``, ``overfit``, ``underfit`` or ``biased`` (its loss curves and
  group gaps describe a model whose every prediction is the same class); it
  can still be ``unstable``. Its advice follows its own evidence: a train loss
  that barely left its first epoch's (``train_progress`` >=
  :data:`UNDERFIT_PROGRESS`) asks for weaker penalties, a higher learning rate
  or more epochs; a predicted class holding all but :data:`RARE_CLASS_SHARE`
  of the rows (``class_share``, its accuracy) names the class imbalance.

Every threshold is a named constant below. Each trial's row carries the numbers
its labels were decided from; :func:`explain` turns one row into a sentence
with the evidence and a direction for each swept parameter. All per-trial
numbers are segment reductions (:mod:`~regtune.platform.analysis.curves`), so a
sweep of 10^5 trials is diagnosed without a Python loop over trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from regtune.platform.analysis.columns import group_columns
from regtune.platform.analysis.curves import Segments, segment_values, segments
from regtune.platform.analysis.summary import degenerate_flags, failed_flags
from regtune.platform.analysis.swept import SweptParameter
from regtune.platform.results.degenerate import GROUP_GAPS

__all__ = [
    "BIAS_GAP",
    "DIAGNOSIS_COLUMNS",
    "EXPLODE_MIN_EXCESS",
    "EXPLODE_RATIO",
    "LABELS",
    "MIN_EPOCHS",
    "OVERFIT_GAP_GROWTH",
    "OVERFIT_GAP_RATIO",
    "OVERFIT_VAL_STALL",
    "RARE_CLASS_SHARE",
    "SPIKE_MIN_RISE",
    "SPIKE_RATIO",
    "UNDERFIT_FLAT",
    "UNDERFIT_PROGRESS",
    "VAL_SPIKE_NOISE",
    "WINDOW",
    "diagnose",
    "directions",
    "end_window",
    "explain",
    "group_columns",
    "learnt_little",
]

#: A trial needs this many epochs before its curves say anything (ASHA stops
#: weak trials after one or two; those are "too short", not healthy).
MIN_EPOCHS = 3
#: At most this many epochs are averaged at the start, middle and end of a curve, so one noisy
#: epoch does not decide; a history shorter than 3 x WINDOW averages a third of itself
#: (:func:`end_window`), so the start and end windows never overlap.
WINDOW = 3
#: Overfit needs the final gap (val - train loss) to be at least this share of the final val loss
#: (0.3: val loss is 1.4x train loss or more) ...
OVERFIT_GAP_RATIO = 0.3
#: ... the gap to have grown by at least this share of the final val loss since the start ...
OVERFIT_GAP_GROWTH = 0.1
#: ... and val loss to have improved by less than this share over the second half
#: (stalled or rising).
OVERFIT_VAL_STALL = 0.02
#: Underfit needs the final train loss to be at least this share of the first epoch's
#: (a well-fit model ends far below it; 0.7 means it learnt less than a third) ...
UNDERFIT_PROGRESS = 0.7
#: ... and train loss to have fallen by less than this share over the second half (flat).
UNDERFIT_FLAT = 0.05
#: A loss at least this multiple of the previous epoch's is a spike (unstable) ...
SPIKE_RATIO = 1.5
#: ... and rises by at least this share of the trial's first-epoch loss of that curve: a loss
#: that fell from 0.7 to 0.001 and wiggles to 0.002 doubled, but is not unstable.
SPIKE_MIN_RISE = 0.05
#: A val-loss spike (both rules above) also needs its rise to be at least this multiple of the
#: trial's val noise (``val_noise``: the median absolute epoch-to-epoch change of its val
#: loss). A val loss measured on a few hundred rows moves by a few times its median step now
#: and then (up to 4x in healthy runs on 60-400 validation rows); a diverging optimiser
#: moves it by tens of times (see tests/platform/analysis/data/unstable_histories.json).
VAL_SPIKE_NOISE = 6.0
#: The first epoch exploded when its mean train loss is at least this multiple of the val loss
#: at its end (``first_epoch_ratio``) ... An optimiser that learns lowers the loss from its
#: chance level, so the epoch's mean stays within a few times the end loss (at most 3x in the
#: healthy runs measured); one whose loss blew up inside the epoch averages 13x to 10^7x.
EXPLODE_RATIO = 6.0
#: ... and at least this many nats above it (cross-entropy): a model that learns an easy task
#: in one epoch (0.12 mean, 0.01 at the end) has a large ratio but no explosion.
EXPLODE_MIN_EXCESS = 1.0
#: A group gap (dp_diff, eo_diff, or the spread of a per-group rate) at least this large is bias.
BIAS_GAP = 0.1

#: A constant predictor whose predicted class holds all but at most this share of the rows
#: (its accuracy ``class_share`` >= 1 - this) faces a rare class: accuracy rewards ignoring it.
RARE_CLASS_SHARE = 0.2

#: Labels in the order a trial's label lists them.
LABELS = ("degenerate", "unstable", "overfit", "underfit", "biased")

#: Columns of the diagnosis table, besides the boolean label columns.
DIAGNOSIS_COLUMNS = [
    "diagnosis",
    "epochs",
    "window",
    "train_loss_start",
    "train_loss_final",
    "val_loss_final",
    "train_loss_end",
    "val_loss_end",
    "val_loss_min",
    "gap_end",
    "gap_ratio",
    "gap_growth",
    "val_improvement",
    "train_progress",
    "train_flat",
    "n_spikes",
    "spiked",
    "val_noise",
    "first_epoch_ratio",
    "exploded",
    "n_nonfinite",
    "bias_gap",
    "class_share",
]


def end_window(epochs: NDArray[np.intp] | int) -> NDArray[np.intp]:
    """Epochs averaged at each end of a curve of ``epochs`` epochs: ``epochs // 3``, at
    least 1 and at most :data:`WINDOW` (3 epochs: 1, the final epoch itself; 9 or more: 3)."""
    return np.clip(np.asarray(epochs, dtype=np.intp) // 3, 1, WINDOW)


def _ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(den) > 0, num / np.abs(den), np.nan)


def _bias_gap(summary: pd.DataFrame | None, index: pd.Index) -> NDArray:
    """Largest group gap per trial at its selected epoch (NaN when no group metric exists)."""
    gap = np.full(len(index), np.nan)
    if summary is None:
        return gap
    aligned = summary if summary.index is index else summary.reindex(index)
    parts = [aligned[c].to_numpy(dtype=np.float64) for c in ("dp_diff", "eo_diff") if c in aligned]
    for groups in group_columns(list(aligned.columns)).values():
        values = aligned[list(groups.values())].to_numpy(dtype=np.float64)
        parts.append(np.fmax.reduce(values, axis=1) - np.fmin.reduce(values, axis=1))
    for part in parts:
        gap = np.fmax(gap, np.abs(part))
    return gap


def _class_share(
    summary: pd.DataFrame | None, index: pd.Index, degenerate: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Per degenerate trial, the share of the val rows in the class it predicts: its
    ``val_acc`` at the summary's epoch, where the gaps stored there are exactly 0 (a
    constant prediction's accuracy is that class's share). NaN elsewhere."""
    share = np.full(len(index), np.nan)
    if summary is None or "val_acc" not in summary.columns or not degenerate.any():
        return share
    aligned = summary if summary.index is index else summary.reindex(index)
    constant = degenerate.copy()
    for gap in GROUP_GAPS:
        if gap in aligned.columns:
            constant &= aligned[gap].to_numpy(dtype=np.float64, na_value=np.nan) == 0.0
    acc = aligned["val_acc"].to_numpy(dtype=np.float64, na_value=np.nan)
    share[constant] = acc[constant]
    return share


@dataclass(frozen=True)
class _Spikes:
    """Per sorted row: whether the train / val loss spiked there (a counted spike), whether
    either did; per trial: the val noise its val spikes were measured against."""

    train: NDArray[np.bool_]
    val: NDArray[np.bool_]
    any_: NDArray[np.bool_]
    val_noise: NDArray[np.float64]


def _val_noise(val: NDArray[np.float64], seg: Segments) -> NDArray[np.float64]:
    """Per trial, the median absolute epoch-to-epoch change of its val loss (finite steps
    only; NaN for a trial with none): the noise its validation split adds, trend included."""
    if seg.n_trials == 0:
        return np.zeros(0)
    step = np.full(val.size, np.nan)
    with np.errstate(invalid="ignore"):
        step[1:] = np.abs(val[1:] - val[:-1])
    step[seg.starts] = np.nan
    step[~np.isfinite(step)] = np.nan
    count = seg.reduce(np.add, np.isfinite(step).astype(np.float64)).astype(np.intp)
    width = int(seg.lengths.max())
    if seg.n_trials * width > 4 * step.size + 1024:
        # Very ragged (one long trial among many short ones): no padded matrix.
        noise = pd.Series(step).groupby(seg.segment_of_rows(), sort=True).median()
        return noise.reindex(range(seg.n_trials)).to_numpy(dtype=np.float64)
    # One row per trial, padded with NaN; a row sort puts NaN last, so the middle of the
    # first ``count`` values is the median.
    padded = np.full((seg.n_trials, width), np.nan)
    rows = seg.segment_of_rows()
    padded[rows, np.arange(step.size) - seg.starts[rows]] = step
    padded.sort(axis=1)
    trials = np.arange(seg.n_trials)
    low = padded[trials, np.maximum(count - 1, 0) // 2]
    high = padded[trials, np.minimum(count // 2, width - 1)]
    return np.where(count > 0, (low + high) / 2, np.nan)


def _spikes(train: NDArray[np.float64], val: NDArray[np.float64], seg: Segments) -> _Spikes:
    """Which epochs hold a counted spike (see the module docstring): a loss at least
    :data:`SPIKE_RATIO` x the epoch before and risen by :data:`SPIKE_MIN_RISE` of the
    trial's first epoch of that loss; for val also by :data:`VAL_SPIKE_NOISE` x its noise."""
    noise = _val_noise(val, seg)
    spike_train = np.zeros(train.size, dtype=bool)
    spike_val = np.zeros(val.size, dtype=bool)
    if train.size > 1:
        lengths = seg.lengths
        floor_train = SPIKE_MIN_RISE * np.abs(np.repeat(train[seg.starts], lengths))
        floor_val = SPIKE_MIN_RISE * np.abs(np.repeat(val[seg.starts], lengths))
        floor_noise = VAL_SPIKE_NOISE * np.repeat(noise, lengths)
        rise_train = train[1:] - train[:-1]
        rise_val = val[1:] - val[:-1]
        before = np.isfinite(train[:-1]) & np.isfinite(val[:-1])
        with np.errstate(invalid="ignore"):
            spike_train[1:] = (
                (train[1:] >= SPIKE_RATIO * train[:-1]) & (rise_train >= floor_train[1:]) & before
            )
            spike_val[1:] = (
                (val[1:] >= SPIKE_RATIO * val[:-1])
                & (rise_val >= floor_val[1:])
                & (rise_val >= floor_noise[1:])
                & before
            )
        spike_train[seg.starts] = False
        spike_val[seg.starts] = False
    return _Spikes(spike_train, spike_val, spike_train | spike_val, noise)


def diagnose(
    epochs: pd.DataFrame,
    summary: pd.DataFrame | None = None,
    *,
    seg: Segments | None = None,
) -> pd.DataFrame:
    """One row per trial (index ``trial_id``): labels and the numbers behind them.

    ``epochs`` needs ``trial_id``, ``iteration``, ``train_loss`` and
    ``val_loss``; ``summary`` (the per-trial table) supplies the group metrics
    at each trial's selected epoch. Columns: :data:`DIAGNOSIS_COLUMNS` plus
    one boolean column per label in :data:`LABELS`, ``too_short`` and
    ``failed`` (the summary's ``status`` is ``error``: the labels still
    describe its curves, and :func:`explain` starts by saying it failed).
    ``diagnosis`` is the labels joined with ``+``, ``healthy``, or
    ``too short`` (fewer than :data:`MIN_EPOCHS` epochs, unless already unstable
    or degenerate). ``degenerate`` comes from the summary's ``degenerate``
    column (the results store's constant-predictor mark); such a trial is
    labelled ``degenerate`` (``degenerate+unstable`` when also unstable),
    never ``healthy``, and ``class_share`` is its ``val_acc`` (the share of
    the rows in the class it predicts).

    The numbers: ``train_loss_final``/``val_loss_final`` are the losses of the
    trial's final epoch. The rules read windows of ``window`` epochs
    (:func:`end_window`: a third of the history, 1 to :data:`WINDOW`):
    ``train_loss_end``/``val_loss_end``/``gap_end`` are the means over the last
    ``window`` epochs (the final epoch itself when ``window`` is 1);
    ``gap_ratio`` is ``gap_end / val_loss_end``; ``gap_growth`` is ``gap_end``
    minus the gap over the first ``window`` epochs, over ``val_loss_end``;
    ``val_improvement`` and ``train_flat`` compare the window ending at the
    middle epoch (the ``ceil(epochs / 2)``-th) with the end window, as a share
    of the middle one; ``train_progress`` is ``train_loss_end`` over the first
    epoch's train loss (``train_loss_start``).

    Raises:
        DataError: ``trial_id``/``iteration`` missing.
        SpecError: ``train_loss`` or ``val_loss`` missing (the message lists the metrics).
    """
    from regtune.platform.analysis.summary import check_metric, metric_columns

    present = metric_columns(epochs)
    for needed in ("train_loss", "val_loss"):
        check_metric(needed, present, "diagnosis")
    seg = seg if seg is not None else segments(epochs)
    train = segment_values(epochs, "train_loss", seg)
    val = segment_values(epochs, "val_loss", seg)
    n = seg.n_trials
    lengths = seg.lengths

    nonfinite = ~np.isfinite(train + val)
    n_nonfinite = seg.reduce(np.add, nonfinite.astype(np.int64)) if n else np.zeros(0)
    spikes = _spikes(train, val, seg)
    n_spikes = seg.reduce(np.add, spikes.any_.astype(np.int64)) if n else np.zeros(0)
    n_train_spikes = seg.reduce(np.add, spikes.train.astype(np.int64)) if n else np.zeros(0)
    n_val_spikes = seg.reduce(np.add, spikes.val.astype(np.int64)) if n else np.zeros(0)
    spiked = np.array(["", "train", "val", "train+val"], dtype=object)[
        (n_train_spikes > 0).astype(np.int64) + 2 * (n_val_spikes > 0).astype(np.int64)
    ]
    first_train = train[seg.starts] if n else np.zeros(0)
    first_val = val[seg.starts] if n else np.zeros(0)
    first_epoch_ratio = _ratio(first_train, first_val)
    with np.errstate(invalid="ignore"):
        exploded = (first_epoch_ratio >= EXPLODE_RATIO) & (
            first_train - first_val >= EXPLODE_MIN_EXCESS
        )

    # Each comparison reads windows of ``window`` epochs: at most WINDOW and at most a
    # third of the history, so the start and end windows never overlap and a short
    # trial is read epoch by epoch (3 epochs: the first, the middle and the final one).
    window = end_window(lengths)
    last = seg.last if n else np.zeros(0, dtype=np.intp)
    train_final = train[last] if n else np.zeros(0)
    val_final = val[last] if n else np.zeros(0)
    train_start = seg.window_mean(train, 1, tail=False)
    train_end = seg.window_mean(train, window, tail=True)
    val_end = seg.window_mean(val, window, tail=True)
    # The gap (val - train loss) of a window is the difference of the two windows' means.
    gap_start = seg.window_mean(val, window, tail=False) - seg.window_mean(
        train, window, tail=False
    )
    gap_end = val_end - train_end
    val_min = seg.reduce(np.fmin, val) if n else np.zeros(0)
    # Second half: from the middle epoch (the ceil(n/2)-th) to the end; the middle is the
    # window that ends there.
    mid_rows = seg.starts + (lengths + 1) // 2 - 1
    train_mid = seg.mean_ending_at(train, mid_rows, window)
    val_mid = seg.mean_ending_at(val, mid_rows, window)

    gap_ratio = _ratio(gap_end, val_end)
    gap_growth = _ratio(gap_end - gap_start, val_end)
    val_improvement = _ratio(val_mid - val_end, val_mid)
    train_progress = _ratio(train_end, train_start)
    train_flat = _ratio(train_mid - train_end, train_mid)
    bias_gap = _bias_gap(summary, seg.index)
    degenerate = degenerate_flags(summary, seg.index)
    class_share = _class_share(summary, seg.index, degenerate)

    long_enough = lengths >= MIN_EPOCHS
    with np.errstate(invalid="ignore"):
        unstable = (n_nonfinite > 0) | (n_spikes > 0) | exploded
        overfit = (
            long_enough
            & (gap_ratio >= OVERFIT_GAP_RATIO)
            & (gap_growth >= OVERFIT_GAP_GROWTH)
            & (val_improvement < OVERFIT_VAL_STALL)
        )
        underfit = (
            long_enough
            & ~overfit
            & (train_progress >= UNDERFIT_PROGRESS)
            & (train_flat < UNDERFIT_FLAT)
        )
        # A constant predictor's curves and group gaps do not describe a model that tells
        # rows apart: none of these labels (nor their advice) applies to it.
        overfit &= ~degenerate
        underfit &= ~degenerate
        biased = (bias_gap >= BIAS_GAP) & ~degenerate
    too_short = ~long_enough & ~unstable & ~degenerate
    flags = np.stack([degenerate, unstable, overfit, underfit, biased], axis=1)
    code = flags.astype(np.int64) @ (1 << np.arange(len(LABELS)))
    names = np.array(
        [
            "+".join(label for bit, label in enumerate(LABELS) if c & (1 << bit)) or "healthy"
            for c in range(1 << len(LABELS))
        ],
        dtype=object,
    )
    label = names[code]
    label[too_short & (code == 0)] = "too short"
    table = pd.DataFrame(
        {
            "diagnosis": label,
            "epochs": lengths.astype(np.int64),
            "window": window.astype(np.int64),
            "train_loss_start": train_start,
            "train_loss_final": train_final,
            "val_loss_final": val_final,
            "train_loss_end": train_end,
            "val_loss_end": val_end,
            "val_loss_min": val_min,
            "gap_end": gap_end,
            "gap_ratio": gap_ratio,
            "gap_growth": gap_growth,
            "val_improvement": val_improvement,
            "train_progress": train_progress,
            "train_flat": train_flat,
            "n_spikes": n_spikes.astype(np.int64),
            "spiked": spiked,
            "val_noise": spikes.val_noise,
            "first_epoch_ratio": first_epoch_ratio,
            "exploded": exploded,
            "n_nonfinite": n_nonfinite.astype(np.int64),
            "bias_gap": bias_gap,
            "class_share": class_share,
            "degenerate": degenerate,
            "unstable": unstable,
            "overfit": overfit,
            "underfit": underfit,
            "biased": biased,
            "too_short": too_short,
            "failed": failed_flags(summary, seg.index),
        },
        index=seg.index,
    )
    return table


# What each label asks of a parameter, by the parameter's role (see swept.Role).
_DIRECTIONS: dict[str, dict[str, str]] = {
    "overfit": {"regularizer": "raise", "inverse": "lower", "capacity": "lower"},
    "underfit": {"regularizer": "lower", "inverse": "raise", "capacity": "raise"},
}
#: What a constant predictor whose train loss barely moved asks of a parameter, by role: a
#: strong penalty holds the weights near zero (one class everywhere), a small step never
#: leaves the start.
_DEGENERATE_DIRECTIONS = {"regularizer": "lower", "inverse": "raise", "step": "raise"}
#: The parameter an unstable trial asks to lower: the learning rate (a smaller batch at the
#: same rate is noisier, not steadier, so ``training.batch_size`` is left alone).
_STEP_SIZE = "training.lr"


def learnt_little(row: Mapping[str, object]) -> bool:
    """Whether a trial's train loss ended at :data:`UNDERFIT_PROGRESS` or more of its
    first epoch's (it barely left its starting point)."""
    value = row.get("train_progress")
    if not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return bool(np.isfinite(value) and value >= UNDERFIT_PROGRESS)


def directions(row: Mapping[str, object], swept: Sequence[SweptParameter]) -> dict[str, str]:
    """Recommended direction (``raise``/``lower``/``keep``) for each swept parameter.

    Labels are read in :data:`LABELS` order; the first label with an opinion
    about a parameter decides it. Bias asks only the fairness strength to rise,
    instability only ``training.lr`` to fall. A degenerate trial (a constant
    predictor) asks for less regularization and a larger step only when its
    train loss barely moved (``train_progress`` >= :data:`UNDERFIT_PROGRESS`,
    see :func:`learnt_little`), and never while unstable (the step is then too
    large); otherwise it keeps every parameter.
    """
    out: dict[str, str] = {}
    for parameter in swept:
        choice = "keep"
        for label in LABELS:
            if not row.get(label):
                continue
            if label == "degenerate":
                if row.get("unstable") or not learnt_little(row):
                    continue
                wanted = _DEGENERATE_DIRECTIONS.get(parameter.role)
                if wanted:
                    choice = wanted
                    break
                continue
            if label == "biased":
                if parameter.name == "penalties.fairness.strength":
                    choice = "raise"
                    break
                continue
            if label == "unstable":
                if parameter.name == _STEP_SIZE:
                    choice = "lower"
                    break
                continue
            wanted = _DIRECTIONS[label].get(parameter.role)
            if wanted:
                choice = wanted
                break
        out[parameter.name] = choice
    return out


def _fmt(value: object) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "nan" if np.isnan(value) else f"{float(value):.3g}"
    return str(value)


def _instability(row: Mapping[str, object], f: Mapping[str, str]) -> str:
    """The evidence of an unstable row, each cause that fired with its numbers."""
    causes: list[str] = []
    if _count(row.get("n_nonfinite")):
        causes.append(f"{f['n_nonfinite']} NaN/inf epoch(s)")
    if row.get("exploded"):
        causes.append(
            f"the first epoch exploded (mean train loss {f.get('train_loss_start', 'nan')} is "
            f"{f.get('first_epoch_ratio', 'nan')}x the val loss at its end; >= {EXPLODE_RATIO:g}x "
            f"and >= {EXPLODE_MIN_EXCESS:g} nats above)"
        )
    spiked = str(row.get("spiked") or "")
    if _count(row.get("n_spikes")):
        which = {"train": "train loss", "val": "val loss", "train+val": "train and val loss"}
        val_rule = (
            f"; a val spike also >= {VAL_SPIKE_NOISE:g}x the trial's val noise "
            f"{f.get('val_noise', 'nan')}"
            if "val" in spiked
            else ""
        )
        causes.append(
            f"{f['n_spikes']} spike(s) of the {which.get(spiked, 'loss')} (>= {SPIKE_RATIO}x the "
            f"epoch before, rising by >= {SPIKE_MIN_RISE:g} of its first epoch{val_rule})"
        )
    return ", ".join(causes) or "no cause recorded"


def _constant(
    row: Mapping[str, object], f: Mapping[str, str], swept: Sequence[SweptParameter]
) -> str:
    """The evidence of a degenerate row and only the advice its numbers support."""
    text = (
        "degenerate: predicts one class for every row (its group gaps dp_diff and eo_diff are "
        "exactly 0), so by default it is left off the front and is never best"
    )
    raw = row.get("class_share")
    share = float(raw) if isinstance(raw, (int, float, np.integer, np.floating)) else np.nan
    known = bool(np.isfinite(share))
    if known:
        text += (
            f"; its val_acc {f['class_share']} is only the share of the val rows in the class "
            "it predicts"
        )
    advice: list[str] = []
    if row.get("unstable"):
        pass  # the unstable part that follows names the cause and the step to lower
    elif learnt_little(row):
        text += (
            f"; its train loss ended at {f['train_progress']} of its first epoch's "
            f"(>= {UNDERFIT_PROGRESS}): it barely left its starting point"
        )
        weaker = [p.name for p in swept if p.is_penalty]
        advice.append(
            "train longer (budget.max_epochs) or with a higher training.lr"
            + (
                f", or weaken {', '.join(weaker)} (a strong penalty holds the weights near zero)"
                if weaker
                else ""
            )
        )
    else:
        text += (
            f"; its train loss fell to {f['train_progress']} of its first epoch's, yet every "
            "prediction is one class"
        )
    if known and share >= 1.0 - RARE_CLASS_SHARE:
        text += (
            f"; the other classes hold only {1.0 - share:.1%} of the val rows "
            f"(<= {RARE_CLASS_SHARE:.0%}), which accuracy lets a model ignore"
        )
        advice.append(
            "resample the training file so the rare class is commoner (regtune has no class "
            "weights yet)"
        )
    return text + (" -> " + "; or ".join(advice) if advice else "")


def _count(value: object) -> int:
    if isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value):
        return int(value)
    return 0


def _ends(row: Mapping[str, object]) -> str:
    """How the rule's end values were read: nothing when from single epochs, else the
    window averaged (the numbers before it are then means, not the final epoch's)."""
    width = _count(row.get("window"))
    if width <= 1:
        return ""
    return f" (each end the mean of {width} epochs)"


def explain(row: Mapping[str, object], swept: Sequence[SweptParameter] = ()) -> str:
    """One sentence: the labels, the numbers behind them, and what to change.

    ``row`` is one row of :func:`diagnose` (e.g. ``table.loc[trial_id]``).
    """
    f = {key: _fmt(value) for key, value in row.items()}
    parts: list[str] = []
    lead = (
        "failed (status error: left out of the path, the front, the best and the verdict); "
        "its curves read "
        if row.get("failed")
        else ""
    )
    if row.get("degenerate"):
        parts.append(_constant(row, f, swept))
    if row.get("unstable"):
        fixed = all(p.name != _STEP_SIZE for p in swept)
        advice = f" -> lower {_STEP_SIZE} (not swept)" if fixed else ""
        parts.append("unstable: " + _instability(row, f) + advice)
    final = (
        f"final val loss {f.get('val_loss_final', 'nan')}, train loss "
        f"{f.get('train_loss_final', 'nan')} (after {f.get('epochs', '?')} epochs)"
    )
    ends = _ends(row)
    if row.get("overfit"):
        parts.append(
            f"overfit: {final}; gap {f['gap_ratio']} of val loss (>= {OVERFIT_GAP_RATIO}), "
            f"grew by {f['gap_growth']} of val loss since the start, val loss improved "
            f"{f['val_improvement']} over the second half (< {OVERFIT_VAL_STALL}){ends} "
            "-> more regularization or more data"
        )
    if row.get("underfit"):
        parts.append(
            f"underfit: train loss ended at {f['train_progress']} of its first epoch's "
            f"(>= {UNDERFIT_PROGRESS}) and fell only {f['train_flat']} over the second half "
            f"(< {UNDERFIT_FLAT}){ends}; {final} -> less regularization or more capacity"
        )
    if row.get("biased"):
        parts.append(f"biased: largest group gap {f['bias_gap']} (>= {BIAS_GAP})")
    if not parts:
        if row.get("too_short"):
            parts.append(f"too short to tell: {f['epochs']} epoch(s) (< {MIN_EPOCHS})")
        else:
            parts.append(f"healthy: {final}; gap {f['gap_ratio']} of val loss{ends}")
    moves = {} if row.get("failed") else directions(row, swept)  # no advice on a failure
    if moves:
        parts.append("; ".join(f"{name}: {move}" for name, move in moves.items()))
    return lead + ". ".join(parts)

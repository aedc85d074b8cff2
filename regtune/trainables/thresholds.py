"""Per-group decision thresholds that make hard predictions fair (post-processing).

A binary model's positive-class score ``p`` becomes the decision
``p >= threshold[group]``. :func:`fit_thresholds` chooses one threshold per
group on labelled rows (the validation split) so that the decisions meet
demographic parity (equal selection rates) or equalized odds (equal TPR and
FPR) as closely as the rows allow, and among the thresholds that meet it
within ``tolerance`` (up to float rounding: :func:`within_tolerance`) the
most accurate (exactly so for two groups; see "Search"). Deterministic: no randomised
decisions (Hardt et al.'s exact EO needs them; a server would then need a
random source per request); the only random draws are the seeded bootstrap
resamples of a robust fit (``robust_quantile``).

Trivial decisions never count as meeting the constraint: selecting everyone
(or no one) in every group has no gap at all, and with few distinct scores
(COMPAS) exact parity may be reachable only near there. A tuple counts as
feasible only when its accuracy on the fitting rows beats the best constant
decision (everyone the majority label); when no such tuple meets the
constraint the fit says so (``feasible=False``) and returns the smallest gap
among the tuples that do beat it.

Search: every distinct score of a group (and "select none") is a candidate
threshold of that group (at most :data:`MAX_CANDIDATES`, evenly spaced in
rank, for a group with more). For each candidate of the reference group (the
largest), every other group takes the candidate whose rates are closest to
the reference's (ties: the more accurate). With two groups the other group
also tries, per reference candidate, its most accurate candidate within
``tolerance`` (ties: the smaller gap, then the lower threshold); a pair's gap
is the tuple's gap, so the fit is then the most accurate pair within
``tolerance`` over all pairs of candidates (pairwise, like the closest match:
memory and time grow with the product of the two groups' candidates). The
best tuple wins; ties: the smaller gap on the rows, then the lower reference
threshold (its closest match first). With three or more groups the other
groups constrain each other and only the closest matches are tried: exact
parity, when reachable, is still found at its most accurate (for a fixed
reference threshold each other group's best exact match is independent of
the others), but with a positive tolerance a more accurate tuple within it
can be missed.

Robust fit (``robust_quantile`` set): the same candidate tuples (so the most
accurate of them meeting the criterion, not necessarily of all pairs), but a
tuple meets the constraint only when its gap is within ``tolerance`` both on the
fitting rows and on at least ``robust_quantile`` of ``resamples``
stratified bootstrap resamples of them (:mod:`regtune.trainables.fairness_robust`,
seeded by ``seed``). A small, noisy (group, label) cell thereby gets a wider
effective margin than a large one. When every cell's rates are exact (each
resample gives the same rates) or the option is off, the fit is the plain one.

Small cells: :func:`warn_fit_cells` logs a warning for each cell the fit's
constraint rests on (a group's rows for ``dp``, its positives and negatives
for ``eo``) with fewer than
:data:`~regtune.trainables.bootstrap.MIN_CELL_ROWS` rows ("group Other has 0
positives in validation"); a threshold fitted on a handful of rows meets the
constraint there by chance. Nothing is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor

from regtune.errors import DataError
from regtune.trainables import fairness_robust
from regtune.trainables.bootstrap import MIN_CELL_ROWS, warn_small_cells
from regtune.trainables.config import DEFAULT_ROBUST_RESAMPLES, ThresholdRows
from regtune.trainables.selection import GAP_TOLERANCE

__all__ = [
    "BAD_FIT_ROWS",
    "DEFAULT_RESAMPLES",
    "DEFAULT_TOLERANCE",
    "FIT_ROWS",
    "MAX_CANDIDATES",
    "ROWS_NAMED",
    "ThresholdFit",
    "apply_thresholds",
    "beats_constant",
    "constant_accuracy",
    "fit_thresholds",
    "resampled_gap",
    "warn_fit_cells",
    "within_tolerance",
]

#: Largest gap counted as meeting the constraint when ``tolerance`` is not
#: given: float rounding of rate differences only (epoch selection's slack).
DEFAULT_TOLERANCE = GAP_TOLERANCE
#: Rows a trainer may fit thresholds on: the validation split (default), or
#: the kept model's scores on the training and validation splits together.
#: The second has about seven times the rows in Adult's smallest (group,
#: label) cell, so its rates are less noisy, but its training rows are
#: in-sample: their rates run a little optimistic (see docs/fairness.md).
FIT_ROWS: tuple[str, ...] = get_args(ThresholdRows)
BAD_FIT_ROWS = "threshold_rows must be one of {allowed}; got {rows!r}"
#: Most candidate thresholds per group. A group with more distinct scores
#: keeps this many of them, evenly spaced in rank (each step then moves its
#: rates by about 1/MAX_CANDIDATES of its rows): the search compares every
#: pair of candidates, so this bounds its memory (about 32 MiB per array).
MAX_CANDIDATES = 2048
#: Bootstrap resamples of a robust fit when not given (the config's default).
DEFAULT_RESAMPLES = DEFAULT_ROBUST_RESAMPLES

BAD_INPUTS = (
    "fit_thresholds needs scores, labels and groups of one equal, non-zero length and "
    "every group code in [0, n_groups); got lengths {lengths} and n_groups={n_groups}"
)
EMPTY_GROUP = "group {group} has no rows to fit its threshold on; every group needs validation rows"
BAD_KIND = "kind must be 'dp' or 'eo'; got {kind!r}"
BAD_THRESHOLDS = "apply_thresholds got {n} thresholds but group codes up to {top}"


@dataclass(frozen=True)
class ThresholdFit:
    """Fitted thresholds (index = group code) and how they score on the fitting rows.

    ``feasible``: the gap is within the tolerance and the accuracy beats
    ``constant_accuracy`` (the best constant decision's, on the same rows).
    ``robust_gap``: for a robust fit, the ``robust_quantile`` quantile of the
    tuple's gap over the bootstrap resamples (a robust fit is feasible only
    when it too is within the tolerance); None for a plain fit.
    """

    thresholds: tuple[float, ...]
    gap: float
    accuracy: float
    feasible: bool
    constant_accuracy: float = 0.0
    robust_gap: float | None = None


def constant_accuracy(y: Tensor | np.ndarray) -> float:
    """Accuracy of the best constant decision on labels ``y`` (everyone the majority label)."""
    positive = float(np.asarray(y, dtype=np.float64).mean())
    return max(positive, 1.0 - positive)


def beats_constant(accuracy: float | np.ndarray, constant: float) -> Any:
    """Whether ``accuracy`` (one value or an array) beats ``constant``
    (:func:`constant_accuracy`) by more than float rounding: the rule that
    keeps trivial decisions from counting as fair."""
    return accuracy > constant + DEFAULT_TOLERANCE


def apply_thresholds(scores: Tensor, s: Tensor, thresholds: Tensor | tuple[float, ...]) -> Tensor:
    """Decisions ``scores >= thresholds[s]`` as int64 (1 = positive class)."""
    t = torch.as_tensor(thresholds, dtype=torch.float64, device=scores.device)
    if s.numel() and int(s.max()) >= t.numel():
        raise DataError(BAD_THRESHOLDS.format(n=t.numel(), top=int(s.max())))
    return (scores.double() >= t[s]).long()


#: How the warnings of :func:`warn_fit_cells` name the fitting rows (``threshold_rows``).
ROWS_NAMED = {"val": "validation", "train+val": "training+validation"}


def warn_fit_cells(
    y: Tensor,
    s: Tensor,
    group_names: Sequence[str],
    *,
    kind: str,
    rows: str = "val",
    minimum: int = MIN_CELL_ROWS,
) -> list[str]:
    """Warn (log) about each cell of the fitting rows ``(y, s)`` with fewer than
    ``minimum`` rows that a ``kind`` fit rests on: a group's rows (``dp``), its
    positives and negatives (``eo``); return the messages. ``rows`` (one of
    :data:`FIT_ROWS`) names the rows in the message: ``group Other has 0 positives
    in validation (fewer than 30): the thresholds fitted on it are unreliable``.

    Raises:
        ValueError: ``kind`` is not ``dp``/``eo`` or ``rows`` not one of :data:`FIT_ROWS`.
    """
    if kind not in ("dp", "eo"):
        raise ValueError(BAD_KIND.format(kind=kind))
    if rows not in FIT_ROWS:
        raise ValueError(BAD_FIT_ROWS.format(rows=rows, allowed=FIT_ROWS))
    return warn_small_cells(
        y,
        s,
        group_names,
        labels=kind == "eo",
        split=ROWS_NAMED.get(rows, rows),
        use="the thresholds fitted on it",
        minimum=minimum,
    )


def _candidates(p: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Rates and correct counts of one group at each candidate threshold (ascending)."""
    unique = np.unique(p)
    if unique.size > MAX_CANDIDATES:
        unique = unique[np.linspace(0, unique.size - 1, MAX_CANDIDATES).round().astype(np.int64)]
    # "Select none": just above the top score, finite so it serialises as JSON.
    cand = np.append(unique, np.nextafter(unique[-1], np.inf))
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])

    def at_least(sorted_values: np.ndarray) -> np.ndarray:
        return (sorted_values.size - np.searchsorted(sorted_values, cand, side="left")).astype(
            np.float64
        )

    tp, fp = at_least(pos), at_least(neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "cand": cand,
            "sel": (tp + fp) / p.size,
            "tpr": tp / pos.size if pos.size else np.full(cand.size, np.nan),
            "fpr": fp / neg.size if neg.size else np.full(cand.size, np.nan),
            "correct": tp + (neg.size - fp),
        }


def _distance(ref: dict[str, np.ndarray], other: dict[str, np.ndarray], kind: str) -> np.ndarray:
    """(n_ref, n_other) distance between the constrained rates; NaN rates count 0."""
    keys = ("sel",) if kind == "dp" else ("tpr", "fpr")
    out = np.zeros((ref["cand"].size, other["cand"].size))
    for key in keys:
        diff = np.abs(ref[key][:, None] - other[key][None, :])
        out = np.maximum(out, np.nan_to_num(diff, nan=0.0))
    return out


def within_tolerance(gap: float | np.ndarray, tolerance: float) -> Any:
    """Whether ``gap`` (one value or an array) is within ``tolerance`` up to
    float rounding (:data:`DEFAULT_TOLERANCE`): an EO gap of exactly 0.05
    computes as 0.050000000000000044 and still meets tolerance 0.05."""
    return gap <= tolerance + DEFAULT_TOLERANCE


def _with_most_accurate_within(
    chosen: np.ndarray, dist: np.ndarray, correct: np.ndarray, g: int, tolerance: float
) -> np.ndarray:
    """Two groups: ``chosen`` (one tuple per reference candidate, group ``g``
    at its nearest match) with, after each tuple, the same reference
    candidate paired with group ``g``'s most accurate candidate within
    ``tolerance`` (``dist``: the pairwise gaps; ``correct``: group ``g``'s
    correct decisions per candidate); ties: the smaller gap, then the lower
    threshold. A reference candidate with no such partner adds nothing.

    With two groups the gap of a tuple is the gap of its one pair, so the
    most accurate tuple within ``tolerance`` is among these: the fit is exact
    over the candidate thresholds (with three or more groups the other
    groups constrain each other and only the nearest matches are tried)."""
    score = np.where(within_tolerance(dist, tolerance), correct[None, :], -1.0)
    top = score.max(axis=1, keepdims=True)
    has = top[:, 0] >= 0  # a correct count is >= 0; -1 marks "outside the tolerance"
    partner = np.argmin(np.where(score >= top, dist, np.inf), axis=1)
    extra = chosen.copy()
    extra[:, g] = partner
    # Interleave: reference candidate i's nearest tuple, then its most accurate one.
    both = np.stack([chosen, extra], axis=1)
    keep = np.stack([np.ones_like(has), has], axis=1)
    return both[keep]


def _gap(rates: np.ndarray) -> np.ndarray:
    """max - min over groups (axis 1), ignoring NaN; 0 with fewer than two."""
    present = ~np.isnan(rates)
    hi = np.where(present, rates, -np.inf).max(axis=1)
    lo = np.where(present, rates, np.inf).min(axis=1)
    return np.where(present.sum(axis=1) >= 2, hi - lo, 0.0)


def fit_thresholds(
    scores: Tensor,
    y: Tensor,
    s: Tensor,
    n_groups: int,
    *,
    kind: Literal["dp", "eo"] | str,
    tolerance: float = DEFAULT_TOLERANCE,
    robust_quantile: float | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> ThresholdFit:
    """Per-group thresholds on ``scores`` (positive-class probability) meeting
    ``kind`` on ``(y, s)`` within ``tolerance``, most accurate first.

    Only tuples more accurate than the best constant decision count as
    meeting it (everyone positive, or everyone negative, has no gap). When no
    tuple meets ``tolerance`` the one with the smallest gap among those more
    accurate than a constant is returned (then the most accurate; among all
    tuples when none is), with ``feasible=False``.

    With ``robust_quantile`` (in (0, 1)), a tuple meets the constraint only
    when its gap is within ``tolerance`` on the rows and on at least that
    share of ``resamples`` stratified bootstrap resamples of them, drawn
    with ``seed`` (see the module docstring); "gap" in the fallback above
    then means the larger of the two. ``robust_gap`` of the result is the
    quantile. ``seed`` is unused when it is None (``resamples`` is still
    checked, so a bad value is refused whether or not the fit is robust).

    Raises:
        DataError: inputs of unequal or zero length, a group code outside
            ``[0, n_groups)``, or a group without rows.
        ValueError: ``kind`` is not ``dp`` or ``eo``; ``robust_quantile``
            outside (0, 1) or ``resamples`` below 1.
    """
    if kind not in ("dp", "eo"):
        raise ValueError(BAD_KIND.format(kind=kind))
    fairness_robust.check_robust_options(robust_quantile, resamples)
    p, yy, ss = _arrays(scores, y, s, n_groups)
    n = p.shape[0]
    groups = [_candidates(p[ss == g], yy[ss == g]) for g in range(n_groups)]
    ref_code = int(np.argmax(np.bincount(ss, minlength=n_groups)))
    ref = groups[ref_code]
    n_ref = ref["cand"].size
    chosen = np.zeros((n_ref, n_groups), dtype=np.int64)
    chosen[:, ref_code] = np.arange(n_ref)
    for g, other in enumerate(groups):
        if g == ref_code:
            continue
        dist = _distance(ref, other, kind)
        nearest = dist <= dist.min(axis=1, keepdims=True) + DEFAULT_TOLERANCE
        # Among the nearest, the most accurate; argmax takes the first (lowest) on ties.
        chosen[:, g] = np.argmax(np.where(nearest, other["correct"][None, :], -1.0), axis=1)
        if n_groups == 2:
            chosen = _with_most_accurate_within(chosen, dist, other["correct"], g, tolerance)
    pick = [groups[g] for g in range(n_groups)]
    per_group = {
        key: np.stack([pick[g][key][chosen[:, g]] for g in range(n_groups)], axis=1)
        for key in ("sel", "tpr", "fpr", "correct")
    }
    if kind == "dp":
        gap = _gap(per_group["sel"])
    else:
        gap = np.maximum(_gap(per_group["tpr"]), _gap(per_group["fpr"]))
    accuracy = per_group["correct"].sum(axis=1) / n
    constant = constant_accuracy(yy)
    useful = beats_constant(accuracy, constant)
    robust: np.ndarray | None = None
    if robust_quantile is not None:
        cands = [group["cand"] for group in groups]
        robust = _robust_gaps(p, yy, ss, cands, chosen, kind, robust_quantile, resamples, seed)
        gap_for_choice = np.maximum(gap, robust)
    else:
        gap_for_choice = gap
    feasible = within_tolerance(gap_for_choice, tolerance) & useful
    if feasible.any():
        # The most accurate; then the smallest gap on the rows (not the robust
        # one: a robust fit whose pick the plain fit would make makes it too);
        # then the first tuple (lowest reference threshold, its nearest match first).
        top = feasible & (accuracy >= np.where(feasible, accuracy, -1.0).max())
        top_gap = np.where(top, gap, np.inf)
        best = int(np.argmax(top & (top_gap <= top_gap.min() + DEFAULT_TOLERANCE)))
    else:
        pool = useful if useful.any() else np.ones_like(useful)
        pool_gap = np.where(pool, gap_for_choice, np.inf)
        smallest = pool_gap <= pool_gap.min() + DEFAULT_TOLERANCE
        best = int(np.argmax(np.where(smallest, accuracy, -1.0)))
    thresholds = tuple(float(pick[g]["cand"][chosen[best, g]]) for g in range(n_groups))
    return ThresholdFit(
        thresholds=thresholds,
        gap=float(gap[best]),
        accuracy=float(accuracy[best]),
        feasible=bool(feasible[best]),
        constant_accuracy=constant,
        robust_gap=None if robust is None else float(robust[best]),
    )


def _arrays(
    scores: Tensor, y: Tensor, s: Tensor, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, labels and group codes as numpy, checked: equal non-zero
    lengths, codes in ``[0, n_groups)``, every group present."""
    p, yy, ss = (t.detach().to("cpu").numpy() for t in (scores.double(), y.long(), s.long()))
    n = p.shape[0]
    same_length = n > 0 and yy.shape[0] == n and ss.shape[0] == n
    if not same_length or ss.min() < 0 or ss.max() >= n_groups:
        lengths = [int(t.shape[0]) for t in (scores, y, s)]
        raise DataError(BAD_INPUTS.format(lengths=lengths, n_groups=n_groups))
    for g in range(n_groups):
        if not (ss == g).any():
            raise DataError(EMPTY_GROUP.format(group=g))
    return p, yy, ss


def _rate_keys(kind: str) -> tuple[tuple[str, int | None], ...]:
    """(rate, label of its rows; None = all rows) that ``kind`` compares."""
    return (("sel", None),) if kind == "dp" else (("tpr", 1), ("fpr", 0))


def _resampled_gap_table(rates: dict[str, list[np.ndarray]], kind: str) -> np.ndarray:
    """Gap per resample from per-key lists (one per group) of ``(resamples, m)``
    rates: ``(resamples, m)``; NaN rates (a group without the label) skipped."""
    out: np.ndarray | None = None
    for key, _ in _rate_keys(kind):
        stacked = np.stack(rates[key], axis=-1)  # (resamples, m, groups)
        gap = _gap(stacked.reshape(-1, stacked.shape[-1])).reshape(stacked.shape[:2])
        out = gap if out is None else np.maximum(out, gap)
    assert out is not None
    return out


def _robust_gaps(
    p: np.ndarray,
    yy: np.ndarray,
    ss: np.ndarray,
    cands: list[np.ndarray],
    chosen: np.ndarray,
    kind: str,
    quantile: float,
    resamples: int,
    seed: int,
) -> np.ndarray:
    """The ``quantile`` of each candidate tuple's gap over ``resamples``
    stratified bootstrap resamples of the fitting rows: ``(m,)`` for the ``m``
    tuples in the rows of ``chosen`` (``chosen[i, g]``: the index in
    ``cands[g]``, group ``g``'s candidate thresholds, of tuple ``i``'s)."""
    counts = fairness_robust.resample_counts(
        fairness_robust.strata_of(yy, ss, kind), resamples, seed
    )
    rates: dict[str, list[np.ndarray]] = {key: [] for key, _ in _rate_keys(kind)}
    for g, cand in enumerate(cands):
        in_group = ss == g
        for key, label in _rate_keys(kind):
            rows = in_group if label is None else in_group & (yy == label)
            if not rows.any():
                rates[key].append(np.full((resamples, chosen.shape[0]), np.nan))
                continue
            hits = fairness_robust.weighted_at_least(p[rows], counts[:, rows], cand)
            # Stratified: each stratum keeps its size, so the denominator is fixed.
            rates[key].append(hits[:, chosen[:, g]] / rows.sum())
    return fairness_robust.gap_quantile(_resampled_gap_table(rates, kind), quantile)


def resampled_gap(
    scores: Tensor,
    y: Tensor,
    s: Tensor,
    n_groups: int,
    thresholds: tuple[float, ...],
    *,
    kind: Literal["dp", "eo"] | str,
    quantile: float,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> float:
    """The ``quantile`` of the gap of the decisions ``scores >= thresholds[s]``
    over the bootstrap resamples a robust :func:`fit_thresholds` with the same
    rows, ``resamples`` and ``seed`` draws: the robust criterion of one tuple
    (the registry's recount of a trial's stored thresholds). Counted by the
    fit's own code with each group's threshold as its one candidate, so it
    equals the fit's ``robust_gap`` for the tuple the fit chose.

    Raises:
        DataError, ValueError: as :func:`fit_thresholds`.
    """
    if kind not in ("dp", "eo"):
        raise ValueError(BAD_KIND.format(kind=kind))
    fairness_robust.check_robust_options(quantile, resamples)
    p, yy, ss = _arrays(scores, y, s, n_groups)
    if len(thresholds) < n_groups:
        raise DataError(BAD_THRESHOLDS.format(n=len(thresholds), top=n_groups - 1))
    cands = [np.asarray([thresholds[g]], dtype=np.float64) for g in range(n_groups)]
    one_tuple = np.zeros((1, n_groups), dtype=np.int64)
    return float(_robust_gaps(p, yy, ss, cands, one_tuple, kind, quantile, resamples, seed)[0])

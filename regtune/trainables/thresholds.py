"""Per-group decision thresholds that make hard predictions fair (post-processing).

A binary model's positive-class score ``p`` becomes the decision
``p >= threshold[group]``. :func:`fit_thresholds` chooses one threshold per
group on labelled rows (the validation split) so that the decisions meet
demographic parity (equal selection rates) or equalized odds (equal TPR and
FPR) as closely as the rows allow, and among the thresholds that meet it
within ``tolerance`` (up to float rounding: :func:`within_tolerance`) the
most accurate (over the candidate thresholds; see "Search"). Deterministic: no randomised
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
the reference's (ties: the more accurate): the nearest tuples.

Two groups: the other group also tries, per reference candidate, its most
accurate candidate within ``tolerance`` (ties: the smaller gap, then the
lower threshold); a pair's gap is the tuple's gap, so the fit is then the
most accurate pair within ``tolerance`` over all pairs of candidates
(pairwise, like the closest match: memory and time grow with the product of
the two groups' candidates). The best tuple wins; ties: the smaller gap on
the rows, then the lower reference threshold (its closest match first).

Three or more groups (exact since 2026-12-03; before, only the nearest
tuples were tried, which missed accuracy with a positive tolerance): a
tuple's gap is within ``tolerance`` exactly when every group's rate lies in
``[r, r + tolerance]`` for the tuple's smallest rate ``r`` (``eo``: its TPRs
in one such window and its FPRs in another), so ``r`` ranges over the
groups' candidate rates. A group's rates fall with its threshold, so its
candidates in a window are a contiguous range, and accuracy adds up over
groups: in each window every group takes its most accurate candidate there
(a sparse-table range maximum; ties: the highest threshold, whose rates are
the lowest, so the smallest gap among the most accurate tuples is found).
A rate that a group cannot have (no row of the label) or that fewer than
two groups have does not constrain. With the most accurate tuple's gap ``G``
the windows of width ``G`` are searched again for the lowest reference
threshold. So the fit is, over all tuples of candidates, the most accurate
within ``tolerance``, then the smallest gap, then the lowest reference
threshold, as with two groups (checked against a brute force:
``tests/trainables/test_thresholds_many_groups.py``). Windows: ``dp`` one
per distinct selection rate (at most ``n_groups x (MAX_CANDIDATES + 1)``);
``eo`` one per (TPR, FPR) pair of rates that every group can reach in both
(often millions: a 15,000-row three-group table has about 1.1 million at
tolerance 0.05, 4.2 million at 0.2), searched in slices of
:data:`WINDOW_SLICE` queries, most promising TPR windows first, skipping
those that cannot reach the best found (a robust fit searches them all).
When nothing within ``tolerance`` beats the constant decision, the
fallback's smallest gap is over the tuples tried (the nearest ones and the
windows' best), as with two groups: not necessarily the smallest of all.

Robust fit (``robust_quantile`` set): the same candidate tuples (two groups:
the nearest and the most accurate within ``tolerance`` per reference
candidate; three or more: the nearest, every window's best and the plain
fit's own), so the most accurate of them meeting the criterion, not
necessarily of all tuples; but a tuple meets the constraint only when its
gap is within ``tolerance`` both on the fitting rows and on at least
``robust_quantile`` of ``resamples`` stratified bootstrap resamples of them
(:mod:`regtune.trainables.fairness_robust`, seeded by ``seed``). Since these
include the tuples of the old search, a robust fit with three or more groups
is never less accurate than before, and when the plain fit's tuple meets the
robust criterion the robust fit returns it. A small, noisy (group, label)
cell thereby gets a wider effective margin than a large one. When every
cell's rates are exact (each resample gives the same rates) or the option
is off, the fit is the plain one.

Small cells: :func:`warn_fit_cells` logs a warning for each cell the fit's
constraint rests on (a group's rows for ``dp``, its positives and negatives
for ``eo``) with fewer than
:data:`~regtune.trainables.bootstrap.MIN_CELL_ROWS` rows ("group Other has 0
positives in validation"); a threshold fitted on a handful of rows meets the
constraint there by chance. Nothing is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
#: Resampled gaps (resamples x tuples) a robust fit counts at a time.
ROBUST_SLICE = 1 << 22
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
    over the candidate thresholds (three or more groups constrain each
    other: :func:`_window_tuples`)."""
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


#: Most (window, group) range queries one slice of the exact search with three
#: or more groups holds in memory (see "Search"); a search with more windows
#: runs in slices.
WINDOW_SLICE = 1 << 20


def _rate_ranges(
    rates: np.ndarray, lows: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each window ``[low, low + tolerance]`` (``lows``), the index range
    ``[start, stop)`` of one group's candidates (``rates`` non-increasing in
    the index) inside it: ``rate >= low`` and ``within_tolerance(rate - low,
    tolerance)``, the test the gap of a tuple whose smallest rate is ``low``
    passes. Contiguous, as both tests are monotone in the rate (so is float
    subtraction); counted with the gap's own float expression."""
    asc = rates[::-1]
    below = np.searchsorted(asc, lows, side="left")  # rates under low
    distinct = np.unique(asc)
    k = np.searchsorted(distinct, lows + (tolerance + DEFAULT_TOLERANCE), side="right")
    while True:  # mend the rounding of low + tolerance: count with the exact test
        up = (k < distinct.size) & within_tolerance(
            distinct[np.minimum(k, distinct.size - 1)] - lows, tolerance
        )
        down = (k > 0) & ~within_tolerance(distinct[np.maximum(k - 1, 0)] - lows, tolerance)
        if not (up.any() or down.any()):
            break
        k = k + up.astype(np.int64) - down.astype(np.int64)
    upto = np.where(k > 0, np.searchsorted(asc, distinct[np.maximum(k - 1, 0)], side="right"), 0)
    return rates.size - upto, rates.size - below


def _sparse_max(key: np.ndarray) -> np.ndarray:
    """Sparse table of ``key``: row ``j`` holds the max of ``key[i : i + 2**j]`` (else -1)."""
    levels = max(1, int(key.size).bit_length())
    table = np.full((levels, key.size), -1, dtype=np.int64)
    table[0] = key
    for j in range(1, levels):
        width = key.size - (1 << j) + 1
        half = 1 << (j - 1)
        table[j, :width] = np.maximum(table[j - 1, :width], table[j - 1, half : half + width])
    return table


def _range_max(table: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Max of ``key[start:stop]`` per query from :func:`_sparse_max`'s table; -1 when empty."""
    length = stop - start
    has = length > 0
    level = np.zeros(length.shape, dtype=np.int64)
    level[has] = np.floor(np.log2(length[has])).astype(np.int64)
    level += (np.left_shift(1, level + 1) <= length) & has  # mend log2 rounding
    level -= np.left_shift(1, level) > np.maximum(length, 1)
    lo = np.where(has, start, 0)
    hi = np.where(has, stop - np.left_shift(1, level), 0)
    return np.where(has, np.maximum(table[level, lo], table[level, hi]), -1)


def _window_tuples(
    groups: list[dict[str, np.ndarray]],
    kind: str,
    tolerance: float,
    ref_code: int,
    *,
    lowest_ref: bool,
    best_only: bool,
    floor: int = 0,
) -> np.ndarray:
    """Exact search, three or more groups: ``(w, n_groups)`` candidate indices,
    one tuple per window of rates that every group can reach (duplicates
    dropped). A tuple's gap is within ``tolerance`` exactly when all groups'
    rates lie in ``[low, low + tolerance]`` for its smallest rate ``low``
    (``eo``: TPRs in one such window, FPRs in another), so ``low`` ranges over
    the groups' candidate rates; a group without the label of a rate (NaN),
    or a rate fewer than two groups have, is not constrained. In a window the
    groups are independent and accuracy adds up, so each takes its most
    accurate candidate there (a contiguous index range: a sparse-table range
    maximum); ties: the highest index (the lowest rates, so the smallest gap
    among the most accurate tuples is among these), for the reference group
    the lowest when ``lowest_ref``. ``best_only``: only the most accurate
    tuples, if they have ``floor`` correct decisions or more (windows that
    cannot reach them are skipped)."""
    n_groups = len(groups)
    sizes = np.array([group["cand"].size for group in groups], dtype=np.int64)
    base = int(sizes.max()) + 1
    tables = []
    for g, group in enumerate(groups):
        index = np.arange(sizes[g], dtype=np.int64)
        tie = base - 1 - index if lowest_ref and g == ref_code else index
        tables.append(_sparse_max(group["correct"].astype(np.int64) * base + tie))
    keys = ("sel", "none") if kind == "dp" else ("tpr", "fpr")
    windows = []  # per key: (lows, starts (n_groups, w), stops (n_groups, w))
    for key in keys:
        present = [
            g for g in range(n_groups) if key in groups[g] and not np.isnan(groups[g][key][0])
        ]
        if len(present) < 2:
            lows = np.zeros(1)
        else:
            lows = np.unique(np.concatenate([groups[g][key] for g in present]))
        start = np.zeros((n_groups, lows.size), dtype=np.int64)
        stop = np.repeat(sizes[:, None], lows.size, axis=1)
        if len(present) >= 2:
            for g in present:
                start[g], stop[g] = _rate_ranges(groups[g][key], lows, tolerance)
        windows.append((lows, start, stop, present if len(present) >= 2 else []))
    (_, a_start, a_stop, _), (b_lows, b_start, b_stop, b_present) = windows
    # The second window only where every group has a candidate in the first
    # one with a rate of the second key in it: between the largest of the
    # groups' smallest such rates (less the tolerance) and the smallest largest.
    reach = (a_stop > a_start).all(axis=0)
    if b_present:
        top = np.min(
            [groups[g][keys[1]][np.where(reach, a_start[g], 0)] for g in b_present], axis=0
        )
        bottom = np.max(
            [groups[g][keys[1]][np.where(reach, a_stop[g] - 1, 0)] for g in b_present], axis=0
        )
        first = np.searchsorted(b_lows, bottom - tolerance - 2 * DEFAULT_TOLERANCE, side="left")
        last = np.searchsorted(b_lows, top, side="right")
    else:
        first, last = np.zeros(reach.size, dtype=np.int64), np.ones(reach.size, dtype=np.int64)
    counts = np.where(reach, np.maximum(last - first, 0), 0)
    if best_only:
        # Most promising first windows first (bound: each group's most accurate
        # candidate in it, the second window aside); once a tuple reaches
        # ``floor``, first windows bounded below it are skipped.
        bound = np.zeros(counts.size, dtype=np.int64)
        for g in range(n_groups):
            bound += _range_max(tables[g], a_start[g], a_stop[g]) // base
        order = np.argsort(-bound, kind="stable")
    else:
        order = np.arange(counts.size)
    order = order[counts[order] > 0]
    found, totals = [], []
    per_slice = max(1, WINDOW_SLICE // n_groups)
    while order.size:
        if best_only:
            order = order[bound[order] >= floor]
            if not order.size:
                break
        take = max(1, int(np.searchsorted(np.cumsum(counts[order]), per_slice, side="right")))
        span, order = order[:take], order[take:]
        a_of = np.repeat(span, counts[span])
        starts = np.cumsum(counts[span]) - counts[span]
        b_of = first[a_of] + np.arange(a_of.size) - np.repeat(starts, counts[span])
        ok = np.ones(a_of.size, dtype=bool)
        total = np.zeros(a_of.size, dtype=np.int64)
        picks = np.empty((a_of.size, n_groups), dtype=np.int64)
        for g in range(n_groups):
            best = _range_max(
                tables[g],
                np.maximum(a_start[g, a_of], b_start[g, b_of]),
                np.minimum(a_stop[g, a_of], b_stop[g, b_of]),
            )
            ok &= best >= 0
            total += best // base
            tie = best % base
            picks[:, g] = base - 1 - tie if lowest_ref and g == ref_code else tie
        if best_only and ok.any():
            floor = max(floor, int(total[ok].max()))
        found.append(picks[ok])
        totals.append(total[ok])
    if not found:
        return np.zeros((0, n_groups), dtype=np.int64)
    picked = np.concatenate(found)
    if best_only:
        picked = picked[np.concatenate(totals) >= floor]
    return _unique_rows(picked, base)


def _unique_rows(tuples: np.ndarray, base: int) -> np.ndarray:
    """The distinct rows of ``tuples`` (entries in ``[0, base)``), sorted."""
    if float(base) ** tuples.shape[1] >= 2.0**62:
        return np.unique(tuples, axis=0)
    weights = base ** np.arange(tuples.shape[1] - 1, -1, -1, dtype=np.int64)
    codes = np.unique(tuples @ weights)
    return (codes[:, None] // weights[None, :]) % base


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
    constant = constant_accuracy(yy)
    if n_groups >= 3:
        chosen = _with_window_tuples(
            chosen, groups, kind, tolerance, ref_code, n, constant,
            keep_all=robust_quantile is not None,
        )  # fmt: skip
    pick = [groups[g] for g in range(n_groups)]
    gap, accuracy = _gap_and_accuracy(pick, chosen, kind, n)
    useful = beats_constant(accuracy, constant)
    robust: np.ndarray | None = None
    if robust_quantile is not None:
        cands = [group["cand"] for group in groups]
        count = _robust_counter(p, yy, ss, cands, kind, robust_quantile, resamples, seed)
        if n_groups == 2:
            robust = count(chosen)
        else:
            robust = _robust_gaps_as_needed(count, chosen, gap, accuracy, useful, tolerance)
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


def _gap_and_accuracy(
    groups: list[dict[str, np.ndarray]], chosen: np.ndarray, kind: str, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Gap and accuracy (on ``n`` rows) of each tuple (row) of ``chosen``."""
    n_groups = len(groups)
    per_group = {
        key: np.stack([groups[g][key][chosen[:, g]] for g in range(n_groups)], axis=1)
        for key in ("sel", "tpr", "fpr", "correct")
    }
    if kind == "dp":
        gap = _gap(per_group["sel"])
    else:
        gap = np.maximum(_gap(per_group["tpr"]), _gap(per_group["fpr"]))
    return gap, per_group["correct"].sum(axis=1) / n


def _with_window_tuples(
    chosen: np.ndarray,
    groups: list[dict[str, np.ndarray]],
    kind: str,
    tolerance: float,
    ref_code: int,
    n: int,
    constant: float,
    *,
    keep_all: bool,
) -> np.ndarray:
    """Three or more groups: ``chosen`` (the nearest tuples) with the exact
    search's tuples (:func:`_window_tuples`), ordered by the reference
    group's threshold (stable: the nearest first). With a most accurate
    useful tuple within ``tolerance`` (accuracy ``A``; the smallest gap of
    such, ``G``), the search is run again at tolerance ``G`` with the
    reference group's lowest index on ties, and its tuples of accuracy ``A``
    added: among them the one with the lowest reference threshold of all
    tuples of accuracy ``A`` and gap ``G`` (up to float rounding).
    ``keep_all`` (a robust fit): every window's best tuple, not only the
    most accurate ones."""
    exact = _window_tuples(
        groups, kind, tolerance, ref_code, lowest_ref=False, best_only=not keep_all
    )
    gap, accuracy = _gap_and_accuracy(groups, exact, kind, n)
    good = within_tolerance(gap, tolerance) & beats_constant(accuracy, constant)
    parts = [chosen, exact]
    if good.any():
        top = good & (accuracy >= accuracy[good].max())
        most = round(float(accuracy[top][0]) * n)  # correct decisions
        lowest = _window_tuples(
            groups, kind, float(gap[top].min()), ref_code,
            lowest_ref=True, best_only=True, floor=most,
        )  # fmt: skip
        parts.append(lowest)
    tuples = np.concatenate(parts)
    return tuples[np.argsort(tuples[:, ref_code], kind="stable")]


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
    return _robust_counter(p, yy, ss, cands, kind, quantile, resamples, seed)(chosen)


def _robust_counter(
    p: np.ndarray,
    yy: np.ndarray,
    ss: np.ndarray,
    cands: list[np.ndarray],
    kind: str,
    quantile: float,
    resamples: int,
    seed: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`_robust_gaps` as a function of ``chosen``: the resamples are
    drawn and each candidate's hits counted once, the tuples' gaps on call."""
    counts = fairness_robust.resample_counts(
        fairness_robust.strata_of(yy, ss, kind), resamples, seed
    )
    # Per (group, rate): each candidate's weighted hits and the (fixed) stratum size.
    hits: dict[str, list[tuple[np.ndarray, int] | None]] = {key: [] for key, _ in _rate_keys(kind)}
    for g, cand in enumerate(cands):
        in_group = ss == g
        for key, label in _rate_keys(kind):
            rows = in_group if label is None else in_group & (yy == label)
            hits[key].append(
                (fairness_robust.weighted_at_least(p[rows], counts[:, rows], cand), int(rows.sum()))
                if rows.any()
                else None
            )

    def count(chosen: np.ndarray) -> np.ndarray:
        out = [np.zeros(0)]
        step = max(1, ROBUST_SLICE // resamples)  # tuples per slice; columns are independent
        for first in range(0, chosen.shape[0], step):
            part = chosen[first : first + step]
            rates: dict[str, list[np.ndarray]] = {key: [] for key, _ in _rate_keys(kind)}
            for key, per_group in hits.items():
                for g, counted in enumerate(per_group):
                    if counted is None:
                        rates[key].append(np.full((resamples, part.shape[0]), np.nan))
                    else:
                        # Stratified: each stratum keeps its size, so the denominator is fixed.
                        rates[key].append(counted[0][:, part[:, g]] / counted[1])
            out.append(fairness_robust.gap_quantile(_resampled_gap_table(rates, kind), quantile))
        return np.concatenate(out)

    return count


def _robust_gaps_as_needed(
    count: Callable[[np.ndarray], np.ndarray],
    chosen: np.ndarray,
    gap: np.ndarray,
    accuracy: np.ndarray,
    useful: np.ndarray,
    tolerance: float,
) -> np.ndarray:
    """Three or more groups (many tuples): the robust gaps (``count``: of
    :func:`_robust_counter`) of the tuples the fit can pick, inf for the
    rest. Counted for the tuples within ``tolerance`` on the rows and
    ``useful``, most accurate first, in slices (each ending after every tuple
    as accurate as its last), up to the first slice with a tuple within
    ``tolerance`` on the resamples too: every less accurate tuple then loses
    to it. When none is, the fallback's pool (the ``useful`` tuples, or all
    when none is) is counted. The fit equals that on all gaps counted."""
    robust = np.full(gap.size, np.inf)
    hopeful = np.nonzero(within_tolerance(gap, tolerance) & useful)[0]
    hopeful = hopeful[np.argsort(-accuracy[hopeful], kind="stable")]
    ranked = -accuracy[hopeful]  # ascending
    start, step = 0, 1024
    while start < hopeful.size:
        last = ranked[min(start + step, hopeful.size) - 1]
        stop = int(np.searchsorted(ranked, last, side="right"))
        part = hopeful[start:stop]
        robust[part] = count(chosen[part])
        if within_tolerance(robust[part], tolerance).any():
            return robust
        start, step = stop, step * 2
    pool = useful if useful.any() else np.ones_like(useful)
    robust[pool] = count(chosen[pool])
    return robust


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

"""Randomized per-group thresholds: the most accurate mix of thresholds that
meets demographic parity or equalized odds (Hardt, Price and Srebro 2016).

One threshold per group has one degree of freedom per group, so equalized
odds (equal TPR *and* equal FPR) is met by deterministic thresholds only
where the groups' ROC curves happen to cross, and far from the most
accurate decision elsewhere: on COMPAS the deterministic fit at tolerance 0
loses about 0.11 accuracy against fairlearn (docs/fairness_benchmark.md,
"Fourth German/COMPAS selection"). A *lottery* lets each group reach any
point of the convex hull of its ROC points: group ``g`` holds thresholds
``t_g1 < ... < t_gk`` with weights ``w_g1 .. w_gk`` (summing to 1), and a
row of group ``g`` gets the decision ``p >= t_gj`` for the ``j`` its uniform
draw ``u`` picks (``u`` below ``w_g1``: the first; below ``w_g1 + w_g2``:
the second; ...). Its expected rates are the weighted sums of the
thresholds' rates, so the most accurate lottery within ``tolerance`` is a linear programme
(:func:`fit_lottery`, solved exactly by HiGHS through scipy): maximise the
expected correct decisions over the weights, with every group's expected
rate inside one window ``[r, r + tolerance]`` per rate (``dp``: selection
rate; ``eo``: TPR and FPR). A deterministic fit is one lottery among them,
so the optimum is never less accurate on the fitting rows than
:func:`~regtune.trainables.thresholds.fit_thresholds` at the same tolerance.

**Reproducible decisions.** ``u`` is not drawn from a random source: it is
a hash of the row's own score on a 1e-4 grid
(:func:`~regtune.trainables.lottery_draws.row_uniforms`), so an input gets
the same decision each time it is scored, in the trainer, ``regtune.load``
and ``regtune serve`` alike, and a lottery needs nothing but the scores and
group codes a deterministic fit needs. Rows with equal scores get equal
decisions. Across distinct scores the hash behaves as a uniform draw
independent of the label, so with many distinct scores in a band the
realized rates scatter around the expected ones by binomial noise; with few
(tied or coarse scores) they do not: every row of a tied score takes the
same threshold, and the realized gap can sit well above the expected one
(scores rounded to 0.1: realized dp gap 0.044-0.072 on the fitting rows at
an expected 0). The fit reports both (``realized_gap``) and logs a warning
when the realized gap exceeds the tolerance by more than
:data:`TIE_WARNING`.

Candidates are those of
:func:`~regtune.trainables.thresholds.fit_thresholds` (every distinct score
and "select none", at most
:data:`~regtune.trainables.thresholds.MAX_CANDIDATES` per group). As there,
a lottery counts as feasible only when its expected accuracy on the fitting
rows beats the best constant decision; a rate that a group cannot have (no
row of the label) does not constrain it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from regtune.trainables import fairness
from regtune.trainables.lottery_draws import apply_lottery
from regtune.trainables.thresholds import (
    BAD_KIND,
    _arrays,
    _candidates,
    _rate_keys,
    beats_constant,
    constant_accuracy,
    within_tolerance,
)

__all__ = [
    "BAD_TOLERANCE",
    "TIED_DRAWS",
    "TIE_WARNING",
    "LotteryFit",
    "expected_rates",
    "fit_lottery",
]

_log = logging.getLogger(__name__)
#: Realized gap above ``tolerance`` by more than this on the fitting rows: warn.
TIE_WARNING = 0.01
TIED_DRAWS = (
    "the threshold lottery's drawn decisions have gap {realized:.4f} on the rows it was "
    "fitted on (expected {expected:.4f}): rows with equal scores share a draw, and these "
    "scores have many ties; the realized gap is what a server's decisions will show"
)
#: Weights below this are dropped from a fitted lottery (the rest renormalised).
MIN_WEIGHT = 1e-9
BAD_TOLERANCE = "tolerance must be a finite number >= 0; got {tolerance!r}"


@dataclass(frozen=True)
class LotteryFit:
    """A fitted lottery (index = group code) and how it scores on the fitting rows.

    ``thresholds[g]`` ascending, ``weights[g]`` the chance of each (summing
    to 1). ``gap`` and ``accuracy`` are the expected ones on the fitting rows
    (the rates and correct decisions averaged over the draws); ``feasible``:
    the gap is within the tolerance and the accuracy beats
    ``constant_accuracy``. ``realized_gap`` / ``realized_accuracy``: those of
    the drawn decisions on the same rows (rows with equal scores share a
    draw, so with many ties they can sit well off the expected ones).
    """

    thresholds: tuple[tuple[float, ...], ...]
    weights: tuple[tuple[float, ...], ...]
    gap: float
    accuracy: float
    feasible: bool
    constant_accuracy: float = 0.0
    realized_gap: float = float("nan")
    realized_accuracy: float = float("nan")


def expected_rates(
    scores: Tensor,
    y: Tensor,
    s: Tensor,
    thresholds: Sequence[Sequence[float]],
    weights: Sequence[Sequence[float]],
    *,
    kind: str,
) -> tuple[float, float]:
    """The expected ``(gap, accuracy)`` of a lottery on labelled rows: each
    group's rates and correct decisions averaged over its thresholds by
    weight (the gap: ``dp`` the spread of selection rates, ``eo`` the larger
    of the TPR and FPR spreads, over the groups that have the rate)."""
    p, yy, ss = (t.detach().to("cpu").numpy() for t in (scores.double(), y.long(), s.long()))
    n_groups = len(thresholds)
    rates: dict[str, list[float]] = {key: [] for key, _ in _rate_keys(kind)}
    correct = 0.0
    for g in range(n_groups):
        rows = ss == g
        t = np.asarray(thresholds[g], dtype=np.float64)
        w = np.asarray(weights[g], dtype=np.float64)
        chosen = p[rows][:, None] >= t[None, :]  # rows x thresholds
        labels = yy[rows][:, None]
        correct += float((w * (chosen == (labels == 1)).sum(axis=0)).sum())
        for key, label in _rate_keys(kind):
            part = chosen if label is None else chosen[yy[rows] == label]
            if part.shape[0]:
                rates[key].append(float((w * part.mean(axis=0)).sum()))
    gap = max((max(r) - min(r) if len(r) > 1 else 0.0) for r in rates.values())
    return gap, correct / p.shape[0]


def fit_lottery(
    scores: Tensor,
    y: Tensor,
    s: Tensor,
    n_groups: int,
    *,
    kind: Literal["dp", "eo"] | str,
    tolerance: float = 0.0,
) -> LotteryFit:
    """The most accurate lottery (module docstring) whose expected ``kind``
    gap on ``(y, s)`` is within ``tolerance``.

    Raises:
        DataError: lengths differ, a group code is outside ``[0, n_groups)``
            or a group has no rows.
        ValueError: ``kind`` is not ``dp``/``eo``; ``tolerance`` is negative
            or not finite.
    """
    from scipy.optimize import linprog  # the fit only: serving never imports scipy

    if kind not in ("dp", "eo"):
        raise ValueError(BAD_KIND.format(kind=kind))
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(BAD_TOLERANCE.format(tolerance=tolerance))
    p, yy, ss = _arrays(scores, y, s, n_groups)
    tables = [_candidates(p[ss == g], yy[ss == g]) for g in range(n_groups)]
    sizes = [t["cand"].size for t in tables]
    start = np.cumsum([0, *sizes])
    keys = [key for key, _ in _rate_keys(kind)]
    n_weights = int(start[-1])
    n_vars = n_weights + len(keys)  # the weights, then each rate's window start r
    objective = np.zeros(n_vars)
    a_eq = np.zeros((n_groups, n_vars))
    a_ub: list[np.ndarray] = []
    b_ub: list[float] = []
    for g, table in enumerate(tables):
        span = slice(start[g], start[g + 1])
        objective[span] = -table["correct"] / p.shape[0]
        a_eq[g, span] = 1.0
        for k, key in enumerate(keys):
            rate = table[key]
            if np.isnan(rate).any():  # no row of the label: not constrained
                continue
            low = np.zeros(n_vars)  # r - rate_g <= 0
            low[span], low[n_weights + k] = -rate, 1.0
            high = np.zeros(n_vars)  # rate_g - r <= tolerance
            high[span], high[n_weights + k] = rate, -1.0
            a_ub += [low, high]
            b_ub += [0.0, float(tolerance)]
    solved = linprog(
        objective,
        A_ub=np.array(a_ub) if a_ub else None,
        b_ub=np.array(b_ub) if b_ub else None,
        A_eq=a_eq,
        b_eq=np.ones(n_groups),
        bounds=[(0.0, None)] * n_weights + [(0.0, 1.0)] * len(keys),
        method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    if solved.status != 0:  # every group selecting none is always feasible
        raise RuntimeError(f"the lottery programme did not solve: {solved.message}")
    thresholds, weights = [], []
    for g, table in enumerate(tables):
        w = np.clip(solved.x[start[g] : start[g + 1]], 0.0, None)
        keep = np.flatnonzero(w > MIN_WEIGHT)
        thresholds.append(tuple(float(c) for c in table["cand"][keep]))
        weights.append(tuple(float(v) for v in w[keep] / w[keep].sum()))
    gap, accuracy = expected_rates(
        torch.from_numpy(p),
        torch.from_numpy(yy),
        torch.from_numpy(ss),
        thresholds,
        weights,
        kind=kind,
    )
    realized_gap, realized_accuracy = _realized(p, yy, ss, thresholds, weights, kind)
    if realized_gap > tolerance + TIE_WARNING:
        _log.warning(TIED_DRAWS.format(realized=realized_gap, expected=gap))
    constant = constant_accuracy(yy)
    return LotteryFit(
        thresholds=tuple(thresholds),
        weights=tuple(weights),
        gap=gap,
        accuracy=accuracy,
        feasible=bool(within_tolerance(gap, tolerance) and beats_constant(accuracy, constant)),
        constant_accuracy=constant,
        realized_gap=realized_gap,
        realized_accuracy=realized_accuracy,
    )


def _realized(
    p: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    thresholds: Sequence[Sequence[float]],
    weights: Sequence[Sequence[float]],
    kind: str,
) -> tuple[float, float]:
    """The gap and accuracy of the lottery's drawn decisions on the rows."""
    decided = torch.from_numpy(apply_lottery(p, s, thresholds, weights))
    yy, ss = torch.from_numpy(y), torch.from_numpy(s)
    gap = (
        fairness.dp_difference(decided, ss)
        if kind == "dp"
        else fairness.eo_difference(yy, decided, ss)
    )
    return gap, float((decided == yy).double().mean())

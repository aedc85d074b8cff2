"""Bootstrap resampling of per-group rates: how often a threshold tuple's gap
stays within a bound when the rows it was fitted on are drawn again.

A post-processing fit (:func:`regtune.trainables.thresholds.fit_thresholds`)
measures each group's rates on a finite sample; a small (group, label) cell
such as Adult's women earning >50K makes its TPR uncertain by a few points,
and the thresholds follow that noise. The robust fit asks more of a tuple
than a small gap on the rows themselves: its gap must stay within the
tolerance on at least ``quantile`` of ``resamples`` bootstrap resamples of
those rows. A noisy cell thus gets a wider effective margin than a
well-measured one, with no constant to choose per cell.

Resampling is stratified: rows are drawn with replacement within each
stratum (each (group, label) cell for equalized odds, each group for
demographic parity), so every stratum keeps its size and its rate varies by
its own binomial noise. Draws come from ``numpy.random.default_rng(seed)``,
strata in ascending code order: the same inputs and seed give the same
resamples, so a fit is deterministic.

Pure numpy; no torch, no I/O.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BAD_QUANTILE",
    "BAD_RESAMPLES",
    "check_robust_options",
    "gap_quantile",
    "resample_counts",
    "strata_of",
    "weighted_at_least",
]

BAD_QUANTILE = (
    "robust_quantile must be a number strictly between 0 and 1 (the share of bootstrap "
    "resamples on which the gap must stay within the tolerance) or None (off); got {value!r}"
)
BAD_RESAMPLES = "robust_resamples must be a whole number >= 1; got {value!r}"


def check_robust_options(quantile: float | None, resamples: int) -> None:
    """Refuse a robust quantile outside (0, 1) or a resample count below 1.

    Raises:
        ValueError: naming the bad option and what is allowed.
    """
    if quantile is not None:
        number = isinstance(quantile, (int, float)) and not isinstance(quantile, bool)
        if not (number and 0.0 < float(quantile) < 1.0):
            raise ValueError(BAD_QUANTILE.format(value=quantile))
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(BAD_RESAMPLES.format(value=resamples))


def strata_of(y: np.ndarray, s: np.ndarray, kind: str) -> np.ndarray:
    """Stratum code of each row: ``2 * group + label`` for ``eo``, the group for ``dp``."""
    s = np.asarray(s, dtype=np.int64)
    return 2 * s + np.asarray(y, dtype=np.int64) if kind == "eo" else s


def resample_counts(strata: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """How many times each row is drawn in each resample: ``(resamples, n)`` int32.

    Within each stratum, as many rows are drawn with replacement as it has,
    so each row's counts over a resample sum to the stratum's size.
    """
    strata = np.asarray(strata)
    # numpy takes no negative seed; training.seed may be one (torch takes it).
    rng = np.random.default_rng(seed % 2**64)
    out = np.zeros((resamples, strata.size), dtype=np.int32)
    for code in np.unique(strata):
        rows = np.flatnonzero(strata == code)
        draws = rng.integers(0, rows.size, size=(resamples, rows.size))
        flat = (draws + rows.size * np.arange(resamples)[:, None]).ravel()
        out[:, rows] = np.bincount(flat, minlength=resamples * rows.size).reshape(
            resamples, rows.size
        )
    return out


def weighted_at_least(p: np.ndarray, weights: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``(resamples, n_cand)``: the summed weight of the rows with ``p >= cand[j]``.

    ``weights`` is ``(resamples, n)``, one row of multiplicities per resample.
    """
    order = np.argsort(p, kind="stable")
    ordered = weights[:, order].astype(np.float64)
    # suffix[:, i] = weight of rows i.. in ascending score order; one zero column past the end.
    suffix = np.concatenate(
        [np.cumsum(ordered[:, ::-1], axis=1)[:, ::-1], np.zeros((weights.shape[0], 1))], axis=1
    )
    start = np.searchsorted(p[order], cand, side="left")
    return suffix[:, start]


def gap_quantile(gaps: np.ndarray, quantile: float) -> np.ndarray:
    """The smallest value that at least ``quantile`` of the resampled gaps
    (axis 0) do not exceed: the gap is within it on that share of resamples.

    The ``ceil(quantile x resamples)``-th smallest gap, counted exactly
    (``np.quantile``'s ``inverted_cdf`` takes one more for some pairs, as
    q = 0.55 of 100, through the float rounding of their product).
    """
    n = gaps.shape[0]
    k = min(n, max(1, math.ceil(quantile * n - 1e-9)))
    return np.asarray(np.sort(gaps, axis=0)[k - 1])

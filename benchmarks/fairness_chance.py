"""Paired differences between two methods' runs, and how often issue 9's
German/COMPAS goal passes by chance.

The unit is the split seed: runs of one split seed share its test rows (and
fairlearn's fitted model), so they are not independent draws, and a
t-interval over runs would understate the uncertainty. :func:`split_differences`
averages the paired runs' differences per split seed first; intervals and
sign flips then work on those means.

The goal compares means: regtune's mean accuracy at least a fairlearn
contender's while its mean gap is at most the contender's. A method that is
exactly as good as its contender still passes it now and then, because both
means are noisy. :func:`chance_pass_rate` measures how often, from the runs
themselves: under "the two methods are equal", each split seed's pair of
results is as likely either way round, so the sign of its (accuracy, gap)
difference is a coin flip. The rate is the fraction of sign patterns under
which the goal passes (signs flipped jointly per split seed, so the runs' own
correlation of accuracy and gap differences is kept). About 1/4 when the two
differences are uncorrelated; a goal that passes with a rate like that says
little unless the paired intervals exclude 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from benchmarks.fairness_selection import MEAN_SLACK

__all__ = ["CHANCE_DRAWS", "EXACT_SPLITS", "chance_pass_rate", "split_differences"]

#: Up to this many split seeds every sign pattern is counted (2**16 of them).
EXACT_SPLITS = 16
#: Random sign patterns per rate beyond :data:`EXACT_SPLITS` (standard error
#: at most 0.0035).
CHANCE_DRAWS = 20_000


def split_differences(
    mine: Sequence[dict[str, float]],
    theirs: Sequence[dict[str, float]],
    keys: Sequence[str] = ("acc", "gap"),
) -> np.ndarray:
    """``(split seeds, len(keys))``: per split seed (ascending), the mean over
    the runs both have (same ``split_seed`` and ``seed``) of mine - theirs in
    ``keys``.

    Raises:
        ValueError: the two share no (split seed, seed), or a paired run's
            value in ``keys`` is not finite (a NaN would make every
            comparison false, and the rates and intervals meaningless).
    """
    by_run = {(r["split_seed"], r["seed"]): r for r in theirs}
    per_split: dict[float, list[list[float]]] = {}
    for r in mine:
        t = by_run.get((r["split_seed"], r["seed"]))
        if t is not None:
            per_split.setdefault(r["split_seed"], []).append([r[k] - t[k] for k in keys])
    if not per_split:
        raise ValueError("paired runs need the same split seeds and seeds; these share none")
    bad = sorted(k for k, rows in per_split.items() if not np.isfinite(rows).all())
    if bad:
        raise ValueError(
            f"paired runs need finite {', '.join(keys)}; split seed(s) {bad} have a NaN or inf"
        )
    return np.asarray(
        [np.mean(per_split[k], axis=0) for k in sorted(per_split)], dtype=np.float64
    ).reshape(len(per_split), len(keys))


def chance_pass_rate(
    mine: Sequence[dict[str, float]],
    theirs: Sequence[dict[str, float]],
    *,
    draws: int = CHANCE_DRAWS,
    seed: int = 0,
) -> float:
    """The fraction of sign patterns over :func:`split_differences`'
    (accuracy, gap) rows under which the goal passes (mean accuracy
    difference >= 0, mean gap difference <= 0, both up to
    :data:`~benchmarks.fairness_selection.MEAN_SLACK`, as the goal itself):
    every pattern for up to :data:`EXACT_SPLITS` split seeds, else ``draws``
    random ones (seeded by ``seed``).

    Raises:
        ValueError: the two share no (split seed, seed), or ``draws < 1``.
    """
    if draws < 1:
        raise ValueError(f"chance_pass_rate needs draws >= 1; got {draws}")
    diffs = split_differences(mine, theirs)
    n = diffs.shape[0]
    if n <= EXACT_SPLITS:
        signs = np.asarray(list(itertools.product((-1.0, 1.0), repeat=n)))
    else:
        signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(draws, n))
    means = signs @ diffs / n
    passed = (means[:, 0] >= -MEAN_SLACK) & (means[:, 1] <= MEAN_SLACK)
    return float(passed.mean())

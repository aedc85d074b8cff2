"""How often issue 9's German/COMPAS goal passes by chance.

The goal compares means: regtune's mean accuracy at least a fairlearn
contender's while its mean gap is at most the contender's. A method that is
exactly as good as its contender still passes it now and then, because both
means are noisy. :func:`chance_pass_rate` measures how often, from the runs
themselves: under "the two methods are equal", each run's pair of results is
as likely either way round, so the sign of its (accuracy, gap) difference is
a coin flip. The rate is the fraction of random sign patterns under which the
goal passes (signs flipped jointly per run, so the runs' own correlation of
accuracy and gap differences is kept). About 1/4 when the two differences are
uncorrelated; a goal that passes with a rate like that says little unless
the paired intervals exclude 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks.fairness_selection import MEAN_SLACK

__all__ = ["CHANCE_DRAWS", "chance_pass_rate", "paired_runs"]

#: Random sign patterns per rate (its standard error is at most 0.0035).
CHANCE_DRAWS = 20_000


def paired_runs(
    mine: Sequence[dict[str, float]],
    theirs: Sequence[dict[str, float]],
    keys: Sequence[str] = ("acc", "gap"),
) -> np.ndarray:
    """``(runs, len(keys))`` differences mine - theirs in ``keys`` of the runs
    both have (same ``split_seed`` and ``seed``), in ``mine``'s order.

    Raises:
        ValueError: the two share no (split seed, seed).
    """
    by_run = {(r["split_seed"], r["seed"]): r for r in theirs}
    rows = [
        [r[k] - t[k] for k in keys]
        for r in mine
        if (t := by_run.get((r["split_seed"], r["seed"]))) is not None
    ]
    if not rows:
        raise ValueError("paired runs need the same split seeds and seeds; these share none")
    return np.asarray(rows, dtype=np.float64)


def chance_pass_rate(
    mine: Sequence[dict[str, float]],
    theirs: Sequence[dict[str, float]],
    *,
    draws: int = CHANCE_DRAWS,
    seed: int = 0,
) -> float:
    """The fraction of ``draws`` random sign flips of the paired runs'
    (accuracy, gap) differences under which the goal passes (mean accuracy
    difference >= 0, mean gap difference <= 0, both up to
    :data:`~benchmarks.fairness_selection.MEAN_SLACK`, as the goal itself).

    Raises:
        ValueError: the two share no (split seed, seed), or ``draws < 1``.
    """
    if draws < 1:
        raise ValueError(f"chance_pass_rate needs draws >= 1; got {draws}")
    diffs = paired_runs(mine, theirs)
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(draws, diffs.shape[0]))
    means = signs @ diffs / diffs.shape[0]
    passed = (means[:, 0] >= -MEAN_SLACK) & (means[:, 1] <= MEAN_SLACK)
    return float(passed.mean())

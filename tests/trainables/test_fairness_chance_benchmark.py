"""How often issue 9's German/COMPAS goal passes by chance
(``benchmarks.fairness_chance``), and its column in the goal table."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.fairness_chance import chance_pass_rate, paired_runs


def _runs(acc: np.ndarray, gap: np.ndarray, split_seed: int = 0) -> list[dict[str, float]]:
    return [
        {"split_seed": split_seed, "seed": i, "acc": float(a), "gap": float(g)}
        for i, (a, g) in enumerate(zip(acc, gap, strict=True))
    ]


def _zeros(n: int) -> list[dict[str, float]]:
    return _runs(np.zeros(n), np.zeros(n))


def test_uncorrelated_differences_pass_about_a_quarter_of_the_time() -> None:
    rng = np.random.default_rng(3)
    mine = _runs(rng.normal(size=41), rng.normal(size=41))
    rate = chance_pass_rate(mine, _zeros(41))
    assert rate == pytest.approx(0.25, abs=0.03)


def test_the_runs_correlation_is_kept() -> None:
    """Flipped jointly per run: when a run's accuracy and gap differences move
    together (more accurate only with a larger gap) the goal can never pass on
    an odd number of runs; when they move against each other it passes exactly
    when the accuracy mean is >= 0, half the flips by symmetry."""
    d = np.random.default_rng(4).normal(size=41)
    assert chance_pass_rate(_runs(d, d), _zeros(41)) == 0.0
    assert chance_pass_rate(_runs(d, -d), _zeros(41)) == pytest.approx(0.5, abs=0.015)


def test_equal_runs_always_pass_and_the_rate_is_reproducible() -> None:
    """Equal means count as passing (the goal's own float slack), and a rate
    is the same on every call (a seeded generator)."""
    assert chance_pass_rate(_zeros(5), _zeros(5)) == 1.0
    rng = np.random.default_rng(5)
    mine = _runs(rng.normal(size=9), rng.normal(size=9))
    assert chance_pass_rate(mine, _zeros(9)) == chance_pass_rate(mine, _zeros(9))


def test_runs_pair_by_split_seed_and_seed_and_bad_input_is_refused() -> None:
    mine = _runs(np.array([0.7, 0.8]), np.array([0.1, 0.2])) + _runs(
        np.array([0.5]), np.array([0.3]), split_seed=9
    )  # the last has no partner: left out
    theirs = list(reversed(_runs(np.array([0.6, 0.6]), np.array([0.1, 0.1]))))
    assert paired_runs(mine, theirs) == pytest.approx(np.array([[0.1, 0.0], [0.2, 0.1]]))
    assert paired_runs(mine, theirs, ("gap",)).shape == (2, 1)
    with pytest.raises(ValueError, match="same split seeds and seeds"):
        chance_pass_rate(mine[2:], theirs)
    with pytest.raises(ValueError, match="draws >= 1; got 0"):
        chance_pass_rate(mine, theirs, draws=0)


def test_goal_rows_carry_the_rate_and_the_table_shows_it() -> None:
    from benchmarks import fairness_splits as fs

    rng = np.random.default_rng(6)
    runs = {
        "compas": {
            fs.DP: _runs(0.66 + 0.01 * rng.normal(size=9), 0.03 + 0.01 * rng.normal(size=9)),
            "fairlearn TO-DP": _runs(np.full(9, 0.65), np.full(9, 0.02)),
        }
    }
    for rows in runs["compas"].values():
        for r in rows:
            r.update(ece=0.01, fit_s=1.0)
    (row,) = fs.goals(fs._summaries(runs), runs)
    rate = row["paired"]["chance_pass_rate"]
    assert rate == chance_pass_rate(runs["compas"][fs.DP], runs["compas"]["fairlearn TO-DP"])
    table = fs._goal_table([row])
    assert "passes by chance" in table and f"| {rate:.2f} |" in table
    (bare,) = fs.goals(fs._summaries(runs))  # no runs: no paired numbers
    assert fs._goal_table([bare]).rstrip().endswith("| - | - | - |")

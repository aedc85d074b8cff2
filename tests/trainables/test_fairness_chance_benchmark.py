"""Paired differences by split seed and how often issue 9's German/COMPAS
goal passes by chance (``benchmarks.fairness_chance``), and their columns in
the goal table."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.fairness_chance import chance_pass_rate, split_differences


def _runs(acc: np.ndarray, gap: np.ndarray, seed: int = 0) -> list[dict[str, float]]:
    """One run per split seed 0, 1, ... (training seed ``seed``)."""
    return [
        {"split_seed": i, "seed": seed, "acc": float(a), "gap": float(g)}
        for i, (a, g) in enumerate(zip(acc, gap, strict=True))
    ]


def _zeros(n: int, seed: int = 0) -> list[dict[str, float]]:
    return _runs(np.zeros(n), np.zeros(n), seed)


def test_uncorrelated_differences_pass_about_a_quarter_of_the_time() -> None:
    rng = np.random.default_rng(3)
    mine = _runs(rng.normal(size=41), rng.normal(size=41))
    rate = chance_pass_rate(mine, _zeros(41))  # 41 split seeds: random patterns
    assert rate == pytest.approx(0.25, abs=0.03)
    assert rate == chance_pass_rate(mine, _zeros(41))  # seeded: the same each call


def test_few_split_seeds_count_every_pattern() -> None:
    """Three split seeds, accuracy differences (1, 1, 1), gap differences
    (1, -1, -1): of the 8 sign patterns, (+, +, +) and (-, +, +) pass (mean
    accuracy >= 0 needs at most one minus; mean gap <= 0 rules out the other
    patterns with one minus), so exactly 2 of 8."""
    mine = _runs(np.ones(3), np.array([1.0, -1.0, -1.0]))
    assert chance_pass_rate(mine, _zeros(3)) == 0.25


def test_the_runs_correlation_is_kept() -> None:
    """Flipped jointly per split seed: when accuracy and gap differences move
    together (more accurate only with a larger gap) the goal can never pass on
    an odd number of split seeds; when they move against each other it passes
    exactly when the accuracy mean is >= 0, half the flips by symmetry."""
    d = np.random.default_rng(4).normal(size=41)
    assert chance_pass_rate(_runs(d, d), _zeros(41)) == 0.0
    assert chance_pass_rate(_runs(d, -d), _zeros(41)) == pytest.approx(0.5, abs=0.015)
    assert chance_pass_rate(_zeros(5), _zeros(5)) == 1.0  # equal means count as passing


def test_runs_pair_by_split_and_seed_and_average_per_split_seed() -> None:
    mine = [
        {"split_seed": 0, "seed": 0, "acc": 0.7, "gap": 0.1},
        {"split_seed": 0, "seed": 1, "acc": 0.8, "gap": 0.3},
        {"split_seed": 3, "seed": 0, "acc": 0.9, "gap": 0.2},
        {"split_seed": 9, "seed": 9, "acc": 0.5, "gap": 0.3},  # no partner: left out
    ]
    theirs = [  # listed in another order: pairs follow (split seed, seed)
        {"split_seed": 3, "seed": 0, "acc": 0.6, "gap": 0.2},
        {"split_seed": 0, "seed": 1, "acc": 0.6, "gap": 0.1},
        {"split_seed": 0, "seed": 0, "acc": 0.6, "gap": 0.1},
    ]
    expected = np.array([[0.15, 0.1], [0.3, 0.0]])  # split seed 0's two runs averaged
    assert split_differences(mine, theirs) == pytest.approx(expected)
    assert split_differences(mine, theirs, ("gap",)) == pytest.approx(expected[:, 1:])
    with pytest.raises(ValueError, match="same split seeds and seeds"):
        chance_pass_rate(mine[3:], theirs)
    with pytest.raises(ValueError, match="draws >= 1; got 0"):
        chance_pass_rate(mine, theirs, draws=0)


def test_paired_interval_is_over_split_seeds_not_runs() -> None:
    """Ten runs of one split seed pin a per-run interval down; per split seed
    they are one value, and two split seeds that disagree give a wide interval
    around their mean."""
    from benchmarks.fairness_splits import paired_difference

    mine = [
        {"split_seed": k, "seed": s, "acc": 0.7 + (0.02 if k == 0 else -0.01) + 1e-4 * s}
        for k in (0, 1)
        for s in range(10)
    ]
    theirs = [{"split_seed": k, "seed": s, "acc": 0.7} for k in (0, 1) for s in range(10)]
    diff = paired_difference(mine, theirs, "acc")
    assert (diff["runs"], diff["split_seeds"]) == (20, 2)
    assert diff["mean"] == pytest.approx(0.005 + 4.5e-4)
    low, high = diff["ci"]
    assert low < 0 < high and high - low > 0.1  # t with 1 degree of freedom


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


def test_method_interval_is_over_split_seeds_not_runs() -> None:
    """A method's own interval (the results table): ten runs each of two split
    seeds that disagree give one mean per split seed, so a wide t-interval
    with one degree of freedom (over the 20 runs it would be about 0.05
    wide)."""
    from benchmarks import fairness_splits as fs

    runs = [
        {"split_seed": k, "seed": s, "acc": base + 1e-4 * s, "gap": 0.02, "ece": 0.01, "fit_s": 1.0}
        for k, base in ((0, 0.70), (1, 0.80))
        for s in range(10)
    ]
    acc = fs._summary(runs)["acc"]
    assert acc["mean"] == pytest.approx(0.75045)
    assert acc["worst"] == 0.70
    low, high = acc["ci"]
    assert low < 0.70 and high > 0.80  # t(0.975, 1) x 0.05 = 0.635 either side


def test_every_pattern_is_counted_up_to_16_split_seeds_then_drawn() -> None:
    """Counted exactly, the rate does not depend on the generator's seed; past
    :data:`EXACT_SPLITS` it is a random estimate, which does."""
    from benchmarks.fairness_chance import EXACT_SPLITS

    rng = np.random.default_rng(7)
    for n, exact in ((EXACT_SPLITS, True), (EXACT_SPLITS + 1, False)):
        mine = _runs(rng.normal(size=n), rng.normal(size=n))
        rates = {chance_pass_rate(mine, _zeros(n), seed=s) for s in range(3)}
        assert (len(rates) == 1) is exact, (n, rates)


def test_non_finite_runs_are_refused_by_name() -> None:
    mine = _runs(np.array([0.1, np.nan, 0.2]), np.zeros(3))
    with pytest.raises(ValueError, match=r"finite acc, gap; split seed\(s\) \[1\] have a NaN"):
        chance_pass_rate(mine, _zeros(3))


def test_unbalanced_runs_weigh_split_seeds_alike_everywhere() -> None:
    """A round stopped early leaves split seeds with unequal run counts: the
    goal's means, the paired mean and each interval all weigh split seeds
    alike, so the paired mean's sign agrees with the goal and each interval
    holds its own mean."""
    from benchmarks import fairness_splits as fs

    def run(k: int, s: int, acc: float) -> dict[str, float]:
        return {"split_seed": k, "seed": s, "acc": acc, "gap": 0.02, "ece": 0.01, "fit_s": 1.0}

    # Split seed 0: one run, regtune +0.10; split seeds 1-2: three runs each, -0.04.
    mine = [run(0, 0, 0.80)] + [run(k, s, 0.66) for k in (1, 2) for s in range(3)]
    theirs = [run(0, 0, 0.70)] + [run(k, s, 0.70) for k in (1, 2) for s in range(3)]
    runs = {"compas": {fs.DP: mine, "fairlearn TO-DP": theirs}}
    summaries = fs._summaries(runs)
    (row,) = fs.goals(summaries, runs)
    mine_mean = summaries["compas"][fs.DP]["acc"]["mean"]
    theirs_mean = summaries["compas"]["fairlearn TO-DP"]["acc"]["mean"]
    assert mine_mean == pytest.approx((0.80 + 0.66 + 0.66) / 3)
    assert row["paired"]["acc"]["mean"] == pytest.approx(mine_mean - theirs_mean)
    assert row["ok"] is (row["paired"]["acc"]["mean"] >= 0)
    for summary in summaries["compas"].values():
        low, high = summary["acc"]["ci"]
        assert low <= summary["acc"]["mean"] <= high

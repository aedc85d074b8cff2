"""Randomized per-group thresholds (``penalties.fairness.randomized``): the
lottery fit against a brute force, its reproducible draws, the trainer's
use of it, its checkpoint, and the refusals."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from regtune.errors import CheckpointError, DataError, SpecError
from regtune.search_spaces import load_train_config
from regtune.trainables.checkpoint import load_tree, save_tree
from regtune.trainables.config import parse_train_config
from regtune.trainables.data import Dataset
from regtune.trainables.fairness import eo_difference
from regtune.trainables.loop import Trainer, train
from regtune.trainables.lottery_draws import (
    apply_lottery,
    pack,
    row_uniforms,
    unpack,
    valid_packed,
)
from regtune.trainables.threshold_lottery import expected_rates, fit_lottery
from regtune.trainables.thresholds import fit_thresholds


def _table(seed: int, n: int = 400) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.3 + 0.25 * s).astype(np.int64)
    # Coarse scores (few distinct values), as COMPAS has.
    p = np.clip(np.round(0.45 * y + 0.2 * s + rng.normal(0, 0.25, n), 1), 0, 1)
    return torch.from_numpy(p), torch.from_numpy(y), torch.from_numpy(s)


@pytest.mark.parametrize("kind", ["dp", "eo"])
@pytest.mark.parametrize("tolerance", [0.0, 0.03])
def test_the_lottery_is_at_least_as_accurate_as_the_deterministic_fit(
    kind: str, tolerance: float
) -> None:
    """One threshold per group is one lottery, so the programme's optimum is
    never less accurate at the same tolerance; its expected gap is within it."""
    gains = []
    for seed in range(12):
        p, y, s = _table(seed)
        lottery = fit_lottery(p, y, s, 2, kind=kind, tolerance=tolerance)
        plain = fit_thresholds(p, y, s, 2, kind=kind, tolerance=tolerance)
        assert lottery.gap <= tolerance + 1e-9
        assert lottery.accuracy >= plain.accuracy - 1e-9 or not plain.feasible
        gap, accuracy = expected_rates(p, y, s, lottery.thresholds, lottery.weights, kind=kind)
        assert gap == pytest.approx(lottery.gap, abs=1e-12)
        assert accuracy == pytest.approx(lottery.accuracy, abs=1e-12)
        for cuts, weights in zip(lottery.thresholds, lottery.weights, strict=True):
            assert list(cuts) == sorted(cuts) and sum(weights) == pytest.approx(1.0)
        gains.append(lottery.accuracy - plain.accuracy)
    if kind == "eo" and tolerance == 0.0:
        # Exact equalized odds: where the deterministic fit loses most.
        assert max(gains) > 0.01


def _decisions_by_candidate(pg: np.ndarray, yg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One group's decisions at each candidate threshold (rows x candidates: every
    distinct score, and "select none"), and each candidate's correct count."""
    cands = np.append(np.unique(pg), np.nextafter(pg.max(), np.inf))
    chosen = pg[:, None] >= cands[None, :]
    return chosen, (chosen == (yg[:, None] == 1)).sum(axis=0).astype(np.float64)


def _brute_force(
    p: torch.Tensor, y: torch.Tensor, s: torch.Tensor, kind: str, tolerance: float
) -> float:
    """The most accurate mix, over a grid of weights on every group's candidates."""
    tables = []
    for g in (0, 1):
        pg, yg = p[s == g].numpy(), y[s == g].numpy()
        chosen, correct = _decisions_by_candidate(pg, yg)
        if kind == "dp":
            rates = [chosen.mean(axis=0)]
        else:
            rates = [chosen[yg == 1].mean(axis=0), chosen[yg == 0].mean(axis=0)]
        steps = 10
        mixes = [
            np.array(w) / steps
            for w in itertools.product(range(steps + 1), repeat=chosen.shape[1])
            if sum(w) == steps
        ]
        weights = np.stack(mixes)
        tables.append((weights @ correct, [weights @ r for r in rates]))
    (c0, r0), (c1, r1) = tables
    gap = np.zeros((c0.size, c1.size))
    for a, b in zip(r0, r1, strict=True):
        gap = np.maximum(gap, np.abs(a[:, None] - b[None, :]))
    total = (c0[:, None] + c1[None, :]) / p.shape[0]
    return float(total[gap <= tolerance + 1e-9].max())


@pytest.mark.parametrize("kind", ["dp", "eo"])
def test_no_mix_on_a_weight_grid_beats_the_programme(kind: str) -> None:
    """On tables with a few candidate thresholds per group, the fitted
    lottery is at least as accurate as every mix on a 1/10 weight grid."""
    rng = np.random.default_rng(7)
    for _ in range(6):
        s = torch.from_numpy(rng.integers(0, 2, 60))
        y = torch.from_numpy((rng.random(60) < 0.45).astype(np.int64))
        p = torch.from_numpy(rng.choice([0.2, 0.7], 60) * (0.7 + 0.3 * y.numpy()))
        for tolerance in (0.0, 0.05):
            best = _brute_force(p, y, s, kind, tolerance)
            fit = fit_lottery(p, y, s, 2, kind=kind, tolerance=tolerance)
            assert fit.accuracy >= best - 1e-9


def _envelope(rates: np.ndarray, correct: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The most correct decisions any mix of two candidates has at each rate of ``grid``."""
    out = np.full(grid.size, -np.inf)
    for i, j in itertools.product(range(rates.size), repeat=2):
        lo, hi = rates[i], rates[j]
        inside = (grid >= lo) & (grid <= hi)
        if hi == lo:
            out[inside] = np.maximum(out[inside], max(correct[i], correct[j]))
        else:
            share = (grid[inside] - lo) / (hi - lo)
            mixed = (1 - share) * correct[i] + share * correct[j]
            out[inside] = np.maximum(out[inside], mixed)
    return out


def test_demographic_parity_equals_an_independent_optimum() -> None:
    """With one rate per group, the best lottery at selection rates (r0, r1)
    is each group's upper envelope of two-candidate mixes there; maximising
    their sum over a fine grid with |r0 - r1| <= tolerance is an independent
    optimum the programme must equal (to the grid's resolution)."""
    rng = np.random.default_rng(11)
    step = 1e-3
    grid = np.arange(0, 1 + step / 2, step)
    for _ in range(5):
        n = 80
        s = torch.from_numpy(rng.integers(0, 2, n))
        y = torch.from_numpy((rng.random(n) < 0.3 + 0.3 * s.numpy()).astype(np.int64))
        p = torch.from_numpy(np.round(rng.random(n) * 0.5 + 0.4 * y.numpy(), 1))
        envelopes = []
        for g in (0, 1):
            pg, yg = p[s == g].numpy(), y[s == g].numpy()
            chosen, correct = _decisions_by_candidate(pg, yg)
            envelopes.append(_envelope(chosen.mean(axis=0), correct, grid))
        for tolerance in (0.0, 0.04):
            width = round(tolerance / step)
            total = np.full(grid.size, -np.inf)
            for shift in range(-width, width + 1):
                other = np.roll(envelopes[1], -shift)
                if shift > 0:
                    other[-shift:] = -np.inf
                elif shift < 0:
                    other[:-shift] = -np.inf
                total = np.maximum(total, envelopes[0] + other)
            best = float(total.max()) / n
            fit = fit_lottery(p, y, s, 2, kind="dp", tolerance=tolerance)
            assert fit.accuracy >= best - 1e-9
            assert fit.accuracy <= best + 2 * step  # the grid's resolution


def test_exact_equalized_odds_on_a_hand_made_table() -> None:
    """Group 0's ROC points (FPR, TPR) are (0, 0), (0.2, 0.6), (1, 1); group
    1's (0, 0), (0.6, 0.9), (1, 1). One threshold each meets equalized odds
    only by selecting everyone or no one (no better than a constant); a
    lottery meets it exactly at points both groups' hulls hold, such as
    (0.5, 0.75), well above a constant decision."""
    p0 = [0.9, 0.9, 0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1]  # 5 positives, then 5 negatives
    p1 = [0.8] * 9 + [0.2] + [0.8] * 3 + [0.2] * 2
    y0 = [1] * 5 + [0] * 5
    y1 = [1] * 10 + [0] * 5
    p = torch.tensor(p0 + p1, dtype=torch.float64)
    y = torch.tensor(y0 + y1)
    s = torch.tensor([0] * 10 + [1] * 15)
    plain = fit_thresholds(p, y, s, 2, kind="eo", tolerance=0.0)
    assert not plain.feasible  # only the trivial tuples are fair
    fit = fit_lottery(p, y, s, 2, kind="eo", tolerance=0.0)
    assert fit.feasible and fit.gap == pytest.approx(0.0, abs=1e-9)
    # (0.5, 0.75) in both groups is one fair lottery (0.65 of the rows right
    # in expectation, a constant decision 0.6); no common point is better here.
    at_common_point = (5 * 0.75 + 5 * 0.5 + 10 * 0.75 + 5 * 0.5) / 25
    assert fit.accuracy == pytest.approx(at_common_point, abs=1e-9)
    assert fit.accuracy > fit.constant_accuracy
    gap, accuracy = expected_rates(p, y, s, fit.thresholds, fit.weights, kind="eo")
    assert gap <= 1e-9 and accuracy == pytest.approx(fit.accuracy)


def _splitmix_reference(score: float) -> float:
    """splitmix64 of the score's 1e-4 grid cell (an integer), top 53 bits as a
    fraction, in Python ints."""
    mask = (1 << 64) - 1
    z = math.floor(score / 1e-4 + 0.5) & mask
    z = (z + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return (z >> 11) * 2.0**-53


def test_draws_are_a_reproducible_uniform_hash_of_the_score() -> None:
    rng = np.random.default_rng(0)
    cells = (np.arange(10_000) + 0.3) * 1e-4  # one score in each grid cell of [0, 1)
    u = row_uniforms(cells)
    assert ((u >= 0) & (u < 1)).all()
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    expected = cells.size / 20
    assert ((counts - expected) ** 2 / expected).sum() < 45  # chi-square, 19 dof: p ~ 0.001
    scores = rng.random(1000)
    assert np.array_equal(row_uniforms(scores), row_uniforms(torch.from_numpy(scores)))
    assert row_uniforms(np.array([-0.0]))[0] == row_uniforms(np.array([0.0]))[0]
    # A float32 score that moved by its last bit (another batch size) keeps its
    # draw unless a grid edge lies between: here 1,000 scores, none do.
    base = np.float32(rng.uniform(0.1, 0.9, 1000).astype(np.float32))
    moved = np.nextafter(base, np.float32(2))
    same_cell = np.floor(base / 1e-4 + 0.5) == np.floor(moved.astype(np.float64) / 1e-4 + 0.5)
    assert same_cell.sum() >= 990
    assert np.array_equal(row_uniforms(base)[same_cell], row_uniforms(moved)[same_cell])
    # Pinned to splitmix64 in plain integers (a served decision depends on it).
    assert row_uniforms(np.array([0.5]))[0] == _splitmix_reference(0.5)
    assert row_uniforms(np.array([0.123456789]))[0] == _splitmix_reference(0.123456789)
    # Independent of the label: within a band the realised rates follow the weights.
    t = ((0.25, 0.75),)
    w = ((0.3, 0.7),)
    mid = rng.uniform(0.25, 0.75, 200_000)
    decided = apply_lottery(mid, np.zeros(mid.size, dtype=np.int64), t, w)
    assert decided.mean() == pytest.approx(0.3, abs=0.02)  # 5,000 grid cells: 3 sd


def test_realised_rates_follow_the_expected_ones_on_many_rows() -> None:
    rng = np.random.default_rng(3)
    n = 60_000
    s = torch.from_numpy(rng.integers(0, 2, n))
    y = torch.from_numpy((rng.random(n) < 0.3 + 0.2 * s.numpy()).astype(np.int64))
    p = torch.from_numpy(np.clip(0.5 * y.numpy() + rng.normal(0.25, 0.2, n), 0, 1))
    fit = fit_lottery(p, y, s, 2, kind="eo", tolerance=0.0)
    decided = torch.from_numpy(apply_lottery(p, s, fit.thresholds, fit.weights))
    assert eo_difference(y, decided, s) < 0.015
    assert float((decided == y).double().mean()) == pytest.approx(fit.accuracy, abs=0.01)


def test_pack_round_trip_and_checks() -> None:
    thresholds = ((0.2, 0.6), (0.5,))
    weights = ((0.25, 0.75), (1.0,))
    packed = pack(thresholds, weights)
    assert packed.shape == (2, 2, 2) and valid_packed(packed)
    assert unpack(packed) == (thresholds, weights)
    bad_sum = packed.clone()
    bad_sum[0, 0, 1] = 0.5
    negative = packed.clone()
    negative[1, 0, 0] = -0.1
    for bad in (bad_sum, negative, packed[0], packed.long(), torch.zeros((0, 1, 2)), "x"):
        assert not valid_packed(bad)


def test_bad_inputs_are_refused_by_name() -> None:
    p, y, s = _table(0, 50)
    with pytest.raises(ValueError, match=r"tolerance must be a finite number >= 0; got -0\.1"):
        fit_lottery(p, y, s, 2, kind="dp", tolerance=-0.1)
    with pytest.raises(ValueError, match="kind must be 'dp' or 'eo'; got 'tpr'"):
        fit_lottery(p, y, s, 2, kind="tpr")
    with pytest.raises(DataError, match="group 2 has no rows"):
        fit_lottery(p, y, s, 3, kind="dp")
    with pytest.raises(DataError, match=r"group codes >= 0 .* got -1"):
        apply_lottery(p, -s, ((0.5,), (0.5,)), ((1.0,), (1.0,)))
    with pytest.raises(DataError, match="one \\(thresholds, weights\\) pair per group code"):
        apply_lottery(p, s, ((0.5,),), ((1.0,),))


BASE = {
    "dataset": "adult",
    "model": {"arch": "logreg"},
    "training": {"epochs": 1, "batch_size": 2048, "lr": 1e-2, "robust_every": 0},
}


def _with(fairness: dict[str, object]) -> dict[str, object]:
    return {**BASE, "penalties": {"fairness": fairness}}


def test_the_config_takes_randomized_only_where_thresholds_are_fitted(tmp_path: Path) -> None:
    ok = parse_train_config(_with({"kind": "eo", "method": "postprocess", "randomized": True}))
    assert ok.penalties.fairness.randomized
    spec = tmp_path / "c.yaml"
    spec.write_text(
        yaml.safe_dump(_with({"kind": "eo", "strength": 1.0, "randomized": True})),
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as info:
        load_train_config(spec)
    problems = {p.path: p.message for p in info.value.problems}
    assert problems == {
        "penalties.fairness.randomized": "has no effect: only a method ending in 'postprocess' "
        "fits thresholds; remove it, or set penalties.fairness.method so that it applies"
    }
    # Not a boolean: refused by name (a YAML door).
    spec.write_text(
        yaml.safe_dump(_with({"kind": "eo", "method": "postprocess", "randomized": "maybe"})),
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as bad:
        load_train_config(spec)
    assert [p.path for p in bad.value.problems] == ["penalties.fairness.randomized"]
    assert "boolean" in str(bad.value)
    with pytest.raises(SpecError, match="randomized: true cannot take robust_quantile"):
        parse_train_config(
            _with(
                {
                    "kind": "eo",
                    "method": "postprocess",
                    "bound": 0.05,
                    "robust_quantile": 0.5,
                    "randomized": True,
                }
            )
        )


def test_the_trainer_fits_stores_and_restores_a_lottery(adult: Dataset, tmp_path: Path) -> None:
    config = _with(
        {
            "kind": "eo",
            "method": "postprocess",
            "bound": 0.01,
            "margin": 0.005,
            "randomized": True,
        }
    )
    result = train(config, dataset=adult, checkpoint_dir=tmp_path / "ckpt")
    out = result.test_metrics
    assert out["postprocess_feasible"] == 1.0 and out["val_postprocess_gap"] <= 0.005 + 1e-9
    assert out["threshold_count_Female"] >= 1 and "threshold_Female" not in out
    tree = load_tree(tmp_path / "ckpt")
    assert tree["thresholds"] is None and valid_packed(tree["lottery"])

    # A trainer restored from the checkpoint decides exactly as the run did.
    restored = Trainer(config, dataset=adult)
    restored.load_state_dict(tree)
    assert restored.lottery is not None and restored.thresholds is None
    cuts, weights = unpack(restored.lottery)
    assert adult.test.s is not None
    expected = apply_lottery(restored.positive_scores("test"), adult.test.s, cuts, weights)
    assert np.array_equal(restored.decisions("test").numpy(), expected)
    assert out["test_eo_diff"] == eo_difference(
        adult.test.y, torch.from_numpy(expected), adult.test.s
    )

    # A damaged lottery in a checkpoint is refused by name, before anything is restored.
    damaged = dict(tree)
    damaged["lottery"] = tree["lottery"].clone()
    damaged["lottery"][0, :, 1] = 0.4  # weights no longer sum to 1
    save_tree(damaged, tmp_path / "damaged")
    with pytest.raises(CheckpointError, match=r"tree\.lottery.*weights sum to 1 per group"):
        Trainer(config, dataset=adult).load_state_dict(load_tree(tmp_path / "damaged"))


def test_tied_scores_are_reported_as_drawn_and_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rows with equal scores share a draw, so on coarse scores the drawn
    decisions can miss the expected gap by far: the fit reports the drawn
    gap and accuracy beside the expected ones and warns (a reviewer's case:
    scores rounded to 0.1, 20,000 rows)."""
    p, y, s = _table(1, 20_000)
    with caplog.at_level("WARNING", logger="regtune.trainables.threshold_lottery"):
        fit = fit_lottery(p, y, s, 2, kind="dp", tolerance=0.0)
    decided = apply_lottery(p, s, fit.thresholds, fit.weights)
    rates = [decided[s.numpy() == g].mean() for g in (0, 1)]
    assert fit.realized_gap == pytest.approx(abs(rates[0] - rates[1]), abs=1e-12)
    assert fit.realized_accuracy == pytest.approx((decided == y.numpy()).mean(), abs=1e-12)
    assert fit.gap <= 1e-9 < 0.01 < fit.realized_gap
    assert "rows with equal scores share a draw" in caplog.text
    # Many distinct scores: the drawn gap stays near the expected one, no warning.
    caplog.clear()
    rng = np.random.default_rng(5)
    s2 = torch.from_numpy(rng.integers(0, 2, 20_000))
    y2 = torch.from_numpy((rng.random(20_000) < 0.3 + 0.2 * s2.numpy()).astype(np.int64))
    p2 = torch.from_numpy(np.clip(0.4 * y2.numpy() + rng.normal(0.3, 0.2, 20_000), 0, 1))
    with caplog.at_level("WARNING", logger="regtune.trainables.threshold_lottery"):
        smooth = fit_lottery(p2, y2, s2, 2, kind="dp", tolerance=0.0)
    assert smooth.realized_gap < 0.01 and not caplog.text


def test_a_run_resumed_without_post_processing_drops_the_stored_lottery(
    adult: Dataset, tmp_path: Path
) -> None:
    """A reviewer's case: a randomized run's checkpoint resumed with a method
    that fits no thresholds kept deciding by the stale lottery."""
    fitted = _with({"kind": "eo", "method": "postprocess", "randomized": True})
    train(fitted, dataset=adult, checkpoint_dir=tmp_path / "ckpt")
    assert load_tree(tmp_path / "ckpt")["lottery"] is not None
    plain = {
        **_with({"kind": "eo", "method": "penalty", "strength": 1.0}),
        "training": {**BASE["training"], "epochs": 2},  # type: ignore[dict-item]
    }
    result = train(plain, dataset=adult, checkpoint_dir=tmp_path / "ckpt", resume=True)
    tree = load_tree(tmp_path / "ckpt")
    assert tree["lottery"] is None and tree["thresholds"] is None
    restored = Trainer(plain, dataset=adult)
    restored.load_state_dict(tree)
    assert restored.lottery is None
    assert adult.test.s is not None
    argmax = restored.decisions("test")
    groups = adult.test.s
    female = groups == adult.group_names.index("Female")
    acc_female = float((argmax[female] == adult.test.y[female]).double().mean())
    assert result.test_metrics["test_acc_Female"] == pytest.approx(acc_female)

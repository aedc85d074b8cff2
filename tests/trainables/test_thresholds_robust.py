"""Robust post-processing thresholds: the gap must hold on most bootstrap
resamples of the fitting rows (``robust_quantile``), on hand-made tables."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from regtune.errors import SpecError
from regtune.trainables.checkpoint import load_tree
from regtune.trainables.config import idle_keys, parse_train_config
from regtune.trainables.data import Dataset
from regtune.trainables.fairness_robust import (
    gap_quantile,
    resample_counts,
    strata_of,
    weighted_at_least,
)
from regtune.trainables.loop import train
from regtune.trainables.thresholds import apply_thresholds, fit_thresholds, resampled_gap

Table = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _noisy_table(n0: int = 400, n1: int = 60, seed: int = 0) -> Table:
    """A large group 0 and a small group 1 (about 18 positives): group 1's
    rates at most thresholds move by several points between resamples."""
    rng = np.random.default_rng(seed)
    s = np.r_[np.zeros(n0, dtype=np.int64), np.ones(n1, dtype=np.int64)]
    y = (rng.random(n0 + n1) < np.where(s == 0, 0.4, 0.3)).astype(np.int64)
    logit = rng.normal(0.0, 1.0, n0 + n1) + 1.5 * (2 * y - 1) - 0.3 * s
    return torch.tensor(1 / (1 + np.exp(-logit))), torch.tensor(y), torch.tensor(s)


def _exact_table() -> Table:
    """Every (group, label) cell has one score: any threshold selects all or
    none of a cell, so each rate is 0 or 1 in every resample (no noise)."""
    cells = [(0, 1, 0.9, 30), (0, 0, 0.2, 50), (1, 1, 0.7, 10), (1, 0, 0.4, 20)]
    s = torch.tensor([g for g, _, _, n in cells for _ in range(n)])
    y = torch.tensor([label for _, label, _, n in cells for _ in range(n)])
    p = torch.tensor([score for _, _, score, n in cells for _ in range(n)], dtype=torch.float64)
    return p, y, s


@pytest.mark.parametrize("kind", ["eo", "dp"])
def test_the_robust_fit_meets_its_criterion_where_the_plain_fit_does_not(kind: str) -> None:
    p, y, s = _noisy_table()
    plain = fit_thresholds(p, y, s, 2, kind=kind, tolerance=0.05)
    robust = fit_thresholds(p, y, s, 2, kind=kind, tolerance=0.05, robust_quantile=0.9, seed=1)

    def quantile(thresholds: tuple[float, ...]) -> float:
        return resampled_gap(p, y, s, 2, thresholds, kind=kind, quantile=0.9, seed=1)

    # The plain tuple fits the rows but not 90% of their resamples.
    assert plain.feasible and plain.gap <= 0.05 < quantile(plain.thresholds)
    assert robust.feasible and robust.gap <= 0.05
    # The fit's count is resampled_gap's for the tuple it chose, exactly.
    assert robust.robust_gap == quantile(robust.thresholds)
    assert robust.robust_gap is not None and robust.robust_gap <= 0.05
    assert robust.accuracy < plain.accuracy  # robustness has a price here
    pred = apply_thresholds(p, s, robust.thresholds)
    assert robust.accuracy == pytest.approx(float((pred == y).double().mean()))


def test_the_quantile_is_the_share_of_resamples_within_it() -> None:
    p, y, s = _noisy_table()
    fit = fit_thresholds(p, y, s, 2, kind="eo", tolerance=0.08, robust_quantile=0.75, seed=4)
    counts = resample_counts(strata_of(y.numpy(), s.numpy(), "eo"), 200, 4)
    pred = apply_thresholds(p, s, fit.thresholds).numpy().astype(float)
    gaps = []
    for w in counts.astype(float):
        rates = [
            (w[m] * pred[m]).sum() / w[m].sum()
            for label in (1, 0)
            for g in (0, 1)
            if (m := (s.numpy() == g) & (y.numpy() == label)).any()
        ]
        gaps.append(max(abs(rates[0] - rates[1]), abs(rates[2] - rates[3])))
    share_within = np.mean(np.array(gaps) <= fit.robust_gap + 1e-12)
    assert fit.robust_gap is not None and share_within >= 0.75
    assert np.mean(np.array(gaps) < fit.robust_gap - 1e-12) < 0.75  # the smallest such value


@pytest.mark.parametrize(
    ("quantile", "resamples"), [(0.55, 100), (0.07, 100), (0.14, 50), (0.75, 200)]
)
def test_the_quantile_counts_resamples_exactly(quantile: float, resamples: int) -> None:
    # Gaps 1..R (two columns, reversed in the second): the ceil(q x R)-th
    # smallest is the value at least a share q of resamples do not exceed.
    gaps = np.stack([np.arange(1.0, resamples + 1), np.arange(resamples, 0.0, -1)], axis=1)
    want = -(-round(quantile * resamples * 1000) // 1000)  # exact ceil of q x R
    assert list(gap_quantile(gaps, quantile)) == [want, want]
    assert np.mean(gaps[:, 0] <= want) >= quantile > np.mean(gaps[:, 0] <= want - 1)


@pytest.mark.parametrize("kind", ["eo", "dp"])
def test_the_robust_fit_is_the_plain_one_when_the_plain_tuple_passes(kind: str) -> None:
    p, y, s = _noisy_table()
    # 0.2: the plain (most accurate within it) dp tuple's resampled gap is 0.199;
    # at 0.15 it fails the robust check and the robust fit rightly differs.
    plain = fit_thresholds(p, y, s, 2, kind=kind, tolerance=0.2)
    assert resampled_gap(p, y, s, 2, plain.thresholds, kind=kind, quantile=0.9, seed=1) <= 0.2
    robust = fit_thresholds(p, y, s, 2, kind=kind, tolerance=0.2, robust_quantile=0.9, seed=1)
    assert robust.robust_gap is not None and robust.robust_gap <= 0.2
    assert (robust.thresholds, robust.gap, robust.accuracy) == (
        plain.thresholds,
        plain.gap,
        plain.accuracy,
    )


def test_without_noise_the_robust_fit_is_the_plain_fit() -> None:
    p, y, s = _exact_table()
    for tolerance in (1e-9, 0.5):
        plain = fit_thresholds(p, y, s, 2, kind="eo", tolerance=tolerance)
        robust = fit_thresholds(
            p, y, s, 2, kind="eo", tolerance=tolerance, robust_quantile=0.99, seed=5
        )
        assert robust == dataclasses.replace(plain, robust_gap=plain.gap)
    assert plain.accuracy == 1.0  # each group's own threshold separates it


def test_the_option_off_is_the_plain_fit_and_seeds_make_it_deterministic() -> None:
    p, y, s = _noisy_table()
    plain = fit_thresholds(p, y, s, 2, kind="eo", tolerance=0.05)
    assert plain.robust_gap is None
    assert fit_thresholds(p, y, s, 2, kind="eo", tolerance=0.05, seed=9, resamples=7) == plain
    again = [
        fit_thresholds(p, y, s, 2, kind="eo", tolerance=0.05, robust_quantile=0.8, seed=2)
        for _ in range(2)
    ]
    assert again[0] == again[1]


def test_a_negative_seed_is_taken_as_numpy_takes_its_unsigned_equal() -> None:
    # training.seed may be negative (torch takes it); numpy's generator does not.
    p, y, s = _noisy_table()
    negative = fit_thresholds(p, y, s, 2, kind="eo", tolerance=0.05, robust_quantile=0.8, seed=-3)
    unsigned = fit_thresholds(
        p, y, s, 2, kind="eo", tolerance=0.05, robust_quantile=0.8, seed=2**64 - 3
    )
    assert negative == unsigned and negative.robust_gap is not None


def test_a_resampled_gap_of_too_few_thresholds_is_refused_by_name() -> None:
    from regtune.errors import DataError

    p, y, s = _noisy_table()
    with pytest.raises(DataError, match=r"got 1 thresholds but group codes up to 1"):
        resampled_gap(p, y, s, 2, (0.5,), kind="eo", quantile=0.8)


def test_resamples_keep_each_stratum_size_and_weights_count_rows_above() -> None:
    strata = np.array([0, 0, 0, 1, 1, 2])
    counts = resample_counts(strata, 50, 0)
    assert counts.shape == (50, 6) and (counts >= 0).all()
    assert (counts[:, :3].sum(axis=1) == 3).all() and (counts[:, 3:5].sum(axis=1) == 2).all()
    assert (counts[:, 5] == 1).all()
    assert not (counts[:, :3] == 1).all()  # rows are drawn with replacement
    p = np.array([0.1, 0.5, 0.5, 0.9])
    w = np.array([[1, 2, 0, 3], [0, 0, 4, 0]])
    got = weighted_at_least(p, w, np.array([0.0, 0.5, 0.6, 1.0]))
    assert got.tolist() == [[6.0, 5.0, 3.0, 0.0], [4.0, 4.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"robust_quantile": 1.0}, r"strictly between 0 and 1 .*got 1\.0"),
        ({"robust_quantile": 0}, r"strictly between 0 and 1 .*got 0"),
        ({"robust_quantile": "0.9"}, r"strictly between 0 and 1 .*got '0\.9'"),
        ({"robust_quantile": 0.9, "resamples": 0}, r"robust_resamples must be a whole number >= 1"),
        ({"robust_quantile": 0.9, "resamples": 2.5}, r"whole number >= 1; got 2\.5"),
    ],
)
def test_bad_robust_options_are_refused_by_name(options: dict[str, Any], match: str) -> None:
    p, y, s = _noisy_table()
    with pytest.raises(ValueError, match=match):
        fit_thresholds(p, y, s, 2, kind="eo", tolerance=0.05, **options)


def _fair(**fairness: Any) -> dict[str, Any]:
    base = {"kind": "eo", "method": "lagrangian+postprocess", "strength": 1.0, "bound": 0.02}
    return {"dataset": "adult", "penalties": {"fairness": {**base, **fairness}}}


@pytest.mark.parametrize(
    ("fairness", "match"),
    [
        ({"robust_quantile": 1.5}, r"penalties\.fairness\.robust_quantile: Input should be less"),
        ({"robust_quantile": 0.0}, r"fairness\.robust_quantile: Input should be greater than 0"),
        ({"robust_quantile": 0.9, "robust_resamples": 5},
         r"penalties\.fairness\.robust_resamples: Input should be greater than or equal to 20"),
        ({"robust_quantile": 0.9, "robust_resamples": 10**6},
         r"robust_resamples: Input should be less than or equal to 1000"),
        ({"robust_quantile": 0.9, "bound": None, "strength": 1.0},
         r"robust_quantile \(0\.9\) needs penalties\.fairness\.bound"),
    ],
)  # fmt: skip
def test_the_spec_refuses_bad_robust_options(fairness: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse_train_config(_fair(**fairness))


@pytest.mark.parametrize(
    ("fairness", "idle"),
    [
        ({"robust_quantile": 0.9, "robust_resamples": 500}, []),
        ({"robust_resamples": 500}, ["penalties.fairness.robust_resamples"]),
        ({"method": "lagrangian", "robust_quantile": 0.9}, ["penalties.fairness.robust_quantile"]),
    ],
)
def test_robust_keys_are_idle_where_they_change_nothing(
    fairness: dict[str, Any], idle: list[str]
) -> None:
    assert [p.path for p in idle_keys(parse_train_config(_fair(**fairness)))] == idle


def test_a_trainer_fits_robust_thresholds_and_stores_them(adult: Dataset, tmp_path: Path) -> None:
    cfg = {
        "dataset": "adult",
        "model": {"arch": "logreg"},
        "training": {"epochs": 1, "batch_size": 2048, "lr": 1e-2, "robust_every": 0, "seed": 3},
        "penalties": {
            "fairness": {
                "kind": "eo",
                "method": "postprocess",
                "bound": 0.04,
                "robust_quantile": 0.8,
                "robust_resamples": 100,
            }
        },
    }
    result = train(cfg, dataset=adult, checkpoint_dir=tmp_path / "ckpt")
    out = result.test_metrics
    stored = load_tree(tmp_path / "ckpt")["thresholds"]
    assert stored.tolist() == [out["threshold_Female"], out["threshold_Male"]]
    with torch.no_grad():
        val_p = result.model(adult.val.x).softmax(dim=1)[:, 1]
    # The criterion, recounted from the stored thresholds on the validation rows
    # with the run's seed: within the bound on at least 80% of 100 resamples.
    again = resampled_gap(
        val_p, adult.val.y, adult.val.s, 2, tuple(stored.tolist()),
        kind="eo", quantile=0.8, resamples=100, seed=3,
    )  # fmt: skip
    assert out["postprocess_feasible"] == 1.0
    assert out["val_postprocess_robust_gap"] == pytest.approx(again, abs=1e-12)
    assert again <= 0.04
    plain = fit_thresholds(val_p, adult.val.y, adult.val.s, 2, kind="eo", tolerance=0.04)
    assert plain.robust_gap is None and plain.accuracy >= out["val_postprocess_acc"]


def _decision_gap(
    p: torch.Tensor,
    y: torch.Tensor,
    s: torch.Tensor,
    n_groups: int,
    cuts: tuple[float, ...],
    kind: str,
    quantile: float,
    resamples: int,
    seed: int,
) -> float:
    """The robust criterion counted from the decisions themselves, apart from
    the fit's candidate machinery: each resample's weighted rates of
    ``p >= cut``, per group (and label, for eo)."""
    pp, yy, ss = p.double().numpy(), y.numpy(), s.numpy()
    decided = (pp >= np.asarray(cuts, dtype=np.float64)[ss]).astype(np.float64)
    counts = resample_counts(strata_of(yy, ss, kind), resamples, seed).astype(np.float64)
    gaps = np.zeros(resamples)
    for label in [None] if kind == "dp" else [1, 0]:
        rates = [
            (counts[:, m] * decided[m]).sum(axis=1) / counts[:, m].sum(axis=1)
            for g in range(n_groups)
            if (m := (ss == g) if label is None else (ss == g) & (yy == label)).any()
        ]
        if len(rates) >= 2:
            table = np.stack(rates, axis=1)
            gaps = np.maximum(gaps, table.max(axis=1) - table.min(axis=1))
    return float(gap_quantile(gaps[:, None], quantile)[0])


def _random_table(rng: np.random.Generator, n_groups: int) -> Table:
    """Groups of random sizes and base rates; scores rounded to two decimals
    (ties, so a threshold equal to a score counts); the last group of three
    has no positive row (its TPR is undefined in every resample)."""
    sizes = rng.integers(15, 120, size=n_groups)
    s = np.repeat(np.arange(n_groups), sizes)
    y = (rng.random(s.size) < rng.uniform(0.2, 0.6, n_groups)[s]).astype(np.int64)
    if n_groups == 3:
        y[s == 2] = 0
    p = np.round(1 / (1 + np.exp(-(rng.normal(0, 1, s.size) + 1.2 * (2 * y - 1)))), 2)
    return torch.tensor(p), torch.tensor(y), torch.tensor(s)


@pytest.mark.parametrize("case", range(16))
def test_the_fits_robust_gap_is_resampled_gap_of_its_tuple_on_random_tables(case: int) -> None:
    rng = np.random.default_rng(case)
    kind, n_groups = ("eo", "dp")[case % 2], (2, 3)[(case // 2) % 2]
    p, y, s = _random_table(rng, n_groups)
    quantile, resamples = float(rng.uniform(0.3, 0.95)), int(rng.integers(20, 120))
    fit = fit_thresholds(
        p, y, s, n_groups, kind=kind, tolerance=float(rng.uniform(0.02, 0.2)),
        robust_quantile=quantile, resamples=resamples, seed=case,
    )  # fmt: skip

    def recount(cuts: tuple[float, ...]) -> float:
        return resampled_gap(
            p, y, s, n_groups, cuts, kind=kind, quantile=quantile, resamples=resamples, seed=case
        )

    assert fit.robust_gap == recount(fit.thresholds)
    # Counted apart from the fit's machinery, for the chosen and for random tuples.
    others = [fit.thresholds, *(tuple(rng.uniform(0, 1.01, n_groups)) for _ in range(3))]
    for cuts in others:
        want = _decision_gap(p, y, s, n_groups, cuts, kind, quantile, resamples, case)
        assert recount(cuts) == pytest.approx(want, abs=1e-12)

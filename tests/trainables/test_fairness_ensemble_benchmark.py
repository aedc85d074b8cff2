"""The Adult EO seed-ensemble assessment's helpers (``benchmarks.fairness_ensemble``):
the ensemble's scores are the registry's, the worst run of a split is the
worst on the same held-out half, and the rule needs every condition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.fairness_ensemble import (
    CANDIDATES,
    MORE_MEMBERS_MUST_GAIN,
    choose,
    ensemble_logits,
    heldout,
    member_seeds,
    worst_of_seeds,
)
from benchmarks.fairness_selection import ADULT_EO_BASELINE
from regtune.platform.registry.modules import EnsembleModule


def test_ensemble_logits_are_the_registry_ensembles_output() -> None:
    torch.manual_seed(0)
    nets = [nn.Linear(4, 2).double() for _ in range(3)]
    x = torch.randn(50, 4, dtype=torch.float64)
    with torch.no_grad():
        want = EnsembleModule(nets)(x).numpy()
        got = ensemble_logits([net(x).numpy() for net in nets])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # One member: its own log-probabilities (the same decisions as its logits).
    one = ensemble_logits([np.array([[0.0, 1.0], [2.0, -1.0]])])
    np.testing.assert_allclose(np.exp(one).sum(axis=1), [1.0, 1.0])
    assert (one.argmax(axis=1) == [1, 0]).all()


def test_member_seeds_start_with_the_run_seed_and_never_repeat_across_runs() -> None:
    assert member_seeds(1, 3) == [1, 11, 21]
    largest = max(k for k, _ in CANDIDATES.values())
    seen = [m for s in (0, 1, 2) for m in member_seeds(s, largest)]
    assert len(seen) == len(set(seen)) == 3 * largest


def test_worst_of_seeds_takes_the_worst_run_per_halving() -> None:
    runs = [
        [{"halving": 0.0, "eo_diff": 0.01}, {"halving": 1.0, "eo_diff": 0.05}],
        [{"halving": 1.0, "eo_diff": 0.02}, {"halving": 0.0, "eo_diff": 0.04}],
        [{"halving": 0.0, "eo_diff": 0.03}, {"halving": 1.0, "eo_diff": 0.01}],
    ]
    assert worst_of_seeds(runs) == [0.04, 0.05]
    with pytest.raises(ValueError, match="different halvings"):
        worst_of_seeds([runs[0], runs[1][:1]])


def _summary(acc: float, ece: float, eo: float, worst: float) -> dict[str, float]:
    return {"acc_mean": acc, "ece_mean": ece, "eo_diff_mean": eo, "worst_of_seeds_mean": worst}


def test_choose_needs_every_condition_and_prefers_fewer_members() -> None:
    three, five = "ensemble of 3, margin 0.01", "ensemble of 5, margin 0.01"
    base = _summary(0.843, 0.012, 0.055, 0.080)
    good = _summary(0.845, 0.012, 0.054, 0.070)
    assert choose({ADULT_EO_BASELINE: base, three: good})[0] == three
    for bad in (
        {**good, "acc_mean": 0.839},
        {**good, "ece_mean": 0.031},
        {**good, "eo_diff_mean": 0.056},
        {**good, "worst_of_seeds_mean": 0.080},
    ):
        assert choose({ADULT_EO_BASELINE: base, three: bad})[0] == ADULT_EO_BASELINE
    small_gain = {**good, "worst_of_seeds_mean": 0.070 - MORE_MEMBERS_MUST_GAIN / 2}
    assert choose({ADULT_EO_BASELINE: base, three: good, five: small_gain})[0] == three
    big_gain = {**good, "worst_of_seeds_mean": 0.070 - 2 * MORE_MEMBERS_MUST_GAIN}
    assert choose({ADULT_EO_BASELINE: base, three: good, five: big_gain})[0] == five
    # A larger ensemble that alone meets the rule is taken.
    assert choose({ADULT_EO_BASELINE: base, three: {**good, "acc_mean": 0.83},
                   five: small_gain})[0] == five  # fmt: skip


def _member(rng: np.random.Generator, n_train: int = 3000, n_val: int = 2000) -> dict:
    out: dict = {"kept_epoch": 1}
    for split, n in (("train", n_train), ("val", n_val)):
        s = (np.arange(n) % 3 == 0).astype(np.int64)
        y = (rng.random(n) < np.where(s == 1, 0.15, 0.3)).astype(np.int64)
        logit = 1.5 * (2 * y - 1) + rng.normal(0, 1.5, n) - 0.3 * s
        out[split] = {"z": np.stack([np.zeros(n), logit], axis=1), "y": y, "s": s}
    return out


def test_heldout_of_identical_members_is_the_single_models() -> None:
    one = _member(np.random.default_rng(0))
    candidates = {ADULT_EO_BASELINE: (1, 0.01), "ensemble of 3, margin 0.01": (3, 0.01)}
    rows = heldout([one, one, one], candidates, halvings=2)
    for single, ens in zip(
        rows[ADULT_EO_BASELINE], rows["ensemble of 3, margin 0.01"], strict=True
    ):
        for key in ("acc", "eo_diff", "tpr_gap", "fpr_gap", "fit_gap", "ece"):
            assert single[key] == pytest.approx(ens[key], abs=1e-12)
    assert [r["halving"] for r in rows[ADULT_EO_BASELINE]] == [0.0, 1.0]
    assert all(r["fit_gap"] <= 0.01 + 1e-12 for r in rows[ADULT_EO_BASELINE])


def test_heldout_refuses_members_of_other_rows_or_too_few() -> None:
    rng = np.random.default_rng(1)
    a, b = _member(rng), _member(rng)
    b["val"]["y"] = 1 - b["val"]["y"]
    with pytest.raises(ValueError, match="different rows"):
        heldout([a, b], {"ensemble of 2": (2, 0.01)}, halvings=1)
    with pytest.raises(ValueError, match="need 3 members; got 1"):
        heldout([a], {"ensemble of 3": (3, 0.01)}, halvings=1)


def test_paired_vs_current_pairs_by_run_and_half() -> None:
    from benchmarks.fairness_ensemble import paired_vs_current

    def row(acc: float, eo: float) -> dict[str, float]:
        return {"acc": acc, "eo_diff": eo, "abs_fpr_gap": eo / 2, "abs_tpr_gap": eo}

    pooled = {
        ADULT_EO_BASELINE: [row(0.84, 0.05), row(0.85, 0.03), row(0.83, 0.07)],
        "ensemble of 3": [row(0.83, 0.05), row(0.84, 0.02), row(0.82, 0.05)],
    }
    worst = {ADULT_EO_BASELINE: [0.07, 0.09], "ensemble of 3": [0.06, 0.07]}
    out = paired_vs_current(pooled, worst)
    assert set(out) == {"ensemble of 3"}
    acc = out["ensemble of 3"]["acc"]
    assert acc["mean"] == pytest.approx(-0.01) and acc["n"] == 3
    assert acc["ci"][0] == pytest.approx(-0.01) and acc["ci"][1] == pytest.approx(-0.01)
    eo = out["ensemble of 3"]["eo_diff"]
    assert eo["mean"] == pytest.approx(-0.01) and eo["ci"][0] < -0.01 < eo["ci"][1]
    w = out["ensemble of 3"]["worst_of_seeds"]
    assert w["mean"] == pytest.approx(-0.015) and w["n"] == 2
    with pytest.raises(ValueError):
        paired_vs_current(pooled, {**worst, "ensemble of 3": [0.06]})


def test_heldout_fits_the_mean_probabilities_at_each_candidates_tolerance() -> None:
    """One halving recomputed by hand: the ensemble's mean probabilities, the
    candidate's own tolerance, thresholds fitted on train + the fitting half and
    temperatures on the fitting half only, both scored on the other half."""
    from benchmarks.fairness_selection import _rates, stratified_halves
    from regtune.trainables.calibration import fit_temperatures, scale_logits
    from regtune.trainables.metrics import expected_calibration_error
    from regtune.trainables.thresholds import apply_thresholds, fit_thresholds

    rng = np.random.default_rng(3)
    first = _member(rng)
    members = [first]
    for _ in range(2):  # same rows, other scores
        other = {"kept_epoch": 1}
        for split in ("train", "val"):
            z = first[split]["z"].copy()
            z[:, 1] += rng.normal(0, 1.0, len(z))
            other[split] = {**first[split], "z": z}
        members.append(other)
    candidates = {ADULT_EO_BASELINE: (1, 0.01), "ensemble of 3, margin 0.019": (3, 0.001)}
    rows = heldout(members, candidates, halvings=1)
    va, tr = first["val"], first["train"]
    fit_rows, held = stratified_halves(va["y"], va["s"], 0)
    z = {sp: ensemble_logits([m[sp]["z"] for m in members]) for sp in ("train", "val")}
    p = {sp: torch.from_numpy(v).softmax(dim=1)[:, 1].numpy() for sp, v in z.items()}
    y = torch.from_numpy(np.concatenate([tr["y"], va["y"][fit_rows]]))
    s = torch.from_numpy(np.concatenate([tr["s"], va["s"][fit_rows]]))
    scores = torch.from_numpy(np.concatenate([p["train"], p["val"][fit_rows]]))
    fit = fit_thresholds(scores, y, s, 2, kind="eo", tolerance=0.001)
    pred = apply_thresholds(
        torch.from_numpy(p["val"][held]), torch.from_numpy(va["s"][held]), fit.thresholds
    ).numpy()
    want = _rates(pred, va["y"][held], va["s"][held])
    zt, yt, st = (torch.from_numpy(a) for a in (z["val"], va["y"], va["s"]))
    temps = fit_temperatures(zt[fit_rows], yt[fit_rows].long(), st[fit_rows].long(), 2)
    ece = expected_calibration_error(
        scale_logits(zt[held], temps, st[held].long()).softmax(dim=1), yt[held].long()
    )
    got = rows["ensemble of 3, margin 0.019"][0]
    for key in ("acc", "eo_diff", "tpr_gap", "fpr_gap"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got["fit_gap"] == pytest.approx(fit.gap) and got["ece"] == pytest.approx(ece)
    # ... and it is not the single model's answer.
    single = rows[ADULT_EO_BASELINE][0]
    assert (single["acc"], single["ece"]) != (got["acc"], got["ece"])

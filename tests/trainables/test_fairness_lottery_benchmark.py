"""The Adult EO lottery assessment's helpers (``benchmarks.fairness_lottery``):
every candidate is fitted on the same scaled scores, a lottery decides
held-out rows as a server would, and the rule needs every condition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.fairness_lottery import CANDIDATES, choose, heldout
from benchmarks.fairness_selection import ADULT_EO_BASELINE, _rates, stratified_halves


def _member(rng: np.random.Generator, n_train: int = 4000, n_val: int = 2000) -> dict:
    """Raw logits of a model whose groups' ROC curves differ (group 1 scores
    lower at every label), so one threshold per group cannot equalize both
    EO rates without giving up accuracy."""
    out: dict = {"kept_epoch": 3}
    for split, n in (("train", n_train), ("val", n_val)):
        s = (np.arange(n) % 3 == 0).astype(np.int64)
        y = (rng.random(n) < np.where(s == 1, 0.15, 0.3)).astype(np.int64)
        spread = np.where(s == 1, 2.5, 1.5)
        logit = 1.5 * (2 * y - 1) + rng.normal(0, 1.0, n) * spread - 0.5 * s
        out[split] = {"z": np.stack([np.zeros(n), logit], axis=1), "y": y, "s": s}
    return out


def test_candidates_are_the_current_fit_and_three_lottery_tolerances() -> None:
    assert CANDIDATES[ADULT_EO_BASELINE] == (False, 0.01)
    lotteries = {t for n, (r, t) in CANDIDATES.items() if r}
    assert lotteries == {0.01, 0.005, 0.0}
    # margin = bound 0.02 - tolerance, as ThresholdSettings.from_config maps them
    for name, (randomized, tolerance) in CANDIDATES.items():
        if randomized:
            assert name == f"lottery, margin {0.02 - tolerance:g}"


def test_heldout_fits_each_candidate_within_its_tolerance_and_shares_ece() -> None:
    rows = heldout(_member(np.random.default_rng(0)), halvings=2)
    assert set(rows) == set(CANDIDATES) and all(len(r) == 2 for r in rows.values())
    for name, (_, tolerance) in CANDIDATES.items():
        assert all(r["fit_gap"] <= tolerance + 1e-9 for r in rows[name]), name
        assert [r["halving"] for r in rows[name]] == [0.0, 1.0]
    for h in range(2):
        # Thresholds do not change the probabilities: one ECE per halving.
        assert len({rows[n][h]["ece"] for n in CANDIDATES}) == 1
        # A deterministic fit is one lottery: at its tolerance the lottery is
        # at least as accurate on the fitting rows.
        det = rows[ADULT_EO_BASELINE][h]["fit_acc"]
        assert rows["lottery, margin 0.01"][h]["fit_acc"] >= det - 1e-9
        # Tighter tolerances cost fitted accuracy, never gain it.
        accs = [rows[f"lottery, margin {m}"][h]["fit_acc"] for m in ("0.01", "0.015", "0.02")]
        assert accs[0] >= accs[1] - 1e-9 and accs[1] >= accs[2] - 1e-9


def test_heldout_decides_held_rows_by_the_served_draw() -> None:
    """One halving recomputed by hand: temperatures on the fitting half, the
    lottery on the scaled scores of train + that half, the held-out half
    decided by ``apply_lottery``."""
    from regtune.trainables.calibration import fit_temperatures, scale_logits
    from regtune.trainables.lottery_draws import apply_lottery
    from regtune.trainables.threshold_lottery import fit_lottery

    member = _member(np.random.default_rng(1))
    name = "lottery, margin 0.02"
    got = heldout(member, {name: CANDIDATES[name]}, halvings=1)[name][0]
    tr, va = member["train"], member["val"]
    fit_rows, held = stratified_halves(va["y"], va["s"], 0)
    zv, yv, sv = (torch.from_numpy(va[k]) for k in ("z", "y", "s"))
    temps = fit_temperatures(zv[fit_rows], yv[fit_rows].long(), sv[fit_rows].long(), 2)

    def scaled(z: np.ndarray, s: np.ndarray) -> np.ndarray:
        zz = scale_logits(torch.from_numpy(z), temps, torch.from_numpy(s).long())
        return zz.softmax(dim=1)[:, 1].double().numpy()

    p_tr, p_va = scaled(tr["z"], tr["s"]), scaled(va["z"], va["s"])
    lot = fit_lottery(
        torch.from_numpy(np.concatenate([p_tr, p_va[fit_rows]])),
        torch.from_numpy(np.concatenate([tr["y"], va["y"][fit_rows]])),
        torch.from_numpy(np.concatenate([tr["s"], va["s"][fit_rows]])),
        2,
        kind="eo",
        tolerance=0.0,
    )
    pred = apply_lottery(p_va[held], va["s"][held], lot.thresholds, lot.weights)
    want = _rates(pred, va["y"][held], va["s"][held])
    for key in ("acc", "eo_diff", "tpr_gap", "fpr_gap"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got["fit_gap"] == pytest.approx(lot.gap)
    assert got["fit_realized_gap"] == pytest.approx(lot.realized_gap)
    # The lottery mixes at least two thresholds in some group here.
    assert max(len(t) for t in lot.thresholds) >= 2


def _summary(acc: float, eo: float, worst: float) -> dict[str, float]:
    return {"acc_mean": acc, "eo_diff_mean": eo, "worst_of_seeds_mean": worst}


def test_choose_needs_every_condition_and_takes_the_lowest_worst() -> None:
    a, b = "lottery, margin 0.01", "lottery, margin 0.02"
    base = _summary(0.843, 0.052, 0.075)
    good = _summary(0.842, 0.050, 0.070)
    assert choose({ADULT_EO_BASELINE: base, a: good})[0] == a
    for bad in (
        {**good, "acc_mean": 0.839},
        {**good, "eo_diff_mean": 0.053},
        {**good, "worst_of_seeds_mean": 0.075},
    ):
        pick, why = choose({ADULT_EO_BASELINE: base, a: bad})
        assert pick == ADULT_EO_BASELINE and "kept" in why
    better = {**good, "worst_of_seeds_mean": 0.065}
    assert choose({ADULT_EO_BASELINE: base, a: good, b: better})[0] == b
    # Equal held-out eo_diff is allowed ("no higher").
    assert choose({ADULT_EO_BASELINE: base, a: {**good, "eo_diff_mean": 0.052}})[0] == a

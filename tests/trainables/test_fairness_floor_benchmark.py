"""The test-split noise floor (``benchmarks.fairness_floor``): signed gaps on
a hand-made table, a permutation null that keeps every cell and removes the
group difference, a within-cell bootstrap, the pass rates of the two gap
goals, bad input refused by name, and the flag's smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.fairness_floor import (
    MEAN_GOAL,
    METHODS,
    SELECTED_KINDS,
    WORST_GOAL,
    accuracy_from_rates,
    cell_bootstrap,
    cell_rates,
    component_summary,
    floor_text,
    gaps_from_rates,
    identical,
    independent,
    mean_correlation,
    method_floor,
    observed_passes,
    pass_rates,
    permutation_null,
    reproduced,
    selected_floor_text,
    selected_split_floor,
    selected_summary,
    signed_gaps,
)
from regtune.trainables import fairness


def _table(rng: np.random.Generator, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Labels and groups: group 1 is two thirds of the rows, labels 30% positive."""
    s = (rng.random(n) < 2 / 3).astype(np.int64)
    y = (rng.random(n) < 0.3).astype(np.int64)
    return y, s


def test_signed_gaps_are_group_1_minus_group_0_per_label_and_give_eo_diff() -> None:
    # label 0: group 0 rows 0-3, group 1 rows 4-7; label 1: group 0 rows 8-9, group 1 rows 10-13
    y = np.array([0] * 8 + [1] * 6)
    s = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1])
    a = np.array([1, 0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0])  # FPR 1/4 vs 2/4, TPR 1/2 vs 3/4
    b = np.zeros(14, dtype=np.int64)
    gaps = signed_gaps(y, np.stack([a, b], axis=1), s)
    assert gaps.shape == (2, 2)
    assert gaps[0] == pytest.approx([0.25, 0.25]) and gaps[1] == pytest.approx([0.0, 0.0])
    assert np.abs(gaps[0]).max() == pytest.approx(
        fairness.eo_difference(torch.from_numpy(y), torch.from_numpy(a), torch.from_numpy(s))
    )


def test_permutation_null_keeps_each_label_and_removes_the_group_difference() -> None:
    rng = np.random.default_rng(0)
    y, s = _table(rng)
    # A run that decides every label-1 row 1 and every label-0 row 0 has no
    # gap under any permutation; one with a large real gap loses it.
    perfect = y.copy()
    biased = ((s == 1) & (rng.random(y.size) < 0.6)).astype(np.int64)
    fair = (rng.random(y.size) < 0.4).astype(np.int64)
    decided = np.stack([perfect, biased, fair], axis=1)
    null = permutation_null(y, decided, s, 400, np.random.default_rng(1))
    assert null.shape == (400, 3)
    assert np.all(null[:, 0] == 0.0)
    observed = np.abs(signed_gaps(y, decided, s)).max(axis=1)
    assert observed[1] > 0.5 and null[:, 1].mean() < 0.06
    # The null of a run that decides at random does not depend on its groups:
    # about the observed gap's own size, and the observed one is not extreme.
    assert 0.005 < null[:, 2].mean() < 0.05
    assert (null[:, 2] >= observed[2]).mean() > 0.01


def test_permutation_null_matches_the_binomial_noise_of_the_smallest_cell() -> None:
    # Decisions at rate 0.5 among label-1 rows: the TPR gap's spread is about
    # sqrt(p(1-p)(1/n0 + 1/n1)) with the cells' sizes (finite-population
    # corrected), so the null's mean |gap| is near 0.8 of it.
    rng = np.random.default_rng(2)
    n0, n1 = 300, 1200
    y = np.ones(n0 + n1, dtype=np.int64)
    y[:40] = 0  # a small label-0 cell per group, decided 0: no FPR gap
    s = np.r_[np.zeros(n0), np.ones(n1)].astype(np.int64)
    s[20:40] = 1
    d = np.where(y == 1, rng.random(y.size) < 0.5, 0).astype(np.int64)
    null = permutation_null(y, d[:, None], s, 2000, np.random.default_rng(3))[:, 0]
    n_pos0, n_pos1 = int(((s == 0) & (y == 1)).sum()), int(((s == 1) & (y == 1)).sum())
    sd = np.sqrt(0.25 * (1 / n_pos0 + 1 / n_pos1) * (1 - 1 / (n_pos0 + n_pos1)))
    assert null.mean() == pytest.approx(np.sqrt(2 / np.pi) * sd, rel=0.1)


def test_cell_bootstrap_keeps_cells_and_shares_resamples_between_runs() -> None:
    rng = np.random.default_rng(4)
    y, s = _table(rng, 2000)
    # Constant decisions within every cell: no resample can move a rate.
    by_cell = ((s == 1) & (y == 1)).astype(np.int64)
    noisy = (rng.random(y.size) < 0.5).astype(np.int64)
    other = (rng.random(y.size) < 0.5).astype(np.int64)
    boot = cell_bootstrap(
        y, np.stack([by_cell, noisy, noisy, other], axis=1), s, 300, np.random.default_rng(5)
    )
    assert boot.shape == (300, 4, 2)
    assert np.all(boot[:, 0, 1] == 1.0) and np.all(boot[:, 0, 0] == 0.0)
    assert np.array_equal(boot[:, 1], boot[:, 2])  # the same resample for every run
    assert mean_correlation(boot[:, 1:3, 1]) == pytest.approx(1.0)
    assert abs(np.corrcoef(boot[:, 1, 1], boot[:, 3, 1])[0, 1]) < 0.2  # unrelated decisions
    assert mean_correlation(boot[:, :1, 1]) is None


def test_pass_rates_read_both_goals_per_draw() -> None:
    eo = np.array(
        [
            [0.01, 0.01, 0.01],  # both
            [0.025, 0.025, 0.025],  # worst only
            [0.001, 0.001, 0.035],  # mean only
            [0.04, 0.04, 0.04],  # neither
        ]
    )
    assert pass_rates(eo) == {"mean": 0.5, "worst": 0.5, "both": 0.25}
    assert MEAN_GOAL == 0.02 and WORST_GOAL == 0.03


def test_independent_and_identical_draws_keep_each_runs_distribution() -> None:
    rng = np.random.default_rng(6)
    null = rng.random((500, 3)) * np.array([0.01, 0.02, 0.03])
    ind = independent(null, np.random.default_rng(7))
    assert np.array_equal(np.sort(ind, axis=0), np.sort(null, axis=0))
    assert abs(mean_correlation(ind) or 0.0) < 0.15
    same = identical(null)
    assert same.shape == (1500, 3) and np.all(same == same[:, :1])
    # Identical runs pass "worst" as often as one run passes it.
    assert pass_rates(same)["worst"] == pytest.approx((null <= WORST_GOAL).mean())


@pytest.mark.parametrize(
    ("s", "y", "shape", "message"),
    [
        ([0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1], (6, 1), "two groups coded 0 and 1"),
        ([0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1], (6, 1), "every (group, label) cell"),
        ([0, 1, 0, 1], [0, 0, 1, 1], (5, 1), "decided must be (rows, runs)"),
        ([0, 1, 0, 1], [0, 0, 1, 1], (4,), "decided must be (rows, runs)"),
    ],
)
def test_bad_tables_are_refused_by_name(
    s: list[int], y: list[int], shape: tuple[int, ...], message: str
) -> None:
    decided = np.zeros(shape, dtype=np.int64)
    for fn in (signed_gaps,):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            fn(np.array(y), decided, np.array(s))
    with pytest.raises(ValueError, match=r"non-empty|must be"):
        permutation_null(np.array(y), decided, np.array(s), 5, np.random.default_rng(0))


def test_method_floor_reports_reproduction_and_every_measure() -> None:
    rng = np.random.default_rng(8)
    y, s = _table(rng, 3000)
    decided = (rng.random((y.size, 3)) < 0.4).astype(np.int64)
    eo = np.abs(signed_gaps(y, decided, s)).max(axis=1)
    runs = [
        {"split_seed": 0, "seed": 0, "stored_eo_diff": float(eo[0])},
        {"split_seed": 0, "seed": 1, "stored_eo_diff": float(eo[1]) + 0.01},
        {"split_seed": 0, "seed": 2, "stored_eo_diff": None},
    ]
    out = method_floor(
        y, decided, s, runs, permutations=100, bootstraps=100, rng=np.random.default_rng(9)
    )
    assert [r["reproduced"] for r in out["runs"]] == [True, False, None]
    assert out["eo_diff_mean"] == pytest.approx(eo.mean()) and out["eo_diff_worst"] == eo.max()
    assert set(out["passes_with_no_gap"]) == {"shared", "independent", "identical"}
    bounds = out["no_gap_bounds_95"]
    assert 0 < bounds["mean"] <= bounds["worst"] < 1
    assert out["measured_passes"] == pass_rates(eo[None, :])
    assert all(0.0 <= r["null_p_value"] <= 1.0 and r["boot_sd_tpr_gap"] > 0 for r in out["runs"])


def test_component_summary_separates_a_steady_fpr_gap_from_tpr_noise() -> None:
    runs = [
        {"fpr_gap": 0.015, "tpr_gap": t, "boot_sd_fpr_gap": 0.004, "boot_sd_tpr_gap": 0.02}
        for t in (0.02, -0.02, 0.0)
    ]
    c = component_summary(runs)
    assert c["fpr_gap_mean"] == pytest.approx(0.015) and c["tpr_gap_mean"] == pytest.approx(0.0)
    assert c["tpr_gap_sd"] == pytest.approx(0.02)
    assert (c["fpr_test_sd"], c["tpr_test_sd"]) == (0.004, 0.02)
    assert component_summary(runs[:1])["tpr_gap_sd"] is None


def test_observed_passes_and_the_report_section() -> None:
    def rows(*gaps: float) -> list[dict[str, float]]:
        return [{"gap": g} for g in gaps]

    seen = observed_passes({"a": rows(0.01, 0.02, 0.025), "b": rows(0.01, 0.01, 0.04), "c": []})
    assert (seen["rounds"], seen["mean"], seen["worst"], seen["both"]) == (2, 2, 1, 1)
    assert floor_text(None, {}) == "" and floor_text({"complete": False}, {}) == ""
    runs = [
        {"fpr_gap": f, "tpr_gap": t, "boot_sd_fpr_gap": 0.004, "boot_sd_tpr_gap": 0.022}
        for f, t in ((0.014, 0.01), (0.016, -0.01))
    ]
    method = {
        "runs": runs,
        "eo_diff_mean": 0.018,
        "eo_diff_worst": 0.025,
        "null_mean": 0.0175,
        "null_above_worst_goal": 0.17,
        "tpr_noise_correlation": 0.42,
        "no_gap_bounds_95": {"mean": 0.03, "worst": 0.045},
        "passes_with_no_gap": {
            k: {"mean": 0.5, "worst": 0.5, "both": v}
            for k, v in (("shared", 0.3), ("independent", 0.2), ("identical", 0.6))
        },
    }
    record = {
        "complete": True,
        "reproduced": True,
        "split_seeds": [0],
        "seeds": [0],
        "permutations": 10,
        "bootstraps": 10,
        "cells": {"group 0, label 1": 590},
        "methods": {m: method for m in METHODS},
    }
    text = floor_text(record, {"0-2": {METHODS[0]: rows(0.01, 0.02, 0.025)}})
    assert "every run reproduced" in text and "group 0, label 1: 590" in text
    row = (
        "0.0180 / 0.0250 | +0.0150 (0.0040) | +0.0000, 0.0141 (0.0220) | 0.0175, 0.170 | "
        "0.42 | 0.300 / 0.200 / 0.600 | 0.0300, 0.0450 | 1 of 1 |"
    )
    assert f"| {METHODS[0]} | {row}" in text
    assert f"| {METHODS[1]} |" in text and "0 of 0" in text
    assert "not every run reproduced" in floor_text({**record, "reproduced": False}, {})
    assert "Measured" not in text
    timed = {**record, "machine": {"date": "2026-12-03", "cpu_count": 2}, "total_s": 350.2}
    assert "Measured 2026-12-03 in 350 s (2 CPUs)." in floor_text(timed, {})


@pytest.mark.parametrize(
    "flags",
    [["--fresh"], ["--seeds", "3"], ["--only", "regtune EO"], ["--select"],
     ["--report-only"], ["--select-adult-eo-lottery"]],
)  # fmt: skip
def test_measure_floor_refuses_flags_it_would_ignore(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import fairness_splits

    with pytest.raises(SystemExit) as info:
        fairness_splits.main(["--measure-floor", *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--measure-floor runs seeds [0, 1, 2] on split seeds [0, 1, 2]" in err
    assert f"and stops; drop {flags[0]}" in err


@pytest.mark.slow
# fairlearn's fits use pandas idioms that pandas 3 deprecates (not ours to fix).
@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
def test_measure_floor_smoke_run_writes_a_complete_record_the_report_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import fairness_splits
    from benchmarks.common import RESULTS_ENV

    monkeypatch.setenv(RESULTS_ENV, str(tmp_path))
    assert fairness_splits.main(["--measure-floor", "--smoke-test"]) == 0
    record = json.loads((tmp_path / "fairness_splits_floor-smoke.json").read_text())
    # A smoke run compares no stored rows: it must not claim it reproduced them.
    assert record["complete"] and record["smoke_test"] and record["reproduced"] is None
    assert set(record["methods"]) == set(METHODS)
    assert record["cells"]["group 0, label 1"] == 590  # women >50K in adult.test
    assert fairness_splits.load_floor(smoke=True) == record
    text = floor_text(record, {})
    assert all(f"| {m} |" in text for m in METHODS)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--datasets", "german", "mnist"],
            "unknown ['mnist']; allowed ['adult', 'german', 'compas']",
        ),
        (
            ["--datasets", "german", "--split-seeds", "0", "99"],
            "[99] have no stored runs or selection",
        ),
        (["--split-seeds", "0", "1"], "and stops; drop --split-seeds with adult"),
        (["--datasets", "adult", "compas", "--split-seeds", "3"], "drop --split-seeds with adult"),
    ],
)
def test_measure_floor_refuses_unknown_datasets_and_split_seeds(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import fairness_splits

    with pytest.raises(SystemExit) as info:
        fairness_splits.main(["--measure-floor", *flags])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_round_of_and_stored_runs_follow_the_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import fairness_splits
    from benchmarks.common import RESULTS_ENV

    # A results folder without run files falls back to the committed ones.
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path))

    assert fairness_splits.round_of(0) is None and fairness_splits.round_of(4) == "fresh"
    assert fairness_splits.round_of(20) == "fresh6"
    stored = fairness_splits._stored_runs("german", [1, 4, 19])
    assert {r["split_seed"] for r in stored["regtune DP"]} == {1, 4, 19}
    assert len(stored["fairlearn TO-EO"]) == 9


def test_dp_gaps_nulls_and_rates_agree_with_the_platforms_dp_diff() -> None:
    rng = np.random.default_rng(10)
    y, s = _table(rng, 3000)
    decided = np.stack(
        [
            ((s == 1) & (rng.random(y.size) < 0.5)).astype(np.int64),
            (rng.random(y.size) < 0.3).astype(np.int64),
        ],
        axis=1,
    )
    signed = signed_gaps(y, decided, s, "dp")
    assert signed.shape == (2, 1)
    for i in range(2):
        assert abs(signed[i, 0]) == pytest.approx(
            fairness.dp_difference(torch.from_numpy(decided[:, i]), torch.from_numpy(s))
        )
    # Rates without resampling (each cell's own rate) give back the gaps and accuracy.
    sizes = {(g, lab): int(((s == g) & (y == lab)).sum()) for g in (0, 1) for lab in (0, 1)}
    exact = {key: decided[(s == key[0]) & (y == key[1])].mean(axis=0)[None, :] for key in sizes}
    assert gaps_from_rates(exact, sizes, "dp")[0] == pytest.approx(signed)
    assert gaps_from_rates(exact, sizes, "eo")[0] == pytest.approx(signed_gaps(y, decided, s))
    assert accuracy_from_rates(exact, sizes)[0] == pytest.approx((decided == y[:, None]).mean(0))
    null = permutation_null(y, decided, s, 300, np.random.default_rng(11), "dp")
    assert null.shape == (300, 2) and null[:, 0].mean() < 0.05 < abs(signed[0, 0])
    boot = cell_bootstrap(y, decided, s, 200, np.random.default_rng(12), "dp")
    assert boot.shape == (200, 2, 1)
    rates = cell_rates(y, decided, s, 200, np.random.default_rng(12))
    assert np.array_equal(gaps_from_rates(rates, sizes, "dp"), boot)
    for bad in (lambda: signed_gaps(y, decided, s, "tpr"),
                lambda: gaps_from_rates(exact, sizes, "tpr")):  # fmt: skip
        with pytest.raises(ValueError, match=r"gap kind must be one of \('dp', 'eo'\); got 'tpr'"):
            bad()


def _selected_decisions(rng: np.random.Generator, y: np.ndarray, seeds: int = 3) -> dict:
    return {
        m: (rng.random((y.size, seeds)) < (0.6 if m == "regtune DP" else 0.4)).astype(np.int64)
        for m in SELECTED_KINDS
    }


def test_selected_split_floor_pairs_methods_of_one_kind_and_its_summary_adds_variances() -> None:
    rng = np.random.default_rng(13)
    y, s = _table(rng, 1500)
    split = selected_split_floor(
        y, s, _selected_decisions(rng, y), permutations=100, bootstraps=100, rng=rng
    )
    assert set(split["methods"]) == set(SELECTED_KINDS)
    assert set(split["pairs"]) == {
        "regtune DP vs fairlearn EG-DP", "regtune DP vs fairlearn TO-DP",
        "regtune EO vs fairlearn EG-EO", "regtune EO vs fairlearn TO-EO",
    }  # fmt: skip
    row = split["methods"]["regtune DP"]
    assert len(row["gap"]) == len(row["null_p_value"]) == 3
    assert all(sd > 0 for sd in row["test_sd_gap"] + row["test_sd_acc"])
    # Two split seeds with the same variance: the SD of the mean over both is
    # sqrt(2 var) / 2.
    summary = selected_summary({"0": split, "1": split})
    pair = summary["pairs"]["regtune EO vs fairlearn TO-EO"]
    var = split["pairs"]["regtune EO vs fairlearn TO-EO"]["gap_var"]
    assert pair["gap_test_sd"] == pytest.approx(np.sqrt(2 * var) / 2)
    eo, to = summary["methods"]["regtune EO"], summary["methods"]["fairlearn TO-EO"]
    assert pair["acc_diff"] == pytest.approx(eo["acc_mean"] - to["acc_mean"])
    assert summary["methods"]["regtune DP"]["acc_mean"] == pytest.approx(np.mean(row["acc"]))
    record = {
        "complete": True,
        "dataset": "german",
        "split_seeds": [0, 1],
        "seeds": [0, 1, 2],
        "permutations": 100,
        "bootstraps": 100,
        "reproduced": True,
        "reproduced_runs": 36,
        "summary": summary,
    }
    text = selected_floor_text(record)
    assert "#### german: test noise" in text and "all 36 stored gaps reproduced" in text
    assert (
        f"| regtune EO vs fairlearn TO-EO | {pair['acc_diff']:+.4f} ({pair['acc_test_sd']:.4f})"
        in text
    )
    assert "(6 runs per method)" in text and "test SD of the 6-run mean" in text
    assert selected_floor_text(None) == "" and selected_floor_text({"complete": False}) == ""
    assert "not every stored gap" in selected_floor_text({**record, "reproduced": False})


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
def test_measure_floor_smoke_run_on_german_writes_its_own_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import fairness_splits
    from benchmarks.common import RESULTS_ENV

    monkeypatch.setenv(RESULTS_ENV, str(tmp_path))
    assert fairness_splits.main(["--measure-floor", "--smoke-test", "--datasets", "german"]) == 0
    record = json.loads((tmp_path / "fairness_splits_floor_german-smoke.json").read_text())
    assert record["complete"] and record["dataset"] == "german"
    assert record["reproduced"] is None and record["reproduced_runs"] == 0
    assert set(record["summary"]["methods"]) == set(SELECTED_KINDS)
    assert not (tmp_path / "fairness_splits_floor-smoke.json").exists()  # Adult not asked for
    assert fairness_splits.load_floor(smoke=True, name="german") == record


def test_permutations_move_rows_only_within_their_label() -> None:
    # One run per row, deciding 1 on that row only: its gap is +1/n1 when the
    # row is in group 1 and -1/n0 when in group 0 (cells of unequal sizes),
    # so each permutation's group assignment can be read back exactly.
    y = np.array([0] * 7 + [1] * 5)
    s = np.array([0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1])
    cells = {(g, lab): int(((s == g) & (y == lab)).sum()) for g in (0, 1) for lab in (0, 1)}
    null = permutation_null(y, np.eye(12, dtype=np.int64), s, 200, np.random.default_rng(14))
    for lab in (0, 1):
        rows = np.flatnonzero(y == lab)
        in1 = np.isclose(null[:, rows], 1 / cells[1, lab])
        in0 = np.isclose(null[:, rows], 1 / cells[0, lab])
        assert np.all(in1 ^ in0)
        assert np.all(in1.sum(axis=1) == cells[1, lab])  # each cell keeps its size
    assert len({tuple(row) for row in np.round(null, 6)}) > 20  # and rows do move


def test_resamples_draw_each_cell_from_its_own_rows() -> None:
    # One run per row: a cell's resampled rate for run j counts row j's copies
    # over the cell's size, so the copies are whole, add up to the size, and
    # other cells' rows never appear.
    rng = np.random.default_rng(15)
    y, s = _table(rng, 60)
    rates = cell_rates(y, np.eye(60, dtype=np.int64), s, 100, np.random.default_rng(16))
    for (g, lab), r in rates.items():
        mine = (s == g) & (y == lab)
        copies = r * mine.sum()
        # Whole copies (the resample holds exactly the cell's size in rows), ...
        assert np.allclose(copies, np.round(copies))
        assert np.allclose(copies[:, mine].sum(axis=1), mine.sum())
        assert np.all(copies[:, ~mine] == 0)
        assert copies[:, mine].std() > 0


def test_reproduced_needs_a_comparison() -> None:
    assert reproduced([True, None, True]) is True
    assert reproduced([True, False]) is False
    assert reproduced([None, None]) is None and reproduced([]) is None


def test_measure_floor_runs_each_dataset_and_split_seed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks import fairness_splits

    seen: list[tuple] = []
    monkeypatch.setattr(fairness_splits, "_measure_floor", lambda *args: seen.append(args[2:]) or 0)
    argv = ["--measure-floor", "--datasets", "german", "german", "compas"]
    assert fairness_splits.main([*argv, "--split-seeds", "3", "0", "3"]) == 0
    assert seen == [(["german", "compas"], [3, 0])]

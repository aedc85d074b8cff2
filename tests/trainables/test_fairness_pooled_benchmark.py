"""The fourth German/COMPAS selection (benchmarks/fairness_pooled.py): pooled
differences over split seeds, its rule, and how the choice is written into
each split seed's record."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.fairness_pooled import apply_choice, pooled_choice, pooled_differences
from benchmarks.fairness_selection import (
    BASES,
    CANDIDATES,
    LOTTERY_CANDIDATES,
    TARGET,
    fairness_config,
)
from regtune.trainables.config import parse_train_config


def _split(cands: dict[str, tuple[float, float]], refs: dict[str, tuple[float, float]]) -> Any:
    def entry(acc: float, gap: float) -> dict[str, Any]:
        return {"mean": {"acc": acc, "gap": gap}}

    return {
        "kinds": {
            "eo": {
                "candidates": {n: entry(*v) for n, v in cands.items()},
                "fairlearn_holdout": {n: entry(*v) for n, v in refs.items()},
            }
        }
    }


def test_pooled_differences_average_per_split_differences() -> None:
    splits = [
        _split({"a": (0.70, 0.10)}, {"EG": (0.68, 0.05), "TO": (0.71, 0.20)}),
        _split({"a": (0.74, 0.02)}, {"EG": (0.70, 0.07), "TO": (0.73, 0.04)}),
    ]
    diffs = pooled_differences(splits, "eo")
    assert diffs["a"]["EG"]["d_acc"] == pytest.approx((0.02 + 0.04) / 2)
    assert diffs["a"]["EG"]["d_gap"] == pytest.approx((0.05 - 0.05) / 2)
    assert diffs["a"]["TO"]["d_acc"] == pytest.approx((-0.01 + 0.01) / 2)
    assert diffs["a"]["TO"]["d_gap"] == pytest.approx((-0.10 - 0.02) / 2)


def _d(acc: float, gap: float) -> dict[str, float]:
    return {"d_acc": acc, "d_gap": gap}


def test_the_rule_counts_matches_then_takes_the_largest_smallest_margin() -> None:
    diffs = {
        # Matches one contender by a wide margin on it, misses the other.
        "one": {"EG": _d(0.05, -0.05), "TO": _d(0.01, 0.02)},
        # Matches both, the smallest margin 0.001.
        "both thin": {"EG": _d(0.001, -0.02), "TO": _d(0.02, -0.03)},
        # Matches both, the smallest margin 0.004: chosen.
        "both": {"EG": _d(0.004, -0.01), "TO": _d(0.005, -0.004)},
    }
    name, why = pooled_choice(diffs)
    assert name == "both"
    assert "matches 2 of 2" in why and "+0.0040" in why
    # Equal means up to float rounding count as a match.
    level = {"x": {"EG": _d(-1e-12, 1e-12)}, "y": {"EG": _d(-0.001, -0.1)}}
    assert pooled_choice(level)[0] == "x"
    # No match anywhere: the largest smallest margin (the nearest miss).
    misses = {"far": {"EG": _d(-0.05, 0.0)}, "near": {"EG": _d(-0.001, 0.002)}}
    assert pooled_choice(misses)[0] == "near"
    # Ties keep the first in order.
    tied = {"first": {"EG": _d(0.01, -0.01)}, "second": {"EG": _d(0.01, -0.01)}}
    assert pooled_choice(tied)[0] == "first"
    with pytest.raises(ValueError, match="at least one candidate"):
        pooled_choice({})


def test_the_choice_is_written_with_each_split_seeds_own_target() -> None:
    record: dict[str, Any] = {
        "splits": {
            str(k): {
                "kinds": {
                    kind: {"chosen": "penalty 1", "why": "nested", "target_gap": target}
                    for kind in ("dp", "eo")
                }
            }
            for k, target in ((0, 0.04), (1, 0.08))
        }
    }
    target_based = "postprocess to target, train+val"
    choices = {"dp": "lottery, train+val", "eo": target_based}
    apply_choice(record, choices, {"dp": "why dp", "eo": "why eo"})
    for k, target in (("0", 0.04), ("1", 0.08)):
        dp, eo = record["splits"][k]["kinds"]["dp"], record["splits"][k]["kinds"]["eo"]
        assert dp["chosen"] == "lottery, train+val" and dp["nested_chosen"] == "penalty 1"
        assert dp["why"] == "why dp" and dp["nested_why"] == "nested"
        assert dp["config"]["penalties"]["fairness"]["randomized"] is True
        base, setting = CANDIDATES["eo"][target_based]
        assert setting["bound"] == TARGET
        assert eo["config"] == fairness_config(BASES[base], "eo", setting, target)
        assert eo["config"]["penalties"]["fairness"]["bound"] == target
    # Applied twice, the nested selection's own choice is still the first one.
    apply_choice(record, {"dp": "penalty 1", "eo": "lagrangian 10"}, {"dp": "", "eo": ""})
    assert record["splits"]["0"]["kinds"]["dp"]["nested_chosen"] == "penalty 1"
    assert record["splits"]["0"]["kinds"]["eo"]["nested_chosen"] == "penalty 1"


def test_every_randomized_candidate_is_a_valid_config_in_the_nested_grid() -> None:
    for kind, grid in LOTTERY_CANDIDATES.items():
        for name, (base, setting) in grid.items():
            assert CANDIDATES[kind][name] == (base, setting)
            cfg = parse_train_config(
                {"dataset": "german", **fairness_config(BASES[base], kind, setting, 0.05)}
            )
            fair = cfg.penalties.fairness
            assert fair.randomized and fair.postprocess and fair.threshold_rows == "train+val"


def test_the_pooled_flags_run_alone(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.fairness_splits import main

    for argv in (
        ["--select-pooled", "--smoke-test"],
        ["--select-pooled", "--apply-pooled", "fresh3"],
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert "run alone" in capsys.readouterr().err
    # Only rounds after the pooled split seeds take the choice.
    with pytest.raises(SystemExit):
        main(["--apply-pooled", "fresh2"])
    assert "invalid choice: 'fresh2'" in capsys.readouterr().err

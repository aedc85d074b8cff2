"""Constraint-aware selection: the most accurate epoch within the bound is kept."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.trainables import metrics
from regtune.trainables.config import idle_keys, parse_train_config
from regtune.trainables.data import Dataset
from regtune.trainables.loop import Trainer, train
from regtune.trainables.selection import (
    FEASIBLE,
    KEPT_REASONS,
    SMALLEST_GAP,
    select_epoch,
)

#: Epochs 1-6 of a hand-made run: accuracy rises while the gap drifts up.
HISTORY = [
    {"epoch": 1.0, "val_acc": 0.80, "eo_diff": 0.010},
    {"epoch": 2.0, "val_acc": 0.83, "eo_diff": 0.014},
    {"epoch": 3.0, "val_acc": 0.85, "eo_diff": 0.019},  # meets the bound, not the margin
    {"epoch": 4.0, "val_acc": 0.84, "eo_diff": 0.015},  # the best epoch within 0.02 - 0.005
    {"epoch": 5.0, "val_acc": 0.86, "eo_diff": 0.030},  # most accurate, infeasible
    {"epoch": 6.0, "val_acc": 0.84, "eo_diff": 0.012},  # ties epoch 4: the earlier wins
]


def test_keeps_the_most_accurate_epoch_within_bound_minus_margin() -> None:
    kept = select_epoch(HISTORY, gap_key="eo_diff", bound=0.02, margin=0.005)
    assert (kept.epoch, kept.reason, kept.feasible) == (4, FEASIBLE, True)
    # Without the margin epoch 3 holds the bound and is more accurate.
    assert select_epoch(HISTORY, gap_key="eo_diff", bound=0.02).epoch == 3


def test_without_a_feasible_epoch_keeps_the_smallest_gap_and_says_so() -> None:
    kept = select_epoch(HISTORY, gap_key="eo_diff", bound=0.011, margin=0.002)
    assert (kept.epoch, kept.reason, kept.feasible) == (1, SMALLEST_GAP, False)
    assert KEPT_REASONS.index(kept.reason) == 0


def test_nan_gaps_never_hold_and_selection_is_monotone() -> None:
    rows = [{**HISTORY[0], "eo_diff": math.nan}, *HISTORY[1:]]
    assert select_epoch(rows[:1], gap_key="eo_diff", bound=0.02).epoch == 1
    # Each prefix's choice is the previous choice or the newest epoch.
    previous = 0
    for end in range(1, len(rows) + 1):
        chosen = select_epoch(rows[:end], gap_key="eo_diff", bound=0.02, margin=0.005).epoch
        assert chosen in (previous, end)
        previous = chosen


def test_bad_history_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one epoch"):
        select_epoch([], gap_key="eo_diff", bound=0.02)
    with pytest.raises(ValueError, match="epoch 1 of the history has no 'dp_diff'"):
        select_epoch(HISTORY[:1], gap_key="dp_diff", bound=0.02)


def _fair(**fairness: Any) -> dict[str, Any]:
    return {"dataset": "adult", "penalties": {"fairness": fairness}}


def test_bound_and_margin_are_validated() -> None:
    with pytest.raises(SpecError) as error:
        parse_train_config(_fair(kind="eo", bound=0.02, margin=0.02))
    assert "penalties.fairness: Value error" not in str(error.value)
    assert "margin (0.02) must be below penalties.fairness.bound (0.02)" in str(error.value)
    with pytest.raises(SpecError, match=r"penalties\.fairness\.bound: Input should be greater"):
        parse_train_config(_fair(kind="eo", bound=0.0))
    with pytest.raises(SpecError, match=r"penalties\.fairness\.margin: Input should be greater"):
        parse_train_config(_fair(kind="eo", bound=0.02, margin=-0.1))


@pytest.mark.parametrize(
    ("fairness", "idle"),
    [
        ({"bound": 0.02}, ["penalties.fairness.bound"]),
        ({"kind": "dp", "margin": 0.01}, ["penalties.fairness.kind", "penalties.fairness.margin"]),
        # kind picks the bounded gap: it matters at strength 0 once a bound is set.
        ({"kind": "dp", "bound": 0.02, "margin": 0.01}, []),
    ],
)
def test_idle_bound_keys_are_named(fairness: dict[str, Any], idle: list[str]) -> None:
    assert [p.path for p in idle_keys(parse_train_config(_fair(**fairness)))] == idle


def _adult_cfg(**fairness: Any) -> dict[str, Any]:
    return {
        "dataset": "adult",
        "model": {"arch": "mlp", "width": 32, "depth": 1},
        "training": {"epochs": 2, "batch_size": 2048, "lr": 3e-3, "seed": 1, "robust_every": 0},
        "penalties": {"fairness": fairness},
    }


def test_a_run_keeps_and_reports_the_selected_epoch(adult: Dataset, tmp_path: Path) -> None:
    # A bound between the epochs' gaps, so the choice is not simply the last epoch.
    probe = Trainer(_adult_cfg(kind="dp", strength=1.0), dataset=adult)
    gaps = sorted(probe.run_epoch()["dp_diff"] for _ in range(2))
    bound = (gaps[0] + gaps[1]) / 2 + 1e-3
    cfg = _adult_cfg(kind="dp", strength=1.0, bound=bound, margin=1e-3)
    trainer = Trainer(cfg, dataset=adult)
    trainer.run_epoch()
    trainer.save(tmp_path / "ckpt")
    # The kept weights survive a checkpoint: the run continues from it to the end.
    result = train(cfg, dataset=adult, checkpoint_dir=tmp_path / "ckpt", resume=True)
    out = result.test_metrics
    expected = select_epoch(result.history, gap_key="dp_diff", bound=bound, margin=1e-3)
    assert expected.reason == FEASIBLE
    assert out["kept_epoch"] == expected.epoch == result.best_epoch
    assert KEPT_REASONS[int(out["kept_reason_code"])] == expected.reason
    # The model now holds the kept epoch's weights: validation scores exactly as recorded.
    again = metrics.evaluate(result.model, adult.val.x, adult.val.y, adult.val.s)
    recorded = result.history[expected.epoch - 1]
    assert again["acc"] == recorded["val_acc"] and again["dp_diff"] == recorded["dp_diff"]
    # The end of a run also bounds the kept model's test gaps (bootstrap).
    for key in ("dp_diff", "eo_diff", "tpr_Female", "selection_rate_Male"):
        assert out[f"test_{key}_ci_low"] <= out[f"test_{key}"] <= out[f"test_{key}_ci_high"]

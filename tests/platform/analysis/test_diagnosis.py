"""Diagnosis on learning curves built by hand with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regtune.errors import SpecError
from regtune.platform.analysis import diagnosis as dg
from regtune.platform.analysis.diagnosis import diagnose, directions, explain, group_columns
from regtune.platform.analysis.summary import trial_summary
from regtune.platform.analysis.swept import SweptParameter
from tests.platform.analysis.tables import (
    HEALTHY,
    OVERFIT,
    SHORT,
    UNDERFIT,
    UNSTABLE,
    epochs_table,
)

CURVES = {"over": OVERFIT, "under": UNDERFIT, "wobbly": UNSTABLE, "fine": HEALTHY, "brief": SHORT}
L2 = SweptParameter("penalties.l2", "loguniform", 1e-6, 1e-1, True, True)
DROPOUT = SweptParameter("model.dropout", "uniform", 0.0, 0.5, False, True)
LR = SweptParameter("training.lr", "loguniform", 1e-4, 1e-1, True, True)
WIDTH = SweptParameter("model.width", "grid", 16, 256, True, True)
FAIR = SweptParameter("penalties.fairness.strength", "uniform", 0.0, 1.0, False, True)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    epochs = epochs_table(CURVES)
    return diagnose(epochs, trial_summary(epochs, ("val_acc", "max")))


def test_labels(table: pd.DataFrame) -> None:
    assert table["diagnosis"].to_dict() == {
        "over": "overfit",
        "under": "underfit",
        "wobbly": "unstable",
        "fine": "healthy",
        "brief": "too short",
    }


def test_overfit_evidence_numbers(table: pd.DataFrame) -> None:
    row = table.loc["over"]
    # 8 epochs: windows of 8 // 3 = 2 epochs. End: train (0.015 + 0.01) / 2, val (0.56 + 0.62) / 2.
    assert row["window"] == 2
    assert row["train_loss_end"] == pytest.approx(0.0125)
    assert row["val_loss_end"] == pytest.approx(0.59)
    assert row["gap_ratio"] == pytest.approx((0.59 - 0.0125) / 0.59)
    # Start: epochs 1-2, gap (1.0 + 0.6) / 2 - (1.0 + 0.5) / 2 = 0.05.
    assert row["gap_growth"] == pytest.approx((0.5775 - 0.05) / 0.59)
    # The middle window ends at epoch 4 (epochs 3-4: val 0.435).
    assert row["val_improvement"] == pytest.approx((0.435 - 0.59) / 0.435)
    # "final" is the final epoch itself, not a mean.
    assert row["train_loss_final"] == pytest.approx(0.01)
    assert row["val_loss_final"] == pytest.approx(0.62)
    text = explain(row.to_dict(), [L2, DROPOUT])
    assert "overfit: final val loss 0.62, train loss 0.01 (after 8 epochs)" in text
    assert "(each end the mean of 2 epochs)" in text and "penalties.l2: raise" in text
    assert "model.dropout: raise" in text


def test_underfit_evidence(table: pd.DataFrame) -> None:
    row = table.loc["under"]
    assert row["train_progress"] == pytest.approx(((2.11 + 2.11) / 2) / 2.30)
    assert row["train_flat"] == pytest.approx(((2.15 + 2.13) / 2 - 2.11) / ((2.15 + 2.13) / 2))
    assert directions(row.to_dict(), [L2, WIDTH]) == {
        "penalties.l2": "lower",
        "model.width": "raise",
    }


def test_three_epochs_are_read_epoch_by_epoch_so_overfit_can_fire() -> None:
    """A 3-epoch trial: the start, middle and end windows are single epochs (never the whole
    history averaged), so a gap that opened up is seen growing, and the evidence gives the
    final epoch's numbers as "final"."""
    curve = {"train_loss": [1.0, 0.4, 0.05], "val_loss": [0.9, 0.9, 1.3]}
    row = diagnose(epochs_table({"t": curve})).loc["t"]
    assert row["window"] == 1
    assert row["diagnosis"] == "overfit"
    assert row["gap_ratio"] == pytest.approx(1.25 / 1.3)
    assert row["gap_growth"] == pytest.approx((1.25 - (-0.1)) / 1.3)
    assert row["val_improvement"] == pytest.approx((0.9 - 1.3) / 0.9)
    text = explain(row.to_dict(), [L2])
    assert text.startswith("overfit: final val loss 1.3, train loss 0.05 (after 3 epochs)")
    assert "mean of" not in text


def test_healthy_evidence_gives_the_final_epoch() -> None:
    """A 4-epoch trial's "final" losses are its 4th epoch's, not a mean of epochs 2-4."""
    curve = {"train_loss": [1.2, 0.9, 0.6, 0.4], "val_loss": [1.0, 0.6, 0.45, 0.29]}
    row = diagnose(epochs_table({"t": curve})).loc["t"]
    assert row["diagnosis"] == "healthy"
    assert (row["train_loss_end"], row["val_loss_end"]) == (0.4, 0.29)
    assert explain(row.to_dict()).startswith(
        "healthy: final val loss 0.29, train loss 0.4 (after 4 epochs); gap -0.379 of val loss"
    )


@pytest.mark.parametrize(("epochs", "width"), [(3, 1), (5, 1), (6, 2), (8, 2), (9, 3), (60, 3)])
def test_end_window_is_a_third_of_the_history_at_most_window(epochs: int, width: int) -> None:
    assert int(dg.end_window(epochs)) == width
    assert 2 * width <= epochs  # the start and end windows never overlap


def test_unstable_counts_nan_and_spikes(table: pd.DataFrame) -> None:
    row = table.loc["wobbly"]
    assert row["n_nonfinite"] == 2
    assert row["n_spikes"] == 1  # 0.4 -> 2.5 (train) and 0.45 -> 2.6 (val) in the same epoch
    assert directions(row.to_dict(), [L2, LR]) == {"penalties.l2": "keep", "training.lr": "lower"}
    assert "2 NaN/inf epoch(s), 1 spike(s)" in explain(row.to_dict())


def test_short_trial_is_not_called_healthy(table: pd.DataFrame) -> None:
    assert bool(table.loc["brief", "too_short"])
    assert "too short to tell: 2 epoch(s)" in explain(table.loc["brief"].to_dict())


def test_spike_threshold_is_the_named_constant() -> None:
    below = {"train_loss": [1.0, 0.5, 0.5 * (dg.SPIKE_RATIO - 0.01), 0.4], "val_loss": [1.0] * 4}
    at = {"train_loss": [1.0, 0.5, 0.5 * dg.SPIKE_RATIO, 0.4], "val_loss": [1.0] * 4}
    result = diagnose(epochs_table({"below": below, "at": at}))
    assert result.loc["below", "n_spikes"] == 0 and result.loc["at", "n_spikes"] == 1


def test_wiggles_of_a_loss_near_zero_are_not_spikes() -> None:
    """A loss that fell from 0.7 to 0.001 and wiggles to 0.002 doubled, but rose by
    0.001, far below SPIKE_MIN_RISE of its first epoch: not unstable. The same doubling
    from a loss still large (0.04 -> 0.08, a rise of 0.04 >= 0.05 * 0.7) is a spike."""
    tiny = {
        "train_loss": [0.7, 0.05, 0.001, 0.002, 0.0012, 0.0009],
        "val_loss": [0.7, 0.06, 0.002, 0.004, 0.0025, 0.002],
    }
    large = {
        "train_loss": [0.7, 0.05, 0.04, 0.08, 0.04, 0.04],
        "val_loss": [0.7, 0.06, 0.05, 0.05, 0.05, 0.05],
    }
    result = diagnose(epochs_table({"tiny": tiny, "large": large}))
    assert result.loc["tiny", "n_spikes"] == 0 and not result.loc["tiny", "unstable"]
    assert result.loc["large", "n_spikes"] == 1 and result.loc["large", "unstable"]
    assert 0.04 >= dg.SPIKE_MIN_RISE * 0.7 > 0.002


def test_bias_from_dp_diff_and_group_columns() -> None:
    n = len(HEALTHY["train_loss"])
    extra = {
        "gap_dp": {"dp_diff": [0.25] * n, "eo_diff": [0.02] * n},
        "groups": {"acc.female": [0.9] * n, "acc.male": [0.7] * n},
        "fair": {"dp_diff": [0.01] * n, "eo_diff": [0.02] * n},
    }
    epochs = epochs_table({k: HEALTHY for k in extra}, extra=extra)
    result = diagnose(epochs, trial_summary(epochs, ("val_acc", "max")))
    assert result["biased"].to_dict() == {"gap_dp": True, "groups": True, "fair": False}
    assert result.loc["groups", "bias_gap"] == pytest.approx(0.2)
    assert directions(result.loc["gap_dp"].to_dict(), [L2, FAIR]) == {
        "penalties.l2": "keep",
        "penalties.fairness.strength": "raise",
    }


def test_group_columns_patterns() -> None:
    found = group_columns(["acc.a", "acc.b", "group.x.positive_rate", "group.y.positive_rate", "z"])
    assert found == {
        "acc": {"a": "acc.a", "b": "acc.b"},
        "positive_rate": {"x": "group.x.positive_rate", "y": "group.y.positive_rate"},
    }


def test_missing_losses_names_the_metrics() -> None:
    epochs = epochs_table({"a": HEALTHY}).drop(columns=["train_loss"])
    with pytest.raises(SpecError, match=r"unknown metric 'train_loss'; metrics present: .*val"):
        diagnose(epochs)


def test_unsorted_rows_give_the_same_answer(table: pd.DataFrame) -> None:
    epochs = epochs_table(CURVES)
    shuffled = epochs.sample(frac=1.0, random_state=0)
    again = diagnose(shuffled, trial_summary(shuffled, ("val_acc", "max")))
    pd.testing.assert_frame_equal(again.loc[table.index], table)
    assert np.isfinite(table.loc["fine", "gap_ratio"])


def _constant_table() -> pd.DataFrame:
    """Three constant predictors (the store's ``degenerate``: both gaps exactly 0) whose curves
    would read overfit, unstable and healthy, one of them beside a group-accuracy spread; and a
    learned trial with a group gap, for contrast."""
    curves = {"c_over": OVERFIT, "c_wobbly": UNSTABLE, "c_fell": HEALTHY, "learned": HEALTHY}
    flat = {"dp_diff": [0.0] * 8, "eo_diff": [0.0] * 8}
    extra = {
        # Group accuracies differ by 0.3 (each group's share of the class), selection rates do not.
        "c_over": {**flat, "acc.F": [0.9] * 8, "acc.M": [0.6] * 8},
        "c_wobbly": flat,
        # A balanced label: the class it predicts holds 60% of the val rows.
        "c_fell": {**flat, "val_acc": [0.6] * 8},
        "learned": {"dp_diff": [0.2] * 8, "eo_diff": [0.1] * 8},
    }
    epochs = epochs_table(curves, extra=extra)
    trials = pd.DataFrame(
        {"trial_id": list(curves), "status": "finished", "degenerate": [True, True, True, False]}
    )
    return diagnose(epochs, trial_summary(epochs, ("val_acc", "max"), trials=trials))


def test_constant_predictors_are_degenerate_never_healthy_overfit_or_biased() -> None:
    table = _constant_table()
    assert table["diagnosis"].to_dict() == {
        "c_over": "degenerate",
        "c_wobbly": "degenerate+unstable",
        "c_fell": "degenerate",
        "learned": "biased",
    }
    assert table["degenerate"].tolist() == [True, True, True, False]
    assert not table.loc[["c_over", "c_wobbly", "c_fell"], ["overfit", "biased"]].any().any()
    assert table.loc["c_fell", "class_share"] == pytest.approx(0.6)
    assert np.isnan(table.loc["learned", "class_share"])


def test_a_constant_predictors_advice_is_only_what_its_numbers_support() -> None:
    table = _constant_table()
    wobbly = table.loc["c_wobbly"].to_dict()
    text = explain(wobbly, [L2, LR])
    assert text.startswith("degenerate: predicts one class for every row")
    assert "unstable: 2 NaN/inf epoch(s)" in text
    assert "barely left" not in text and "resample" not in text
    assert directions(wobbly, [L2, LR]) == {"penalties.l2": "keep", "training.lr": "lower"}
    # Its loss fell and its class holds 60%: no cause in its numbers, so no advice.
    fell = table.loc["c_fell"].to_dict()
    text = explain(fell, [L2, LR])
    assert "its val_acc 0.6 is only the share of the val rows in the class it predicts" in text
    assert (
        "its train loss fell to 0.095 of its first epoch's, yet every prediction is one class"
        in text
    )
    assert " -> " not in text and "healthy" not in text
    assert directions(fell, [L2, LR]) == {"penalties.l2": "keep", "training.lr": "keep"}
    # Its curves read overfit, but a constant predictor is not asked for more regularization.
    assert directions(table.loc["c_over"].to_dict(), [L2, DROPOUT]) == {
        "penalties.l2": "keep",
        "model.dropout": "keep",
    }


def test_a_stuck_constant_predictor_asks_for_weaker_penalties_and_a_larger_step() -> None:
    stuck = {
        "train_loss": [0.100, 0.099, 0.098, 0.098, 0.097, 0.097, 0.097, 0.097],
        "val_loss": [0.101, 0.100, 0.099, 0.099, 0.098, 0.098, 0.098, 0.098],
    }
    epochs = epochs_table(
        {"s": stuck},
        extra={"s": {"dp_diff": [0.0] * 8, "eo_diff": [0.0] * 8, "val_acc": [0.98] * 8}},
    )
    trials = pd.DataFrame({"trial_id": ["s"], "status": "finished", "degenerate": [True]})
    row = diagnose(epochs, trial_summary(epochs, ("val_acc", "max"), trials=trials)).loc["s"]
    assert row["diagnosis"] == "degenerate" and not row["underfit"] and not row["too_short"]
    text = explain(row.to_dict(), [L2, LR, WIDTH])
    assert "its train loss ended at 0.97 of its first epoch's (>= 0.7)" in text
    assert "-> train longer (budget.max_epochs) or with a higher training.lr, or weaken" in text
    assert "the other classes hold only 2.0% of the val rows (<= 20%)" in text
    assert directions(row.to_dict(), [L2, LR, WIDTH]) == {
        "penalties.l2": "lower",
        "training.lr": "raise",
        "model.width": "keep",
    }

"""The trial table of a sweep with many metrics: one frame, no pandas fragmentation warning."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd

from regtune.platform.results import ResultsWriter, read_trials
from regtune.platform.results.trials import (
    TrialState,
    summarize_rows,
    trial_frame,
    trial_table,
)
from tests.platform.results.conftest import tune_result

#: Per-group test metrics, as a sensitive attribute with five groups reports
#: (accuracy, rates and their interval ends): 5 groups x 4 rates x 3 = 60 metrics,
#: plus 60 reliability-bin entries, well past the ~100 columns at which assigning
#: one column per metric made pandas warn "DataFrame is highly fragmented".
GROUPS = ("White", "Black", "Asian", "Other", "Amer_Indian")


def _many_metrics(acc: float) -> dict[str, float]:
    out = {"val_acc": acc, "val_loss": 1.0 - acc, "dp_diff": 0.05, "eo_diff": 0.04}
    for group in GROUPS:
        for rate in ("acc", "tpr", "fpr", "selection_rate"):
            value = acc if rate == "acc" else 0.5 * acc
            out[f"test_{rate}_{group}"] = value
            out[f"test_{rate}_{group}_ci_low"] = value - 0.1
            out[f"test_{rate}_{group}_ci_high"] = value + 0.1
    for b in range(20):
        out[f"test_reliability.b{b:02d}.acc"] = acc
        out[f"test_reliability.b{b:02d}.conf"] = acc
        out[f"test_reliability.b{b:02d}.count"] = float(b)
    return out


def _epochs() -> pd.DataFrame:
    rows = []
    for tid, accs in {"a": [0.6, 0.8, 0.7], "b": [0.5, 0.55]}.items():
        for i, acc in enumerate(accs, start=1):
            rows.append({"experiment": "e", "trial_id": tid, "iteration": i, **_many_metrics(acc)})
    return pd.DataFrame(rows)


def test_best_values_of_many_metrics_come_without_a_fragmentation_warning() -> None:
    epochs = _epochs()
    n_metrics = len(epochs.columns) - 3
    assert n_metrics > 110
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # also when run outside pytest's settings
        rows = {r["trial_id"]: r for r in trial_table(epochs, {}, experiment="e")}
    a = rows["a"]
    assert a["best.val_acc"] == 0.8 and a["last.val_acc"] == 0.7  # max, and the last
    assert a["best.val_loss"] == 1.0 - 0.8  # min
    assert a["best.dp_diff"] == 0.05 and a["last.test_acc_Black_ci_high"] == 0.7 + 0.1
    # No better direction (a per-group rate, a bin's count): NaN, as documented.
    assert math.isnan(a["best.test_tpr_Black"]) and math.isnan(a["best.test_reliability.b03.count"])
    assert rows["b"]["best.val_acc"] == 0.55 and rows["b"]["iterations"] == 2
    # The pandas path agrees with the writer's plain-Python one, key by key.
    for tid, frame in epochs.groupby("trial_id"):
        plain = summarize_rows(frame.sort_values("iteration").to_dict("records"))
        for key, value in plain.items():
            if key.startswith(("best.", "last.")) or key in ("iterations", "degenerate"):
                stored = rows[str(tid)][key]
                assert (math.isnan(value) and math.isnan(stored)) or stored == value, key


def test_a_trial_with_no_direction_metric_only_and_a_trial_without_rows() -> None:
    epochs = pd.DataFrame(
        [{"experiment": "e", "trial_id": "t", "iteration": 1, "epoch_time_s": 0.5}]
    )
    epochs = epochs.rename(columns={"epoch_time_s": "robust_acc_epoch"})  # no direction
    rows = trial_table(epochs, {"gone": TrialState("error")}, experiment="e")
    assert [r["trial_id"] for r in rows] == ["gone", "t"]
    assert math.isnan(rows[1]["best.robust_acc_epoch"]) and rows[1]["last.robust_acc_epoch"] == 0.5
    assert rows[0]["iterations"] == 0 and rows[0]["status"] == "error"


def test_read_trials_of_a_stored_sweep_with_many_metrics(tmp_path: Path) -> None:
    exp = str(tmp_path / "wide")
    writer = ResultsWriter(exp, max_t=3, flush_s=0.0)
    for i, acc in enumerate([0.6, 0.8, 0.7], start=1):
        writer.add("a", tune_result(i, {"penalties": {"l2": 0.1}}, **_many_metrics(acc)))
    writer.end_trial("a", error=False)
    writer.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_trials(exp)
    row = table.iloc[0]
    assert row["status"] == "finished" and row["best.val_acc"] == 0.8
    assert row["last.test_tpr_Other"] == 0.5 * 0.7 and not row["degenerate"]


def test_the_frame_is_the_rows_column_by_column() -> None:
    """trial_frame (what the readers use) with a trial without rows, a text and a
    bool config value, and a NaN gap (trial_table is its rows: only the values are
    checked here, against hand-known ones)."""
    epochs = _epochs()
    epochs["config.optimizer"] = ["adam", "adam", "sgd", "sgd", "sgd"]
    epochs["config.nesterov"] = [None, None, None, True, True]
    epochs.loc[epochs["trial_id"] == "b", ["dp_diff", "eo_diff"]] = 0.0
    epochs.loc[4, "eo_diff"] = math.nan  # b's last eo_diff: the last reported one (0.0) counts
    epochs.loc[2, "dp_diff"] = 0.0  # a: dp 0 but eo 0.04, not a constant predictor
    states = {"gone": TrialState("error"), "a": TrialState("finished", "/ckpt/a")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = trial_frame(epochs, states, experiment="e")
    rows = trial_table(epochs, states, experiment="e")
    assert list(frame["trial_id"]) == [r["trial_id"] for r in rows] == ["a", "b", "gone"]
    assert frame["iterations"].dtype == "int64" and frame["degenerate"].dtype == bool
    assert list(frame["iterations"]) == [3, 2, 0]
    assert list(frame["degenerate"]) == [False, True, False]
    assert list(frame["status"]) == ["finished", "running", "error"]
    assert rows[0]["checkpoint"] == "/ckpt/a" and rows[1]["checkpoint"] is None
    assert rows[0]["config.optimizer"] == "sgd" and rows[0]["config.nesterov"] is None
    assert rows[1]["config.nesterov"] is True
    assert set(rows[2]) == {"experiment", "trial_id", "status", "iterations", "checkpoint"} | {
        "degenerate"
    }
    assert frame.loc[2, [c for c in frame.columns if c.startswith(("best.", "last."))]].isna().all()
    # Without best.*: the same frame less those columns.
    lean = trial_frame(epochs, states, experiment="e", best=False)
    assert list(lean.columns) == [c for c in frame.columns if not c.startswith("best.")]
    pd.testing.assert_frame_equal(lean, frame[list(lean.columns)])

"""SweepOutcome rebuilt from disk, as plain data, with degenerate trials off the front."""

from __future__ import annotations

import json
from pathlib import Path

from regtune.platform.results import SweepOutcome, is_constant_predictor, pareto_indices
from tests.platform.results.test_store import _small_sweep

#: What the CLI's JSON summary had before to_dict replaced it.
CLI_KEYS = {"name", "path", "elapsed_s", "counts", "front", "trials"}
CLI_TRIAL_KEYS = {"trial_id", "status", "iterations", "params", "objectives", "checkpoint"}


def test_constant_predictor_rule() -> None:
    assert is_constant_predictor({"val_acc": 0.759, "dp_diff": 0.0, "eo_diff": 0.0})
    assert not is_constant_predictor({"dp_diff": 0.0, "eo_diff": 0.01})
    assert not is_constant_predictor({"dp_diff": 0.0})  # eo_diff not reported
    assert not is_constant_predictor({"dp_diff": float("nan"), "eo_diff": 0.0})
    assert not is_constant_predictor({"val_acc": 0.9})  # no groups: cannot tell


def test_outcome_from_disk_keeps_degenerate_trials_off_the_front(tmp_path: Path) -> None:
    exp = tmp_path / "store"
    _small_sweep(str(exp)).close()
    outcome = SweepOutcome.from_path(str(exp))
    assert outcome.name == "store" and outcome.path == str(exp)
    by_id = {t.trial_id: t for t in outcome.trials}
    assert by_id["t4"].degenerate and not by_id["t1"].degenerate
    # t4 (val_acc 0.759, dp_diff 0) is not dominated, but it is a constant predictor.
    front = {outcome.trials[i].trial_id for i in outcome.front}
    assert front == {"t1"}
    with_degenerate = pareto_indices(outcome.objectives, outcome.trials, include_degenerate=True)
    assert {outcome.trials[i].trial_id for i in with_degenerate} == {"t1", "t4"}
    assert outcome.best is not None and outcome.best.trial_id == "t1"
    assert outcome.counts() == {"finished": 2, "stopped early": 1, "error": 1, "running": 1}
    t1 = by_id["t1"]
    assert t1.params == {"penalties.l2": 0.0}
    assert t1.objectives == {"val_acc": 0.9, "dp_diff": 0.1}
    assert t1.metrics["val_acc"] == 0.9 and "config" not in t1.metrics
    assert t1.config["model"]["width"] == 32 and isinstance(t1.config["model"]["width"], int)
    # A list the spec does not have stays JSON text (as stored).
    assert json.loads(t1.config["features"]) == ["a", "b"]
    assert outcome.elapsed_s > 0


def test_to_dict_is_plain_json_with_what_the_cli_printed(tmp_path: Path) -> None:
    exp = tmp_path / "store"
    _small_sweep(str(exp)).close()
    data = SweepOutcome.from_path(str(exp)).to_dict()
    text = json.dumps(data, allow_nan=False)  # NaN objectives became null
    assert set(data) >= CLI_KEYS
    assert all(set(t) >= CLI_TRIAL_KEYS for t in data["trials"])
    assert data["best"] == {"trial_id": "t1", "params": {"penalties.l2": 0.0}}
    assert data["results"] == f"{exp}/results"
    assert json.loads(text) == data
    assert {t["trial_id"]: t["degenerate"] for t in data["trials"]}["t4"] is True


def test_a_tune_result_leaves_nan_metrics_out_as_the_stored_table_does() -> None:
    from regtune.platform.results.outcome import split_result

    metrics, info = split_result(
        {"val_acc": 0.9, "test_reliability.b03.conf": float("nan"), "pid": 7, "config": {}}
    )
    assert metrics == {"val_acc": 0.9}
    assert info == {"pid": 7}


def test_numpy_scalar_metrics_are_kept_and_booleans_are_not() -> None:
    import numpy as np

    from regtune.platform.results.outcome import split_result
    from regtune.platform.results.schema import epoch_row

    result = {
        "training_iteration": np.int64(2),
        "val_acc": np.float32(0.75),
        "n_params": np.int64(120),
        "ece": np.float64(0.05),
        "flag": np.bool_(True),
        "plain_flag": False,
        "config": {"penalties": {"l2": np.float32(0.5)}},
    }
    row = epoch_row(result, experiment="e", trial_id="t", timestamp=1.0)
    assert row["iteration"] == 2
    assert row["val_acc"] == 0.75 and row["n_params"] == 120.0 and row["ece"] == 0.05
    assert "flag" not in row and "plain_flag" not in row
    assert row["config.penalties.l2"] == 0.5
    metrics, info = split_result(result)
    assert metrics == {"val_acc": 0.75, "n_params": 120.0, "ece": 0.05}
    assert info["training_iteration"] == 2
    assert info["flag"] is result["flag"] and info["plain_flag"] is False

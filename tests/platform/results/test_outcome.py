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


def test_outcome_from_disk_has_each_trials_known_values(tmp_path: Path) -> None:
    """Every field of every trial, from a store written by the real writer: a trial
    with a NaN metric and a checkpoint, one that failed before its first report
    (stored status only), a running constant predictor, and one whose first
    objective is ranked on its last epoch although an earlier one was better."""
    import math

    from regtune.platform.results import ResultsWriter
    from regtune.search_spaces import load_spec
    from tests.platform.results.conftest import tune_result
    from tests.platform.results.test_store import SPEC

    def config(l2: float) -> dict[str, object]:
        return {"model": {"width": 32}, "penalties": {"l2": l2}}

    exp = str(tmp_path / "known")
    writer = ResultsWriter(exp, max_t=3, spec=load_spec(SPEC).to_dict(), flush_s=0.0)
    accs = [0.6, 0.8, 0.7]
    for i, acc in enumerate(accs, start=1):
        last = i == len(accs)
        metrics = {"val_acc": acc, "dp_diff": 0.2, "eo_diff": 0.1}
        if last:
            metrics |= {"test_acc": 0.75, "test_ece": math.nan}
        writer.add("a", tune_result(i, config(1e-4), **metrics))
    writer.end_trial("a", error=False, checkpoint="/ckpt/a")
    writer.end_trial("b", error=True)  # failed before its first report
    for i in (1, 2):
        writer.add("c", tune_result(i, config(0.0), val_acc=0.76, dp_diff=0.0, eo_diff=0.0))
    writer.close()

    outcome = SweepOutcome.from_path(exp)
    by_id = {t.trial_id: t for t in outcome.trials}
    assert list(by_id) == ["a", "b", "c"]
    a, b, c = by_id["a"], by_id["b"], by_id["c"]
    assert (a.status, a.iterations, a.checkpoint, a.degenerate) == ("finished", 3, "/ckpt/a", False)
    # The last epoch's metrics; the NaN test_ece is left out, as from Tune.
    assert a.metrics == {"val_acc": 0.7, "dp_diff": 0.2, "eo_diff": 0.1, "test_acc": 0.75}
    assert a.epoch == 3 and a.objectives == {"val_acc": 0.7, "dp_diff": 0.2}
    assert a.ranked == a.metrics
    assert a.params == {"penalties.l2": 1e-4}
    assert a.config == {"model": {"width": 32}, "penalties": {"l2": 1e-4}}
    assert isinstance(a.config["model"]["width"], int)
    assert (b.status, b.iterations, b.checkpoint, b.degenerate) == ("error", 0, None, False)
    assert b.metrics == {} and b.config == {} and b.ranked == {} and b.epoch is None
    assert b.params == {"penalties.l2": None}
    assert all(math.isnan(v) for v in b.objectives.values())
    assert (c.status, c.iterations, c.degenerate) == ("running", 2, True)
    assert c.metrics == {"val_acc": 0.76, "dp_diff": 0.0, "eo_diff": 0.0} and c.epoch == 2
    assert outcome.best is a and outcome.front == [0]
    assert outcome.counts() == {"finished": 1, "error": 1, "running": 1}

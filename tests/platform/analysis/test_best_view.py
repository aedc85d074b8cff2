"""The best trial's calibration curve and per-group rates: with and without the metrics,
on hand-made tables, on a stored experiment (read for the best trial only), and end to
end from real training runs scored by the trainable."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from regtune.platform.analysis import analyze_experiment, analyze_tables
from regtune.platform.analysis.best import NO_GROUPS, NO_RELIABILITY_BINS, UNFINISHED
from regtune.platform.analysis.figures import figures
from regtune.platform.analysis.load import row_groups_holding
from regtune.platform.analysis.report import render_html
from regtune.platform.cli import app
from regtune.platform.results import ResultsWriter
from regtune.trainables.data import Dataset
from regtune.trainables.loop import train
from regtune.trainables.metrics import RELIABILITY_SLOTS, ece_from_reliability
from tests.platform.analysis.tables import (
    ECE,
    HEALTHY,
    OVERFIT,
    epochs_table,
    final_report,
    last_epoch_only,
    write_experiment,
)

N = len(HEALTHY["train_loss"])


def test_best_trial_with_bins_and_groups() -> None:
    extra = {"good": last_epoch_only(final_report())}
    configs = {"good": {"penalties.l2": 1e-4}, "bad": {"penalties.l2": 1e-1}}
    epochs = epochs_table({"good": HEALTHY, "bad": OVERFIT}, configs, extra)
    analysis = analyze_tables(epochs, name="hand")
    best = analysis.best
    assert best is not None and best.trial_id == "good" and best.notes == []
    table = best.reliability
    assert len(table) == RELIABILITY_SLOTS and table["count"].sum() == 40
    assert best.split == "test"
    row = table.set_index("slot").loc[13]
    assert (row["low"], row["high"], row["conf"], row["acc"]) == pytest.approx(
        (13 / 15, 14 / 15, 0.9, 0.8)
    )
    last = table.set_index("slot").loc[15]
    assert (last["low"], last["high"], last["count"]) == (1.0, 1.0, 0)
    assert best.reliability_ece == pytest.approx(ECE)
    rates = best.group_rates.set_index(["stat", "group"])
    assert rates.loc[("positive_rate", "M"), ["value", "ci_low", "ci_high"]].tolist() == [
        0.4,
        0.35,
        0.45,
    ]
    assert rates.loc[("acc", "F"), "split"] == "test"
    assert best.groups.loc["F", "positive_rate"] == pytest.approx(0.2)
    # The selection-rate spread (0.2) makes the trial biased; the row shown has no bins.
    assert analysis.diagnosis.loc["good", "biased"]
    assert not any("reliability" in str(k) for k in best.row.index)
    # Paths leave the bins and interval ends out.
    assert set(analysis.paths) == {"penalties.l2"}
    metrics: set[str] = set()
    for path in analysis.paths.values():
        metrics |= set(path["metric"])
    assert not any("reliability" in m or m.endswith("_ci_low") for m in metrics)
    images = figures(analysis)
    assert {"hand-best-calibration", "hand-best-groups"} <= set(images)
    page = render_html([analysis], images=images)
    assert "calibration curve (test split): ECE 0.0475" in page
    assert "per-group rates with their intervals" in page and "[0.867, 0.933)" in page
    data = json.loads(json.dumps(analysis.to_dict()))
    assert data["best"]["reliability_ece"] == pytest.approx(ECE)
    assert sum(r["count"] for r in data["best"]["reliability"]) == 40
    assert {r["stat"] for r in data["best"]["group_rates"]} == {"acc", "positive_rate"}


def test_best_trial_without_the_metrics_says_why() -> None:
    epochs = epochs_table({"t": HEALTHY}, extra={"t": {"ece": [0.1] * N}})
    analysis = analyze_tables(epochs, name="old")
    best = analysis.best
    assert best is not None
    assert best.notes == [NO_RELIABILITY_BINS, NO_GROUPS]
    assert best.reliability.empty and best.group_rates.empty and math.isnan(best.reliability_ece)
    images = figures(analysis)
    assert "old-best-calibration" in images and "old-best-groups" not in images
    page = render_html([analysis], images=images)
    assert NO_RELIABILITY_BINS in page and NO_GROUPS in page
    assert json.loads(json.dumps(analysis.to_dict()))["best"]["reliability"] == []


def test_unfinished_best_trial_says_so() -> None:
    # The store has the bin columns (another trial finished); this one never reported them.
    values = {k: [math.nan] * N for k in final_report()}
    epochs = epochs_table({"t": HEALTHY}, extra={"t": values})
    best = analyze_tables(epochs).best
    assert best is not None and UNFINISHED in best.notes and best.reliability.empty


def test_stored_experiment_reads_bins_for_the_best_trial_only(tmp_path: Path) -> None:
    exp = str(tmp_path / "stored")
    configs: dict[str, dict[str, Any]] = {
        "good": {"penalties": {"l2": 1e-4}},
        "bad": {"penalties": {"l2": 1e-1}},
    }
    final = {"good": final_report(), "bad": {**final_report(), "test_acc_F": 0.1}}
    write_experiment(exp, {"good": HEALTHY, "bad": OVERFIT}, configs, final=final)
    foreign = Path(exp) / "results" / "epochs" / "part-foreign.parquet"
    pq.write_table(pa.table({"trial_id": ["good"], "iteration": [8]}), foreign)
    analysis = analyze_experiment(exp)
    # A foreign part is skipped, named once, and left in place.
    assert sum("part-foreign.parquet: skipped" in n for n in analysis.notes) == 1
    assert foreign.exists()
    best = analysis.best
    assert best is not None and best.trial_id == "good"
    # Bins and interval ends were not read into the all-trials summary ...
    assert not any("reliability" in c or c.endswith("_ci_low") for c in analysis.summary.columns)
    # ... but the best trial has them, read from its own rows.
    assert best.reliability_ece == pytest.approx(ECE)
    assert best.group_rates.set_index(["stat", "group"]).loc[("acc", "F"), "ci_low"] == 0.8
    result = CliRunner().invoke(app, ["analyze", exp])
    assert result.exit_code == 0, result.output
    assert "calibration curve (test split; ECE 0.0475)" in result.stdout
    assert "per-group rates (value [interval])" in result.stdout
    assert "0.200 [0.150, 0.250]" in result.stdout


def test_best_trial_rows_come_from_the_row_groups_that_can_hold_them(tmp_path: Path) -> None:
    path = tmp_path / "part.parquet"
    ids = [f"t{i}" for i in range(6)]
    pq.write_table(pa.table({"trial_id": ids, "iteration": [1] * 6}), path, row_group_size=2)
    part = pq.ParquetFile(path)
    assert part.num_row_groups == 3
    assert row_groups_holding(part, "t3") == [1]
    assert row_groups_holding(part, "t9") == []  # past every group's max: nothing decoded


def _write_run(writer: ResultsWriter, trial_id: str, config: dict[str, Any], data: Dataset) -> Any:
    """Train for real and store what the Tune trainable reports: one row per epoch, the
    final report merged into the last one."""
    result = train(config, dataset=data)
    for i, row in enumerate(result.history):
        report: dict[str, Any] = {"training_iteration": i + 1, "config": config, **row}
        if i == len(result.history) - 1:
            report.update(result.test_metrics)
        writer.add(trial_id, report)
    writer.end_trial(trial_id, error=False)
    return result


def test_end_to_end_from_real_training(adult: Dataset, tmp_path: Path) -> None:
    exp = str(tmp_path / "adult-e2e")
    writer = ResultsWriter(exp, max_t=1, flush_s=0)
    results = {}
    for trial_id, l2 in (("a", 1e-5), ("b", 1e-2)):
        config = {
            "dataset": "adult",
            "model": {"arch": "mlp", "width": 16, "depth": 1},
            "training": {"epochs": 1, "batch_size": 2048, "robust_every": 0, "seed": 1},
            "penalties": {"l2": l2},
        }
        results[trial_id] = _write_run(writer, trial_id, config, adult)
    writer.close()
    analysis = analyze_experiment(exp)
    best = analysis.best
    assert best is not None and best.notes == []
    test = results[best.trial_id].test_metrics
    n_test = adult.test.x.shape[0]
    assert best.reliability["count"].sum() == n_test
    assert best.reliability_ece == pytest.approx(test["test_ece"], rel=1e-5)
    assert best.reliability_ece == pytest.approx(ece_from_reliability(test), rel=1e-9)
    rates = best.group_rates
    assert set(rates["stat"]) == {"acc", "positive_rate", "tpr", "fpr"}
    assert set(rates["group"]) == {"Female", "Male"} and (rates["split"] == "test").all()
    assert np.all(rates["ci_low"] <= rates["value"]) and np.all(rates["value"] <= rates["ci_high"])
    female = rates.set_index(["stat", "group"]).loc[("positive_rate", "Female")]
    assert female["value"] == pytest.approx(test["test_selection_rate_Female"])
    assert {"test_dp_diff", "test_dp_diff_ci_low"} <= set(best.gaps)
    images = figures(analysis)
    stem = analysis.name
    assert {f"{stem}-best-calibration", f"{stem}-best-groups", f"{stem}-best-curves"} <= set(images)

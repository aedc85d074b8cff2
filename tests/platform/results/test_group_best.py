"""``best.test_acc_<group>`` is the best of a group's accuracy (docs/results.md: "max for
accuracies"), in the stored trial table and in ``read_trials``; interval ends have none."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq

from regtune.platform.results import ResultsWriter, read_trials
from regtune.platform.results.schema import metric_mode
from tests.platform.results.conftest import tune_result


def test_group_accuracy_is_max_and_interval_ends_have_no_direction() -> None:
    for name in ("test_acc_female", "test_acc_Amer_Indian", "val_acc_male", "test_acc_F"):
        assert metric_mode(name) == "max", name
    for name in ("test_acc_female_ci_low", "test_acc_female_ci_high", "test_tpr_female"):
        assert metric_mode(name) is None, name
    assert metric_mode("robust_acc_epoch") is None


def test_best_group_accuracy_is_stored_and_read(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    writer = ResultsWriter(exp, max_t=3, flush_s=0)
    # A group's accuracy reported twice (a restored trial re-reporting is not needed:
    # two epochs each carrying it), the better one first.
    values = {1: 0.6, 2: 0.9, 3: 0.7}
    for epoch, acc in values.items():
        writer.add(
            "t1",
            tune_result(
                epoch,
                {"penalties": {"l2": 1e-3}},
                val_loss=1.0 / epoch,
                val_acc=0.5 + 0.1 * epoch,
                test_acc_female=acc,
                test_acc_female_ci_low=acc - 0.1,
            ),
        )
    writer.end_trial("t1", error=False)
    writer.close()
    stored = pq.read_table(f"{exp}/results/trials.parquet").to_pylist()[0]
    assert stored["best.test_acc_female"] == 0.9
    assert stored["last.test_acc_female"] == 0.7
    assert math.isnan(stored["best.test_acc_female_ci_low"])
    row = read_trials(exp).iloc[0]
    assert row["best.test_acc_female"] == 0.9
    assert math.isnan(row["best.test_acc_female_ci_low"])

"""Rows a restore abandoned are not read back: a trial that went back to a checkpoint and
ended before reporting its later epochs again is ranked on the epochs its weights have.

Real Parquet parts written by the results store's writer: a worker reports epochs 1-5
and dies; the retry restores the epoch-3 checkpoint, reports epoch 4 and is stopped.
Epoch 5's row was written by the dead worker; no checkpoint holds those weights.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq

from regtune.platform.analysis.load import final_values, load_experiment
from regtune.platform.analysis.run import analyze_experiment
from regtune.platform.results import ResultsWriter, read_epochs, read_trials
from tests.platform.results.conftest import tune_result

CONFIG = {"penalties": {"l2": 1e-3}}


def _report(writer: ResultsWriter, trial: str, epoch: int, acc: float) -> None:
    writer.add(
        trial,
        tune_result(
            epoch,
            CONFIG,
            train_loss=1.0 / epoch,
            val_loss=1.0 / epoch,
            val_acc=acc,
            test_acc=acc,
        ),
    )
    time.sleep(0.002)  # distinct write times


def _retried(exp: str, *, close: bool = True) -> ResultsWriter:
    writer = ResultsWriter(exp, max_t=10, flush_s=0)
    for epoch in range(1, 6):
        # The dead worker's epoch 5 scores best: ranked on it, t1 would look best.
        _report(writer, "t1", epoch, 0.5 + 0.09 * epoch)
    writer.end_trial("t1", error=True)  # the worker died (Ray retries the trial)
    _report(writer, "t1", 4, 0.8)  # restored from the epoch-3 checkpoint
    writer.end_trial("t1", error=False)  # stopped after epoch 4
    for epoch in range(1, 6):
        _report(writer, "t2", epoch, 0.5 + 0.05 * epoch)
    writer.end_trial("t2", error=False)
    if close:
        writer.close()
    return writer


def test_the_dead_workers_later_epochs_are_not_read(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    writer = _retried(exp, close=False)
    writer.flush()
    assert len(list((tmp_path / "exp" / "results" / "epochs").glob("part-*.parquet"))) > 1
    for stage in ("parts", "merged"):
        epochs = read_epochs(exp)
        assert epochs.loc[epochs["trial_id"] == "t1", "iteration"].tolist() == [1, 2, 3, 4], stage
        assert epochs.loc[epochs["trial_id"] == "t2", "iteration"].tolist() == [1, 2, 3, 4, 5]
        loaded = load_experiment(exp, columns=["val_acc"])
        rows = loaded.epochs[loaded.epochs["trial_id"] == "t1"]
        assert rows["iteration"].tolist() == [1, 2, 3, 4], stage
        assert "timestamp" not in loaded.epochs.columns
        assert final_values(exp, "t1", ["test_acc"]) == {"test_acc": 0.8}
        writer.close()


def test_the_trial_table_counts_the_epochs_the_weights_have(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    _retried(exp)
    stored = {r["trial_id"]: r for r in pq.read_table(f"{exp}/results/trials.parquet").to_pylist()}
    assert stored["t1"]["iterations"] == 4
    assert stored["t1"]["last.val_acc"] == 0.8
    assert stored["t1"]["status"] == "stopped early"
    table = read_trials(exp).set_index("trial_id")
    assert table.loc["t1", "iterations"] == 4 and table.loc["t1", "last.val_acc"] == 0.8


def test_analyze_ranks_the_retried_trial_on_its_last_epoch(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    _retried(exp)
    analysis = analyze_experiment(exp)
    assert analysis.summary.loc["t1", "iteration"] == 4
    assert analysis.summary.loc["t1", "val_acc"] == 0.8
    assert analysis.best is not None and analysis.best.trial_id == "t1"  # 0.8 vs t2's 0.75


def test_a_resumed_writer_drops_rows_its_restore_abandoned(tmp_path: Path) -> None:
    exp = str(tmp_path / "exp")
    first = ResultsWriter(exp, max_t=10, flush_s=0)
    for epoch in range(1, 6):
        _report(first, "t1", epoch, 0.5 + 0.09 * epoch)
    first.flush()  # the driver is killed here: no close
    again = ResultsWriter(exp, max_t=10, flush_s=0)
    _report(again, "t1", 3, 0.7)  # resumed from the epoch-2 checkpoint
    again.end_trial("t1", error=False)
    again.close()
    stored = pq.read_table(f"{exp}/results/trials.parquet").to_pylist()
    assert stored[0]["iterations"] == 3
    assert read_epochs(exp)["iteration"].tolist() == [1, 2, 3]


def test_rule_keeps_rows_written_in_epoch_order() -> None:
    from regtune.platform.results.read import abandoned_rows

    trial = ["a", "a", "a", "b", "b"]
    assert not abandoned_rows(trial, [1.0, 2.0, 3.0, 0.5, 0.6]).any()
    assert abandoned_rows(trial, [1.0, 3.0, 2.0, 0.5, 0.6]).tolist() == [
        False,
        False,
        True,
        False,
        False,
    ]
    # A NaN time never drops a row.
    assert not abandoned_rows(["a", "a"], [float("nan"), 1.0]).any()


def test_a_clock_set_back_between_sessions_loses_no_resumed_row(
    tmp_path: Path, monkeypatch
) -> None:
    exp = str(tmp_path / "exp")
    first = ResultsWriter(exp, max_t=10, flush_s=0)
    for epoch in range(1, 6):
        _report(first, "t1", epoch, 0.5 + 0.09 * epoch)
    first.flush()  # the driver is killed here
    behind = time.time() - 3600  # an hour behind
    stamps = iter([behind + 0.01 * k for k in range(1000)])
    monkeypatch.setattr(time, "time", lambda: next(stamps))
    again = ResultsWriter(exp, max_t=10, flush_s=0)
    _report(again, "t1", 3, 0.7)  # resumed from the epoch-2 checkpoint
    _report(again, "t1", 4, 0.75)
    again.end_trial("t1", error=False)
    again.close()
    epochs = read_epochs(exp)
    assert epochs["iteration"].tolist() == [1, 2, 3, 4]
    assert epochs["val_acc"].tolist()[2:] == [0.7, 0.75]

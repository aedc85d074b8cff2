"""A trial that ended without reporting an epoch (it failed building its model, or in
reset_config on a reused actor) holds the config it was given: the callback passes
Tune's ``trial.config`` to the writer, the trial table stores it, and the readers
(read_trials, trial_table, SweepOutcome.from_path) and a resumed writer keep it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq

from regtune.platform.results import SweepOutcome, read_trials
from regtune.platform.results.callback import ResultsCallback
from regtune.platform.results.files import locate
from regtune.platform.results.read import load_trial_states, read_epochs
from regtune.platform.results.trials import TrialState, trial_frame, trial_table
from tests.platform.results.conftest import tune_result
from tests.platform.results.test_store import _config, _metrics, _writer


def _store(exp: str) -> None:
    """t1 runs 3 epochs at l2 1e-4; t2 fails before its first epoch, given l2 1e-3."""
    w = _writer(exp)
    for i in (1, 2, 3):
        w.add("t1", tune_result(i, _config(1e-4), **_metrics(0.5 + 0.1 * i)))
    w.end_trial("t1", error=False, config=_config(1e-4))
    w.end_trial("t2", error=True, config=_config(1e-3))
    w.close()


def test_the_callback_stores_the_config_tune_gave_a_trial_that_reported_no_epoch(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "exp")
    callback = ResultsCallback(exp, max_t=3, spec={})
    callback.setup()
    failed = SimpleNamespace(trial_id="t2", config=_config(1e-3), checkpoint=None, status="ERROR")
    ended = SimpleNamespace(
        trial_id="t3", config=_config(0.0), checkpoint=None, status="TERMINATED"
    )
    callback.on_trial_error(0, [failed, ended], failed)
    callback.on_trial_complete(0, [failed, ended], ended)
    callback.on_experiment_end([failed, ended])
    rows = {r["trial_id"]: r for r in pq.read_table(locate(exp).trials).to_pylist()}
    assert rows["t2"]["status"] == "error"
    assert rows["t2"]["config.penalties.l2"] == 1e-3
    assert rows["t3"]["config.penalties.l2"] == 0.0


def test_read_trials_gives_a_trial_without_epochs_its_stored_config(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _store(exp)
    table = read_trials(exp).set_index("trial_id")
    assert table.loc["t2", "status"] == "error"
    assert table.loc["t2", "iterations"] == 0
    assert table.loc["t2", "config.penalties.l2"] == 1e-3
    assert table.loc["t2", "config.model.width"] == 32
    assert table.loc["t1", "config.penalties.l2"] == 1e-4  # its rows' config
    assert pd.isna(table.loc["t2", "last.val_acc"])


def test_the_stored_states_hold_the_config_and_the_rows_win(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _store(exp)
    states = load_trial_states(locate(exp)).states
    assert states["t2"].config is not None
    assert states["t2"].config["config.penalties.l2"] == 1e-3
    # A stored config that disagrees with a trial's rows (PBT changed it) loses to them.
    states["t1"] = TrialState(states["t1"].status, None, {"config.penalties.l2": 9.0})
    epochs = read_epochs(exp)
    frame = trial_frame(epochs, states, experiment="store").set_index("trial_id")
    assert frame.loc["t1", "config.penalties.l2"] == 1e-4
    rows = {r["trial_id"]: r for r in trial_table(epochs, states, experiment="store")}
    assert rows["t2"]["config.penalties.l2"] == 1e-3
    assert rows["t2"]["config.features"] == rows["t1"]["config.features"]  # as stored
    assert rows["t1"]["config.penalties.l2"] == 1e-4
    # No trial with rows at all: the stored configs still show.
    alone = trial_frame(epochs.iloc[:0], {"t2": states["t2"]}, experiment="store")
    assert alone["config.penalties.l2"].tolist() == [1e-3]
    assert alone["iterations"].tolist() == [0]


def test_the_outcome_rebuilt_from_the_store_names_the_failed_trials_config(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    _store(exp)
    outcome = SweepOutcome.from_path(exp)
    failed = next(t for t in outcome.trials if t.trial_id == "t2")
    assert failed.status == "error"
    assert failed.config["penalties"]["l2"] == 1e-3
    assert failed.params == {"penalties.l2": 1e-3}


def test_a_resumed_writer_keeps_the_stored_config_of_a_trial_without_epochs(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    _store(exp)
    w = _writer(exp)
    w.add("t3", tune_result(1, _config(0.0), **_metrics(0.6)))
    w.close()
    rows = {r["trial_id"]: r for r in pq.read_table(locate(exp).trials).to_pylist()}
    assert rows["t2"]["config.penalties.l2"] == 1e-3
    assert rows["t3"]["config.penalties.l2"] == 0.0


def test_trials_ending_before_the_writer_opened_keep_their_status(tmp_path: Path) -> None:
    """end_trial before anything opened the writer: its first flush opened it and
    replaced the states set so far with the stored ones, so t1 was stored 'running'."""
    exp = str(tmp_path / "store")
    w = _writer(exp)
    w.end_trial("t1", error=True, config=_config(1e-4))
    w.checkpoint("t2", None)
    w.end_trial("t2", error=True, config=_config(1e-3))
    w.close()
    rows = {r["trial_id"]: r for r in pq.read_table(locate(exp).trials).to_pylist()}
    assert {tid: r["status"] for tid, r in rows.items()} == {"t1": "error", "t2": "error"}
    assert rows["t1"]["config.penalties.l2"] == 1e-4

"""regtune analyze counts and names the trials that reported no epoch (failed before their
first report, not started): the trial table holds them, the epoch rows do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtune.errors import DataError
from regtune.platform.analysis.load import ENDED_ERRORS, MSG_ENDED_EMPTY, load_experiment
from regtune.platform.analysis.run import analyze_experiment, analyze_tables
from regtune.platform.results.trials import NOT_STARTED, RUNNING, TrialState
from tests.platform.cli.invoke import invoke
from tests.platform.results.conftest import tune_result
from tests.platform.results.test_no_epoch_config import _store
from tests.platform.results.test_store import _config, _metrics, _writer


def test_analyze_text_counts_and_names_a_trial_that_failed_before_its_first_epoch(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    _store(exp)  # t1: 3 epochs, finished; t2: error, no epoch row
    result = invoke("analyze", exp)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "2 trials; objective" in text
    assert "t2 (error)" in text
    assert "1 of 2 trials failed (status error)" in text
    assert "best trial: t1" in text


def test_analyze_json_counts_and_lists_a_trial_that_failed_before_its_first_epoch(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    _store(exp)
    result = invoke("analyze", exp, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["experiments"][0]
    assert data["n_trials"] == 2
    assert data["n_failed"] == 1
    assert data["failed"] == ["t2"]
    assert data["no_epochs"] == {"t2": "error"}
    assert data["verdict"][0].startswith("1 of 2 trials failed (status error)")
    # No metrics: t2 is in no path, front, best or diagnosis.
    assert data["best"]["trial_id"] == "t1"
    assert [t["trial_id"] for t in data["front"]["trials"]] == ["t1"]
    assert all(row["n_trials"] <= 1 for row in data["paths"]["penalties.l2"])
    examples = data["diagnosis"]["examples"].values()
    assert {e["trial_id"] for listed in examples for e in listed} == {"t1"}


def test_a_trial_not_started_is_counted_but_not_failed_and_both_reads_agree(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    w = _writer(exp)
    for i in (1, 2, 3):
        w.add("t1", tune_result(i, _config(1e-4), **_metrics(0.5 + 0.1 * i)))
    w.end_trial("t1", error=False, config=_config(1e-4))
    w.end_trial("t2", error=True, config=_config(1e-3))
    w.close(final={"t3": TrialState(NOT_STARTED)})
    projected = analyze_experiment(exp)
    assert projected.n_trials == 3
    assert projected.no_epochs == {"t2": "error", "t3": NOT_STARTED}
    assert projected.failed == ["t2"]
    assert list(projected.summary.index) == ["t1"]
    assert projected.verdict[0].startswith("1 of 3 trials failed (status error)")
    full = load_experiment(exp)
    whole = analyze_tables(full.epochs, trials=full.trials, spec=full.spec)
    assert whole.no_epochs == projected.no_epochs
    assert whole.n_trials == 3


def test_a_trial_whose_every_epoch_was_lost_is_incomplete_not_without_epochs(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    _store(exp)
    full = load_experiment(exp)
    trials = full.trials.copy()
    trials.loc[len(trials)] = {"trial_id": "t9", "status": "finished", "degenerate": False}
    analysis = analyze_tables(
        full.epochs, trials=trials, spec=full.spec, incomplete={"t9": "all 3 epochs"}
    )
    assert analysis.no_epochs == {"t2": "error"}
    assert analysis.incomplete == {"t9": "all 3 epochs"}
    assert analysis.n_trials == 3


def test_every_trial_failed_one_before_its_first_epoch(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    w = _writer(exp)
    for i in (1, 2):
        w.add("t1", tune_result(i, _config(1e-4), **_metrics(0.5 + 0.1 * i)))
    w.end_trial("t1", error=True, config=_config(1e-4))
    w.end_trial("t2", error=True, config=_config(1e-3))
    w.close()
    analysis = analyze_experiment(exp)
    assert analysis.n_failed == 2
    assert analysis.verdict[0].startswith("every trial failed (2 of 2, status error)")
    assert analysis.best is None
    assert analysis.no_best_reason() == "every trial failed"


def test_every_trial_ended_before_its_first_epoch_says_so_not_wait(tmp_path: Path) -> None:
    """No epoch rows and every stored trial ended: it said "wait for its first trial
    to report", which never happens."""
    exp = str(tmp_path / "store")
    w = _writer(exp)
    w.end_trial("t1", error=True, config=_config(1e-4))
    w.end_trial("t2", error=True, config=_config(1e-3))
    w.close()
    for columns in (None, ["val_acc"]):
        with pytest.raises(DataError) as info:
            load_experiment(exp, columns=columns)
        assert str(info.value) == MSG_ENDED_EMPTY.format(
            exp=exp, n=2, states="t1 error, t2 error", errors=ENDED_ERRORS
        )
    result = invoke("analyze", exp)
    assert result.exit_code == 2, result.output
    assert "every trial ended without reporting an epoch (2 trials: t1 error" in result.output
    # A trial still running: waiting may help, as it said.
    running = str(tmp_path / "running")
    w = _writer(running)
    w.end_trial("t1", error=True, config=_config(1e-4))
    w.close(final={"t2": TrialState(RUNNING)})
    with pytest.raises(DataError, match="Wait for its first trial to report"):
        load_experiment(running)

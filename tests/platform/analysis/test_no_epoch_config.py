"""The analysis' trial table (load_experiment, reading everything) gives a trial that
failed before its first epoch the config the results store kept for it."""

from __future__ import annotations

from pathlib import Path

from regtune.platform.analysis.load import load_experiment
from tests.platform.results.test_no_epoch_config import _store


def test_a_trial_without_epochs_has_its_stored_config_in_the_analysis_table(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    _store(exp)
    trials = load_experiment(exp).trials.set_index("trial_id")
    assert trials.loc["t2", "status"] == "error"
    assert trials.loc["t2", "iterations"] == 0
    assert trials.loc["t2", "config.penalties.l2"] == 1e-3
    assert trials.loc["t1", "config.penalties.l2"] == 1e-4

"""A stored trial table that cannot be used (here: not Parquet) gives every trial the status
``unknown`` in every reader of the trial table: read_trials, trials_frame (documented as
read_trials' table, also when it reads the table itself), the sweep's outcome and the
analysis, full or projected. The rule lives in one place (read.mark_unknown)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from regtune.platform.analysis.load import load_experiment
from regtune.platform.results import ResultsWarning, SweepOutcome
from regtune.platform.results.files import locate
from regtune.platform.results.read import read_epochs, read_trials, trials_frame
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import HEALTHY, OVERFIT, write_experiment

CURVES = {"a": HEALTHY, "b": OVERFIT}
CONFIGS = {"a": {"penalties": {"l2": 1e-4}}, "b": {"penalties": {"l2": 1e-2}}}


@pytest.fixture
def exp(tmp_path: Path) -> str:
    path = tmp_path / "exp"
    write_experiment(str(path), CURVES, CONFIGS, spec=load_spec("quickstart").to_dict())
    (path / "results" / "trials.parquet").write_bytes(b"not parquet")
    return str(path)


def test_trials_frame_reading_the_table_itself_says_unknown_as_read_trials_does(
    exp: str,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultsWarning)
        table = trials_frame(locate(exp), read_epochs(exp))
    assert table["status"].tolist() == ["unknown", "unknown"]
    assert any("trials.parquet" in str(w.message) for w in caught)  # the table is named
    with pytest.warns(ResultsWarning):
        assert read_trials(exp)["status"].tolist() == ["unknown", "unknown"]


def test_every_reader_of_the_trial_table_says_unknown(exp: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultsWarning)
        outcome = SweepOutcome.from_path(exp)
    assert [t.status for t in outcome.trials] == ["unknown", "unknown"]
    for columns in (None, ["val_acc"]):
        loaded = load_experiment(exp, columns=columns)
        assert loaded.trials["status"].tolist() == ["unknown", "unknown"], columns
        assert any("unknown" in note for note in loaded.notes)

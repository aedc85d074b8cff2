"""read_store: the one read of an experiment's epoch rows and trial table behind
read_trials, the sweep's outcome and the analysis, with the trials a skipped part cost.
Real Parquet written by the results store's writer, one part then truncated."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from regtune.errors import DataError
from regtune.platform.results import ResultsWarning
from regtune.platform.results.files import locate
from regtune.platform.results.read import read_store
from tests.platform.analysis.test_load_incomplete import _split_and_truncate, _write


def test_the_skipped_part_and_the_trials_it_cost_are_returned(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _write(exp)
    part = _split_and_truncate(exp)
    (exp / "results" / "epochs" / "stray.txt").write_text("not a part")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultsWarning)
        read = read_store(locate(str(exp)), str(exp), "epoch rows")
    # Only the part can have held rows: the stray file is skipped (warned) but not listed.
    assert read.parts == [str(part)]
    assert read.lost == {"b": "epochs 6-8 of 8", "c": "epochs 1-3 of 8"}
    assert sorted(read.stored.states) == ["a", "b", "c", "d"]
    assert set(read.epochs["trial_id"].astype(str)) == {"a", "b", "c", "d"}
    assert len(read.epochs) == 4 * 8 - 6
    skipped = " ".join(str(w.message) for w in caught)
    assert "stray.txt" in skipped and str(part) in skipped
    # The caller says what was lost: read_store itself does not warn about it.
    assert "stored epochs incomplete" not in skipped


def test_nothing_skipped_loses_nothing(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _write(exp)
    read = read_store(locate(str(exp)), str(exp), "epoch rows")
    assert read.parts == [] and read.lost == {}
    assert len(read.epochs) == 4 * 8 and len(read.stored.states) == 4


def test_the_trial_table_is_left_unread_without_epochs_when_asked(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _write(exp)
    for part in (exp / "results" / "epochs").glob("part-*.parquet"):
        part.unlink()
    loc = locate(str(exp))
    assert len(read_store(loc, str(exp), "epoch rows").stored.states) == 4
    read = read_store(loc, str(exp), "epoch rows", trials_without_epochs=False)
    assert read.epochs.empty and read.stored.states == {}


def test_no_results_folder_names_what_was_read(tmp_path: Path) -> None:
    missing = tmp_path / "nosuch"
    with pytest.raises(DataError) as info:
        read_store(locate(str(missing)), str(missing), "trial table")
    message = " ".join(str(info.value).split())
    assert "no results folder; expected the trial table of a regtune sweep" in message

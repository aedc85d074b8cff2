"""A path that is not an experiment gets a message saying what it is and what exists.

Real experiment folders written by the results store's writer under a storage root.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtune.errors import DataError
from regtune.platform.cli import app
from regtune.platform.results import read_epochs, read_spec, read_trials
from tests.platform.analysis.tables import HEALTHY, write_experiment


def _storage(root: Path, names: list[str]) -> Path:
    storage = root / "store"
    for name in names:
        write_experiment(str(storage / name), {"a": HEALTHY}, {"a": {"penalties": {"l2": 1e-3}}})
    return storage


def _message(path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_epochs(str(path))
    return " ".join(str(info.value).split())


def test_missing_experiment_says_so_and_lists_the_experiments(tmp_path: Path) -> None:
    storage = _storage(tmp_path, ["alpha", "beta"])
    (storage / "not-an-experiment").mkdir()
    for read in (read_epochs, read_trials, read_spec):
        with pytest.raises(DataError) as info:
            read(str(storage / "nosuch"))  # type: ignore[operator]
        message = " ".join(str(info.value).split())
        assert "no results folder" in message
        assert f"'{storage / 'nosuch'}' does not exist" in message
        assert f"Experiments under '{storage}': alpha, beta." in message


def test_hidden_folders_are_not_listed_as_experiments(tmp_path: Path) -> None:
    """A folder whose name starts with a hidden prefix (``.``, ``_``: the store's
    ``HIDDEN_PREFIXES``) is no experiment, even when it holds a results folder."""
    from regtune.platform.results.files import HIDDEN_PREFIXES

    storage = _storage(tmp_path, ["alpha", *(f"{p}stash" for p in HIDDEN_PREFIXES)])
    message = _message(storage / "nosuch")
    assert f"Experiments under '{storage}': alpha." in message
    assert "stash" not in message


def test_the_experiment_list_is_cut(tmp_path: Path) -> None:
    from regtune.platform.results.read import LISTED_EXPERIMENTS

    names = [f"e{i:02d}" for i in range(LISTED_EXPERIMENTS + 3)]
    storage = _storage(tmp_path, names)
    message = _message(storage / "nosuch")
    shown = ", ".join(names[:LISTED_EXPERIMENTS])
    assert f"{shown} (and 3 more)" in message
    assert names[-1] not in message


def test_a_file_an_empty_folder_and_the_results_folder_are_told_apart(tmp_path: Path) -> None:
    storage = _storage(tmp_path, ["alpha"])
    afile = storage / "notes.txt"
    afile.write_text("hello")
    empty = storage / "empty"
    empty.mkdir()
    missing = _message(storage / "nosuch")
    as_file = _message(afile)
    as_empty = _message(empty)
    as_results = _message(storage / "alpha" / "results")
    assert f"'{afile}' is a file, not an experiment directory" in as_file
    assert f"'{empty}' exists but is not an experiment directory" in as_empty
    assert f"pass its parent, '{storage / 'alpha'}'" in as_results
    assert "Experiments under" in as_file and "alpha" in as_file
    assert "Experiments under" in as_empty and "alpha" in as_empty
    assert len({missing, as_file, as_empty, as_results}) == 4


def test_a_storage_root_names_its_experiments(tmp_path: Path) -> None:
    storage = _storage(tmp_path, ["alpha", "beta"])
    message = _message(storage)
    assert "It holds experiments: alpha, beta; pass one of them" in message
    assert f"'{storage / 'alpha'}'" in message


def test_no_experiment_and_no_root(tmp_path: Path) -> None:
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    assert f"No experiment is under '{lonely}'" in _message(lonely / "nosuch")
    gone = tmp_path / "gone"
    assert f"'{gone}' does not exist either" in _message(gone / "nosuch")


def test_analyze_with_storage_lists_the_experiments(tmp_path: Path) -> None:
    storage = _storage(tmp_path, ["alpha", "beta"])
    result = CliRunner().invoke(app, ["analyze", "nosuch", "--storage", str(storage)])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "does not exist" in output and "alpha, beta" in output

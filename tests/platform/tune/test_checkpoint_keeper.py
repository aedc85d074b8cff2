"""CheckpointKeeper's test for "does the stored experiment state still reference this folder"."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from ray.train import Checkpoint
from ray.tune.utils.serialization import TuneFunctionEncoder

from regtune.platform.tune.checkpoint_keeper import CheckpointKeeper, mentions


def _state_text(tracked: list[str]) -> str:
    """An experiment state as Tune writes it: Checkpoint objects are not JSON,
    so Tune's encoder cloudpickles and hex-encodes them, and the run metadata
    is a JSON string inside the JSON."""
    metadata = json.dumps(
        {"checkpoints": [Checkpoint(path=p) for p in tracked]}, cls=TuneFunctionEncoder
    )
    return json.dumps({"trial_data": [["{}", metadata]]})


def test_a_tracked_checkpoint_is_found_in_tunes_encoding(tmp_path: Path) -> None:
    kept, dropped = str(tmp_path / "checkpoint_000007"), str(tmp_path / "checkpoint_000005")
    text = _state_text([kept])
    assert kept not in text  # only its hex encoding is there
    assert mentions(text, kept)
    assert not mentions(text, dropped)


def test_an_untracked_folder_is_deleted_only_once_the_stored_state_drops_it(
    tmp_path: Path,
) -> None:
    old = tmp_path / "trial_a" / "checkpoint_000005"
    old.mkdir(parents=True)
    state = tmp_path / "experiment_state-2026-11-30_12-00-00.json"
    state.write_text(_state_text([str(old)]))
    keeper = CheckpointKeeper(keep=2)
    keeper._pending[str(old)] = (pafs.LocalFileSystem(), str(tmp_path))
    keeper.get_state()  # the snapshot on storage still references it: kept
    assert old.is_dir() and keeper.pending == [str(old)]
    # A newer snapshot (by its name, as Tune picks) without it.
    (tmp_path / "experiment_state-2026-11-30_12-00-02.json").write_text(_state_text([]))
    keeper.get_state()
    assert not old.exists() and keeper.pending == []


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep must be >= 1"):
        CheckpointKeeper(keep=0)

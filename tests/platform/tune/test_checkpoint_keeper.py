"""CheckpointKeeper's tests, on real files: "does the stored experiment state still
reference this folder", and "which checkpoints have their epoch in the results store"."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import torch
from ray.train import Checkpoint
from ray.tune.utils.serialization import TuneFunctionEncoder

from regtune.errors import DataError
from regtune.platform.results.writer import ResultsWriter
from regtune.platform.tune.checkpoint_keeper import (
    CheckpointKeeper,
    mentions,
    stored_losses,
    usable_checkpoints,
)
from regtune.platform.tune.trial_files import STATE_DIR, list_checkpoints
from regtune.trainables.checkpoint import TENSORS_FILE, save_tree

FS = pafs.LocalFileSystem()


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


def _store(exp: Path, rows: dict[str, list[float]]) -> None:
    """Store each trial's epochs 1.. with these training losses, as a sweep does."""
    writer = ResultsWriter(str(exp), max_t=10, flush_s=0)
    for trial_id, losses in rows.items():
        for epoch, loss in enumerate(losses, start=1):
            writer.add(trial_id, {"training_iteration": epoch, "train_loss": loss, "val_acc": 0.5})


def _checkpoint(trial: Path, index: int, losses: list[float]) -> Path:
    """A checkpoint folder as the trainer writes it: its epoch and the history up to it."""
    folder = trial / f"checkpoint_{index:06d}"
    history = [{"epoch": float(e), "train_loss": x} for e, x in enumerate(losses, start=1)]
    tree = {"epoch": len(losses), "history": history, "w": torch.ones(8)}
    save_tree(tree, folder / STATE_DIR)
    return folder


def test_a_checkpoint_is_usable_only_when_the_store_holds_its_own_epoch(tmp_path: Path) -> None:
    exp, trial = tmp_path / "exp", tmp_path / "exp" / "trial_a"
    _store(exp, {"a": [0.9, 0.8, 0.7], "b": [0.5]})
    _checkpoint(trial, 0, [0.9, 0.8])  # epoch 2, stored: usable
    _checkpoint(trial, 1, [0.9, 0.8, 0.65])  # epoch 3 of another lineage (PBT)
    _checkpoint(trial, 2, [0.9, 0.8, 0.7, 0.6])  # epoch 4: reported, never stored
    torn = _checkpoint(trial, 3, [0.9, 0.8, 0.7])  # epoch 3, but cut short by the kill
    (torn / STATE_DIR / TENSORS_FILE).write_bytes(b"\x00" * 4)
    stored = stored_losses(FS, str(exp))
    assert stored == {"a": {1: 0.9, 2: 0.8, 3: 0.7}, "b": {1: 0.5}}
    on_disk = list_checkpoints(FS, str(trial))
    usable = usable_checkpoints(FS, on_disk, stored["a"])
    assert [(c.index, c.epoch) for c in usable] == [(0, 2)]
    # Nothing stored for the trial: none is usable (it starts over).
    assert usable_checkpoints(FS, on_disk, {}) == []


def test_the_latest_stored_row_of_an_epoch_decides_and_nan_matches_nan(tmp_path: Path) -> None:
    exp, trial = tmp_path / "exp", tmp_path / "exp" / "trial_a"
    _store(exp, {"a": [0.9, 0.8]})
    # A rerun stored epoch 2 again, from another lineage: its row is the one read.
    _store(exp, {"a": [0.9, 0.75]})
    _checkpoint(trial, 0, [0.9, 0.8])
    _checkpoint(trial, 1, [0.9, 0.75])
    stored = stored_losses(FS, str(exp))["a"]
    assert stored == {1: 0.9, 2: 0.75}
    usable = usable_checkpoints(FS, list_checkpoints(FS, str(trial)), stored)
    assert [c.index for c in usable] == [1]
    # A diverged run's NaN loss is stored as NaN and still ties its checkpoint.
    _store(exp, {"a": [0.9, 0.75, math.nan]})
    _checkpoint(trial, 2, [0.9, 0.75, math.nan])
    stored = stored_losses(FS, str(exp))["a"]
    usable = usable_checkpoints(FS, list_checkpoints(FS, str(trial)), stored)
    assert [c.index for c in usable] == [1, 2]


def test_stored_losses_skips_what_the_store_skips_and_refuses_another_version(
    tmp_path: Path,
) -> None:
    exp = tmp_path / "exp"
    assert stored_losses(FS, str(exp)) == {}  # no results folder yet
    _store(exp, {"a": [0.9]})
    epochs = exp / "results" / "epochs"
    (epochs / "notes.txt").write_text("not a part")
    (epochs / "part-0-x-000001.parquet").write_bytes(b"not parquet")
    assert stored_losses(FS, str(exp)) == {"a": {1: 0.9}}  # skipped, silently
    (part,) = [p for p in epochs.glob("part-*.parquet") if p.stat().st_size > 20]
    table = pq.read_table(part)
    meta = dict(table.schema.metadata or {})
    meta[b"regtune.results.schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), epochs / "part-9-y-000001.parquet")
    with pytest.raises(DataError, match="99"):
        stored_losses(FS, str(exp))

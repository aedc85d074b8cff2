"""Which checkpoints of a trial are complete on disk (real regtune checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import torch

from regtune.platform.tune.trial_files import (
    STATE_DIR,
    checkpoint_epoch,
    list_checkpoints,
    newest_complete,
    reported_rows,
)
from regtune.trainables.checkpoint import TENSORS_FILE, TREE_FILE, save_tree

FS = pafs.LocalFileSystem()


def _checkpoint(trial: Path, index: int, epoch: int) -> Path:
    folder = trial / f"checkpoint_{index:06d}"
    save_tree({"epoch": epoch, "w": torch.ones(64)}, folder / STATE_DIR)
    return folder


def test_complete_checkpoints_and_their_epochs(tmp_path: Path) -> None:
    trial = tmp_path / "trial_a"
    for index, epoch in ((0, 2), (1, 4), (2, 6)):
        _checkpoint(trial, index, epoch)
    found = list_checkpoints(FS, str(trial))
    assert [(c.index, c.epoch) for c in found] == [(0, 2), (1, 4), (2, 6)]
    newest = newest_complete(found)
    assert newest is not None and newest.epoch == 6 and newest.path.endswith("checkpoint_000002")


def test_incomplete_checkpoints_do_not_count(tmp_path: Path) -> None:
    trial = tmp_path / "trial_a"
    _checkpoint(trial, 0, 2)
    # Killed mid-copy: the tensors file is cut short.
    cut = _checkpoint(trial, 1, 4)
    tensors = cut / STATE_DIR / TENSORS_FILE
    tensors.write_bytes(tensors.read_bytes()[:-10])
    # Killed before the state file was copied.
    (_checkpoint(trial, 2, 6) / STATE_DIR / TREE_FILE).unlink()
    # A torn state file.
    torn = _checkpoint(trial, 3, 8) / STATE_DIR / TREE_FILE
    torn.write_text(torn.read_text()[:20])
    # An empty folder Tune had just created.
    (trial / "checkpoint_000004").mkdir()
    found = list_checkpoints(FS, str(trial))
    assert [(c.index, c.complete) for c in found] == [
        (0, True),
        (1, False),
        (2, False),
        (3, False),
        (4, False),
    ]
    newest = newest_complete(found)
    assert newest is not None and newest.index == 0
    assert checkpoint_epoch(FS, str(cut)) is None


def test_no_trial_folder_means_no_checkpoints(tmp_path: Path) -> None:
    assert list_checkpoints(FS, str(tmp_path / "missing")) == []
    assert newest_complete([]) is None


def test_reported_rows_by_epoch_last_report_wins(tmp_path: Path) -> None:
    rows = [
        {"training_iteration": 1, "val_acc": 0.5},
        {"training_iteration": 2, "val_acc": 0.6},
        {"training_iteration": 2, "val_acc": 0.7},  # rerun after a restore
    ]
    text = "\n".join(json.dumps(r) for r in rows) + '\n{"training_iteration": 3, "val'
    (tmp_path / "result.json").write_text(text)
    got = reported_rows(FS, str(tmp_path))
    assert sorted(got) == [1, 2]
    assert got[2]["val_acc"] == 0.7

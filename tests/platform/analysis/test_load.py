"""The analysis reader: full read (the store's readers) and column projection agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regtune.errors import DataError
from regtune.platform.analysis.load import load_experiment, stored_columns
from regtune.platform.results import ResultsWriter
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import HEALTHY, OVERFIT, write_experiment


@pytest.fixture(scope="module")
def exp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("load") / "two"
    configs = {"a": {"penalties": {"l2": 1e-3}}, "b": {"penalties": {"l2": 1e-2}}}
    write_experiment(
        str(path), {"a": HEALTHY, "b": OVERFIT}, configs, spec=load_spec("quickstart").to_dict()
    )
    # A restored trial re-reports epoch 2 in a later part: the latest row wins. It then
    # trains on to its last epoch again (a trial that ended after epoch 2 would have
    # abandoned its later rows: tests/platform/results/test_abandoned_rows.py).
    writer = ResultsWriter(str(path), max_t=8, flush_s=0)
    for epoch in range(2, 9):
        writer.add(
            "a",
            {
                "training_iteration": epoch,
                "config": configs["a"],
                "train_loss": 0.42 if epoch == 2 else HEALTHY["train_loss"][epoch - 1],
                "val_loss": 0.5 if epoch == 2 else HEALTHY["val_loss"][epoch - 1],
                "val_acc": 0.8,
                "ece": 0.1,
                "brier": 0.1,
            },
        )
    writer.end_trial("a", error=False)
    writer.flush()
    return path


def test_projection_matches_the_full_read(exp: Path) -> None:
    full = load_experiment(str(exp))
    part = load_experiment(str(exp), columns=["train_loss", "config.penalties.l2"])
    assert list(part.epochs.columns) == [
        "trial_id",
        "iteration",
        "train_loss",
        "config.penalties.l2",
    ]
    assert len(full.epochs) == len(part.epochs) == 16
    np.testing.assert_array_equal(full.epochs["train_loss"], part.epochs["train_loss"])
    row = part.epochs[(part.epochs["trial_id"] == "a") & (part.epochs["iteration"] == 2)]
    assert row["train_loss"].tolist() == [0.42]
    assert full.spec is not None and part.spec is not None
    assert full.running == part.running == 0
    pd.testing.assert_series_equal(
        full.trials.set_index("trial_id")["degenerate"].sort_index(),
        part.trials.set_index("trial_id")["degenerate"].sort_index(),
    )


def test_corrupt_part_is_named_in_notes_and_kept(exp: Path, tmp_path: Path) -> None:
    bad = exp / "results" / "epochs" / "part-zz-broken.parquet"
    bad.write_bytes(b"garbage")
    try:
        for columns in (None, ["val_acc"]):
            loaded = load_experiment(str(exp), columns=columns)
            assert any(f"{bad}: skipped" in note for note in loaded.notes), loaded.notes
            assert len(loaded.epochs) == 16
        names, notes = stored_columns(str(exp))
        assert "val_acc" in names and any("broken" in n for n in notes)
        assert bad.exists()
    finally:
        bad.unlink()


def test_missing_experiment_and_no_spec(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no results folder"):
        load_experiment(str(tmp_path / "none"), columns=["val_acc"])
    bare = tmp_path / "bare"
    write_experiment(str(bare), {"a": HEALTHY}, {"a": {"penalties": {"l2": 1e-3}}})
    loaded = load_experiment(str(bare), columns=["val_acc"])
    assert loaded.spec is None
    assert any("no usable stored spec" in note for note in loaded.notes)

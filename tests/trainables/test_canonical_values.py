"""One canonical form for category and group values: at fit, at encode (schema and
server encoder), for groups, and for schemas stored before the rule (version 1)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from regtune.errors import DataError
from regtune.serve.predictor import RecordEncoder
from regtune.serve.protocol import Limits, RecordValidator, RequestError
from regtune.trainables import schema as schema_mod
from regtune.trainables.schema import (
    FeatureSchema,
    UnknownGroupError,
    ValueIndex,
    canonical_value,
    legacy_canonical,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1"),
        (1.0, "1"),
        (np.float32(1.0), "1"),
        (np.int64(8001), "8001"),
        (8001.0, "8001"),
        (-0.0, "0"),
        (0.5, "0.5"),
        (1e16, "1e+16"),  # beyond 2**53: not every integer is a float, repr kept
        (True, "True"),
        (np.bool_(False), "False"),
        (pd.Timestamp("2020-01-01"), "2020-01-01"),
        (pd.Timestamp("2020-01-01 10:30"), "2020-01-01T10:30:00"),
        (pd.Timestamp("2020-01-01", tz="UTC"), "2020-01-01T00:00:00+00:00"),
        (np.datetime64("2020-01-02"), "2020-01-02"),
        (dt.date(2020, 1, 3), "2020-01-03"),
        ("Zu\u0308rich", "Z\u00fcrich"),  # NFD -> NFC
        ("  Male \t", "Male"),
        ("two  words", "two  words"),
        ("1.0", "1.0"),  # a string is never read as a number here
        (None, None),
        (float("nan"), None),
        (pd.NaT, None),
    ],
)
def test_canonical_value_of_each_kind(value: Any, expected: str | None) -> None:
    assert canonical_value(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.0", "1"),
        ("8001.0", "8001"),
        ("0.5", "0.5"),
        ("1e+16", "1e+16"),
        ("2020-01-01 00:00:00", "2020-01-01"),
        ("2020-01-01 10:30:00", "2020-01-01T10:30:00"),
        ("True", "True"),
        ("Male ", "Male"),
        ("nan", "nan"),
        ("08001", "08001"),
    ],
)
def test_legacy_texts_read_as_the_value_they_were_written_from(text: str, expected: str) -> None:
    assert legacy_canonical(text) == expected


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """One column per value kind, as Parquet gives them back."""
    return pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0, 4.0],
            "zip": [8001.0, 8002.0, 8001.0, 8003.5],
            "member": [True, False, True, False],
            "day": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-01", "2020-01-02"]),
            "city": ["Zu\u0308rich", "Bern", "Z\u00fcrich ", "Bern"],
            "female": [0.0, 1.0, 1.0, 0.0],
        }
    )


@pytest.fixture(scope="module")
def fitted(table: pd.DataFrame) -> FeatureSchema:
    return FeatureSchema.fit(
        table,
        numeric=["x"],
        categorical=["zip", "member", "day", "city"],
        label="y",
        classes=["no", "yes"],
        sensitive="female",
        sensitive_values=[str(v) for v in sorted(set(table["female"]))],
    )


def test_fit_writes_vocabularies_canonically(fitted: FeatureSchema, tmp_path: Path) -> None:
    vocab = {c.name: c.vocabulary for c in fitted.categorical}
    assert vocab == {
        "zip": ("8001", "8002", "8003.5"),
        "member": ("False", "True"),
        "day": ("2020-01-01", "2020-01-02"),
        "city": ("Bern", "Z\u00fcrich"),  # NFD and NFC-with-space are one city
    }
    assert fitted.version == schema_mod.SCHEMA_VERSION
    assert fitted.group_names() == ["0", "1"]
    path = tmp_path / "schema.json"
    fitted.save(path)
    assert json.loads(path.read_text())["version"] == 2
    assert FeatureSchema.load(path) == fitted


# Each client spelling of the training table's first row (zip 8001.0, member True,
# day 2020-01-01, city Zürich) and what JSON, a CSV or a hand-typed request send.
SPELLINGS: list[dict[str, Any]] = [
    {"zip": 8001, "member": True, "day": "2020-01-01", "city": "Z\u00fcrich"},
    {"zip": 8001.0, "member": "true", "day": "2020-01-01 00:00:00", "city": "Zu\u0308rich"},
    {"zip": "8001", "member": 1, "day": "2020-01-01T00:00:00", "city": " Z\u00fcrich "},
    {"zip": "8001.0", "member": "TRUE", "day": pd.Timestamp("2020-01-01"), "city": "Z\u00fcrich\n"},
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_encodes_as_the_training_row(
    fitted: FeatureSchema, table: pd.DataFrame, spelling: dict[str, Any]
) -> None:
    trained = fitted.encode_table(table.iloc[:1])
    record = {"x": 1.0, **spelling}
    assert torch.equal(fitted.transform([record]), trained)
    assert torch.equal(RecordEncoder(fitted)([record]), trained)  # the server's encoder


def test_unseen_values_stay_unseen(fitted: FeatureSchema) -> None:
    record = {"x": 1.0, "zip": 8001.5, "member": 2, "day": "2020-01-03", "city": "Zurich"}
    encoded = fitted.transform([record])
    assert encoded[0, 1:].abs().sum() == 0.0  # every one-hot block all zeros
    assert torch.equal(RecordEncoder(fitted)([record]), encoded)


def test_server_reject_mode_and_groups_use_the_canonical_form(fitted: FeatureSchema) -> None:
    validator = RecordValidator(fitted, Limits(unknown_categories="reject"))
    good = {"x": 1.0, "zip": 8001, "member": True, "day": "2020-01-01", "city": "Zu\u0308rich"}
    for female in (1, 1.0, "1", "1.0", 0):
        body = json.dumps({"instances": [{**good, "female": female}]}).encode()
        assert validator.validate(body)[0]["female"] == female
    body = json.dumps({"instances": [{**good, "female": 2}]}).encode()
    with pytest.raises(RequestError) as info:
        validator.validate(body)
    assert info.value.status == 422 and info.value.field == "instances[0].female"
    assert info.value.allowed == "one of ['0', '1']"
    body = json.dumps({"instances": [{**good, "zip": 8004}]}).encode()
    with pytest.raises(RequestError, match=re.escape("8001, 8002, 8003.5")):
        validator.validate(body)


def test_group_codes_read_every_spelling(fitted: FeatureSchema) -> None:
    records = [{"female": v} for v in (1, 1.0, "1", "1.0", 0, 0.0, "0")]
    assert fitted.sensitive_codes(records).tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert fitted.record_groups(records, strict=True) == [1, 1, 1, 1, 0, 0, 0]
    with pytest.raises(UnknownGroupError, match=re.escape("expected one of ['0', '1']")):
        fitted.record_groups([{"female": 0.5}], strict=False)  # not a feature: refused
    assert fitted.record_groups([{}], strict=True) == [None]  # absent: the fallback


def test_a_feature_that_is_also_the_group_is_refused_only_when_groups_matter() -> None:
    table = pd.DataFrame({"x": [1.0, 2.0], "sex": ["Female", "Male"]})
    schema = FeatureSchema.fit(
        table, numeric=["x"], categorical=["sex"], label="y", classes=[0, 1],
        sensitive="sex", sensitive_values=["Female", "Male"],
    )  # fmt: skip
    assert schema.record_groups([{"sex": "Male "}, {"sex": "Other"}], strict=False) == [1, None]
    with pytest.raises(UnknownGroupError, match="record 1: sensitive attribute 'sex' is 'Other'"):
        schema.record_groups([{"sex": "Male "}, {"sex": "Other"}], strict=True)


def test_fit_refuses_group_values_that_are_one_value() -> None:
    table = pd.DataFrame({"x": [1.0, 2.0, 3.0], "sex": ["Male", "Male ", "Female"]})
    with pytest.raises(DataError) as info:
        FeatureSchema.fit(
            table, numeric=["x"], categorical=[], label="y", classes=[0, 1],
            sensitive="sex", sensitive_values=["Female", "Male", "Male "],
        )  # fmt: skip
    assert str(info.value) == schema_mod.SAME_GROUP.format(
        feature="sex", first="Male", second="Male ", canonical="Male"
    )


def _legacy(vocabulary: list[str], groups: list[str]) -> str:
    return json.dumps(
        {
            "version": 1,
            "numeric": [["x", 2.5, 1.0]],
            "categorical": [["zip", vocabulary]],
            "label": "y",
            "classes": ["no", "yes"],
            "sensitive": "female",
            "sensitive_values": groups,
            "image_shape": None,
            "bounds": None,
        }
    )


def test_a_version_1_schema_loads_and_reads_new_spellings() -> None:
    old = FeatureSchema.from_json(_legacy(["8001.0", "8002.0"], ["0.0", "1.0"]), source="m/v1")
    assert old.version == 1
    assert old.categorical[0].vocabulary == ("8001.0", "8002.0")  # kept as stored
    assert old.value_index("zip").names == ("8001", "8002")
    assert old.group_names() == ["0", "1"]
    rows = [{"x": 2.5, "zip": z, "female": f} for z, f in ((8002, 1), ("8002.0", 1.0), ("8001", 0))]
    expected = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert torch.equal(old.transform(rows), expected)
    assert torch.equal(RecordEncoder(old)(rows), expected)
    assert old.sensitive_codes(rows).tolist() == [1, 1, 0]
    again = FeatureSchema.from_json(old.to_json())
    assert again == old and json.loads(old.to_json())["version"] == 1


def test_a_stored_schema_whose_values_collapse_is_refused_naming_them() -> None:
    text = _legacy(["8001", "8001.0"], ["0.0", "1.0"])
    with pytest.raises(DataError) as info:
        FeatureSchema.from_json(text, source="reg/m/v1")
    message = str(info.value)
    assert message.startswith("reg/m/v1: feature 'zip': stored values '8001' and '8001.0'")
    assert "are one value ('8001')" in message
    with pytest.raises(DataError, match=re.escape("sensitive attribute 'female': stored values")):
        FeatureSchema.from_json(_legacy(["a"], ["1", "1.0"]), source="reg/m/v1")
    with pytest.raises(DataError, match=re.escape("expected 1 or 2")):
        FeatureSchema.from_json(text.replace('"version": 1', '"version": 3'))


def test_value_index_respelling_only_applies_to_one_kind_vocabularies() -> None:
    mixed = ValueIndex(["1", "True", "a"], legacy=False, what="f")
    assert [mixed.code(v) for v in (1, "1", True, "true", "a ")] == [0, 0, 1, None, 2]
    zips = ValueIndex(["08001", "8002"], legacy=False, what="zip")  # not all numbers
    assert [zips.code(v) for v in ("08001", 8001, "8002", 8002.0, "8002.0")] == [
        0,
        None,
        1,
        1,
        None,
    ]


def test_same_names_compares_by_canonical_value_and_position() -> None:
    from regtune.trainables.values import same_names

    assert same_names(["0", "1"], ["0.0", "1.0"])  # stored before names were canonical
    assert same_names(["<=50K", ">50K"], ["<=50K", ">50K"])
    assert same_names([" yes", "no"], ["yes", "no"])
    assert not same_names(["1", "0"], ["0", "1"])  # same classes, other ids
    assert not same_names(["0", "1"], ["0", "1", "2"])
    assert not same_names(["no", "yes"], ["<=50K", ">50K"])


def test_canonical_values_load_without_torch() -> None:
    """``regtune serve --write-config`` compares class names with these rules
    and must not import torch."""
    import subprocess
    import sys

    code = (
        "import sys; from regtune.trainables.values import same_names; "
        "assert same_names(['1.0'], ['1']); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"

"""Request validation: every bad body gets a 4xx naming the field and what is allowed."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from regtune.serve.protocol import Limits, RecordValidator, RequestError
from regtune.trainables.schema import CategoricalFeature, FeatureSchema, NumericFeature

SCHEMA = FeatureSchema(
    numeric=(NumericFeature("age", 38.0, 13.0), NumericFeature("capital-gain", 1000.0, 7000.0)),
    categorical=(
        CategoricalFeature("workclass", ("Private", "State-gov")),
        CategoricalFeature("schema", ("1", "2")),  # a name that is a pydantic attribute
    ),
    label="income",
    classes=("<=50K", ">50K"),
    sensitive="sex",
    sensitive_values=("Female", "Male"),
)
GOOD = {"age": 39, "capital-gain": 0.5, "workclass": "Private", "schema": 1}


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def refuse(validator: RecordValidator, raw: bytes) -> RequestError:
    with pytest.raises(RequestError) as info:
        validator.validate(raw)
    return info.value


def test_good_records_come_back_as_plain_dicts_that_encode_like_training() -> None:
    validator = RecordValidator(SCHEMA)
    second = {**GOOD, "age": 50.5, "sex": "Female"}
    records = validator.validate(body({"instances": [GOOD, second]}))
    assert records == [{**GOOD, "age": 39.0}, second]
    assert SCHEMA.transform(records).tolist() == SCHEMA.transform([GOOD, second]).tolist()


@pytest.mark.parametrize(
    ("raw", "status", "field", "words"),
    [
        (b'{"instances": [', 400, "body", "not valid JSON"),
        (b"[1, 2]", 422, "body", "body is a list"),
        (b'"x"', 422, "body", "expected a JSON object"),
        (body({"instances": [GOOD], "id": 1}), 422, "id", "only key allowed is 'instances'"),
        (body({"records": [GOOD]}), 422, "records", "only key allowed is 'instances'"),
        (b"{}", 422, "instances", "instances is missing"),
        (body({"instances": {}}), 422, "instances", "expected a list of 1 to"),
        (body({"instances": []}), 422, "instances", "instances is empty"),
        (body({"instances": [GOOD, 3]}), 422, "instances[1]", "expected an object"),
        (body({"instances": [{**GOOD, "agee": 3}]}), 422, "instances[0].agee", "allowed keys: age"),
        (body({"instances": [{k: v for k, v in GOOD.items() if k != "age"}]}), 422,
         "instances[0].age", "missing; expected a finite number"),
        (body({"instances": [{**GOOD, "age": "39"}]}), 422, "instances[0].age",
         "is a str ('39'); expected a finite number"),
        (body({"instances": [{**GOOD, "age": True}]}), 422, "instances[0].age", "finite number"),
        (body({"instances": [{**GOOD, "age": None}]}), 422, "instances[0].age", "is null"),
        (b'{"instances": [{"age": NaN, "capital-gain": 0, "workclass": "Private", "schema": 1}]}',
         422, "instances[0].age", "nan"),
        (b'{"instances": [{"age": 1, "capital-gain": Infinity, "workclass": "Private", '
         b'"schema": 1}]}', 422, "instances[0].capital-gain", "inf"),
        (b'{"instances": [{"age": 1e999, "capital-gain": 0, "workclass": "Private", "schema": 1}]}',
         422, "instances[0].age", "finite number"),
        (body({"instances": [{**GOOD, "workclass": None}]}), 422, "instances[0].workclass",
         "expected a category"),
        (body({"instances": [{**GOOD, "schema": [1]}]}), 422, "instances[0].schema", "a list"),
        (body({"instances": [{**GOOD, "sex": "Other"}]}), 422, "instances[0].sex", "'Female'"),
        (b"", 400, "body", "not valid JSON"),
        (b"\xff\xfe garbage", 400, "body", "not valid JSON"),
        (b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "body", "recursion limit"),
        (body({"instances": [{**GOOD, "age": 10**400}]}), 422, "instances[0].age",
         "is an int (1000000000000000000000000000000000000...); expected a finite number"),
        (body({"instances": [{**GOOD, "schema": 1e308 * 10}]}).replace(b"Infinity", b"1e999"),
         422, "instances[0].schema", "is a float (inf); expected a category"),
    ],
)  # fmt: skip
def test_bad_bodies_name_the_field_and_what_is_allowed(
    raw: bytes, status: int, field: str, words: str
) -> None:
    error = refuse(RecordValidator(SCHEMA), raw)
    assert (error.status, error.field) == (status, field)
    assert words in str(error)
    assert error.allowed
    assert error.to_json() == {"error": str(error), "field": field, "allowed": error.allowed}


def test_caps_on_body_size_and_instance_count() -> None:
    validator = RecordValidator(SCHEMA, Limits(max_body_bytes=300, max_instances=2))
    error = refuse(validator, body({"instances": [GOOD] * 3}))
    assert (error.status, error.field) == (422, "instances")
    assert "has 3 records; at most 2" in str(error)
    error = refuse(validator, body({"instances": [GOOD] * 5}))
    assert (error.status, error.field) == (413, "body")
    assert "at most 300 bytes" in str(error)


def test_unseen_categories_follow_the_schema_rule_unless_rejected() -> None:
    record = {**GOOD, "workclass": "Never-seen"}
    records = RecordValidator(SCHEMA).validate(body({"instances": [record]}))
    assert SCHEMA.transform(records)[0, 2:4].tolist() == [0.0, 0.0]
    strict = RecordValidator(SCHEMA, Limits(unknown_categories="reject"))
    error = refuse(strict, body({"instances": [record]}))
    assert (error.status, error.field) == (422, "instances[0].workclass")
    assert "expected one of Private, State-gov" in str(error)


def test_further_problems_are_counted() -> None:
    bad = {"age": "x", "capital-gain": "y", "workclass": "Private", "schema": 1}
    error = refuse(RecordValidator(SCHEMA), body({"instances": [bad, bad]}))
    assert "and 3 more problems" in str(error)


def test_a_finite_number_whose_scaled_value_overflows_float32_is_refused_by_name() -> None:
    validator = RecordValidator(SCHEMA)
    # capital-gain scales by 7000: (x - 1000) / 7000 fits float32 up to about 2.38e42.
    fine = {**GOOD, "capital-gain": 2e42}
    huge = {**GOOD, "capital-gain": 1e300}
    error = refuse(validator, body({"instances": [GOOD, huge, huge]}))
    assert (error.status, error.field) == (422, "instances[1].capital-gain")
    assert "is a float (1e+300)" in str(error)
    assert "(and 1 more problem in this request)" in str(error)
    assert error.allowed == (
        "a finite number from -2.38195e+42 to 2.38195e+42 (its scaled value (x - 1000) / 7000 "
        "must fit float32)"
    )
    for edge in (-2.38195e42, 2.38195e42):  # the bounds as printed are accepted
        validator.validate(body({"instances": [{**GOOD, "capital-gain": edge}]}))
    # The edge is the encoder's own: what passes encodes finite, a step beyond does not.
    assert torch.isfinite(SCHEMA.transform(validator.validate(body({"instances": [fine]})))).all()
    assert refuse(validator, body({"instances": [{**GOOD, "capital-gain": 2.4e42}]})).status == 422
    assert refuse(validator, body({"instances": [{**GOOD, "age": -1e40}]})).field == (
        "instances[0].age"
    )

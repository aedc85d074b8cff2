"""Request validation: every bad body gets a 4xx naming the field and what is allowed."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import torch

from regtune.serve.protocol import (
    VALUE_SHOWN,
    Limits,
    RecordValidator,
    RequestError,
    _key_colons,
    _pair_count,
    refuse_duplicate_keys,
    shown_value,
)
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
         'is a str ("39"); expected a finite number'),
        (body({"instances": [{**GOOD, "age": True}]}), 422, "instances[0].age", "finite number"),
        (body({"instances": [{**GOOD, "age": None}]}), 422, "instances[0].age", "is null"),
        (b'{"instances": [{"age": NaN, "capital-gain": 0, "workclass": "Private", "schema": 1}]}',
         422, "instances[0].age", "is a float (NaN); expected a finite number"),
        (b'{"instances": [{"age": 1, "capital-gain": Infinity, "workclass": "Private", '
         b'"schema": 1}]}', 422, "instances[0].capital-gain", "is a float (Infinity)"),
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
         422, "instances[0].schema", "is a float (Infinity); expected a category"),
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


def test_every_check_names_the_first_problem_by_record_order_and_counts_the_others() -> None:
    """The typed pass, the float32 range, unseen categories (reject) and groups each
    find problems; the first by record order is named, all of them counted."""
    strict = RecordValidator(SCHEMA, Limits(unknown_categories="reject"))
    huge, text = {**GOOD, "age": 1e300}, {**GOOD, "age": "x"}
    cases = [
        # A range problem in record 0 comes before a type problem in record 1.
        ([huge, text], "instances[0].age", 1),
        ([text, huge], "instances[0].age", 1),
        # Every unseen category and every value that is no group is counted.
        ([GOOD, {**GOOD, "workclass": "pink"}, {**GOOD, "workclass": "teal"}],
         "instances[1].workclass", 1),
        ([{**GOOD, "sex": "X"}, {**GOOD, "sex": "Y"}, GOOD], "instances[0].sex", 1),
        ([{**GOOD, "sex": "X"}, text, {**GOOD, "workclass": "pink"}], "instances[0].sex", 2),
        # Within a record the typed pass comes first; a misspelt key there is named
        # by its extra key, not before an earlier record's problem.
        ([{**huge, "workclass": None}], "instances[0].workclass", 1),
        ([{**GOOD, "sex": "X"}, {"agee": 1, **{k: v for k, v in GOOD.items() if k != "age"}}],
         "instances[0].sex", 2),
        ([text, {"agee": 1, **{k: v for k, v in GOOD.items() if k != "age"}}],
         "instances[0].age", 2),
    ]  # fmt: skip
    for records, field, more in cases:
        error = refuse(strict, body({"instances": records}))
        assert (error.status, error.field) == (422, field), (records, str(error))
        problems = "problem" if more == 1 else "problems"
        assert str(error).endswith(f"(and {more} more {problems} in this request)"), str(error)


def test_values_are_quoted_as_the_clients_json_wrote_them() -> None:
    assert [shown_value(v) for v in (None, True, "x", 1.5, ["no"], {"a": None})] == [
        "null", "true", '"x"', "1.5", '["no"]', '{"a": null}',
    ]  # fmt: skip
    assert [shown_value(v) for v in (float("nan"), float("inf"), "é")] == ["NaN", "Infinity", '"é"']
    long = shown_value("x" * 5000)
    assert len(long) == VALUE_SHOWN and long == '"' + "x" * (VALUE_SHOWN - 4) + "..."
    validator = RecordValidator(SCHEMA)
    error = refuse(validator, body({"instances": [{**GOOD, "age": True}]}))
    assert str(error).startswith("instances[0].age is a bool (true); expected")
    error = refuse(validator, body({"instances": [{**GOOD, "sex": None}]}))
    assert str(error).startswith("instances[0].sex is null; expected one of")


def test_an_unseen_category_is_quoted_short_and_the_allowed_values_as_everywhere() -> None:
    strict = RecordValidator(SCHEMA, Limits(unknown_categories="reject"))
    error = refuse(strict, body({"instances": [{**GOOD, "workclass": "x" * 5000}]}))
    assert len(str(error)) < 200, str(error)
    assert str(error) == (
        f'instances[0].workclass is "{"x" * (VALUE_SHOWN - 4)}...; '
        "expected one of Private, State-gov"
    )
    assert error.allowed == strict.allowed("workclass") == "one of Private, State-gov"


def test_a_key_twice_in_one_object_is_refused_naming_it_and_where() -> None:
    validator = RecordValidator(SCHEMA)
    record = b'"capital-gain": 0, "workclass": "Private", "schema": 1'
    cases = [
        (b'{"instances": [{"age": 39, ' + record + b', "age": 80}]}', "instances[0].age",
         'instances[0] has the key "age" twice'),
        # Written differently ("\u0061" is "a"), one key all the same.
        (b'{"instances": [{"age": 39, ' + record + rb', "\u0061ge": 80}]}', "instances[0].age",
         'instances[0] has the key "age" twice'),
        (b'{"instances": [], "instances": [{"age": 39, ' + record + b"}]}", "instances",
         'body has the key "instances" twice'),
        (b'{"instances": [{"age": 1, ' + record + b'}, {"age": 2, "age": 3, "age": 4, '
         + record + b', "schema": 2}]}', "instances[1].age",
         'instances[1] has the key "age" 3 times'),
        # Colons inside strings, and an object deeper than a record.
        (b'{"instances": [{"age": 39, "capital-gain": 0, "workclass": "a:b", "schema": "1:2", '
         b'"schema": 1}]}', "instances[0].schema", 'instances[0] has the key "schema" twice'),
        (b'{"instances": [{"age": {"v": 1, "v": 2}, ' + record + b"}]}", "instances[0].age.v",
         'instances[0].age has the key "v" twice'),
    ]  # fmt: skip
    for raw, field, words in cases:
        error = refuse(validator, raw)
        assert (error.status, error.field) == (422, field), str(error)
        assert str(error).startswith(words), str(error)
        assert error.allowed == "each key once per object"
    error = refuse(validator, cases[3][0].replace(b'"age": 1,', b'"age": 1, "age": 1,'))
    assert (error.field, error.status) == ("instances[0].age", 422)
    assert str(error).endswith("(and 2 more problems in this request)"), str(error)
    # A body checked without its parsed form (the feedback route's) is checked alike.
    with pytest.raises(RequestError, match='body has the key "request_id" twice') as info:
        refuse_duplicate_keys(b'{"request_id": "a", "labels": ["no"], "request_id": "b"}')
    assert info.value.field == "request_id"
    # Colons in strings, escaped ("\u003a") or not, are no repeated key.
    colons = rb'{"age": 1, "capital-gain": 0, "workclass": "12:30", "schema": "a\u003ab"}'
    records = validator.validate(b'{"instances": [' + colons + b", " + body(GOOD) + b"]}")
    assert (records[0]["workclass"], records[0]["schema"]) == ("12:30", "a:b")


def test_the_colon_count_shortcut_never_misses_a_repeated_key() -> None:
    """Random bodies with and without repeated keys, colons in keys and values (also
    escaped: "\\u003a" is ":"), nested objects: the check given the parsed body agrees
    with a full look at the text."""
    rng = random.Random(0)
    # Strings as JSON text writes them in a body.
    strings = ['"a"', '"b"', '"a:b"', '":"', r'"\u003a"', '"c"', '"a :b"', r'"\":"']
    colons = [": ", ":", " : ", "\n:\t", "\r\n :"]

    def value(depth: int) -> str:
        kind = rng.randrange(5 if depth < 2 else 3)
        if kind == 0:
            return str(rng.randrange(100))
        if kind in (1, 2):
            return rng.choice(strings)
        if kind == 3:
            return "[" + ", ".join(value(depth + 1) for _ in range(rng.randrange(3))) + "]"
        return obj(depth + 1)

    def obj(depth: int) -> str:
        keys = [rng.choice(strings) for _ in range(rng.randrange(4))]
        return "{" + ", ".join(f"{k}{rng.choice(colons)}{value(depth)}" for k in keys) + "}"

    seen = {True: 0, False: 0}
    shortcut = 0  # bodies cleared by counting colons alone
    for _ in range(400):
        records = "[" + ", ".join(obj(1) for _ in range(rng.randrange(4))) + "]"
        raw = ('{"instances": ' + records + "}").encode()
        keys_repeat = False
        try:
            json.loads(raw, object_pairs_hook=_refuse_repeats)
        except KeyError:
            keys_repeat = True
        seen[keys_repeat] += 1
        parsed = json.loads(raw)
        shortcut += _key_colons(raw) == _pair_count(parsed)
        try:
            refuse_duplicate_keys(raw, parsed)
        except RequestError:
            assert keys_repeat, raw
        else:
            assert not keys_repeat, raw
    assert min(seen.values()) > 50 and shortcut > 50, (seen, shortcut)


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise KeyError
    return dict(pairs)


def test_a_byte_order_mark_is_named() -> None:
    error = refuse(RecordValidator(SCHEMA), b"\xef\xbb\xbf" + body({"instances": [GOOD]}))
    assert (error.status, error.field) == (400, "body")
    assert "starts with a UTF-8 byte order mark" in str(error)


def test_a_clients_long_key_is_cut_like_a_value_wherever_it_is_named() -> None:
    """A 200,000-character unknown key made a 400 KB refusal (echoed whole twice)."""
    long = "k" * 200_000
    cut = f"{'k' * (VALUE_SHOWN - 3)}..."
    good, key = body(GOOD)[1:-1], body(long)
    cases = [
        # An unknown feature: the message and the field.
        (body({"instances": [{**GOOD, long: 1}]}), f"instances[0].{cut}"),
        # An unknown top-level key.
        (body({"instances": [GOOD], long: 1}), cut),
        # A repeated key, and a repeated key below one.
        (b'{"instances": [{%s}], %s: 1, %s: 2}' % (good, key, key), cut),
        (b'{"instances": [{%s, "sex": {%s: 1, %s: 2}}]}' % (good, key, key),
         f"instances[0].sex.{cut}"),
        (b'{"instances": [{%s, %s: {"v": 1, "v": 2}}]}' % (good, key), f"instances[0].{cut}.v"),
    ]  # fmt: skip
    for raw, field in cases:
        error = refuse(RecordValidator(SCHEMA), raw)
        assert (error.status, error.field) == (422, field), str(error)[:300]
        assert len(json.dumps(error.to_json())) < 1000, str(error)[:300]
        assert long[:VALUE_SHOWN] not in str(error)


def test_a_long_feature_name_is_named_whole() -> None:
    name = "number_of_previous_hospital_admissions_in_the_last_12_months"
    assert len(name) > VALUE_SHOWN
    schema = FeatureSchema(numeric=(NumericFeature(name, 1.0, 1.0),), categorical=(),
                           label="y", classes=("a", "b"))  # fmt: skip
    error = refuse(RecordValidator(schema), b'{"instances": [{"%s": 1, "%s": 2}]}' % (
        name.encode(), name.encode()))  # fmt: skip
    assert error.field == f"instances[0].{name}"
    error = refuse(RecordValidator(schema), body({"instances": [{name: "x"}]}))
    assert error.field == f"instances[0].{name}"

"""Serving's record encoder equals the schema's (training's) encoding bitwise; a
version's temperatures and per-group thresholds are applied by group."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from regtune.platform.registry.postprocess import PostProcessing
from regtune.platform.registry.public import LoadedModel
from regtune.serve.predictor import ModelOutputError, RecordEncoder, ServedModel
from regtune.serve.protocol import LEAVE_OUT, RecordValidator, RequestError
from regtune.trainables.schema import FeatureSchema, UnknownGroupError
from tests.serve.conftest import Registry
from tests.serve.test_protocol import GOOD, SCHEMA

if TYPE_CHECKING:
    from regtune.platform.registry import ModelVersion
    from regtune.trainables.data import Dataset


def test_encoder_equals_schema_transform_bitwise_with_unseen_categories() -> None:
    rows = [GOOD, {**GOOD, "age": 71.25, "workclass": "Never-seen", "schema": True},
            {**GOOD, "capital-gain": -3, "schema": 2}]  # fmt: skip
    assert torch.equal(RecordEncoder(SCHEMA)(rows), SCHEMA.transform(rows))


def test_encoder_equals_training_rows_on_adult(adult: Dataset) -> None:
    records = json.loads(adult.raw_test.head(500).to_json(orient="records"))
    encoded = RecordEncoder(adult.schema)(records)
    assert torch.equal(encoded, adult.schema.transform(records))
    assert torch.equal(encoded, adult.test.x[:500])


def test_a_model_with_non_finite_output_is_refused(registry: Registry) -> None:
    broken = ServedModel(registry.versions["broken"])
    records = json.loads(registry.dataset.raw_test.head(3).to_json(orient="records"))
    with pytest.raises(ModelOutputError, match="returned non-finite probabilities for 3 of 3"):
        broken.predict(records)
    good = ServedModel(registry.versions["primary"])
    probs = good.predict(records)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert [a["label"] for a in good.answers(probs)] == good.labels(probs)


def _with_post(version: ModelVersion, **fields: Any) -> ServedModel:
    post = PostProcessing(tuple(version.schema.sensitive_values), **fields)
    return ServedModel(dataclasses.replace(version, postprocessing=post))


def test_thresholds_decide_by_group_and_unknown_groups_take_the_arg_max(
    registry: Registry,
) -> None:
    records = json.loads(registry.dataset.raw_test.head(400).to_json(orient="records"))
    plain = ServedModel(registry.versions["primary"])
    served = _with_post(registry.versions["primary"], thresholds=(0.2, 0.6))
    groups = served.groups(records)
    assert groups is not None and set(groups) == {0, 1}
    probs = served.predict(records)
    np.testing.assert_array_equal(probs, plain.predict(records))  # thresholds only: same probs
    codes = np.array(groups)
    expected = (probs[:, 1] >= np.where(codes == 0, 0.2, 0.6)).astype(int)
    labels = [a["label"] for a in served.answers(probs, groups)]
    assert labels == [served.classes[i] for i in expected]
    assert labels == served.labels(probs, groups)
    assert labels != plain.labels(probs)  # the thresholds change some decisions
    # Unknown groups (None entries, or no groups at all) get the arg-max.
    unknown = [None if i % 2 else g for i, g in enumerate(groups)]
    mixed = [a["label"] for a in served.answers(probs, unknown)]
    argmax = plain.labels(probs)
    assert mixed == [argmax[i] if i % 2 else labels[i] for i in range(len(records))]
    assert [a["label"] for a in served.answers(probs)] == argmax


def test_group_temperatures_scale_each_row_and_unknown_rows_take_the_fallback(
    registry: Registry,
) -> None:
    records = json.loads(registry.dataset.raw_test.head(300).to_json(orient="records"))
    version = registry.versions["primary"]
    served = _with_post(version, temperatures=(0.5, 2.0), fallback_temperature=4.0)
    x = served.encode(records)
    groups = served.groups(records)
    assert groups is not None
    unknown = [None if i % 3 == 0 else g for i, g in enumerate(groups)]
    with torch.no_grad():
        z = version.module(x).double()
    t = torch.tensor([4.0 if g is None else (0.5, 2.0)[g] for g in unknown], dtype=torch.float64)
    expected = torch.softmax(z / t[:, None], dim=1).numpy()
    got = served.probabilities(x, unknown)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served.probabilities(x), served.probabilities(x, [None] * len(x)))
    # A positive temperature never changes the arg-max.
    np.testing.assert_array_equal(got.argmax(axis=1), z.argmax(dim=1).numpy())


def _float_groups(version: ModelVersion) -> ModelVersion:
    """``version`` as stored before canonical values: schema version 1 whose groups
    are a Parquet float column's str() texts, not a model feature, with thresholds."""
    raw = json.loads(version.schema.to_json())
    raw.update(version=1, sensitive="female", sensitive_values=["0.0", "1.0"])
    schema = FeatureSchema.from_json(json.dumps(raw))
    post = PostProcessing(("0.0", "1.0"), thresholds=(0.2, 0.6))
    return dataclasses.replace(version, schema=schema, postprocessing=post)


def _server_labels(version: ModelVersion, records: list[dict[str, Any]]) -> list[str]:
    """What the server answers: the request body through validation, groups, answers."""
    validated = RecordValidator(version.schema).validate(
        json.dumps({"instances": records}).encode()
    )
    served = ServedModel(version)
    groups = served.groups(validated)
    probs = served.probabilities(served.encode(validated), groups)
    return [a["label"] for a in served.answers(probs, groups)]


def test_server_and_python_api_read_a_float_group_spelt_any_way(registry: Registry) -> None:
    version = _float_groups(registry.versions["primary"])
    raw = registry.dataset.raw_test.head(300)
    base = json.loads(raw.drop(columns=[version.schema.label]).to_json(orient="records"))
    female = (raw["sex"] == "Female").to_numpy()
    loaded = LoadedModel(version)
    answers = []
    for spell in (float, int, lambda v: str(int(v)), str):
        records = [{**r, "female": spell(float(f))} for r, f in zip(base, female, strict=True)]
        answers.append((_server_labels(version, records), loaded.predict(records)))
    reference = answers[0][0]
    assert all(server == api == reference for server, api in answers)
    argmax = ServedModel(registry.versions["primary"]).labels(
        ServedModel(registry.versions["primary"]).predict(base)
    )
    assert reference != argmax  # the thresholds were applied, not dropped
    # Left out: both answer with the fallback (the arg-max); an unknown value: both refuse.
    assert _server_labels(version, base) == loaded.predict(base) == argmax
    bad = [{**base[0], "female": 2}]
    with pytest.raises(RequestError, match=re.escape("expected one of ['0', '1']")) as info:
        _server_labels(version, bad)
    assert info.value.status == 422 and info.value.field == "instances[0].female"
    # Not a feature: the record may leave it out, and the refusal the client
    # gets says so (the request validator's), as does the groups' own.
    assert str(info.value).endswith(LEAVE_OUT)
    with pytest.raises(RequestError, match=re.escape("expected one of ['0', '1']")) as info:
        ServedModel(version).groups(bad)
    assert str(info.value).endswith(LEAVE_OUT)
    with pytest.raises(UnknownGroupError, match=re.escape("expected one of ['0', '1']")):
        loaded.predict(bad)


def test_an_unknown_group_that_is_a_feature_is_refused_by_both_when_groups_matter(
    registry: Registry,
) -> None:
    version = registry.versions["primary"]
    assert version.schema.sensitive == "sex" and "sex" in version.schema.input_names()
    post = PostProcessing(tuple(version.schema.sensitive_values), thresholds=(0.2, 0.6))
    with_post = dataclasses.replace(version, postprocessing=post)
    raw = registry.dataset.raw_test.head(50).drop(columns=[version.schema.label])
    records = json.loads(raw.to_json(orient="records"))
    spaced = [{**r, "sex": f" {r['sex']} "} for r in records]
    assert _server_labels(with_post, spaced) == LoadedModel(with_post).predict(spaced)
    assert LoadedModel(with_post).predict(spaced) == LoadedModel(with_post).predict(records)
    other = [*records[:3], {**records[3], "sex": "Other"}]
    with pytest.raises(RequestError) as info:
        _server_labels(with_post, other)
    assert info.value.status == 422 and info.value.field == "instances[3].sex"
    # A feature cannot be left out, so the refusal does not offer it ...
    assert "leave it out" not in str(info.value)
    # ... and a record without it is refused as a missing feature.
    missing = [{k: v for k, v in records[0].items() if k != "sex"}]
    with pytest.raises(RequestError, match=re.escape("instances[0].sex")) as info:
        _server_labels(with_post, missing)
    assert info.value.status == 422 and "missing" in str(info.value)
    with pytest.raises(UnknownGroupError, match="record 3: sensitive attribute 'sex' is 'Other'"):
        LoadedModel(with_post).predict(other)
    # Without post-processing an unseen category of a feature is answered (all-zero block).
    assert len(_server_labels(version, other)) == len(LoadedModel(version).predict(other)) == 4


def test_http_answers_other_spellings_as_the_python_api_answers_the_stored_ones(
    registry: Registry,
) -> None:
    """Through the project's HTTP app (ASGI, no new Serve instance), with unseen
    categories refused: values with outer whitespace are the stored values."""
    import httpx

    from tests.serve.test_http import PREDICT, make, run
    from tests.serve.test_service import raw_records

    records = raw_records(registry, 20)
    text = [name for name in ("sex", "workclass", "race") if name in records[0]]
    assert text  # adult's categories are ASCII: NFD is checked in test_canonical_values
    spelt = [{**r, **{k: f" {r[k]}\t" for k in text}} for r in records]
    service, _ = make(registry, unknown_categories="reject")

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.post(PREDICT, json={"instances": rows}) for rows in (records, spelt)]

    stored, other = run(service, scenario)
    assert stored.status_code == other.status_code == 200, other.text
    expected = LoadedModel(registry.versions["primary"]).predict_proba(records)
    for reply in (stored, other):
        got = [[p["probabilities"][c] for c in service.primary.classes] for p in
               reply.json()["predictions"]]  # fmt: skip
        np.testing.assert_allclose(got, expected, rtol=1e-6)

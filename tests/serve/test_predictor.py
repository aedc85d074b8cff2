"""Serving's record encoder equals the schema's (training's) encoding bitwise; a
version's temperatures and per-group thresholds are applied by group."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from regtune.platform.registry.postprocess import PostProcessing
from regtune.serve.predictor import ModelOutputError, RecordEncoder, ServedModel
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

"""Serving's record encoder equals the schema's (training's) encoding bitwise."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from regtune.serve.predictor import ModelOutputError, RecordEncoder, ServedModel
from tests.serve.conftest import Registry
from tests.serve.test_protocol import GOOD, SCHEMA

if TYPE_CHECKING:
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

"""``regtune.load().predict`` refuses non-finite probabilities as the server does.

Before: a version whose module answers NaN (weights that diverged) was answered
by ``predict`` with a label (the arg-max over NaN, class 0) and by
``predict_proba`` with NaN rows, where ``regtune serve`` answers 500 "model
fault: model NAME:N returned non-finite probabilities ..." for the same records.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from regtune.platform.registry import ModelVersion
from regtune.platform.registry.public import NON_FINITE, LoadedModel, ModelOutputError
from regtune.trainables.loop import RunResult


def _records(run: RunResult, n: int) -> list[dict[str, object]]:
    raw = run.dataset.raw_test.head(n)
    label = run.dataset.schema.label
    return json.loads(raw.drop(columns=[label]).to_json(orient="records"))


def _broken(version: ModelVersion) -> ModelVersion:
    """``version`` with every weight NaN (what a diverged training run leaves)."""
    module = copy.deepcopy(version.module)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.fill_(float("nan"))
    return dataclasses.replace(version, module=module)


def test_predict_refuses_nan_probabilities_in_the_servers_words(
    tiny_run: RunResult, tiny_version: ModelVersion
) -> None:
    from regtune.serve.predictor import ModelOutputError as ServedError
    from regtune.serve.predictor import ServedModel

    broken = _broken(tiny_version)
    records = _records(tiny_run, 3)
    loaded = LoadedModel(broken)
    expected = NON_FINITE.format(ref="tiny:1", n=3, total=3)
    for answer in (loaded.predict, loaded.predict_proba):
        with pytest.raises(ModelOutputError) as refused:
            answer(records)
        assert str(refused.value) == expected
    with pytest.raises(ServedError) as served:
        ServedModel(broken).predict(records)
    assert str(served.value) == expected  # the server's 500 says the same


def test_probabilities_name_how_many_rows_are_not_finite(
    tiny_run: RunResult, tiny_version: ModelVersion
) -> None:
    loaded = LoadedModel(tiny_version)
    x = loaded.schema.transform(_records(tiny_run, 2))
    probs = loaded.probabilities(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    x[1, 0] = float("inf")  # what an input beyond float32 becomes
    with pytest.raises(
        ModelOutputError,
        match=r"^model tiny:1 returned non-finite probabilities for 1 of 2 records$",
    ):
        loaded.probabilities(x)


def test_a_healthy_version_answers_as_before(
    tiny_run: RunResult, tiny_version: ModelVersion
) -> None:
    loaded = LoadedModel(tiny_version)
    records = _records(tiny_run, 20)
    probs = loaded.predict_proba(records)
    assert loaded.predict(records) == [loaded.classes[i] for i in probs.argmax(axis=1)]

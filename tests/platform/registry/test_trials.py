"""How promotion reads a finished sweep's trials: where the experiment is, and which
epoch's numbers go with the weights it ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtune.errors import SpecError
from regtune.platform.registry.promote import promote
from regtune.platform.registry.trials import experiment_path

NOT_LOCAL = (
    r"promotion reads experiments from a local path; {where} is on an object store: "
    r"sync the experiment locally"
)


@pytest.mark.parametrize(
    ("ref", "storage", "where"),
    [
        ("exp1", "s3://bucket/runs", "s3://bucket/runs/exp1"),
        ("exp1", "gs://bucket/runs/", "gs://bucket/runs/exp1"),
        ("s3://bucket/runs/exp1", None, "s3://bucket/runs/exp1"),
    ],
)
def test_an_experiment_on_an_object_store_is_refused_clearly(
    ref: str, storage: str | None, where: str
) -> None:
    with pytest.raises(SpecError, match=NOT_LOCAL.format(where=where)):
        experiment_path(ref, storage)


def test_promote_refuses_an_object_store_before_reading_anything(registry: str) -> None:
    with pytest.raises(SpecError, match=NOT_LOCAL.format(where="s3://bucket/runs/exp1")):
        promote("exp1", name="m", storage="s3://bucket/runs", root=registry)


def test_a_file_uri_names_a_local_experiment(early_experiment: Path) -> None:
    storage = early_experiment.parent
    assert experiment_path("early-sweep", f"file://{storage}") == early_experiment.resolve()
    assert experiment_path(f"file://{early_experiment}") == early_experiment.resolve()
    assert experiment_path("early-sweep", str(storage)) == early_experiment.resolve()

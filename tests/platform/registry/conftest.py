"""Fixtures of the registry tests: a small digits model trained for real, and a registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from regtune.platform.registry import ModelVersion
    from regtune.trainables.data import Dataset
    from regtune.trainables.loop import RunResult

#: A two-epoch digits MLP: trains in well under a second.
TINY_CONFIG: dict[str, Any] = {
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 32, "depth": 1},
    "training": {"epochs": 2, "batch_size": 128, "lr": 0.01, "robust_every": 0, "seed": 0},
}


def train_tiny(data: Dataset, **over: Any) -> RunResult:
    """Train ``TINY_CONFIG`` (sections merged with ``over``) on the built-in ``data``."""
    from regtune.trainables.loop import train

    config = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY_CONFIG.items()}
    config["dataset"] = data.name
    for key, value in over.items():
        config[key] = {**config.get(key, {}), **value}
    return train(config, dataset=data, device="cpu")


@pytest.fixture(scope="session")
def tiny_run(digits: Dataset) -> RunResult:
    """One trained tiny digits MLP (shared, read-only)."""
    return train_tiny(digits)


@pytest.fixture
def registry(tmp_path: Path) -> str:
    """An empty registry root."""
    return str(tmp_path / "registry")


@pytest.fixture
def tiny_version(tiny_run: RunResult, registry: str) -> ModelVersion:
    """``tiny:1`` in :func:`registry`, written by the real save_version."""
    from regtune.platform.registry import Member, save_version

    member = Member.from_model(tiny_run.config, tiny_run.model, trial_id="t0")
    return save_version("tiny", [member], tiny_run.dataset, root=registry)


#: Bucket created on the test S3 server.

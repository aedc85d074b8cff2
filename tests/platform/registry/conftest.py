"""Fixtures of the registry tests: a small digits model trained for real, a registry,
and a finished trial written as the folder Tune leaves (promotion needs no Ray)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from regtune.platform.registry import ModelVersion
    from regtune.trainables.data import Dataset
    from regtune.trainables.loop import RunResult, Trainer

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


#: A digits MLP whose validation loss is lowest at epoch 5 of 6 (lr 0.1, seed 0):
#: early stopping (patience 6, so it runs all 6) keeps epoch 5's weights.
EARLY_CONFIG: dict[str, Any] = {
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 32, "depth": 1},
    "training": {
        "epochs": 6,
        "batch_size": 128,
        "lr": 0.1,
        "robust_every": 0,
        "seed": 0,
        "early_stopping": {"metric": "val_loss", "mode": "min", "patience": 6},
    },
}


@dataclass(frozen=True)
class FinishedRun:
    """A trainer run to its end and what its last report added (``Trainer.finish``)."""

    trainer: Trainer
    final: dict[str, float]


def write_trial(experiment: Path, trial_id: str, run: FinishedRun) -> Path:
    """The files Tune leaves for a finished trial of regtune's trainable: ``params.json``,
    ``result.json`` (one row per epoch, the last with the ``finish`` metrics) and
    ``checkpoint_000000/regtune_state`` (the trainer's state after its last epoch)."""
    from regtune.platform.tune.trial_files import STATE_DIR

    folder = experiment / f"trial_{trial_id}"
    folder.mkdir(parents=True)
    config = run.trainer.config.model_dump(mode="json")
    (folder / "params.json").write_text(json.dumps(config))
    rows = [
        {**row, "training_iteration": index, "trial_id": trial_id}
        for index, row in enumerate(run.trainer.history, start=1)
    ]
    rows[-1].update(run.final)
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run.trainer.save(folder / "checkpoint_000000" / STATE_DIR)
    return folder


@pytest.fixture(scope="session")
def early_run(digits: Dataset) -> FinishedRun:
    """:data:`EARLY_CONFIG` trained to its end (shared, read-only)."""
    from regtune.trainables.loop import Trainer

    trainer = Trainer(EARLY_CONFIG, dataset=digits, device="cpu")
    while not trainer.should_stop:
        trainer.run_epoch()
    return FinishedRun(trainer, trainer.finish())


@pytest.fixture
def early_experiment(early_run: FinishedRun, tmp_path: Path) -> Path:
    """An experiment folder (under ``tmp_path/storage``) holding :func:`early_run` as
    trial ``early``."""
    experiment = tmp_path / "storage" / "early-sweep"
    write_trial(experiment, "early", early_run)
    return experiment


#: Bucket created on the test S3 server.

"""How promotion reads a finished sweep's trials: where the experiment is, and which
epoch's numbers go with the weights it ships."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from regtune.errors import SpecError
from regtune.platform.cli import app
from regtune.platform.registry import Member, build_module, load_version, registry_root
from regtune.platform.registry.evaluation import evaluate_module
from regtune.platform.registry.promote import promote
from regtune.platform.registry.trials import (
    experiment_path,
    kept_epoch,
    read_sweep_trials,
    read_weights,
)
from regtune.trainables.data import Dataset

from .conftest import FinishedRun

#: The last epoch of :data:`.conftest.EARLY_CONFIG` (early stopping keeps an earlier one: 5).
LAST = 6


def _kept(run: FinishedRun) -> int:
    """The epoch early stopping kept (checked to be before the last)."""
    best = run.trainer.early.best_epoch
    assert 1 <= best < run.trainer.epoch == LAST, (best, run.trainer.epoch)
    return best


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


def test_a_trial_counts_with_the_numbers_of_the_weights_it_ships(
    early_run: FinishedRun, early_experiment: Path, digits: Dataset
) -> None:
    history = early_run.trainer.history
    kept_at = _kept(early_run)
    kept, last = history[kept_at - 1], history[-1]
    assert kept["val_loss"] < last["val_loss"]
    (trial,) = read_sweep_trials(early_experiment)
    assert (trial.epoch, trial.checkpoint_epoch) == (kept_at, LAST)
    for key in ("val_loss", "val_acc", "train_loss", "epoch"):
        assert trial.metrics[key] == kept[key], key
    # The last report's test_* metrics are of the kept weights (Trainer.finish): kept too.
    assert trial.metrics["test_acc"] == early_run.final["test_acc"]
    # The shipped weights score exactly the numbers the trial is ranked by.
    weights = read_weights(trial)
    module = build_module([Member(config=weights.config, state=weights.state)], digits)
    scored = evaluate_module(module, digits)
    assert scored["val_loss"] == pytest.approx(trial.metrics["val_loss"], abs=1e-5)
    assert scored["test_acc"] == pytest.approx(trial.metrics["test_acc"], abs=1e-9)


def test_promotion_shows_and_records_the_kept_epoch(
    early_run: FinishedRun, early_experiment: Path
) -> None:
    kept_at = _kept(early_run)
    storage = early_experiment.parent
    result = CliRunner().invoke(
        app,
        [
            *("promote", "early-sweep", "--name", "early", "--top-k", "1"),
            *("--objective", "val_loss:min", "--storage", str(storage), "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    (member,) = payload["members"]
    assert member["epoch"] == kept_at
    version = load_version("early:1", root=registry_root(str(storage)))
    lineage = version.meta["lineage"]
    assert lineage["trial_epochs"] == {"early": kept_at}
    chosen_by = lineage["trial_objectives"]["early"]["val_loss"]
    assert member["val_loss"] == chosen_by
    assert version.metrics["val_loss"] == pytest.approx(chosen_by, abs=1e-5)


def _tree(**fairness: Any) -> dict[str, Any]:
    """A checkpoint tree's JSON part: 3 epochs, early stopping's best at epoch 3."""
    history = [
        {"epoch": 1.0, "val_acc": 0.70, "dp_diff": 0.02, "val_loss": 0.9},
        {"epoch": 2.0, "val_acc": 0.80, "dp_diff": 0.03, "val_loss": 0.8},
        {"epoch": 3.0, "val_acc": 0.85, "dp_diff": 0.09, "val_loss": 0.7},
    ]
    config = {"dataset": "adult", "penalties": {"fairness": fairness} if fairness else {}}
    return {
        "epoch": 3,
        "history": history,
        "early": {"best_epoch": 3},
        "best_state": {"w": {"__tensor__": "best_state/w"}},
        "config": config,
    }


@pytest.mark.parametrize(
    ("fairness", "expected"),
    [
        ({}, 3),  # early stopping's best
        # A bound keeps the most accurate epoch within bound - margin (0.04): epoch 2.
        ({"kind": "dp", "method": "penalty", "strength": 1.0, "bound": 0.05, "margin": 0.01}, 2),
        # Post-processing alone bounds no epoch: early stopping decides.
        ({"kind": "dp", "method": "postprocess", "bound": 0.05}, 3),
    ],
)
def test_the_kept_epoch_follows_the_trainers_rule(fairness: dict[str, Any], expected: int) -> None:
    assert kept_epoch(_tree(**fairness)) == expected


def test_no_best_state_means_the_current_weights() -> None:
    tree = _tree()
    tree["best_state"] = None
    assert kept_epoch(tree) is None

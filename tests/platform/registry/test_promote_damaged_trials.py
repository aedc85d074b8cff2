"""Promotion with damaged trial files: a truncated newest checkpoint falls back to an
older complete one (said in the warnings), an unreadable params.json or a checkpoint
that does not load is a left-out reason, and an objective no trial reports is
refused with the names trials do report (digits trials trained for real; no Ray)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from regtune.errors import SpecError
from regtune.platform.registry.promote import promote
from regtune.platform.registry.trials import read_sweep_trials
from regtune.platform.tune.trial_files import STATE_DIR
from regtune.trainables.checkpoint import TENSORS_FILE
from regtune.trainables.data import Dataset

from .conftest import TINY_CONFIG

OBJECTIVE = [("val_acc", "max")]


def _trial(experiment: Path, trial_id: str, digits: Dataset, seed: int, epochs: int) -> Path:
    """A trial folder with one checkpoint per epoch (``checkpoint_00000{e-1}``)."""
    from regtune.trainables.loop import Trainer

    config = {**TINY_CONFIG, "training": {**TINY_CONFIG["training"], "seed": seed}}
    config["training"]["epochs"] = epochs
    trainer = Trainer(config, dataset=digits, device="cpu")
    folder = experiment / f"trial_{trial_id}"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(trainer.config.model_dump(mode="json")))
    rows = []
    for epoch in range(1, epochs + 1):
        row = trainer.run_epoch()
        if epoch == epochs:
            row = {**row, **trainer.finish()}
        trainer.save(folder / f"checkpoint_{epoch - 1:06d}" / STATE_DIR)
        rows.append({**row, "training_iteration": epoch, "trial_id": trial_id})
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def clean(digits: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two trials, ``a`` (2 epochs, 2 checkpoints) and ``b`` (1 epoch); copied per test."""
    experiment = tmp_path_factory.mktemp("clean") / "exp"
    _trial(experiment, "a", digits, seed=0, epochs=2)
    _trial(experiment, "b", digits, seed=1, epochs=1)
    return experiment


@pytest.fixture
def experiment(clean: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clean, tmp_path / "exp"))


def _truncate(state_dir: Path) -> None:
    tensors = state_dir / TENSORS_FILE
    tensors.write_bytes(tensors.read_bytes()[:-100])


def test_a_truncated_newest_checkpoint_falls_back_to_the_older_complete_one(
    experiment: Path, tmp_path: Path
) -> None:
    _truncate(experiment / "trial_a" / "checkpoint_000001" / STATE_DIR)
    (trial_a, _) = read_sweep_trials(experiment)
    assert trial_a.checkpoint == experiment / "trial_a" / "checkpoint_000000" / STATE_DIR
    assert trial_a.checkpoint_epoch == 1 and trial_a.epoch == 1
    assert trial_a.damaged[0].startswith("checkpoint_000001 (tensors.safetensors is truncated")
    result = promote(
        str(experiment), name="fb", top_k=2, objectives=OBJECTIVE, root=str(tmp_path / "r")
    )
    assert result.version is not None
    assert sorted(t.trial_id for t in result.members) == ["a", "b"]
    (warning,) = [w for w in result.warnings if w.startswith("trial a:")]
    assert "promoted from its newest complete checkpoint checkpoint_000000 (epoch 1)" in warning
    assert "newer ones are damaged: checkpoint_000001 (tensors.safetensors is truncated" in warning
    assert result.version.meta["lineage"]["trial_epochs"]["a"] == 1


def test_every_checkpoint_truncated_leaves_the_trial_out(experiment: Path, tmp_path: Path) -> None:
    for name in ("checkpoint_000000", "checkpoint_000001"):
        _truncate(experiment / "trial_a" / name / STATE_DIR)
    result = promote(
        str(experiment), name="fb", top_k=2, objectives=OBJECTIVE, root=str(tmp_path / "r")
    )
    assert [t.trial_id for t in result.members] == ["b"]
    assert result.left_out == {"a": "no complete checkpoint"}


def test_a_checkpoint_that_does_not_load_is_left_out_with_why(
    experiment: Path, tmp_path: Path
) -> None:
    # Every byte is there (the header check passes) but it is not the trainer's state.
    for name in ("checkpoint_000000", "checkpoint_000001"):
        state = experiment / "trial_a" / name / STATE_DIR
        shutil.copy(experiment / "trial_b" / "checkpoint_000000" / STATE_DIR / TENSORS_FILE, state)
        state_json = state / "state.json"
        tree = json.loads(state_json.read_text())
        tree["tree"]["model"] = {"w": {"__tensor__": "no/such/tensor"}}
        state_json.write_text(json.dumps(tree))
    result = promote(
        str(experiment), name="fb", top_k=2, objectives=OBJECTIVE, root=str(tmp_path / "r")
    )
    assert [t.trial_id for t in result.members] == ["b"]
    assert result.left_out["a"].startswith("checkpoint cannot be read (")
    assert "left out: checkpoint cannot be read" in result.warnings[0]


def test_an_unreadable_params_json_is_a_left_out_reason(experiment: Path, tmp_path: Path) -> None:
    (experiment / "trial_a" / "params.json").write_text("{not json")
    result = promote(
        str(experiment), name="fb", top_k=2, objectives=OBJECTIVE, root=str(tmp_path / "r")
    )
    assert [t.trial_id for t in result.members] == ["b"]
    assert list(result.left_out) == ["a"]
    assert result.left_out["a"].startswith("params.json cannot be read (Expecting property name")
    assert result.version is not None
    assert result.version.meta["lineage"]["left_out"] == result.left_out


def test_an_objective_no_trial_reports_is_refused_with_did_you_mean(
    experiment: Path, tmp_path: Path
) -> None:
    with pytest.raises(SpecError) as info:
        promote(
            str(experiment),
            name="fb",
            objectives=[("val_acc", "max"), ("val_los", "min")],
            root=str(tmp_path / "r"),
        )
    message = str(info.value)
    assert message.startswith("objective 'val_los': no trial of experiment ")
    assert "reports a metric of that name (did you mean 'val_loss'" in message
    assert "; the trials report: " in message and "test_acc, " in message
    # Bookkeeping and per-bin names are only counted, so the list stays readable.
    assert "training_iteration" not in message and "test_reliability" not in message
    assert message.endswith("per-group, interval or bookkeeping names)")
    assert not (tmp_path / "r").exists()

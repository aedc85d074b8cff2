"""Promotion's numbers of a trial whose ``result.json`` lost or repeated lines.

Under PBT Ray's per-trial ``result.json`` loses lines (iterations read
``1,2,3,4,7,8``) and repeats iterations after an exploit (``1,2,3,4,3,4,...``,
the repeat reported by the donor's weights). A trial's numbers must still be
those of its checkpoint's weights: the checkpoint's own history, the
``result.json`` line that is its report, or the results store's row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from regtune.platform.registry.trials import SweepTrial, read_sweep_trials
from regtune.trainables.data import Dataset

from .conftest import TINY_CONFIG, FinishedRun, write_trial

EPOCHS = 3


@pytest.fixture(scope="module")
def plain_run(digits: Dataset) -> FinishedRun:
    """A 3-epoch tiny digits run without early stopping (its checkpoint keeps no
    ``best_state``: the current weights are the ones shipped)."""
    from regtune.trainables.loop import Trainer

    config = {**TINY_CONFIG, "training": {**TINY_CONFIG["training"], "epochs": EPOCHS}}
    trainer = Trainer(config, dataset=digits, device="cpu")
    while not trainer.should_stop:
        trainer.run_epoch()
    return FinishedRun(trainer, trainer.finish())


def _lines(folder: Path) -> list[dict[str, Any]]:
    text = (folder / "result.json").read_text()
    return [json.loads(line) for line in text.splitlines()]


def _rewrite(folder: Path, rows: list[dict[str, Any]]) -> None:
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _donor(row: dict[str, Any]) -> dict[str, Any]:
    """The same iteration reported by other weights (a PBT donor's lineage)."""
    numbers = ("val_acc", "val_loss", "train_loss", "test_acc", "test_loss")
    return {**row, **{k: row[k] / 2 + 0.01 for k in numbers if k in row}}


def test_a_lost_line_at_the_checkpoint_epoch_takes_the_checkpoints_history(
    plain_run: FinishedRun, tmp_path: Path
) -> None:
    folder = write_trial(tmp_path / "exp", "t0", plain_run)
    _rewrite(folder, _lines(folder)[:-1])  # iteration 3's line lost
    (trial,) = read_sweep_trials(tmp_path / "exp")
    last = plain_run.trainer.history[-1]
    assert (trial.epoch, trial.checkpoint_epoch) == (EPOCHS, EPOCHS)
    assert trial.checkpoint is not None
    # Before: no row at the checkpoint's epoch, so no metrics, and promotion
    # left the trial out ("no finite val_acc").
    for key in ("val_acc", "val_loss", "train_loss", "epoch"):
        assert trial.metrics[key] == last[key], key


def test_a_repeated_iteration_counts_with_the_line_of_the_checkpoints_weights(
    plain_run: FinishedRun, tmp_path: Path
) -> None:
    folder = write_trial(tmp_path / "exp", "t0", plain_run)
    lines = _lines(folder)
    own = lines[-1]
    # The donor's repeat written after the trial's own report of that iteration.
    _rewrite(folder, [*lines, _donor(own)])
    (trial,) = read_sweep_trials(tmp_path / "exp")
    for key in ("val_acc", "val_loss", "train_loss", "test_acc", "test_loss"):
        assert trial.metrics[key] == own[key], key
    assert trial.trial_id == "t0"


def test_only_another_lineages_line_at_the_checkpoint_epoch_is_not_used(
    plain_run: FinishedRun, tmp_path: Path
) -> None:
    folder = write_trial(tmp_path / "exp", "t0", plain_run)
    lines = _lines(folder)
    _rewrite(folder, [*lines[:-1], _donor(lines[-1])])  # own line lost, the donor's kept
    (trial,) = read_sweep_trials(tmp_path / "exp")
    last = plain_run.trainer.history[-1]
    for key in ("val_acc", "val_loss", "train_loss"):
        assert trial.metrics[key] == last[key], key
    # What only the lost report held (test_*) is not taken from other weights' report.
    assert "test_acc" not in trial.metrics


def _store(experiment: Path, trial_id: str, rows: list[dict[str, Any]], config: dict[str, Any]):
    """The experiment's results store holding ``rows`` (one per iteration) of a trial."""
    from regtune.platform.results.writer import ResultsWriter

    writer = ResultsWriter(str(experiment), max_t=EPOCHS, flush_s=0.0)
    for row in rows:
        result = {
            "time_total_s": 0.5 * row["training_iteration"],
            "timestamp": 1_700_000_000 + row["training_iteration"],
            **row,
            "config": config,
        }
        writer.add(trial_id, result)
    writer.end_trial(trial_id, error=False)
    writer.close()


def _last_line_lost(
    tmp_path: Path, trial_id: str, run: FinishedRun, *, donor_in_store: bool = False
) -> tuple[SweepTrial, list[dict[str, Any]]]:
    """A trial whose result.json lost its last line while the results store kept
    every row (the last one of other weights with ``donor_in_store``): the trial
    read back, and the lines it had."""
    experiment = tmp_path / "exp"
    folder = write_trial(experiment, trial_id, run)
    lines = _lines(folder)
    config = json.loads((folder / "params.json").read_text())
    stored = [*lines[:-1], _donor(lines[-1])] if donor_in_store else lines
    _store(experiment, trial_id, stored, config)
    _rewrite(folder, lines[:-1])
    (trial,) = read_sweep_trials(experiment)
    return trial, lines


def test_a_lost_last_line_is_read_from_the_results_store(
    plain_run: FinishedRun, tmp_path: Path
) -> None:
    trial, lines = _last_line_lost(tmp_path, "t0", plain_run)
    own = lines[-1]
    for key in ("val_acc", "val_loss", "test_acc", "test_loss"):
        assert trial.metrics[key] == pytest.approx(own[key], rel=1e-12), key


def test_a_store_row_of_other_weights_is_not_used(plain_run: FinishedRun, tmp_path: Path) -> None:
    trial, _ = _last_line_lost(tmp_path, "t0", plain_run, donor_in_store=True)
    assert trial.metrics["val_acc"] == plain_run.trainer.history[-1]["val_acc"]
    assert "test_acc" not in trial.metrics


def test_a_kept_epochs_trial_takes_its_last_reports_test_numbers_from_the_store(
    early_run: FinishedRun, tmp_path: Path
) -> None:
    """With a best_state the kept epoch's row comes from the history (as before);
    the test_* numbers of the lost last report now come from the store."""
    trial, _ = _last_line_lost(tmp_path, "early", early_run)
    kept = early_run.trainer.early.best_epoch
    assert trial.epoch == kept < trial.checkpoint_epoch
    assert trial.metrics["val_loss"] == early_run.trainer.history[kept - 1]["val_loss"]
    assert trial.metrics["test_acc"] == pytest.approx(early_run.final["test_acc"], rel=1e-12)

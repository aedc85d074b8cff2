"""What the tune tests share: stub Tune trials for driving a scheduler by hand,
and the smallest real sweep spec (digits, one CPU a trial)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial

#: One trial of one epoch on digits: a sweep whose search does not matter.
TINY_SPEC: dict[str, Any] = {
    "name": "loop",
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "training": {"batch_size": 256, "lr": 0.01, "robust_every": 0},
    "penalties": {"l2": {"loguniform": [1e-6, 1e-2]}},
    "objectives": [{"metric": "val_acc", "mode": "max"}],
    "scheduler": {"kind": "none"},
    "searcher": {"kind": "random", "seed": 0},
    "budget": {"samples": 1, "max_epochs": 1},
    "resources": {"cpu": 1},
}


def stub_trial(tmp_path: Path, trial_id: str) -> Trial:
    """A stub Tune trial ``trial_id`` whose folder is under ``tmp_path``."""
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp")
    trial = Trial("__fake", config={}, trial_id=trial_id, storage=storage, stub=True)
    trial.storage.trial_dir_name = f"trial_{trial_id}"
    return trial


def acc_result(epoch: int, acc: float) -> dict[str, Any]:
    """A result reporting ``val_acc`` ``acc`` (and ``val_loss`` 1 - acc) at ``epoch``."""
    return {"training_iteration": epoch, "val_acc": acc, "val_loss": 1 - acc}

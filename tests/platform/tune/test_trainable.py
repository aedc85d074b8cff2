"""TuneTrainable outside a sweep: steps, checkpoints, and a restore of a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regtune.platform.tune.trainable import TuneTrainable

CONFIG: dict[str, Any] = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "training": {"epochs": 2, "batch_size": 256},
}


def test_restored_finished_run_re_reports_its_last_epoch_and_ends(
    tmp_path: Path, data_cache: Path
) -> None:
    trainable = TuneTrainable(config=CONFIG)
    first = trainable.train()
    last = trainable.train()
    assert (first["training_iteration"], last["training_iteration"]) == (1, 2)
    assert last["done"] is True
    checkpoint = trainable.save(str(tmp_path / "final"))
    trainable.stop()

    # A trial that ended after Tune's last snapshot is restored from this final
    # checkpoint on --resume and asked for one more step.
    again = TuneTrainable(config=CONFIG)
    again.restore(checkpoint)
    repeat = again.train()
    again.stop()
    assert repeat["done"] is True
    assert repeat["training_iteration"] == 2  # same epoch, not a new one
    assert repeat["val_acc"] == last["val_acc"]
    assert repeat["test_acc"] == last["test_acc"]

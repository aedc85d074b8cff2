"""Values that used to be silently ignored now change the run.

Each test trains the same configuration with and without the value (or
restores a checkpoint under a new value, as PBT does) and checks that the
run differs in the way the value says.
"""

from __future__ import annotations

from typing import Any

import pytest

from regtune.trainables.data import Dataset
from regtune.trainables.loop import Trainer


def _cfg(training: dict[str, Any] | None = None, **penalties: Any) -> dict[str, Any]:
    return {
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 16, "depth": 1},
        "training": {"epochs": 4, "batch_size": 256, "lr": 0.01, "seed": 1, "robust_every": 0}
        | (training or {}),
        "penalties": penalties,
    }


def _lrs(trainer: Trainer) -> list[float]:
    return [float(group["lr"]) for group in trainer.optimizer.param_groups]


def test_trades_uses_label_smoothing(digits: Dataset) -> None:
    trades = {"method": "trades", "eps": 0.1, "steps": 1}
    plain = Trainer(_cfg(adversarial=trades), dataset=digits)
    smooth = Trainer(_cfg(adversarial=trades, label_smoothing=0.3), dataset=digits)
    x, y, _ = plain._tensors["train"]
    # Same seed, same weights, same batch and attack start: without smoothing
    # reaching TRADES the two losses were bit-identical. At initialisation the
    # predictions are near uniform, so smoothing lowers the loss only a little.
    plain_loss, smooth_loss = (
        float(t._batch_loss(x[:64], y[:64], None)[0].detach()) for t in (plain, smooth)
    )
    assert smooth_loss < plain_loss


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_a_new_lr_after_restore_moves_the_schedule(digits: Dataset, schedule: str) -> None:
    """PBT restores a checkpoint under a perturbed training.lr: from then on
    the run follows the schedule it would have had with that lr."""
    old = Trainer(_cfg({"lr": 0.01, "lr_schedule": schedule}), dataset=digits)
    old.run_epoch()
    restored = Trainer(_cfg({"lr": 0.002, "lr_schedule": schedule}), dataset=digits)
    restored.load_state_dict(old.state_dict())
    fresh = Trainer(_cfg({"lr": 0.002, "lr_schedule": schedule}), dataset=digits)
    fresh.run_epoch()
    assert _lrs(restored) == pytest.approx(_lrs(fresh), rel=1e-6)
    assert _lrs(restored) != pytest.approx(_lrs(old), rel=1e-3)
    restored.run_epoch()
    fresh.run_epoch()  # both at epoch 2 now, on their own weights, at one lr
    assert _lrs(restored) == pytest.approx(_lrs(fresh), rel=1e-6)


def test_a_new_momentum_after_restore_is_used(digits: Dataset) -> None:
    old = Trainer(_cfg({"optimizer": "sgd", "momentum": 0.9}), dataset=digits)
    old.run_epoch()
    restored = Trainer(_cfg({"optimizer": "sgd", "momentum": 0.5}), dataset=digits)
    restored.load_state_dict(old.state_dict())
    assert [g["momentum"] for g in restored.optimizer.param_groups] == [0.5]


def test_momentum_counts_under_the_onecycle_schedule(digits: Dataset) -> None:
    # One-cycle cycles SGD's momentum; it used to peak at torch's 0.95 whatever
    # training.momentum said, so these two runs were identical.
    runs = [
        Trainer(
            _cfg({"optimizer": "sgd", "lr_schedule": "onecycle", "momentum": m}), dataset=digits
        )
        for m in (0.5, 0.9)
    ]
    rows = [run.run_epoch() for run in runs]
    assert rows[0]["val_loss"] != rows[1]["val_loss"]
    assert [g["max_momentum"] for g in runs[0].optimizer.param_groups] == [0.5]

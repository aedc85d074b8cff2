"""The epoch loop: early stopping on robust accuracy acts, and a restore under
one-cycle applies a new momentum from its first step."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.trainables.data import Dataset
from regtune.trainables.loop import Trainer


def _cfg(**training: Any) -> dict[str, Any]:
    return {
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 16, "depth": 1},
        "training": {"epochs": 8, "seed": 0, "robust_every": 1, "robust_steps": 3, **training},
    }


def _run(trainer: Trainer) -> list[dict[str, float]]:
    rows = []
    while not trainer.should_stop:
        rows.append(trainer.run_epoch())
    return rows


def test_early_stopping_on_robust_acc_stops_and_keeps_the_most_robust_epoch(
    digits: Dataset,
) -> None:
    es = {"metric": "robust_acc", "mode": "max", "patience": 1}
    trainer = Trainer(
        _cfg(lr=0.5, optimizer="sgd", robust_samples=300, early_stopping=es), dataset=digits
    )
    rows = _run(trainer)
    robust = [r["robust_acc"] for r in rows]
    assert not math.isnan(trainer.early.best)
    best = max(range(len(robust)), key=lambda i: (robust[i], -i))
    assert trainer.early.best == robust[best]
    assert trainer.early.best_epoch == best + 1
    assert rows[-1]["kept_epoch"] == best + 1
    # patience 1: the run stops at the first epoch that is no better.
    worse = [i for i in range(1, len(robust)) if robust[i] <= max(robust[:i])]
    assert worse, robust
    assert trainer.early.stopped and len(rows) == worse[0] + 1
    # finish() scores the kept (most robust) epoch's weights.
    kept = trainer._best_state
    assert kept is not None
    trainer.finish()
    assert all((trainer.model.state_dict()[k] == v).all() for k, v in kept.items())


def test_early_stopping_on_robust_acc_decides_only_where_it_is_measured(
    digits: Dataset,
) -> None:
    es = {"metric": "robust_acc", "mode": "max", "patience": 1}
    trainer = Trainer(
        _cfg(epochs=5, lr=1e-3, robust_every=2, robust_samples=200, early_stopping=es),
        dataset=digits,
    )
    seen: list[tuple[int, float, int]] = []
    while not trainer.should_stop:
        row = trainer.run_epoch()
        seen.append((int(row["epoch"]), row["robust_acc_epoch"], trainer.early.bad_epochs))
    assert not math.isnan(trainer.early.best)
    measured = [e for e, at, _ in seen if at == e]
    assert measured == [1, 2, 4, 5][: len(measured)]
    # A carried-forward value is no new evidence: at epoch 3 (not measured)
    # the bad-epoch count is the one of epoch 2.
    if len(seen) >= 3:
        assert seen[2][2] == seen[1][2]


def test_early_stopping_on_a_gap_of_a_multiclass_file_is_refused(tmp_path: Path) -> None:
    rows = ["a,s,y"] + [f"{i % 7},{i % 2},{i % 3}" for i in range(90)]
    path = tmp_path / "three.csv"
    path.write_text("\n".join(rows) + "\n")
    cfg = {
        "dataset": {"name": "csv", "path": str(path), "label": "y", "sensitive": "s"},
        "model": {"arch": "logreg"},
        "training": {
            "epochs": 1,
            "robust_every": 0,
            "early_stopping": {"metric": "dp_diff", "patience": 1},
        },
    }
    with pytest.raises(SpecError, match=r"training\.early_stopping\.metric: .*3 classes"):
        Trainer(cfg)


def test_restore_under_onecycle_applies_a_new_momentum_from_the_first_step(
    digits: Dataset, tmp_path: Path
) -> None:
    def cfg(momentum: float) -> dict[str, Any]:
        return _cfg(
            epochs=6, robust_every=0, robust_steps=20, lr=0.01, lr_schedule="onecycle",
            optimizer="sgd", momentum=momentum,
        )  # fmt: skip

    def trainer(momentum: float) -> Trainer:
        c = cfg(momentum)
        c["training"].pop("robust_steps")
        return Trainer(c, dataset=digits)

    old = trainer(0.9)
    old.run_epoch(), old.run_epoch()
    old.save(tmp_path / "ck")
    restored, fresh = trainer(0.5), trainer(0.5)
    restored.restore(tmp_path / "ck")
    fresh.run_epoch(), fresh.run_epoch()
    group, want = restored.optimizer.param_groups[0], fresh.optimizer.param_groups[0]
    assert group["momentum"] == pytest.approx(want["momentum"], rel=1e-9)
    assert group["max_momentum"] == pytest.approx(0.5)
    assert group["lr"] == pytest.approx(want["lr"], rel=1e-9)


def _history(digits: Dataset, **training: Any) -> list[dict[str, float]]:
    cfg = {
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 32, "depth": 2, "dropout": 0.1},
        "training": {"epochs": 3, "lr": 3e-3, "seed": 1, **training},
        "penalties": {"input_noise": 0.05, "adversarial": {"method": "fgsm_rs", "eps": 0.05}},
    }
    return _run(Trainer(cfg, dataset=digits))


def test_measuring_robust_accuracy_does_not_change_training(digits: Dataset) -> None:
    never = _history(digits, robust_every=0)
    every = _history(digits, robust_every=1, robust_steps=3, robust_samples=200)
    fewer = _history(digits, robust_every=2, robust_steps=3, robust_samples=10)
    keys = ("train_loss", "val_loss", "val_acc")
    for rows in (every, fewer):
        assert [[r[k] for k in keys] for r in rows] == [[r[k] for k in keys] for r in never]
    # A measurement depends on the seed, epoch and split alone, not on how
    # many were taken before: epoch 2 measured at robust_every 1 and 2 agree.
    again = _history(digits, robust_every=2, robust_steps=3, robust_samples=200)
    assert again[1]["robust_acc_epoch"] == 2.0
    assert again[1]["robust_acc"] == every[1]["robust_acc"]

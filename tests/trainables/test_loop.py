"""The epoch loop: metrics, regularizers end to end, early stopping, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from regtune.errors import CheckpointError, SpecError
from regtune.trainables import metrics
from regtune.trainables.bootstrap import group_keys
from regtune.trainables.checkpoint import TREE_FILE
from regtune.trainables.config import METRIC_MODES
from regtune.trainables.data import Dataset
from regtune.trainables.loop import Trainer, train

TIMING_KEYS = {"epoch_time_s", "train_time_s"}


def _cfg(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 64, "depth": 2, "dropout": 0.2},
        "training": {"epochs": 4, "batch_size": 128, "lr": 3e-3, "seed": 3, "robust_every": 2},
    }
    for key, value in over.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


def _strip(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def test_every_epoch_reports_the_platform_metrics(adult: Dataset) -> None:
    cfg = _cfg(dataset="adult", training={"epochs": 1, "batch_size": 512, "robust_every": 1})
    row = Trainer(cfg, dataset=adult).run_epoch()
    assert set(METRIC_MODES) <= set(row)
    assert row["gap"] == pytest.approx(row["val_loss"] - row["train_loss"])
    assert 0.0 <= row["dp_diff"] <= 1.0 and 0.0 <= row["eo_diff"] <= 1.0
    assert row["robust_acc"] <= row["val_acc"]
    assert row["n_params"] == sum(p.numel() for p in Trainer(cfg, dataset=adult).model.parameters())


def test_test_metrics_have_prefix(digits: Dataset) -> None:
    result = train(_cfg(training={"epochs": 1}), dataset=digits)
    assert {"test_acc", "test_loss", "test_ece", "test_brier", "test_robust_acc"} <= set(
        result.test_metrics
    )
    assert all(k.startswith("test_") for k in result.test_metrics)


@pytest.mark.parametrize(
    "penalties",
    [
        {"input_noise": 0.1, "label_smoothing": 0.1},
        {"mixup": 0.4, "max_norm": 2.0, "weight_decay": 0.01},
        {"adversarial": {"method": "fgsm_rs", "eps": 0.1}, "l1": 1e-4},
        {"adversarial": {"method": "trades", "eps": 0.1, "steps": 2}, "spectral_norm": True},
    ],
    ids=["noise-ls", "mixup-maxnorm-wd", "fgsm-l1", "trades-spectral"],
)
def test_checkpoint_restore_continues_identically(
    digits: Dataset, tmp_path: Path, penalties: dict[str, Any]
) -> None:
    cfg = _cfg(
        penalties=penalties,
        training={"lr_schedule": "onecycle", "early_stopping": {"patience": 3}},
    )
    straight = Trainer(cfg, dataset=digits)
    for _ in range(4):
        straight.run_epoch()

    first = Trainer(cfg, dataset=digits)
    first.run_epoch()
    first.run_epoch()
    first.save(tmp_path / "ckpt")
    # Disturb global RNG state: a restore must bring back its own.
    torch.manual_seed(12345)
    resumed = Trainer(cfg, dataset=digits)
    resumed.restore(tmp_path / "ckpt")
    resumed.run_epoch()
    resumed.run_epoch()

    assert _strip(resumed.history) == _strip(straight.history)
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_early_stopping_stops_and_restores_best(digits: Dataset) -> None:
    # min_delta so large that no epoch after the first counts as better.
    es = {"metric": "val_acc", "mode": "max", "patience": 2, "min_delta": 10.0}
    result = train(_cfg(training={"epochs": 20, "early_stopping": es}), dataset=digits)
    assert result.stopped_early
    assert len(result.history) == 3
    assert result.best_epoch == 1
    # Every epoch says which epoch's weights the run keeps: here the first, throughout.
    assert [r["kept_epoch"] for r in result.history] == [1.0, 1.0, 1.0]


def test_kept_epoch_without_patience_is_the_latest(digits: Dataset) -> None:
    """No early stopping: the run keeps its last weights, and each row says so."""
    result = train(_cfg(training={"epochs": 3, "robust_every": 0}), dataset=digits)
    assert [r["kept_epoch"] for r in result.history] == [1.0, 2.0, 3.0]
    assert result.best_epoch == 3


def test_dp_penalty_lowers_dp_diff_on_adult(adult: Dataset) -> None:
    def run(strength: float) -> float:
        cfg = _cfg(
            dataset="adult",
            training={"epochs": 3, "batch_size": 512, "robust_every": 0},
            penalties={"fairness": {"kind": "dp", "strength": strength}},
        )
        return train(cfg, dataset=adult).test_metrics["test_dp_diff"]

    unconstrained, fair = run(0.0), run(5.0)
    assert unconstrained > 0.1
    assert fair < unconstrained / 2


def test_fairness_penalty_needs_a_sensitive_attribute(digits: Dataset) -> None:
    cfg = _cfg(penalties={"fairness": {"kind": "eo", "strength": 1.0}})
    with pytest.raises(SpecError) as info:
        Trainer(cfg, dataset=digits)
    # The data by what the user wrote (it said "dataset 'digits' has sensitive=None").
    assert str(info.value) == (
        "penalties.fairness.kind='eo' needs a dataset with a sensitive attribute and a "
        "two-class label; the built-in dataset 'digits' has no sensitive attribute and a "
        "label of 10 classes: remove the penalties.fairness section (the fairness penalties "
        "and thresholds need a two-class label)"
    )


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"penalties": {"l1": -1.0}}, "penalties.l1"),
        ({"penalties": {"l3": 0.1}}, "penalties.l3: unknown key 'l3'; allowed: l1, l2,"),
        ({"model": {"arch": "resnet"}}, "model.arch"),
        ({"training": {"early_stopping": {"metric": "val_f1"}}}, "unknown metric 'val_f1'"),
        (
            {"penalties": {"adversarial": {"method": "pgd", "steps": 30}}},
            "training.robust_steps: must exceed penalties.adversarial.steps (30)",
        ),
        (
            {"dataset": "adult", "penalties": {"mixup": 0.2, "fairness": {"kind": "dp"}}},
            "mixup cannot be combined",
        ),
    ],
)
def test_bad_config_names_the_key(digits: Dataset, over: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        Trainer(_cfg(**over), dataset=digits)
    assert fragment in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(digits: Dataset) -> None:
    with pytest.raises(SpecError, match="no CUDA device"):
        Trainer(_cfg(training={"device": "cuda"}), dataset=digits)


def test_restore_rejects_other_config_and_broken_files(digits: Dataset, tmp_path: Path) -> None:
    trainer = Trainer(_cfg(), dataset=digits)
    trainer.run_epoch()
    ckpt = trainer.save(tmp_path / "ckpt")

    other = Trainer(_cfg(model={"width": 32}), dataset=digits)
    with pytest.raises(CheckpointError, match="model differs"):
        other.restore(ckpt)

    (ckpt / TREE_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot be read"):
        Trainer(_cfg(), dataset=digits).restore(ckpt)
    with pytest.raises(CheckpointError, match="is missing"):
        Trainer(_cfg(), dataset=digits).restore(tmp_path / "nowhere")


def test_checkpoint_is_safetensors_and_json_only(digits: Dataset, tmp_path: Path) -> None:
    trainer = Trainer(_cfg(), dataset=digits)
    trainer.run_epoch()
    ckpt = trainer.save(tmp_path / "ckpt")
    assert sorted(p.name for p in ckpt.iterdir()) == ["state.json", "tensors.safetensors"]
    tree = json.loads((ckpt / "state.json").read_text())
    assert tree["tree"]["epoch"] == 1
    assert not math.isnan(trainer.history[0]["val_loss"])


def test_restore_with_new_regularization_strength_continues(
    digits: Dataset, tmp_path: Path
) -> None:
    """PBT's move: same weights, new penalty strength and learning rate."""
    trainer = Trainer(_cfg(penalties={"weight_decay": 0.0}), dataset=digits)
    trainer.run_epoch()
    ckpt = trainer.save(tmp_path / "ckpt")
    changed = Trainer(_cfg(penalties={"weight_decay": 0.05}, training={"lr": 1e-4}), dataset=digits)
    changed.restore(ckpt)
    assert changed.epoch == 1
    assert all(
        g["weight_decay"] == 0.05 and g["lr"] == 1e-4 for g in changed.optimizer.param_groups
    )
    for a, b in zip(trainer.model.parameters(), changed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    changed.run_epoch()
    assert changed.epoch == 2


def test_lagrangian_fairness_lowers_dp_diff_and_checkpoints_multipliers(
    adult: Dataset, tmp_path: Path
) -> None:
    def cfg(method: str, strength: float) -> dict[str, Any]:
        return _cfg(
            dataset="adult",
            training={"epochs": 4, "batch_size": 1024, "robust_every": 0},
            penalties={
                "fairness": {"kind": "dp", "strength": strength, "method": method, "dual_lr": 2.0}
            },
        )

    plain = Trainer(cfg("penalty", 0.0), dataset=adult)
    fair = Trainer(cfg("lagrangian", 5.0), dataset=adult)
    for _ in range(4):
        row_plain, row_fair = plain.run_epoch(), fair.run_epoch()
    assert row_fair["dp_diff"] < row_plain["dp_diff"] / 2
    assert float(fair._multipliers.abs().max()) > 0
    fair.save(tmp_path / "ckpt")
    again = Trainer(cfg("lagrangian", 5.0), dataset=adult)
    again.restore(tmp_path / "ckpt")
    assert torch.equal(again._multipliers, fair._multipliers)


def test_final_report_has_reliability_bins_and_group_accuracy(adult: Dataset) -> None:
    cfg = _cfg(
        dataset="adult",
        model={"width": 16, "depth": 1},
        training={"epochs": 1, "batch_size": 1024, "robust_every": 0},
    )
    result = train(cfg, dataset=adult)
    test = result.test_metrics
    n_test = adult.test.x.shape[0]
    slots = range(metrics.RELIABILITY_SLOTS)
    counts = [test[metrics.reliability_name("test", k, "count")] for k in slots]
    assert sum(counts) == n_test
    assert metrics.ece_from_reliability(test, "test") == pytest.approx(test["test_ece"], rel=1e-5)
    # Group accuracies weighted by group size give the overall test accuracy.
    s = adult.test.s
    assert s is not None
    sizes = [int((s == code).sum()) for code in range(len(adult.group_names))]
    weighted = sum(
        test[f"test_acc_{key}"] * size
        for key, size in zip(group_keys(adult.group_names), sizes, strict=True)
    )
    assert weighted / n_test == pytest.approx(test["test_acc"], abs=1e-9)
    for key in group_keys(adult.group_names):
        low, high = test[f"test_acc_{key}_ci_low"], test[f"test_acc_{key}_ci_high"]
        assert low <= test[f"test_acc_{key}"] <= high
        assert f"test_selection_rate_{key}_ci_low" in test  # the bootstrap's, unchanged


def test_final_report_without_groups_has_bins_only(digits: Dataset) -> None:
    result = train(_cfg(training={"epochs": 1, "robust_every": 0}), dataset=digits)
    names = set(result.test_metrics)
    assert metrics.reliability_name("test", metrics.ECE_BINS, "count") in names
    assert not any(n.startswith("test_acc_") for n in names)


def _same_metrics(got: dict[str, float], want: dict[str, float]) -> None:
    """Equal metric dicts, NaN (an empty reliability bin) equal to NaN."""
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == value or (math.isnan(got[key]) and math.isnan(value)), key


def test_restore_kept_puts_the_kept_epoch_and_its_temperatures_in_place(
    digits: Dataset, tmp_path: Path
) -> None:
    # min_delta so large that only epoch 1 counts as best: it is kept, epoch 3 is the last.
    es = {"metric": "val_acc", "mode": "max", "patience": 5, "min_delta": 10.0}
    training = {"epochs": 3, "robust_every": 0, "calibration": "temperature"}
    cfg = _cfg(training={**training, "early_stopping": es})
    trainer = Trainer(cfg, dataset=digits)
    states = []
    while not trainer.should_stop:
        trainer.run_epoch()
        states.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
    assert trainer.early.best_epoch == 1 and trainer.temperatures is None
    assert any(not torch.equal(states[0][k], states[-1][k]) for k in states[0])

    calibrated = trainer.restore_kept()
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, states[0][name]), name
    assert calibrated["calibration_kept"] == 1.0 and trainer.temperatures is not None
    assert calibrated["temperature_all"] == trainer.temperatures.item()
    assert calibrated["val_ece_calibrated"] < calibrated["val_ece_uncalibrated"]

    # finish() takes the same step: a run that ends with it keeps the same
    # weights and temperatures and reports the same calibration.
    straight = Trainer(cfg, dataset=digits)
    while not straight.should_stop:
        straight.run_epoch()
    want = straight.finish()
    assert straight.temperatures is not None
    assert torch.equal(straight.temperatures, trainer.temperatures)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, states[0][name]), name
    assert {k: want[k] for k in calibrated} == calibrated

    # Again: the temperatures are fitted on the unscaled logits each time, so
    # a second call, and finish() after it, change nothing.
    temperatures = trainer.temperatures.clone()
    assert trainer.restore_kept() == calibrated
    assert torch.equal(trainer.temperatures, temperatures)
    _same_metrics(trainer.finish(), want)
    # A finished run restored from its checkpoint (with its temperatures)
    # finishes as it did (a refit on the scaled logits had dropped them).
    trainer.save(tmp_path / "ckpt")
    again = Trainer(cfg, dataset=digits)
    again.restore(tmp_path / "ckpt")
    assert again.should_stop and again.temperatures is not None
    _same_metrics(again.finish(), want)
    assert torch.equal(again.temperatures, temperatures)


def test_positive_scores_refuses_an_unknown_split_and_a_multiclass_task(
    digits: Dataset, adult: Dataset
) -> None:
    binary = Trainer(_cfg(dataset="adult", training={"epochs": 1}), dataset=adult)
    scores = binary.positive_scores("val")
    assert scores.shape == adult.val.y.shape and bool(((scores >= 0) & (scores <= 1)).all())
    with pytest.raises(ValueError, match=r"split 'valid' is not one of \('train', 'val', 'test'\)"):
        binary.positive_scores("valid")
    with pytest.raises(ValueError, match="binary task; dataset 'digits' has 10 classes"):
        Trainer(_cfg(), dataset=digits).positive_scores("val")

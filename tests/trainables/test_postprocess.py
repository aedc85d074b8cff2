"""method: postprocess end to end: thresholds fitted on validation, stored, applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from regtune.errors import SpecError
from regtune.trainables.checkpoint import load_tree
from regtune.trainables.config import idle_keys, parse_train_config
from regtune.trainables.data import Dataset
from regtune.trainables.fairness import eo_difference
from regtune.trainables.loop import Trainer, train
from regtune.trainables.thresholds import apply_thresholds


def _fair(**fairness: Any) -> dict[str, Any]:
    return {"dataset": "adult", "penalties": {"fairness": fairness}}


@pytest.mark.parametrize(
    ("fairness", "idle"),
    [
        ({"kind": "eo", "method": "postprocess"}, []),
        ({"kind": "eo", "method": "postprocess", "strength": 1.0}, ["penalties.fairness.strength"]),
        ({"kind": "eo", "method": "penalty+postprocess", "strength": 1.0}, []),
        ({"kind": "dp", "method": "lagrangian+postprocess", "strength": 2.0, "dual_lr": 0.5}, []),
        ({"kind": "dp", "method": "penalty+postprocess", "strength": 1.0, "dual_lr": 0.5},
         ["penalties.fairness.dual_lr"]),
        ({"kind": "dp", "method": "penalty+postprocess", "dual_lr": 0.5},
         ["penalties.fairness.dual_lr", "penalties.fairness.method"]),
    ],
)  # fmt: skip
def test_postprocess_method_keys(fairness: dict[str, Any], idle: list[str]) -> None:
    cfg = parse_train_config(_fair(**fairness))
    assert [p.path for p in idle_keys(cfg)] == idle


def test_unknown_method_names_the_choices() -> None:
    with pytest.raises(SpecError, match=r"penalties\.fairness\.method: Input should be 'penalty'"):
        parse_train_config(_fair(kind="eo", method="thresholds"))


def test_postprocess_fits_stores_and_applies_thresholds(adult: Dataset, tmp_path: Path) -> None:
    cfg = {
        "dataset": "adult",
        "model": {"arch": "logreg"},
        "training": {"epochs": 1, "batch_size": 2048, "lr": 1e-2, "robust_every": 0},
        "penalties": {"fairness": {"kind": "eo", "method": "postprocess", "bound": 0.02}},
    }
    result = train(cfg, dataset=adult, checkpoint_dir=tmp_path / "ckpt")
    out = result.test_metrics
    assert out["postprocess_feasible"] == 1.0 and out["val_postprocess_gap"] <= 0.02
    assert out["test_raw_eo_diff"] > 0.05  # an unconstrained model is far from EO
    stored = load_tree(tmp_path / "ckpt")["thresholds"]
    assert stored.tolist() == [out["threshold_Female"], out["threshold_Male"]]
    # What a server does: positive probability against its group's threshold.
    with torch.no_grad():
        p = result.model(adult.test.x).softmax(dim=1)[:, 1]
    pred = apply_thresholds(p, adult.test.s, stored)
    assert out["test_eo_diff"] == eo_difference(adult.test.y, pred, adult.test.s)
    assert out["test_eo_diff"] < out["test_raw_eo_diff"]
    assert out["test_acc"] == float((pred == adult.test.y).double().mean())
    assert out["test_eo_diff_ci_low"] <= out["test_eo_diff"] <= out["test_eo_diff_ci_high"]
    again = Trainer(cfg, dataset=adult)
    again.restore(tmp_path / "ckpt")
    assert again.thresholds is not None and torch.equal(again.thresholds, stored.double())
    assert torch.equal(again.decisions("test"), pred)

"""Temperature scaling: recovers known temperatures, keeps decisions, lowers ECE."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from regtune.errors import DataError, SpecError
from regtune.trainables.calibration import fit_temperatures, scale_logits
from regtune.trainables.checkpoint import load_tree
from regtune.trainables.data import Dataset
from regtune.trainables.loop import Trainer, train


def _overconfident(n: int, scales: tuple[float, ...], seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Labels drawn from softmax(z); the model reports z * scales[group]."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(len(scales), (n,), generator=g)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64) * 1.5
    y = torch.multinomial(z.softmax(dim=1), 1, generator=g).squeeze(1)
    return z * torch.tensor(scales, dtype=torch.float64)[s][:, None], y, s


def test_recovers_one_temperature_and_one_per_group() -> None:
    logits, y, s = _overconfident(4000, (3.0, 3.0))
    (t,) = fit_temperatures(logits, y).tolist()
    assert t == pytest.approx(3.0, rel=0.15)
    logits, y, s = _overconfident(6000, (3.0, 0.5))
    t0, t1 = fit_temperatures(logits, y, s, 2).tolist()
    assert t0 == pytest.approx(3.0, rel=0.15) and t1 == pytest.approx(0.5, rel=0.15)
    scaled = scale_logits(logits, torch.tensor([t0, t1]), s)
    assert torch.equal(scaled.argmax(dim=1), logits.argmax(dim=1))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(DataError, match="equal, non-zero length"):
        fit_temperatures(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(DataError, match="per-group temperatures need group codes"):
        scale_logits(torch.zeros(3, 2), torch.ones(2))


def test_group_temperature_needs_a_sensitive_attribute(digits: Dataset) -> None:
    cfg = {"dataset": "digits", "training": {"calibration": "group_temperature"}}
    with pytest.raises(SpecError, match=r"training\.calibration='group_temperature' needs"):
        Trainer(cfg, dataset=digits)


def test_calibration_lowers_ece_and_changes_no_decision(adult: Dataset, tmp_path: Path) -> None:
    def cfg(calibration: str) -> dict[str, object]:
        return {
            "dataset": "adult",
            "model": {"arch": "mlp", "width": 64, "depth": 2},
            "training": {
                "epochs": 1,
                "batch_size": 512,
                "lr": 1e-2,
                "robust_every": 0,
                "calibration": calibration,
            },
            "penalties": {"fairness": {"kind": "eo", "method": "postprocess"}},
        }

    plain = train(cfg("none"), dataset=adult).test_metrics
    result = train(cfg("group_temperature"), dataset=adult, checkpoint_dir=tmp_path / "c")
    out = result.test_metrics
    assert out["val_ece_calibrated"] <= out["val_ece_uncalibrated"]
    if out["calibration_kept"]:
        stored = load_tree(tmp_path / "c")["temperatures"]
        assert stored.tolist() == [out["temperature_Female"], out["temperature_Male"]]
    # Same weights, same decisions: accuracy and the constrained gap are unchanged.
    for key in ("test_raw_acc", "test_raw_eo_diff", "test_acc", "test_eo_diff"):
        assert out[key] == plain[key], key
    assert out["calibration_kept"] == float(out["test_ece"] != plain["test_ece"])

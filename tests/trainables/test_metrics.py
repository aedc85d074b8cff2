"""Metrics against torchmetrics / sklearn / fairlearn, model facts, evaluate()."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import accuracy_score, brier_score_loss
from torch import nn
from torchmetrics.classification import MulticlassCalibrationError

from regtune.errors import DataError
from regtune.trainables import bootstrap
from regtune.trainables.config import ModelConfig
from regtune.trainables.metrics import (
    ECE_BINS,
    RELIABILITY_SLOTS,
    accuracy,
    brier_score,
    ece_from_reliability,
    evaluate,
    expected_calibration_error,
    group_accuracy,
    n_params,
    reliability_metrics,
    size_bytes,
    sparsity,
    wilson_interval,
)
from regtune.trainables.models import build_model


def _probs(n: int, n_classes: int, seed: int, sharp: float = 3.0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    probs = (sharp * torch.randn(n, n_classes, generator=g)).softmax(dim=1)
    y = torch.randint(0, n_classes, (n,), generator=g)
    return probs, y


@pytest.mark.parametrize(("n_classes", "seed"), [(2, 0), (3, 1), (10, 2)])
def test_accuracy_equals_sklearn(n_classes: int, seed: int) -> None:
    probs, y = _probs(300, n_classes, seed)
    expected = accuracy_score(y.numpy(), probs.argmax(dim=1).numpy())
    assert accuracy(probs, y) == pytest.approx(expected)


@pytest.mark.parametrize(("n_classes", "seed", "sharp"), [(2, 0, 1.0), (3, 1, 3.0), (10, 2, 8.0)])
def test_ece_equals_torchmetrics(n_classes: int, seed: int, sharp: float) -> None:
    probs, y = _probs(500, n_classes, seed, sharp)
    # Exactly confident rows land on the edge bin; a row on an inner bin edge too.
    probs[:5] = F.one_hot(y[:5], n_classes).float()
    probs[5] = torch.full((n_classes,), (1 - 0.6) / (n_classes - 1))
    probs[5, 0] = 0.6
    reference = MulticlassCalibrationError(num_classes=n_classes, n_bins=15, norm="l1")
    expected = reference(probs, y).item()
    assert expected > 0.01
    assert expected_calibration_error(probs, y) == pytest.approx(expected, abs=1e-6)


def test_ece_puts_full_confidence_in_its_own_bin() -> None:
    # 10 under-confident hits at 0.95 and 2 fully confident misses: one shared top
    # bin would let them cancel (1.5 / 12); torchmetrics keeps them apart (2.5 / 12).
    probs = torch.tensor([[0.95, 0.05]] * 10 + [[1.0, 0.0]] * 2)
    y = torch.tensor([0] * 10 + [1] * 2)
    expected = MulticlassCalibrationError(num_classes=2, n_bins=15, norm="l1")(probs, y).item()
    assert expected == pytest.approx(2.5 / 12)
    assert expected_calibration_error(probs, y) == pytest.approx(expected, abs=1e-6)


def test_ece_of_a_calibrated_predictor_is_small() -> None:
    g = torch.Generator().manual_seed(0)
    conf = 0.5 + 0.5 * torch.rand(20000, generator=g)
    hit = torch.rand(20000, generator=g) < conf
    probs = torch.stack([conf, 1 - conf], dim=1)
    y = torch.where(hit, 0, 1)
    assert expected_calibration_error(probs, y) < 0.02


@pytest.mark.parametrize(("n_classes", "seed"), [(2, 3), (3, 4), (10, 5)])
def test_brier_equals_sklearn(n_classes: int, seed: int) -> None:
    probs, y = _probs(300, n_classes, seed)
    p64 = probs.double()
    p64 = p64 / p64.sum(dim=1, keepdim=True)  # sklearn checks the rows sum to one
    expected = brier_score_loss(
        y.numpy(), p64.numpy(), labels=list(range(n_classes)), scale_by_half=False
    )
    assert brier_score(p64, y) == pytest.approx(expected, abs=1e-12)
    if n_classes == 2:
        binary = brier_score_loss(y.numpy(), p64[:, 1].numpy())
        assert brier_score(p64, y) == pytest.approx(2 * binary, abs=1e-12)


def test_sparsity_counts_weight_entries_only() -> None:
    model = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].weight[:, :2] = 5e-4  # 10 of 20 small
        model[0].bias.zero_()  # biases never count
        model[1].weight.fill_(-2e-3)  # 10 entries, none under 1e-3
    assert sparsity(model) == pytest.approx(10 / 30)
    assert sparsity(model, tol=1e-2) == pytest.approx(20 / 30)
    assert sparsity(nn.Sequential()) == 0.0


def test_n_params_and_size_bytes() -> None:
    model = build_model(ModelConfig(arch="mlp", width=8, depth=1), input_shape=(5,), n_classes=3)
    assert n_params(model) == (5 * 8 + 8) + (8 * 3 + 3)
    assert size_bytes(model) == 4 * n_params(model)
    normed = build_model(
        ModelConfig(arch="mlp", width=8, depth=1), input_shape=(5,), n_classes=3, spectral_norm=True
    )
    assert n_params(normed) == n_params(model)
    # Power-iteration vectors u (out) and v (in) of both layers are buffers.
    assert size_bytes(normed) == size_bytes(model) + 4 * (8 + 5 + 3 + 8)
    assert size_bytes(model.double()) == 8 * n_params(model)


def _binary_model_and_data() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 3, (700,), generator=g)
    x = torch.randn(700, 6, generator=g) + 0.5 * s[:, None]
    y = ((x[:, 0] + 0.3 * s + 0.5 * torch.randn(700, generator=g)) > 0.5).long()
    cfg = ModelConfig(arch="mlp", width=16, depth=1, dropout=0.5)
    model = build_model(cfg, input_shape=(6,), n_classes=2)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(50):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y, s


def test_evaluate_matches_the_parts_and_restores_mode() -> None:
    model, x, y, s = _binary_model_and_data()
    model.train()
    got = evaluate(model, x, y, s, batch_size=128)
    assert model.training
    assert set(got) == {"loss", "acc", "ece", "brier", "dp_diff", "eo_diff"}
    model.eval()
    with torch.no_grad():
        logits = model(x)
    probs = logits.softmax(dim=1)
    y_pred = probs.argmax(dim=1).numpy()
    assert got["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert got["acc"] == pytest.approx(accuracy(probs, y))
    assert got["ece"] == pytest.approx(expected_calibration_error(probs, y), abs=1e-6)
    assert got["brier"] == pytest.approx(brier_score(probs, y), rel=1e-5)
    kw = {"sensitive_features": s.numpy()}
    dp = demographic_parity_difference(y.numpy(), y_pred, **kw)
    eo = equalized_odds_difference(y.numpy(), y_pred, **kw)
    assert dp > 0.05
    assert got["dp_diff"] == pytest.approx(dp)
    assert got["eo_diff"] == pytest.approx(eo)
    assert all(isinstance(v, float) for v in got.values())


def test_evaluate_without_groups_or_multiclass_has_no_fairness_keys() -> None:
    model, x, y, s = _binary_model_and_data()
    assert set(evaluate(model, x, y)) == {"loss", "acc", "ece", "brier"}
    three = build_model(ModelConfig(arch="logreg"), input_shape=(6,), n_classes=3)
    three.eval()
    assert set(evaluate(three, x, y, s)) == {"loss", "acc", "ece", "brier"}
    assert not three.training


def test_empty_inputs_raise() -> None:
    model = build_model(ModelConfig(arch="logreg"), input_shape=(2,), n_classes=2)
    empty_x, empty_y = torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)
    with pytest.raises(DataError, match="evaluate"):
        evaluate(model, empty_x, empty_y)
    with pytest.raises(DataError, match="expected_calibration_error"):
        expected_calibration_error(torch.zeros(0, 2), empty_y)


def test_reliability_bins_by_hand() -> None:
    # Top-label confidences 0.95 (hit, hit, miss), 0.62 (hit), 0.55 (miss), 1.0 (miss).
    probs = torch.tensor(
        [[0.95, 0.05], [0.05, 0.95], [0.95, 0.05], [0.38, 0.62], [0.55, 0.45], [1.0, 0.0]],
        dtype=torch.float64,
    )
    y = torch.tensor([0, 1, 1, 1, 1, 1])
    out = reliability_metrics(probs, y, "test")
    assert len(out) == 3 * RELIABILITY_SLOTS == 48
    # 0.95 is in bin 14 ([14/15, 1)), 0.62 in bin 9 ([0.6, 0.667)), 0.55 in bin 8.
    assert out["test_reliability.b14.count"] == 3
    assert out["test_reliability.b14.conf"] == pytest.approx(0.95)
    assert out["test_reliability.b14.acc"] == pytest.approx(2 / 3)
    assert (out["test_reliability.b09.count"], out["test_reliability.b09.acc"]) == (1, 1.0)
    assert out["test_reliability.b08.conf"] == pytest.approx(0.55)
    assert out["test_reliability.b08.acc"] == 0.0
    assert (out["test_reliability.b15.count"], out["test_reliability.b15.acc"]) == (1, 0.0)
    assert out["test_reliability.b15.conf"] == 1.0
    assert out["test_reliability.b00.count"] == 0
    assert math.isnan(out["test_reliability.b00.conf"])
    assert math.isnan(out["test_reliability.b00.acc"])
    counts = [out[f"test_reliability.b{k:02d}.count"] for k in range(RELIABILITY_SLOTS)]
    assert sum(counts) == 6
    by_hand = (3 * abs(2 / 3 - 0.95) + abs(1 - 0.62) + 0.55 + 1.0) / 6
    assert ece_from_reliability(out, "test") == pytest.approx(by_hand)
    assert expected_calibration_error(probs, y) == pytest.approx(by_hand)


@pytest.mark.parametrize(("n_classes", "seed", "sharp"), [(2, 0, 1.0), (3, 1, 3.0), (10, 2, 8.0)])
def test_ece_recomputed_from_reliability_bins(n_classes: int, seed: int, sharp: float) -> None:
    probs, y = _probs(500, n_classes, seed, sharp)
    probs[:5] = F.one_hot(y[:5], n_classes).float()
    out = reliability_metrics(probs, y, "val")
    counts = [out[f"val_reliability.b{k:02d}.count"] for k in range(ECE_BINS + 1)]
    assert sum(counts) == 500 and counts[ECE_BINS] >= 5
    assert ece_from_reliability(out, "val") == pytest.approx(
        expected_calibration_error(probs, y), rel=1e-5
    )
    assert math.isnan(ece_from_reliability(out, "test"))  # another split: nothing stored


def test_group_accuracy_and_wilson_interval() -> None:
    y = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0])
    y_pred = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0])
    s = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    out = group_accuracy(y, y_pred, s, ["Female", "Native-American", "empty"], split="test")
    assert out["test_acc_Female"] == pytest.approx(3 / 4)
    assert out["test_acc_Native_American"] == pytest.approx(3 / 4)
    assert math.isnan(out["test_acc_empty"]) and math.isnan(out["test_acc_empty_ci_low"])
    low, high = out["test_acc_Female_ci_low"], out["test_acc_Female_ci_high"]
    assert 0.0 <= low < 0.75 < high <= 1.0
    # Wilson 95 % interval of 3/4 by hand: centre (p + z^2/2n) / (1 + z^2/n), z = 1.959964.
    z = 1.959964
    centre = (0.75 + z * z / 8) / (1 + z * z / 4)
    half = z * math.sqrt(0.75 * 0.25 / 4 + z * z / 64) / (1 + z * z / 4)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-6)
    assert all(math.isnan(end) for end in wilson_interval(0, 0))  # no rows: NaN ends
    # One Wilson function for every per-group rate (accuracy here, TPR etc. in bootstrap).
    assert wilson_interval is bootstrap.wilson_interval
    with pytest.raises(DataError, match="group_accuracy"):
        group_accuracy(y, y_pred[:3], s, ["a", "b"])

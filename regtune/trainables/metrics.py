"""What a trial reports about a model: quality, calibration, fairness, size.

Definitions (each equals a reference implementation, see tests):

* ``ece``: top-label expected calibration error, L1, ``ECE_BINS`` equal-width
  bins on [0, 1] (a confidence of exactly 1.0 gets its own bin) — equal to
  ``torchmetrics`` ``MulticlassCalibrationError(n_bins=15, norm="l1")``.
* ``brier``: the multi-class Brier score, mean over examples of
  ``sum_c (p_c - onehot_c)^2``, in [0, 2] — equal to sklearn
  ``brier_score_loss(y, probs, labels=range(C), scale_by_half=False)``; for a
  binary task it is twice sklearn's default binary Brier score.
* ``sparsity``: share of weight-matrix entries (ndim >= 2 parameters, not
  biases) with ``|w| < tol``.
* reliability bins (:func:`reliability_metrics`): the ECE's own slots, each
  with its mean confidence, accuracy and count, so the calibration curve can
  be drawn and the ECE recomputed from what was stored
  (:func:`ece_from_reliability` equals :func:`expected_calibration_error`).
  Names: :mod:`regtune.trainables.metric_names` (``test_reliability.b03.acc``).
* per-group accuracy (:func:`group_accuracy`): arg-max (or thresholded)
  accuracy within each group, with a Wilson score interval at
  :data:`~regtune.trainables.bootstrap.CI_LEVEL` (``test_acc_Female``,
  ``test_acc_Female_ci_low``/``_ci_high``); the same function
  (:func:`~regtune.trainables.bootstrap.wilson_interval`) gives every
  per-group rate its interval.

All functions return Python floats/ints; tensors may live on any device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regtune.errors import DataError
from regtune.trainables.bootstrap import CI_LEVEL, group_keys, wilson_interval
from regtune.trainables.fairness import dp_difference, eo_difference
from regtune.trainables.metric_names import (
    RELIABILITY_STATS,
    group_metric_name,
    parse_reliability_name,
    reliability_name,
)
from regtune.trainables.models import model_device
from regtune.trainables.penalties import weight_matrices

__all__ = [
    "ECE_BINS",
    "RELIABILITY_SLOTS",
    "SPARSITY_TOL",
    "accuracy",
    "brier_score",
    "ece_from_reliability",
    "evaluate",
    "expected_calibration_error",
    "group_accuracy",
    "group_metric_name",
    "logits",
    "n_params",
    "parse_reliability_name",
    "predict",
    "reliability_bins",
    "reliability_metrics",
    "reliability_name",
    "score_logits",
    "size_bytes",
    "sparsity",
    "wilson_interval",
]

#: Number of equal-width confidence bins of the ECE.
ECE_BINS = 15
#: Reliability slots: the ECE's bins plus one for a confidence of exactly 1.0.
RELIABILITY_SLOTS = ECE_BINS + 1
#: A weight with ``|w|`` below this counts as zero for ``sparsity``.
SPARSITY_TOL = 1e-3

NO_EXAMPLES = "{what} needs at least one example; got an empty batch"


def accuracy(probs: Tensor, y: Tensor) -> float:
    """Share of examples whose arg-max class is ``y``; ``probs`` is (n, n_classes)."""
    _nonempty(probs, "accuracy")
    return float((probs.argmax(dim=1) == y.to(probs.device)).double().mean())


def reliability_bins(
    probs: Tensor, y: Tensor, n_bins: int = ECE_BINS
) -> tuple[Tensor, Tensor, Tensor]:
    """Per confidence slot: example count, summed top-label confidence, summed correctness.

    Slots ``0 .. n_bins - 1`` are the equal-width bins ``[k / n_bins, (k + 1) / n_bins)``;
    slot ``n_bins`` holds confidences of exactly 1.0 (as torchmetrics bins them).
    Three tensors of length ``n_bins + 1`` in the dtype of ``probs``.
    """
    _nonempty(probs, "reliability_bins")
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == y.to(probs.device)).to(confidence.dtype)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=confidence.dtype, device=probs.device)
    # Bins are [lo, hi); right=True plus the extra slot puts conf == 1.0 in its own bin,
    # exactly as torchmetrics does.
    index = torch.bucketize(confidence, edges, right=True) - 1
    counts = torch.zeros_like(edges).scatter_add(0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros_like(edges).scatter_add(0, index, confidence)
    correct_sum = torch.zeros_like(edges).scatter_add(0, index, correct)
    return counts, conf_sum, correct_sum


def expected_calibration_error(probs: Tensor, y: Tensor, n_bins: int = ECE_BINS) -> float:
    """Top-label L1 ECE: ``sum_b (n_b / n) * |acc_b - conf_b|`` over equal-width bins."""
    _nonempty(probs, "expected_calibration_error")
    counts, conf_sum, correct_sum = reliability_bins(probs, y, n_bins)
    return float((correct_sum - conf_sum).abs().sum() / counts.sum())


def reliability_metrics(
    probs: Tensor, y: Tensor, split: str = "test", n_bins: int = ECE_BINS
) -> dict[str, float]:
    """The reliability diagram as flat metrics: for each of the ``n_bins + 1`` slots of
    :func:`reliability_bins`, ``<split>_reliability.bNN.conf`` (mean confidence),
    ``.acc`` (accuracy) and ``.count`` (examples); ``conf``/``acc`` are NaN in an
    empty slot. The counts sum to the number of examples.
    """
    counts, conf_sum, correct_sum = (t.double().cpu() for t in reliability_bins(probs, y, n_bins))
    out: dict[str, float] = {}
    for slot, (n, conf, correct) in enumerate(
        zip(counts.tolist(), conf_sum.tolist(), correct_sum.tolist(), strict=True)
    ):
        values = {
            "conf": conf / n if n else math.nan,
            "acc": correct / n if n else math.nan,
            "count": float(n),
        }
        for stat in RELIABILITY_STATS:
            out[reliability_name(split, slot, stat)] = values[stat]
    return out


def ece_from_reliability(values: Mapping[str, float], split: str = "test") -> float:
    """The ECE recomputed from stored reliability metrics of ``split``:
    ``sum_b count_b * |acc_b - conf_b| / sum_b count_b`` (NaN when none is stored)."""
    slots: dict[int, dict[str, float]] = {}
    for name, value in values.items():
        parsed = parse_reliability_name(name)
        if parsed is not None and parsed.split == split:
            slots.setdefault(parsed.slot, {})[parsed.stat] = float(value)
    total = sum(s.get("count", 0.0) for s in slots.values())
    if not total:
        return math.nan
    gaps = sum(
        s["count"] * abs(s["acc"] - s["conf"]) for s in slots.values() if s.get("count", 0.0) > 0
    )
    return gaps / total


def group_accuracy(
    y: Tensor,
    y_pred: Tensor,
    s: Tensor,
    group_names: Sequence[str],
    *,
    split: str = "test",
    level: float = CI_LEVEL,
) -> dict[str, float]:
    """Accuracy of hard predictions within each group, with a Wilson score interval.

    Names: ``<split>_acc_<G>`` and ``<split>_acc_<G>_ci_low``/``_ci_high`` for each
    group ``G`` (its key among ``group_names``,
    :func:`~regtune.trainables.bootstrap.group_keys`); NaN for a group without rows.

    Raises:
        DataError: the inputs are empty or of different lengths.
    """
    n = int(y.shape[0])
    if not (n > 0 and y_pred.shape[0] == n and s.shape[0] == n):
        shapes = [tuple(t.shape) for t in (y, y_pred, s)]
        raise DataError(f"group_accuracy needs y, y_pred and s of one non-zero length; {shapes}")
    y, y_pred, s = (t.detach().cpu().long() for t in (y, y_pred, s))
    out: dict[str, float] = {}
    for code, key in enumerate(group_keys(group_names)):
        mask = s == code
        rows = int(mask.sum())
        right = int((y[mask] == y_pred[mask]).sum())
        low, high = wilson_interval(right, rows, level)
        out[group_metric_name(split, "acc", key)] = right / rows if rows else math.nan
        out[group_metric_name(split, "acc", key, "low")] = low
        out[group_metric_name(split, "acc", key, "high")] = high
    return out


def brier_score(probs: Tensor, y: Tensor) -> float:
    """Multi-class Brier score: mean over examples of ``sum_c (p_c - onehot(y)_c)^2``."""
    _nonempty(probs, "brier_score")
    onehot = F.one_hot(y.to(probs.device).long(), probs.shape[1]).to(probs.dtype)
    return float((probs - onehot).pow(2).sum(dim=1).mean())


def sparsity(model: nn.Module, tol: float = SPARSITY_TOL) -> float:
    """Share of weight-matrix entries with ``|w| < tol`` (0.0 for a model without any)."""
    weights = weight_matrices(model)
    total = sum(w.numel() for w in weights)
    if total == 0:
        return 0.0
    with torch.no_grad():
        small = sum(int((w.abs() < tol).sum().item()) for w in weights)
    return small / total


def n_params(model: nn.Module) -> int:
    """Number of parameter entries, biases included (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def size_bytes(model: nn.Module) -> int:
    """Bytes held by all parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    s: Tensor | None = None,
    *,
    batch_size: int = 4096,
) -> dict[str, float]:
    """Score ``model`` on ``(x, y)`` in one no-grad pass, in eval mode.

    Batches are moved to the model's device; the previous train/eval mode is
    restored, even on error.

    Returns:
        ``loss`` (plain mean cross-entropy, no penalties or smoothing),
        ``acc``, ``ece``, ``brier``; and, when ``s`` (int group codes) is
        given and the task is binary, ``dp_diff`` and ``eo_diff`` of the
        arg-max predictions.

    Raises:
        DataError: ``x`` is empty.
    """
    if x.shape[0] == 0:
        raise DataError(NO_EXAMPLES.format(what="evaluate"))
    return score_logits(_logits(model, x, batch_size), y, s)


def score_logits(logits: Tensor, y: Tensor, s: Tensor | None = None) -> dict[str, float]:
    """The metrics of :func:`evaluate` from already computed logits (n, classes).

    Raises:
        DataError: ``logits`` is empty.
    """
    _nonempty(logits, "score_logits")
    y = y.to(logits.device)
    probs = logits.softmax(dim=1)
    out = {
        "loss": float(F.cross_entropy(logits, y)),
        "acc": accuracy(probs, y),
        "ece": expected_calibration_error(probs, y),
        "brier": brier_score(probs, y),
    }
    if s is not None and logits.shape[1] == 2:
        y_pred = probs.argmax(dim=1)
        s = s.to(logits.device)
        out["dp_diff"] = dp_difference(y_pred, s)
        out["eo_diff"] = eo_difference(y, y_pred, s)
    return out


def logits(model: nn.Module, x: Tensor, *, batch_size: int = 4096) -> Tensor:
    """``model``'s logits on ``x`` in one no-grad pass in eval mode (on the model's device).

    Raises:
        DataError: ``x`` is empty.
    """
    if x.shape[0] == 0:
        raise DataError(NO_EXAMPLES.format(what="logits"))
    return _logits(model, x, batch_size)


def predict(model: nn.Module, x: Tensor, *, batch_size: int = 4096) -> Tensor:
    """Arg-max class of each row of ``x`` (see :func:`logits`)."""
    return logits(model, x, batch_size=batch_size).argmax(dim=1)


def _logits(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat(
                [model(x[i : i + batch_size].to(device)) for i in range(0, x.shape[0], batch_size)]
            )
    finally:
        model.train(was_training)


def _nonempty(probs: Tensor, what: str) -> None:
    if probs.shape[0] == 0:
        raise DataError(NO_EXAMPLES.format(what=what))

"""What a version's metrics are: one module scored on a dataset's three splits.

Names follow the trial metrics (:data:`regtune.trainables.config.METRIC_MODES`)
so a gate reads the same on a trial and on a version:

- ``train_loss``, ``val_loss``, ``val_acc``, ``gap`` (= val_loss - train_loss),
  ``ece``, ``brier``, and ``dp_diff``/``eo_diff`` where the task is binary with
  groups: the validation split, as a trial reports them;
- ``test_loss``, ``test_acc``, ``test_ece``, ``test_brier``, ``test_dp_diff``,
  ``test_eo_diff``; ``test_robust_acc`` when asked for;
- per-group test rates ``test_acc.<group>``, and for a binary task
  ``test_positive_rate.<group>``, ``test_tpr.<group>``, ``test_fpr.<group>``;
- ``n_params``, ``size_bytes`` (parameters and buffers), ``sparsity``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from regtune.trainables import attacks, metrics
from regtune.trainables.data import Dataset, Split

__all__ = ["EVAL_BATCH", "evaluate_module", "group_rates", "predict_classes"]

#: Rows per forward pass (memory bound, not a tuning knob).
EVAL_BATCH = 4096


def predict_classes(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Arg-max class ids of ``module`` on ``x``, in eval mode without gradients."""
    module.eval()
    with torch.no_grad():
        return torch.cat(
            [module(x[i : i + EVAL_BATCH]).argmax(dim=1) for i in range(0, x.shape[0], EVAL_BATCH)]
        )


def group_rates(
    y: torch.Tensor, y_pred: torch.Tensor, s: torch.Tensor, groups: list[str], *, binary: bool
) -> dict[str, float]:
    """Per-group accuracy, and for binary tasks positive rate, TPR and FPR (test split)."""
    out: dict[str, float] = {}
    for code, group in enumerate(groups):
        mask = s == code
        if not bool(mask.any()):
            continue
        yg, pg = y[mask], y_pred[mask]
        out[f"test_acc.{group}"] = float((yg == pg).double().mean())
        if binary:
            out[f"test_positive_rate.{group}"] = float((pg == 1).double().mean())
            for name, label in (("test_tpr", 1), ("test_fpr", 0)):
                rows = yg == label
                if bool(rows.any()):
                    out[f"{name}.{group}"] = float((pg[rows] == 1).double().mean())
    return out


def _split_metrics(module: nn.Module, split: Split) -> dict[str, float]:
    return metrics.evaluate(module, split.x, split.y, split.s, batch_size=EVAL_BATCH)


def evaluate_module(
    module: nn.Module, dataset: Dataset, *, robust: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """Score ``module`` on ``dataset`` (see the module docstring for the names).

    Args:
        robust: ``{"eps", "steps", "samples"}`` of the PGD attack for
            ``test_robust_acc`` (None: not measured).
    """
    train = _split_metrics(module, dataset.train)
    val = _split_metrics(module, dataset.val)
    test = _split_metrics(module, dataset.test)
    out: dict[str, float] = {
        "train_loss": train["loss"],
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "gap": val["loss"] - train["loss"],
        "ece": val["ece"],
        "brier": val["brier"],
    }
    for key in ("dp_diff", "eo_diff"):
        if key in val:
            out[key] = val[key]
    out.update({f"test_{k}": v for k, v in test.items()})
    if dataset.test.s is not None:
        y_pred = predict_classes(module, dataset.test.x)
        out.update(
            group_rates(
                dataset.test.y,
                y_pred,
                dataset.test.s,
                dataset.group_names,
                binary=dataset.n_classes == 2,
            )
        )
    if robust is not None:
        n = int(robust["samples"])
        out["test_robust_acc"] = attacks.robust_accuracy(
            module,
            dataset.test.x[:n],
            dataset.test.y[:n],
            eps=float(robust["eps"]),
            steps=int(robust["steps"]),
            mask=dataset.perturb_mask,
            bounds=dataset.bounds,
            generator=torch.Generator().manual_seed(0),
            batch_size=EVAL_BATCH,
        )
    out["n_params"] = float(metrics.n_params(module))
    out["size_bytes"] = float(metrics.size_bytes(module))
    out["sparsity"] = metrics.sparsity(module)
    return out

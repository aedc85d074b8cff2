"""What a version's metrics are: one module scored on a dataset's three splits.

Names follow the trial metrics (:data:`regtune.trainables.config.METRIC_MODES`)
so a gate reads the same on a trial and on a version:

- ``val_loss``, ``val_acc``, ``ece``, ``brier``, and ``dp_diff``/``eo_diff``
  where the task is binary with groups: the validation split in eval mode, as
  a trial reports them;
- ``train_loss``: the mean cross-entropy of the module on the *full training
  split in eval mode* (one pass after training: no dropout, no augmented or
  attacked inputs, no regularizer terms), and ``gap`` = ``val_loss`` minus
  that. A trial's ``train_loss`` is instead the running mean of its training
  batches' losses during the epoch, in train mode (``regtune.trainables.loop``),
  so a version's ``train_loss`` and ``gap`` differ from those of the trial it
  was built from even for one member (e.g. trial 0.2991 / gap 0.0401, version
  0.2921 / gap 0.0471): a ``gap`` gate is checked on the version's own numbers;
- ``test_loss``, ``test_acc``, ``test_ece``, ``test_brier``, ``test_dp_diff``,
  ``test_eo_diff``; ``test_robust_acc`` when asked for;
- per-group test rates ``test_acc.<group>``, and for a binary task
  ``test_positive_rate.<group>``, ``test_tpr.<group>``, ``test_fpr.<group>``;
- for a binary task with groups, 95% percentile-bootstrap intervals of the
  test decisions' gaps and rates (:func:`regtune.trainables.bootstrap.fairness_intervals`,
  1000 resamples, seed 0), named as the trainer names them:
  ``test_dp_diff_ci_low``/``_ci_high``, ``test_eo_diff_ci_low``/``_ci_high``,
  ``test_selection_rate_<G>_ci_low``/``_ci_high`` and the same for ``tpr``/``fpr``
  (``<G>`` the group name made metric-safe); an undefined (NaN) end is left out;
- ``n_params``, ``size_bytes`` (parameters and buffers), ``sparsity``.

With post-processing (:class:`~regtune.platform.registry.postprocess.PostProcessing`)
every split is scored as a server answers: losses, ECE and Brier of the
temperature-scaled probabilities; accuracy, ``dp_diff``/``eo_diff`` and the
per-group rates of the thresholded decisions. The arg-max test numbers are
kept as ``test_raw_acc``, ``test_raw_dp_diff``, ``test_raw_eo_diff`` (as the
trainer reports them). ``test_robust_acc`` is always the arg-max PGD accuracy
of the module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from regtune.platform.registry.postprocess import PostProcessing, group_codes
from regtune.trainables import attacks, fairness, metrics
from regtune.trainables.bootstrap import fairness_intervals
from regtune.trainables.data import Dataset, Split

__all__ = ["EVAL_BATCH", "evaluate_module", "group_rates", "predict_classes"]

#: Rows per forward pass (memory bound, not a tuning knob).
EVAL_BATCH = 4096


def predict_classes(
    module: nn.Module,
    x: torch.Tensor,
    s: torch.Tensor | None = None,
    *,
    post: PostProcessing | None = None,
) -> torch.Tensor:
    """Class ids ``module`` answers on ``x`` (eval mode, no gradients): the
    arg-max, or with ``post`` the post-processed decisions of groups ``s``."""
    z = metrics.logits(module, x, batch_size=EVAL_BATCH)
    if post is None or not post.active:
        return z.argmax(dim=1)
    return _decisions(z, s, post)[1]


def _decisions(
    z: torch.Tensor, s: torch.Tensor | None, post: PostProcessing
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scaled logits, decided class ids) of raw module output ``z``."""
    codes = group_codes(s, z.shape[0])
    scaled = post.scale_logits(z, codes)
    probs = scaled.softmax(dim=1).double().cpu().numpy()
    return scaled, torch.from_numpy(post.decide(probs, codes)).to(z.device)


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


def _split_metrics(
    module: nn.Module, split: Split, post: PostProcessing | None
) -> tuple[dict[str, float], torch.Tensor]:
    """A split's metrics and the class ids they score."""
    z = metrics.logits(module, split.x, batch_size=EVAL_BATCH)
    if post is None or not post.active:
        return metrics.score_logits(z, split.y, split.s), z.argmax(dim=1)
    scaled, decided = _decisions(z, split.s, post)
    out = metrics.score_logits(scaled, split.y, split.s)
    if post.decides:
        y = split.y.to(decided.device)
        out["raw_acc"] = out["acc"]
        out["acc"] = float((decided == y).double().mean())
        for key in ("dp_diff", "eo_diff"):
            if key in out:
                out[f"raw_{key}"] = out[key]
        if split.s is not None:
            s = split.s.to(decided.device)
            out["dp_diff"] = fairness.dp_difference(decided, s)
            out["eo_diff"] = fairness.eo_difference(y, decided, s)
    return out, decided


def evaluate_module(
    module: nn.Module,
    dataset: Dataset,
    *,
    robust: Mapping[str, Any] | None = None,
    post: PostProcessing | None = None,
) -> dict[str, float]:
    """Score ``module`` on ``dataset`` (see the module docstring for the names).

    Args:
        robust: ``{"eps", "steps", "samples"}`` of the PGD attack for
            ``test_robust_acc`` (None: not measured).
        post: the version's post-processing (None: plain softmax, arg-max).
    """
    train, _ = _split_metrics(module, dataset.train, post)
    val, _ = _split_metrics(module, dataset.val, post)
    test, y_pred = _split_metrics(module, dataset.test, post)
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
        out.update(
            group_rates(
                dataset.test.y,
                y_pred,
                dataset.test.s,
                dataset.group_names,
                binary=dataset.n_classes == 2,
            )
        )
        if dataset.n_classes == 2:
            intervals = fairness_intervals(
                dataset.test.y, y_pred, dataset.test.s, dataset.group_names, seed=0
            )
            out.update({f"test_{k}": v for k, v in intervals.items() if math.isfinite(v)})
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

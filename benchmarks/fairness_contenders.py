"""The fairness benchmarks' contenders, scored on any split of a dataset.

Shared by :mod:`benchmarks.fairness_splits` (test numbers) and
:mod:`benchmarks.fairness_selection` (validation numbers, to choose settings):

* regtune: :func:`regtune_fit` trains one config with
  :func:`regtune.trainables.loop.train`; :func:`regtune_scores` re-scores the
  kept model on a split exactly as a server would decide (the fitted
  temperatures, when kept, then the per-group thresholds, when fitted), with
  an out-of-sample estimate on validation for post-processed models
  (:func:`crossfit_thresholds`), since their thresholds were fitted there.
* fairlearn: ``ExponentiatedGradient(LogisticRegression)`` and
  ``ThresholdOptimizer(LogisticRegression)``, fitted on the train split
  (:func:`fairlearn_fit`, deterministic: lbfgs) and scored with a seed
  (:func:`fairlearn_scores`; the seed only draws their randomised decisions).

Every number uses regtune's metric functions: accuracy of the hard
decisions, 15-bin ECE, ``fairness.dp_difference`` / ``eo_difference``.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from regtune.trainables import calibration, fairness, metrics, thresholds
from regtune.trainables.bootstrap import group_keys
from regtune.trainables.data import Dataset, Split
from regtune.trainables.loop import RunResult

__all__ = [
    "FAIRLEARN",
    "FAIRLEARN_EG_MAX_ITER",
    "FAIRLEARN_LR_MAX_ITER",
    "SMOKE_FAIRLEARN_EG_MAX_ITER",
    "SMOKE_FAIRLEARN_LR_MAX_ITER",
    "SMOKE_FAIRLEARN_ROWS",
    "FairlearnFit",
    "crossfit_folds",
    "crossfit_thresholds",
    "fairlearn_decisions",
    "fairlearn_fit",
    "fairlearn_scores",
    "gap_of",
    "regtune_scores",
    "seeded_config",
    "split_of",
]

#: fairlearn's inner LogisticRegression iterations and EG outer iterations.
FAIRLEARN_LR_MAX_ITER = 1000
FAIRLEARN_EG_MAX_ITER = 50
#: Smoke test: fairlearn on few rows / iterations.
SMOKE_FAIRLEARN_ROWS = 400
SMOKE_FAIRLEARN_EG_MAX_ITER = 2
#: Smoke test: L-BFGS iterations of each LogisticRegression fit (fairlearn fits
#: dozens; unconverged fits are expected and their warning is silenced).
SMOKE_FAIRLEARN_LR_MAX_ITER = 15
#: fairlearn contenders: name -> (gap kind, algorithm, ThresholdOptimizer constraint).
FAIRLEARN: dict[str, tuple[str, str, str]] = {
    "fairlearn EG-DP": ("dp", "eg", "demographic_parity"),
    "fairlearn EG-EO": ("eo", "eg", "equalized_odds"),
    "fairlearn TO-DP": ("dp", "to", "demographic_parity"),
    "fairlearn TO-EO": ("eo", "to", "equalized_odds"),
}


def seeded_config(
    cfg: Mapping[str, Any], name: str, split_seed: int, seed: int, epochs: int | None = None
) -> dict[str, Any]:
    """A copy of a benchmark config for one run: dataset ``name`` on
    ``split_seed``, training ``seed``, and ``epochs`` when given (smoke runs)."""
    out = copy.deepcopy(dict(cfg))
    out["dataset"] = {"name": name, "split_seed": split_seed}
    out["training"] = {**out["training"], "seed": seed}
    if epochs is not None:
        out["training"]["epochs"] = epochs
    return out


def split_of(ds: Dataset, name: str) -> Split:
    """``ds.train``, ``ds.val`` or ``ds.test`` by name."""
    return {"train": ds.train, "val": ds.val, "test": ds.test}[name]


def gap_of(kind: str, y: torch.Tensor, y_pred: torch.Tensor, s: torch.Tensor) -> float:
    """``dp_diff`` (kind ``dp``) or ``eo_diff`` (kind ``eo``) of hard decisions."""
    if kind == "dp":
        return fairness.dp_difference(y_pred, s)
    return fairness.eo_difference(y, y_pred, s)


def _stored(result: RunResult, prefix: str) -> torch.Tensor | None:
    """Per-group values ``<prefix>_<group>`` (or ``<prefix>_all``) from the end metrics."""
    t = result.test_metrics
    if f"{prefix}_all" in t:
        return torch.tensor([t[f"{prefix}_all"]], dtype=torch.float64)
    keys = [f"{prefix}_{key}" for key in group_keys(result.dataset.group_names)]
    if not all(k in t for k in keys):
        return None
    return torch.tensor([t[k] for k in keys], dtype=torch.float64)


def crossfit_folds(y: torch.Tensor, s: torch.Tensor, seed: int) -> np.ndarray:
    """Fold (0 or 1) of each row: every (group, label) cell shuffled with
    ``seed`` and split in halves (fold 1 gets the smaller half of an odd cell)."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(y.shape[0], dtype=np.int64)
    cells = (s.long() * 2 + y.long()).numpy()
    for cell in np.unique(cells):
        rows = np.flatnonzero(cells == cell)
        rng.shuffle(rows)
        fold[rows[: rows.size // 2]] = 1
    return fold


def crossfit_thresholds(
    scores: torch.Tensor,
    y: torch.Tensor,
    s: torch.Tensor,
    n_groups: int,
    *,
    kind: str,
    tolerance: float,
    seed: int,
) -> torch.Tensor:
    """Out-of-sample thresholded decisions on rows the thresholds would be fitted on.

    The rows are split in two halves, stratified by (group, label) and
    seeded; thresholds fitted on one half decide the other, and the other
    way round. A post-processed model's validation numbers are otherwise
    in-sample (its thresholds were fitted on validation), which would favour
    post-processing when settings are chosen on validation.
    """
    fold = crossfit_folds(y, s, seed)
    out = torch.zeros_like(y, dtype=torch.long)
    for held_out in (0, 1):
        fit_rows = torch.from_numpy(fold != held_out)
        eval_rows = torch.from_numpy(fold == held_out)
        fit = thresholds.fit_thresholds(
            scores[fit_rows], y[fit_rows], s[fit_rows], n_groups, kind=kind, tolerance=tolerance
        )
        out[eval_rows] = thresholds.apply_thresholds(
            scores[eval_rows], s[eval_rows], fit.thresholds
        )
    return out


def regtune_scores(
    result: RunResult, kind: str, split: str, *, crossfit_seed: int | None = None
) -> dict[str, float]:
    """Accuracy, gap (``kind``) and ECE of a finished run's model on ``split``.

    Decisions as a server makes them: temperatures (when the run kept them)
    scale the logits, then the fitted per-group thresholds decide (when the
    run post-processed), else the arg-max. With ``crossfit_seed`` and fitted
    thresholds, the decisions come from :func:`crossfit_thresholds` instead
    (for validation, where the stored thresholds were fitted).
    """
    data = split_of(result.dataset, split)
    assert data.s is not None  # fairness datasets have groups
    z = metrics.logits(result.model, data.x).double().cpu()
    temps = _stored(result, "temperature")
    if temps is not None and result.test_metrics.get("calibration_kept", 0.0) == 1.0:
        z = calibration.scale_logits(z, temps, data.s if temps.numel() > 1 else None)
    probs = z.softmax(dim=1)
    cuts = _stored(result, "threshold")
    if cuts is None:
        y_pred = probs.argmax(dim=1)
    elif crossfit_seed is not None:
        fair = result.config.penalties.fairness
        tolerance = (
            fair.bound - fair.margin if fair.bound is not None else thresholds.DEFAULT_TOLERANCE
        )
        y_pred = crossfit_thresholds(
            probs[:, 1],
            data.y,
            data.s,
            len(result.dataset.group_names),
            kind=kind,
            tolerance=tolerance,
            seed=crossfit_seed,
        )
    else:
        y_pred = thresholds.apply_thresholds(probs[:, 1], data.s, cuts)
    return {
        "acc": float((y_pred == data.y).double().mean()),
        "gap": gap_of(kind, data.y, y_pred, data.s),
        "ece": metrics.expected_calibration_error(probs, data.y),
    }


@dataclass(frozen=True)
class FairlearnFit:
    """A fitted fairlearn contender and its fit time."""

    algorithm: str
    kind: str
    model: Any
    fit_s: float


def fairlearn_fit(
    algorithm: str, kind: str, constraint: str, ds: Dataset, *, smoke: bool
) -> FairlearnFit:
    """Fit one fairlearn contender on the train split (all rows; smoke: a few)."""
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    assert ds.train.s is not None  # fairness datasets have groups
    rows = slice(0, SMOKE_FAIRLEARN_ROWS if smoke else None)
    # float64: ThresholdOptimizer writes float64 scores into frames of x's dtype.
    x = ds.train.x[rows].double().numpy()
    y, s = ds.train.y[rows].numpy(), ds.train.s[rows].numpy()
    lr_iter = SMOKE_FAIRLEARN_LR_MAX_ITER if smoke else FAIRLEARN_LR_MAX_ITER
    lr = LogisticRegression(max_iter=lr_iter)
    started = time.perf_counter()
    model: Any
    if algorithm == "eg":
        model = ExponentiatedGradient(
            lr,
            constraints=DemographicParity() if kind == "dp" else EqualizedOdds(),
            max_iter=SMOKE_FAIRLEARN_EG_MAX_ITER if smoke else FAIRLEARN_EG_MAX_ITER,
        )
    else:
        model = ThresholdOptimizer(
            estimator=lr, constraints=constraint, predict_method="predict_proba"
        )
    with warnings.catch_warnings():
        if smoke:
            warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y, sensitive_features=s)
    return FairlearnFit(algorithm, kind, model, time.perf_counter() - started)


def fairlearn_decisions(
    fit: FairlearnFit, ds: Dataset, split: str, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fitted contender's decisions on ``split`` (``seed`` draws the
    randomised ones) and the probabilities its ECE is taken from.

    EG's probabilities are its ``_pmf_predict``. ThresholdOptimizer's
    randomised decisions have no calibrated score: its probabilities are the
    hard decision as a one-hot (what a client receives).
    """
    data = split_of(ds, split)
    assert data.s is not None
    x = data.x.double().numpy()
    if fit.algorithm == "eg":
        y_pred = torch.as_tensor(np.asarray(fit.model.predict(x, random_state=seed))).long()
        probs = torch.as_tensor(np.asarray(fit.model._pmf_predict(x)), dtype=torch.float64)
    else:
        decided = fit.model.predict(x, sensitive_features=data.s.numpy(), random_state=seed)
        y_pred = torch.as_tensor(np.asarray(decided)).long()
        probs = F.one_hot(y_pred, 2).double()
    return y_pred, probs


def fairlearn_scores(fit: FairlearnFit, ds: Dataset, split: str, seed: int) -> dict[str, float]:
    """Accuracy, gap and ECE of a fitted contender on ``split``; ``seed`` draws
    its randomised decisions (:func:`fairlearn_decisions`)."""
    data = split_of(ds, split)
    assert data.s is not None
    y_pred, probs = fairlearn_decisions(fit, ds, split, seed)
    return {
        "acc": float((y_pred == data.y).double().mean()),
        "gap": gap_of(fit.kind, data.y, y_pred, data.s),
        "ece": metrics.expected_calibration_error(probs, data.y),
    }

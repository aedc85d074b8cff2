"""Which temperatures and thresholds a new version gets, fitted on the validation split.

The trainer fits post-processing for its own network at the end of a run
(``training.calibration``; fairness methods ending in ``postprocess``) and
stores it in the checkpoint. A version keeps those values only when it *is*
that network (a single-trial promotion). Anything else (an ensemble, whose
mean probabilities no member's thresholds describe; a distilled student; an
int8 copy) is refitted here, on the **validation split only**, with the
trainer's own functions and rules:

- temperatures: :func:`regtune.trainables.calibration.fit_temperatures` on
  the version module's output (an ensemble's log of the mean member
  probabilities), one or one per group as ``calibration`` says, kept only
  when the validation ECE drops and no arg-max decision changes (the
  trainer's rule); rows of an unknown group get one temperature fitted on
  all validation rows (``fallback_temperature``);
- thresholds: :func:`regtune.trainables.thresholds.fit_thresholds` on the
  scaled positive-class probabilities, for the constraint ``kind`` within
  ``tolerance = bound - margin`` (exact parity without a ``bound``); with
  ``penalties.fairness.robust_quantile``, the robust fit (bootstrap
  resamples seeded by ``training.seed``), as the trainer fits it: both map
  the settings to the fit through one helper,
  :class:`regtune.trainables.threshold_settings.ThresholdSettings`. They are
  fitted on the rows the settings name (``threshold_rows``: validation, or
  training + validation), and the version's ``val_postprocess_acc``,
  ``val_postprocess_gap`` and ``postprocess_feasible`` are measured on
  those same rows, as the trainer's metrics of the same names are (a
  promoted single trial reports its trial's numbers).

The test split is never looked at here; :mod:`.evaluation` scores the result
on it afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from regtune.errors import SpecError
from regtune.platform.registry.evaluation import EVAL_BATCH
from regtune.platform.registry.postprocess import PostProcessing, group_codes
from regtune.trainables import calibration, fairness, metrics, thresholds
from regtune.trainables.config import TrainConfig, parse_train_config
from regtune.trainables.data import Dataset
from regtune.trainables.threshold_settings import ThresholdSettings

__all__ = ["fit_postprocessing", "settings_of"]

NEEDS_GROUPS = (
    "post-processing {what} needs a two-class dataset with a sensitive attribute; dataset "
    "{name!r} has {n_classes} classes and sensitive={sensitive!r}"
)


def settings_of(config: TrainConfig | Mapping[str, Any]) -> dict[str, Any] | None:
    """The post-processing a training config asks for (None: none).

    Returns:
        ``{"calibration": "temperature"|"group_temperature"|"none",
        "constraint": None | {"kind": "dp"|"eo", "tolerance": bound - margin,
        "rows": "val"|"train+val"}}`` (``rows``: what a refit fits the
        thresholds on, as the trainer did); with
        ``penalties.fairness.robust_quantile`` the constraint also holds
        ``robust_quantile``, ``robust_resamples`` and ``seed``
        (``training.seed``): a refit is then the robust fit the trainer made.
    """
    cfg = parse_train_config(config, stored=True)
    # The trainer maps its config to the fit through the same helper.
    wanted = ThresholdSettings.from_config(cfg)
    constraint = None if wanted is None else wanted.as_constraint()
    if cfg.training.calibration == "none" and constraint is None:
        return None
    return {"calibration": cfg.training.calibration, "constraint": constraint}


def _as_tensor(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float64)


def fit_postprocessing(
    module: nn.Module,
    dataset: Dataset,
    settings: Mapping[str, Any] | None,
    *,
    stored_temperatures: Sequence[float] | None = None,
    stored_thresholds: Sequence[float] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> PostProcessing | None:
    """The post-processing of ``module`` under ``settings`` (see the module docstring).

    Args:
        settings: :func:`settings_of` output (None: no post-processing).
        stored_temperatures, stored_thresholds: the trainer's own values for
            this very network (single-trial promotion); used instead of a
            refit when given. A part the settings ask for but the checkpoint
            lacks is refitted.
        provenance: extra entries for the record (which trials, ...).

    Raises:
        SpecError: the settings need groups or two classes the dataset lacks.
    """
    if settings is None:
        return None
    val = dataset.val
    s, y = val.s, val.y
    groups = tuple(dataset.group_names)
    n_groups = len(groups)
    z = metrics.logits(module, val.x, batch_size=EVAL_BATCH).cpu()
    codes = group_codes(s, z.shape[0])
    source: dict[str, str | None] = {"temperatures": None, "thresholds": None}
    fit: dict[str, Any] = {}

    temps: tuple[float, ...] | None = None
    fallback: float | None = None
    mode = settings.get("calibration", "none")
    if mode != "none":
        per_group = mode == "group_temperature"
        if per_group and s is None:
            raise SpecError(
                NEEDS_GROUPS.format(
                    what="group_temperature",
                    name=dataset.name,
                    n_classes=dataset.n_classes,
                    sensitive=dataset.schema.sensitive,
                )
            )
        before = metrics.score_logits(z, y, s)["ece"]
        if stored_temperatures is not None:
            fitted = _as_tensor(stored_temperatures)
            source["temperatures"] = "trial"
        else:
            fitted = calibration.fit_temperatures(
                z, y, s if per_group else None, n_groups if per_group else 1
            )
            source["temperatures"] = "refit"
        scaled = calibration.scale_logits(z, fitted, s)
        after = metrics.score_logits(scaled, y, s)["ece"]
        same = torch.equal(z.argmax(dim=1), scaled.argmax(dim=1))
        kept = stored_temperatures is not None or (after < before and same)
        fit.update(
            {
                "val_ece_uncalibrated": before,
                "val_ece_calibrated": after,
                "calibration_kept": kept,
                "fitted_temperatures": [float(t) for t in fitted.tolist()],
            }
        )
        if kept:
            temps = tuple(float(t) for t in fitted.tolist())
            if len(temps) > 1:
                fallback = float(calibration.fit_temperatures(z, y)[0])
    scaling = PostProcessing(groups, temperatures=temps, fallback_temperature=fallback)

    cuts: tuple[float, ...] | None = None
    lottery: tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]] | None = None
    constraint = settings.get("constraint")
    rows = "val"
    if constraint is not None:
        if s is None or dataset.n_classes != 2:
            raise SpecError(
                NEEDS_GROUPS.format(
                    what=f"thresholds ({constraint['kind']})",
                    name=dataset.name,
                    n_classes=dataset.n_classes,
                    sensitive=dataset.schema.sensitive,
                )
            )
        wanted = ThresholdSettings.from_constraint(constraint)
        rows = wanted.rows
        scores = scaling.scale_logits(z, codes).softmax(dim=1)[:, 1]
        # The rows the thresholds are fitted on (as the trainer did).
        fit_scores, fit_y, fit_s = scores, y, s
        train = dataset.train
        # Fitted on, and measured on: gap, accuracy and feasibility count the
        # fitting rows, as the trainer's metrics of the same names do.
        if rows == "train+val" and train.s is not None:
            z_train = metrics.logits(module, train.x, batch_size=EVAL_BATCH).cpu()
            scaled_train = scaling.scale_logits(z_train, group_codes(train.s, len(z_train)))
            fit_scores = torch.cat([scaled_train.softmax(dim=1)[:, 1], scores])
            fit_y, fit_s = torch.cat([train.y, y]), torch.cat([train.s, s])
        robust_gap: float | None = None
        if wanted.randomized:
            # A lottery is refitted (the trial's checkpoint keeps it, the
            # promotion does not read it): the same scores give the same
            # programme, so the same lottery.
            drawn = wanted.fit_lottery(fit_scores, fit_y, fit_s, n_groups)
            lottery = (drawn.thresholds, drawn.weights)
            source["thresholds"] = "refit"
        elif stored_thresholds is not None:
            cuts = tuple(float(t) for t in stored_thresholds)
            source["thresholds"] = "trial"
            # The trial's own robust criterion, recounted on the same rows (None: plain).
            robust_gap = wanted.robust_gap(fit_scores, fit_y, fit_s, n_groups, cuts)
        else:
            result = wanted.fit(fit_scores, fit_y, fit_s, n_groups)
            cuts = result.thresholds
            source["thresholds"] = "refit"
            robust_gap = result.robust_gap
        if robust_gap is not None:
            # The trainer's metric of the same name: the resampled gap's quantile.
            fit["val_postprocess_robust_gap"] = robust_gap
        if lottery is not None:
            # The trainer's numbers of a lottery: expected over the draws, and drawn.
            gap, accuracy = drawn.gap, drawn.accuracy
            fit["val_postprocess_realized_gap"] = drawn.realized_gap
            fit["val_postprocess_realized_acc"] = drawn.realized_accuracy
        else:
            assert cuts is not None
            decided = thresholds.apply_thresholds(fit_scores, fit_s, cuts)
            gap = (
                fairness.dp_difference(decided, fit_s)
                if wanted.kind == "dp"
                else fairness.eo_difference(fit_y, decided, fit_s)
            )
            accuracy = float((decided == fit_y).double().mean())
        # As fit_thresholds: a decision no better than a constant one is not feasible.
        useful = thresholds.beats_constant(accuracy, thresholds.constant_accuracy(fit_y))
        fit.update(
            {
                "postprocess_fit_rows": float(fit_y.shape[0]),  # as the trainer reports it
                "val_postprocess_acc": accuracy,
                "val_postprocess_gap": gap,
                "postprocess_feasible": (
                    bool(thresholds.within_tolerance(gap, wanted.tolerance))
                    and useful
                    and (
                        robust_gap is None
                        or bool(thresholds.within_tolerance(robust_gap, wanted.tolerance))
                    )
                ),
            }
        )
    record = {
        "fitted_on": "validation",
        # The thresholds' rows (a trial's own were fitted as its trainer did).
        **({"thresholds_fitted_on": rows} if constraint is not None else {}),
        "source": source,
        "fit": fit,
        **dict(provenance or {}),
    }
    return PostProcessing(
        groups,
        temperatures=temps,
        fallback_temperature=fallback,
        thresholds=cuts,
        lottery=lottery,
        settings={"calibration": mode, "constraint": constraint},
        record=record,
    )

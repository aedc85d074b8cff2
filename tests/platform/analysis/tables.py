"""Hand-made epochs tables of the results contract's shape, with known answers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from regtune.platform.analysis.path import regularization_path
from regtune.platform.analysis.swept import SweptParameter
from regtune.trainables.metric_names import reliability_name

#: Train/val losses per epoch, built by hand.
OVERFIT = {
    "train_loss": [1.0, 0.5, 0.25, 0.12, 0.06, 0.03, 0.015, 0.01],
    "val_loss": [1.0, 0.6, 0.45, 0.42, 0.45, 0.5, 0.56, 0.62],
}
UNDERFIT = {
    "train_loss": [2.30, 2.20, 2.15, 2.13, 2.12, 2.12, 2.11, 2.11],
    "val_loss": [2.31, 2.22, 2.17, 2.15, 2.14, 2.14, 2.13, 2.13],
}
UNSTABLE = {
    "train_loss": [1.0, 0.6, 0.4, 2.5, 0.5, 0.35, float("nan"), float("nan")],
    "val_loss": [1.0, 0.65, 0.45, 2.6, 0.55, 0.4, float("nan"), float("nan")],
}
HEALTHY = {
    "train_loss": [1.0, 0.5, 0.3, 0.2, 0.15, 0.12, 0.1, 0.09],
    "val_loss": [1.0, 0.55, 0.35, 0.28, 0.25, 0.24, 0.23, 0.225],
}
SHORT = {"train_loss": [1.0, 0.8], "val_loss": [1.0, 0.9]}


def epochs_table(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    configs: Mapping[str, Mapping[str, float]] | None = None,
    extra: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    experiment: str = "hand",
) -> pd.DataFrame:
    """One row per (trial, epoch): contract columns, the given curves, derived metrics."""
    rows = []
    for trial_id, curve in curves.items():
        n = len(curve["train_loss"])
        for i in range(n):
            train, val = curve["train_loss"][i], curve["val_loss"][i]
            row: dict[str, object] = {
                "experiment": experiment,
                "trial_id": trial_id,
                "iteration": i + 1,
                "time_total_s": float(i + 1),
                "timestamp": 1.7e9 + i,
            }
            for key, value in (configs or {}).get(trial_id, {}).items():
                row[f"config.{key}"] = value
            row["train_loss"] = train
            row["val_loss"] = val
            row["val_acc"] = float(np.clip(1.0 - val / 2.5, 0.0, 1.0))
            row["gap"] = val - train
            for key, values in (extra or {}).get(trial_id, {}).items():
                row[key] = values[i]
            rows.append(row)
    return pd.DataFrame(rows)


def write_experiment(
    exp: str,
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    configs: Mapping[str, Mapping[str, object]],
    *,
    spec: Mapping[str, object] | None = None,
    running: Sequence[str] = (),
    max_t: int = 8,
    final: Mapping[str, Mapping[str, float]] | None = None,
    failed: Sequence[str] = (),
) -> None:
    """Write real result parts through the results store's writer (``configs`` nested);
    ``final[trial]`` is merged into the trial's last epoch (its final report); the trials in
    ``failed`` end with an error (status ``error``)."""
    from regtune.platform.results import ResultsWriter

    writer = ResultsWriter(exp, max_t=max_t, spec=spec, flush_s=0)
    for trial_id, curve in curves.items():
        for i, (train, val) in enumerate(zip(curve["train_loss"], curve["val_loss"], strict=True)):
            writer.add(
                trial_id,
                {
                    "training_iteration": i + 1,
                    "config": configs[trial_id],
                    "train_loss": train,
                    "val_loss": val,
                    "val_acc": float(np.clip(1.0 - val / 2.5, 0.0, 1.0)),
                    "ece": 0.05 + 0.01 * i,
                    "brier": 0.1,
                    **(
                        (final or {}).get(trial_id, {}) if i == len(curve["train_loss"]) - 1 else {}
                    ),
                },
            )
        if trial_id not in running:
            writer.end_trial(trial_id, error=trial_id in failed)
    writer.close()


#: Reliability slots of the ECE (15 bins + conf == 1.0), as the trainable reports them.
RELIABILITY_SLOTS = 16
#: Slot -> (count, mean confidence, accuracy); every other slot is empty.
BINS = {13: (10, 0.9, 0.8), 14: (30, 0.97, 1.0)}
#: ECE by hand: (10 * |0.8 - 0.9| + 30 * |1.0 - 0.97|) / 40.
ECE = (10 * 0.1 + 30 * 0.03) / 40
GROUPS = {
    "test_selection_rate_F": (0.2, 0.15, 0.25),
    "test_selection_rate_M": (0.4, 0.35, 0.45),
    "test_acc_F": (0.85, 0.8, 0.9),
    "test_acc_M": (0.8, 0.75, 0.85),
}


def final_report() -> dict[str, float]:
    """A final report of the trainable's shape: test reliability bins (:data:`BINS`), per-group
    rates with intervals (:data:`GROUPS`) and ``test_ece`` (:data:`ECE`)."""
    out: dict[str, float] = {}
    for slot in range(RELIABILITY_SLOTS):
        count, conf, acc = BINS.get(slot, (0, math.nan, math.nan))
        out[reliability_name("test", slot, "count")] = float(count)
        out[reliability_name("test", slot, "conf")] = conf
        out[reliability_name("test", slot, "acc")] = acc
    for name, (value, low, high) in GROUPS.items():
        out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = value, low, high
    out["test_ece"] = ECE
    return out


def last_epoch_only(values: dict[str, float], n: int = 8) -> dict[str, list[float]]:
    """``values`` as per-epoch columns of an ``n``-epoch trial, NaN before the last epoch."""
    return {k: [math.nan] * (n - 1) + [v] for k, v in values.items()}


#: A diagnosis table with no trial in it (verdict tests that only read paths).
NO_DIAGNOSIS = pd.DataFrame(columns=["too_short"])


def val_acc_path(parameter: SweptParameter, acc: Mapping[float, float]) -> pd.DataFrame:
    """The val_acc path of one trial per strength, ``acc`` mapping strength to val_acc."""
    summary = pd.DataFrame(
        {
            "trial_id": [f"t{i}" for i in range(len(acc))],
            parameter.column: list(acc),
            "val_acc": list(acc.values()),
        }
    ).set_index("trial_id")
    return regularization_path(summary, parameter, ("val_acc", "max"))

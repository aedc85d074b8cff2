"""Hand-made epochs tables of the results contract's shape, with known answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

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
) -> None:
    """Write real result parts through the results store's writer (``configs`` nested)."""
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
                },
            )
        if trial_id not in running:
            writer.end_trial(trial_id, error=False)
    writer.close()

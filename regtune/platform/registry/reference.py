"""The training-input reference a server compares live traffic against (drift).

Format (the contract with :mod:`regtune.serve`)::

    {"n": rows,
     "features": {
        "<numeric>":     {"kind": "numeric", "quantiles": [101 values, q=0.00..1.00],
                          "mean": m, "std": s},
        "<categorical>": {"kind": "categorical", "frequencies": {"<category>": share}}},
     "prediction": {"<class>": share},
     "numeric_source": "raw" | "encoded"}

Numeric quantiles, mean and std are computed in float64 from the raw
training columns as they were read (``numeric_source: "raw"``): a 0 stays 0
and a 17 stays 17, so point masses match served values exactly. When only
the encoded float32 training matrix is at hand (a dataset object without
``raw_train``), they are recovered as ``x * scale + center`` and carry float32
round-off (0 may come back as -3e-05); such a reference says
``numeric_source: "encoded"`` so a consumer can allow for it. Categorical
shares come from the one-hot blocks (exact either way). Features are named as
raw record keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from regtune.platform.registry.meta_checks import N_QUANTILES, SOURCE_ENCODED, SOURCE_RAW
from regtune.trainables.schema import FeatureSchema

__all__ = ["N_QUANTILES", "SOURCE_ENCODED", "SOURCE_RAW", "reference_summary"]


def reference_summary(
    schema: FeatureSchema,
    x: torch.Tensor,
    predicted: torch.Tensor,
    raw: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Summarise the training split for drift.

    Args:
        x: the encoded training rows (categorical shares come from them).
        predicted: the model's predicted class ids on ``x``.
        raw: the same rows as raw records (``schema.transform`` of them gives
            ``x``); numeric summaries are exact when given, reconstructed
            from ``x`` otherwise.
    """
    matrix = x.detach().to("cpu", torch.float64).numpy()
    if raw is not None and len(raw) != matrix.shape[0]:
        raise ValueError(
            f"raw training rows ({len(raw)}) and encoded rows ({matrix.shape[0]}) differ"
        )
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    features: dict[str, Any] = {}
    for j, num in enumerate(schema.numeric):
        if raw is not None:
            column = pd.to_numeric(raw[num.name]).to_numpy(dtype=np.float64)
        else:
            column = matrix[:, j] * num.scale + num.center
        raw_values = column
        features[num.name] = {
            "kind": "numeric",
            "quantiles": [float(v) for v in np.quantile(raw_values, levels)],
            "mean": float(raw_values.mean()),
            "std": float(raw_values.std()),
        }
    offset = len(schema.numeric)
    n = max(1, matrix.shape[0])
    for cat in schema.categorical:
        block = matrix[:, offset : offset + len(cat.vocabulary)]
        counts = block.sum(axis=0)
        features[cat.name] = {
            "kind": "categorical",
            "frequencies": {v: float(c) / n for v, c in zip(cat.vocabulary, counts, strict=True)},
        }
        offset += len(cat.vocabulary)
    counts = torch.bincount(predicted.to("cpu").long(), minlength=len(schema.classes)).tolist()
    prediction = {str(c): counts[i] / n for i, c in enumerate(schema.classes)}
    return {
        "n": int(matrix.shape[0]),
        "features": features,
        "prediction": prediction,
        "numeric_source": SOURCE_RAW if raw is not None else SOURCE_ENCODED,
    }

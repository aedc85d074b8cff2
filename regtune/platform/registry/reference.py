"""The training-input reference a server compares live traffic against (drift).

Format (the contract with :mod:`regtune.serve`)::

    {"n": rows,
     "features": {
        "<numeric>":     {"kind": "numeric", "quantiles": [101 values, q=0.00..1.00],
                          "mean": m, "std": s},
        "<categorical>": {"kind": "categorical", "frequencies": {"<category>": share}}},
     "prediction": {"<class>": share}}

Numeric values are the raw values (before centring and scaling), recovered
from the encoded training matrix as ``x * scale + center``; categorical
shares come from the one-hot blocks. Features are named as raw record keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from regtune.trainables.schema import FeatureSchema

__all__ = ["N_QUANTILES", "reference_summary"]

#: Quantile levels 0.00, 0.01, ..., 1.00.
N_QUANTILES = 101


def reference_summary(
    schema: FeatureSchema, x: torch.Tensor, predicted: torch.Tensor
) -> dict[str, Any]:
    """Summarise encoded training rows ``x`` and the model's predicted class ids."""
    matrix = x.detach().to("cpu", torch.float64).numpy()
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    features: dict[str, Any] = {}
    for j, num in enumerate(schema.numeric):
        raw = matrix[:, j] * num.scale + num.center
        features[num.name] = {
            "kind": "numeric",
            "quantiles": [float(v) for v in np.quantile(raw, levels)],
            "mean": float(raw.mean()),
            "std": float(raw.std()),
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
    return {"n": int(matrix.shape[0]), "features": features, "prediction": prediction}

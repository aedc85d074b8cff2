"""Several objectives rank the trials with a finite value for each, numpy's included."""

from __future__ import annotations

import numpy as np

from regtune.platform.registry.selection import rank

OBJECTIVES = [("val_acc", "max"), ("val_loss", "min")]


def test_numpy_values_are_ranked_and_a_bool_is_not() -> None:
    """A row of numpy scalars (as a stored result reads back) used to be left out
    as having no value, so no trial was ranked."""
    rows = [
        {"val_acc": np.float32(0.9), "val_loss": np.float32(0.3)},
        {"val_acc": np.float64(0.95), "val_loss": np.int64(1)},
        {"val_acc": True, "val_loss": 0.1},
        {"val_acc": 0.99, "val_loss": float("nan")},
    ]
    assert rank(rows, OBJECTIVES, ["a", "b", "c", "d"]) == [1, 0]

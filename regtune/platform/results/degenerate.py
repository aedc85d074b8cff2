"""Is a trial a constant predictor (the same class for everyone)?

A model that predicts the majority class for every example is a legitimate
point of no Pareto front: on a fairness sweep it has ``dp_diff = eo_diff =
0`` exactly and the majority-class accuracy (0.759 on Adult), so it is never
dominated on the fairness axes and crowds out the useful trade-offs. Such
trials are marked ``degenerate`` in the trial table and kept off the
outcome's front (and best trial) by default.

The rule reads only the reported metrics: an arg-max prediction that is the
same for every example has a selection rate, true-positive rate and
false-positive rate of exactly 0 or exactly 1 in every group, so both
reported gaps are exactly 0.0. A model that varies its predictions gets both
gaps exactly zero only if every group's rates are equal as fractions, which
does not happen on real groups of different sizes except by coincidence.
Without a sensitive attribute (no ``dp_diff``/``eo_diff`` reported) the
metrics cannot tell, and no trial is marked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["GROUP_GAPS", "constant_predictors", "is_constant_predictor"]

#: The reported gaps that are exactly zero for a constant prediction.
GROUP_GAPS = ("dp_diff", "eo_diff")


def is_constant_predictor(metrics: Mapping[str, Any]) -> bool:
    """Whether ``metrics`` (one epoch's, or a trial's last) show a model that
    predicts one class for every example: every gap in :data:`GROUP_GAPS`
    reported and exactly 0.0. Missing or NaN gaps give ``False``."""
    for key in GROUP_GAPS:
        value = metrics.get(key)
        if value is None or isinstance(value, bool):
            return False
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        if math.isnan(number) or number != 0.0:
            return False
    return True


def constant_predictors(gaps: Any) -> Any:
    """:func:`is_constant_predictor` for many rows at once: ``gaps`` is an
    (n, len(:data:`GROUP_GAPS`)) float array, one row per trial; a row is a
    constant predictor when every gap is exactly 0.0 (NaN is not)."""
    import numpy as np

    return (np.asarray(gaps, dtype=float) == 0.0).all(axis=1)

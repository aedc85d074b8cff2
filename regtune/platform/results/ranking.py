"""Which trial is best: one order for the sweep summary, the analysis and the registry.

Trials are ordered by the first objective. Ties are common (accuracy on a few
hundred validation rows takes few distinct values: three of the quickstart's
six trials share its best ``val_acc``), so they are broken the same way
everywhere, and ``regtune sweep``, ``regtune analyze`` and ``regtune promote``
name the same best trial:

1. the remaining objectives, in the order the spec lists them;
2. the validation loss (:data:`TIE_BREAK`, lower first) where it was reported:
   a continuous measure of the same fit, where accuracy is a step function;
3. the trial id, so the order never depends on the order trials were read in.

A missing or non-finite value ranks after every finite one at its step.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

__all__ = ["TIE_BREAK", "best_first"]

#: After the objectives, ties go to the lower validation loss.
TIE_BREAK: tuple[str, str] = ("val_loss", "min")


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return math.nan
    return float(value)


def _step(value: object, mode: str) -> tuple[int, float]:
    number = _number(value)
    if not math.isfinite(number):
        return (1, 0.0)
    return (0, -number if mode == "max" else number)


def best_first(
    rows: Sequence[Mapping[str, object]],
    trial_ids: Sequence[str],
    objectives: Sequence[tuple[str, str]],
) -> list[int]:
    """Indices of ``rows`` whose first objective is finite, best first (see the module).

    ``rows[i]`` maps metric names to values for trial ``trial_ids[i]``;
    ``objectives`` are ``(metric, "min" | "max")`` pairs, the first deciding.

    Raises:
        ValueError: no objectives, or ``rows`` and ``trial_ids`` differ in length.
    """
    if not objectives:
        raise ValueError("best_first needs at least one objective")
    if len(rows) != len(trial_ids):
        raise ValueError(f"{len(rows)} rows but {len(trial_ids)} trial ids")
    first = objectives[0][0]
    keys = [*objectives[1:], TIE_BREAK]
    usable = [i for i, row in enumerate(rows) if math.isfinite(_number(row.get(first)))]

    def key(i: int) -> tuple[object, ...]:
        row = rows[i]
        steps = [_step(row.get(metric), mode) for metric, mode in (objectives[0], *keys)]
        return (*steps, str(trial_ids[i]))

    return sorted(usable, key=key)

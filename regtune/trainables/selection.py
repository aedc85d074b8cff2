"""Which epoch a run keeps when a fairness constraint bounds its gap.

Early stopping keeps the epoch with the best validation metric; with
``penalties.fairness.bound`` set, a run instead keeps the **most accurate
epoch whose validation gap holds the bound with a margin**
(``gap <= bound - margin``): an epoch that only just meets the bound on
validation tends to miss it on test, where a small group (women earning
>50K in Adult) makes the gap noisy. When no epoch holds, the run keeps the
epoch with the smallest gap and says so.

The comparison allows :data:`GAP_TOLERANCE` of float rounding: a gap of 1/5
holds ``bound=0.3, margin=0.1`` although ``0.3 - 0.1`` is
``0.19999999999999998`` in floats. Post-processing's thresholds use the same
slack (``thresholds.DEFAULT_TOLERANCE`` is this constant; it lives here
because this module, unlike that one, is torch-free).

The rule is monotone in the history: adding an epoch either keeps the
previous choice or picks the new epoch (ties go to the earlier epoch), so a
trainer can snapshot the weights of the current epoch exactly when
:func:`select_epoch` returns it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FEASIBLE",
    "GAP_TOLERANCE",
    "KEPT_REASONS",
    "SMALLEST_GAP",
    "Selection",
    "gap_metric",
    "select_epoch",
]

#: ``kept_reason``: the most accurate epoch whose validation gap met ``bound - margin``.
FEASIBLE = "most_accurate_within_bound"
#: ``kept_reason``: no epoch met ``bound - margin``; the one with the smallest gap.
SMALLEST_GAP = "no_epoch_within_bound_smallest_gap"
#: Every reason, indexed by the code reported as ``kept_reason_code`` (a number,
#: because trial metrics are floats).
KEPT_REASONS = (SMALLEST_GAP, FEASIBLE)
#: Float rounding allowed when a gap is compared with ``bound - margin``: a gap
#: counts as within the bound when ``gap <= bound - margin + GAP_TOLERANCE``.
#: ``regtune.trainables.thresholds.DEFAULT_TOLERANCE`` is this constant.
GAP_TOLERANCE = 1e-9

NO_EPOCHS = "select_epoch needs at least one epoch of history"
MISSING_METRIC = "epoch {epoch} of the history has no {key!r}; selection needs it in every epoch"


@dataclass(frozen=True)
class Selection:
    """The kept epoch (1-based, as in the history's ``epoch``) and why."""

    epoch: int
    reason: str

    @property
    def feasible(self) -> bool:
        """True when the kept epoch met ``bound - margin`` on validation."""
        return self.reason == FEASIBLE


def gap_metric(kind: Literal["dp", "eo"] | str) -> str:
    """The validation metric a constraint of ``kind`` bounds (``dp_diff``/``eo_diff``)."""
    return {"dp": "dp_diff", "eo": "eo_diff"}[kind]


def select_epoch(
    history: Sequence[Mapping[str, float]],
    *,
    gap_key: str,
    bound: float,
    margin: float = 0.0,
    score_key: str = "val_acc",
) -> Selection:
    """The epoch to keep: the highest ``score_key`` among epochs with
    ``gap_key <= bound - margin`` (up to :data:`GAP_TOLERANCE` of float
    rounding); else the smallest ``gap_key``.

    A NaN gap never holds the bound. Ties go to the earlier epoch.

    Raises:
        ValueError: the history is empty or an epoch lacks a key.
    """
    if not history:
        raise ValueError(NO_EPOCHS)
    limit = bound - margin + GAP_TOLERANCE
    best_feasible: tuple[float, int] | None = None
    smallest: tuple[float, int] | None = None
    for index, row in enumerate(history):
        epoch = int(row.get("epoch", index + 1))
        for key in (gap_key, score_key):
            if key not in row:
                raise ValueError(MISSING_METRIC.format(epoch=epoch, key=key))
        gap, score = float(row[gap_key]), float(row[score_key])
        if math.isnan(gap):
            continue
        if gap <= limit and (best_feasible is None or score > best_feasible[0]):
            best_feasible = (score, epoch)
        if smallest is None or gap < smallest[0]:
            smallest = (gap, epoch)
    if best_feasible is not None:
        return Selection(best_feasible[1], FEASIBLE)
    if smallest is None:  # every gap NaN: keep the last epoch
        return Selection(int(history[-1].get("epoch", len(history))), SMALLEST_GAP)
    return Selection(smallest[1], SMALLEST_GAP)

"""Which trials join an ensemble: objectives parsed, trials ranked best first.

One objective: trials sorted by it. Ties on one objective go as everywhere
(:mod:`~regtune.platform.results.ranking`). Several: NSGA-II order (Pareto front
first, then the next front; within a front by crowding distance, so the
chosen members spread along the front), from
:func:`regtune.platform.analysis.pareto.pareto_rank_order`. Trials with a
missing or NaN objective value are never chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from regtune.errors import SpecError
from regtune.platform.analysis.pareto import pareto_rank_order, to_minimization
from regtune.platform.results.ranking import best_first
from regtune.platform.results.schema import is_finite_number
from regtune.trainables.config import METRIC_MODES

__all__ = ["Objective", "parse_objective", "rank"]

Objective = tuple[str, str]

BAD_OBJECTIVE = (
    "--objective {text!r} is not allowed; expected METRIC or METRIC:MODE with MODE 'min' or "
    "'max' (e.g. 'val_acc:max'); metrics with a default mode: {known}"
)


def parse_objective(text: str) -> Objective:
    """``"val_acc:max"`` -> ``("val_acc", "max")``; ``"val_acc"`` uses the metric's usual mode.

    Raises:
        SpecError: an empty metric, a mode other than min/max, or a bare
            metric without a known default mode.
    """
    metric, sep, mode = text.strip().partition(":")
    metric = metric.strip()
    mode = mode.strip() if sep else _default_mode(metric)
    if not metric or mode not in ("min", "max"):
        raise SpecError(BAD_OBJECTIVE.format(text=text, known=", ".join(sorted(METRIC_MODES))))
    return metric, mode


def _default_mode(metric: str) -> str:
    """A metric's usual direction; ``test_acc`` goes like ``val_acc``, ``test_ece`` like ``ece``."""
    rest = metric.removeprefix("test_")
    for key in (metric, rest, f"val_{rest}"):
        if key in METRIC_MODES:
            return METRIC_MODES[key]
    return ""


def rank(
    rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective], trial_ids: Sequence[str]
) -> list[int]:
    """Indices of ``rows`` (trials ``trial_ids``) with finite values for every objective,
    best first.

    With one objective, ties are broken as in the sweep summary and the
    analysis (:mod:`~regtune.platform.results.ranking`). With several, the
    NSGA-II order (front by front, spread along each), led by the trial the
    sweep summary and the analysis call best (it is on the first front: the
    best first objective, ties broken by the others), so ``--top-k 1``
    registers that trial either way.
    """
    if len(objectives) == 1:
        return best_first(rows, trial_ids, objectives)
    usable = [
        i
        for i, row in enumerate(rows)
        if all(is_finite_number(row.get(metric)) for metric, _ in objectives)
    ]
    if not usable:
        return []
    values = [[float(rows[i][m]) for m, _ in objectives] for i in usable]
    points = to_minimization(values, [mode for _, mode in objectives])
    order = [usable[int(j)] for j in pareto_rank_order(points)]
    lead = usable[
        best_first([rows[i] for i in usable], [trial_ids[i] for i in usable], objectives)[0]
    ]
    return [lead, *(i for i in order if i != lead)]

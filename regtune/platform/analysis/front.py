"""The Pareto front of a sweep's trials over chosen objectives, and its hypervolume.

Input is the per-trial table of :func:`regtune.platform.analysis.summary.trial_summary`.
Degenerate trials (a constant predictor: the results store's ``degenerate``
column) are left off the front by default: a model that always predicts one
class is trivially "fair" (dp_diff 0) and small, and would sit on any front
that includes a fairness objective while being useless.

The hypervolume is measured in the objectives' own units against a reference
point that is always reported with it (by default the worst value of each
objective among the trials considered, moved :data:`REFERENCE_MARGIN` of the
objective's range further out so that the extreme trials count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from regtune.errors import SpecError
from regtune.platform.analysis.pareto import (
    hypervolume,
    non_dominated_mask,
    to_minimization,
    validate_objectives,
)
from regtune.platform.analysis.summary import check_metric, degenerate_flags
from regtune.platform.results.schema import metric_mode

__all__ = [
    "MSG_BAD_REFERENCE",
    "REFERENCE_MARGIN",
    "Front",
    "default_reference",
    "pareto_table",
    "resolve_objectives",
]

#: How far past the worst observed value the default reference point lies, as a
#: share of the objective's observed range (or of its magnitude when the range is 0).
REFERENCE_MARGIN = 0.1

MSG_BAD_REFERENCE = "reference: needs one finite value per objective ({names}); got {value!r}"
MSG_NO_MODE = "objective {metric!r}: no direction known; write it as {metric}:min or {metric}:max"


@dataclass(frozen=True)
class Front:
    """A Pareto analysis.

    ``table``: one row per trial (index ``trial_id``) with the objective values,
    ``on_front`` (bool), and ``excluded`` (why a trial was left out: ``""``,
    ``"error"`` (the trial failed), ``"degenerate"`` or ``"no value"``).
    ``reference`` is the reference point in the objectives' own units,
    ``hypervolume`` the volume the front dominates up to it (in the product
    of those units).
    """

    table: pd.DataFrame
    objectives: tuple[tuple[str, str], ...]
    reference: dict[str, float]
    hypervolume: float

    @property
    def front(self) -> pd.DataFrame:
        """The trials on the front."""
        return self.table[self.table["on_front"]]

    @property
    def dominated(self) -> pd.DataFrame:
        """The trials considered and not on the front."""
        return self.table[~self.table["on_front"] & (self.table["excluded"] == "")]


def resolve_objectives(
    names: Sequence[str | tuple[str, str | None]],
    spec_modes: Mapping[str, str] | None = None,
) -> tuple[tuple[str, str], ...]:
    """Objectives as ``(metric, mode)`` pairs.

    Each item is a pair, or a string ``metric`` or ``metric:mode``; a missing
    mode comes from ``spec_modes`` (the spec's objectives), then from the
    results store's one rule,
    :func:`~regtune.platform.results.schema.metric_mode` (the platform's
    metrics, ``test_<m>`` as ``<m>``, ``*_acc`` max, ``*_loss`` and
    ``*_time_s`` min).

    Raises:
        SpecError: no mode can be found, a mode other than min/max, or a
            metric listed twice.
    """
    pairs: list[tuple[str, str]] = []
    for item in names:
        if isinstance(item, str):
            metric, _, given = item.partition(":")
            mode: str | None = given or None
        else:
            metric, mode = item
        mode = mode or (spec_modes or {}).get(metric) or metric_mode(metric)
        if mode is None:
            raise SpecError(MSG_NO_MODE.format(metric=metric))
        pairs.append((metric, mode))
    return validate_objectives(pairs)


def default_reference(points: np.ndarray) -> np.ndarray:
    """Worst finite value per column (minimisation space), pushed out by the margin."""
    finite = np.where(np.isfinite(points), points, np.nan)
    if points.shape[0] == 0 or np.all(np.isnan(finite)):
        return np.ones(points.shape[1])
    worst = np.nanmax(finite, axis=0)
    best = np.nanmin(finite, axis=0)
    span = worst - best
    scale = np.where(span > 0, span, np.maximum(np.abs(worst), 1.0))
    return np.asarray(worst + REFERENCE_MARGIN * scale)


def pareto_table(
    summary: pd.DataFrame,
    objectives: Sequence[tuple[str, str]],
    *,
    reference: Mapping[str, float] | None = None,
    include_degenerate: bool = False,
) -> Front:
    """The non-dominated trials of ``summary`` under ``objectives``.

    Trials with no value (NaN) for an objective, errored trials (``status``
    ``error``, as the sweep summary's front leaves them out), and degenerate
    trials unless ``include_degenerate``, are kept in the table but marked ``excluded`` and
    never on the front. ``reference`` (objective -> value, in its own units)
    overrides the default reference point.

    Raises:
        SpecError: an objective is not a column of ``summary`` (the message
            lists the metrics present) or ``reference`` lacks an objective.
    """
    objectives = validate_objectives(objectives)
    skip = {"epochs", "iteration", "status", "degenerate"}
    present = [
        str(c)
        for c in summary.columns
        if not str(c).startswith("config.")
        and c not in skip
        and pd.api.types.is_numeric_dtype(summary[c])
    ]
    for metric, _mode in objectives:
        check_metric(metric, present, "objective")
    names = [metric for metric, _mode in objectives]
    modes = [mode for _metric, mode in objectives]
    raw = summary[names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    excluded = np.full(raw.shape[0], "", dtype=object)
    excluded[np.isnan(raw).any(axis=1)] = "no value"
    if not include_degenerate:
        excluded[degenerate_flags(summary)] = "degenerate"
    if "status" in summary.columns:
        excluded[(summary["status"] == "error").to_numpy(dtype=bool)] = "error"
    considered = np.flatnonzero(excluded == "")
    points = to_minimization(raw[considered], modes)
    mask = non_dominated_mask(points)
    on_front = np.zeros(raw.shape[0], dtype=bool)
    on_front[considered[mask]] = True
    signs = np.array([1.0 if mode == "min" else -1.0 for mode in modes])
    if reference is None:
        ref_min = default_reference(points)
    else:
        try:
            ref_raw = np.array([float(reference[name]) for name in names])
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(
                MSG_BAD_REFERENCE.format(names=", ".join(names), value=dict(reference))
            ) from exc
        if not np.all(np.isfinite(ref_raw)):
            raise SpecError(MSG_BAD_REFERENCE.format(names=", ".join(names), value=dict(reference)))
        ref_min = ref_raw * signs
    volume = hypervolume(points[mask], ref_min) if points.size else 0.0
    table = summary[names].copy()
    table["on_front"] = on_front
    table["excluded"] = excluded
    ref = {
        name: float(value * sign) for name, value, sign in zip(names, ref_min, signs, strict=True)
    }
    return Front(table=table, objectives=objectives, reference=ref, hypervolume=float(volume))

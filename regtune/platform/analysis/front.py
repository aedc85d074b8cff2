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

from collections.abc import Collection, Mapping, Sequence
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
from regtune.platform.analysis.summary import check_metric, degenerate_flags, failed_flags
from regtune.platform.results.schema import metric_mode

__all__ = [
    "MSG_BAD_REFERENCE",
    "MSG_BEST_OFF_FRONT",
    "MSG_REFERENCE_UNBEATEN",
    "MSG_UNKNOWN_REFERENCE",
    "REFERENCE_MARGIN",
    "Front",
    "best_off_front",
    "default_reference",
    "pareto_table",
    "resolve_objectives",
]

#: How far past the worst observed value the default reference point lies, as a
#: share of the objective's observed range (or of its magnitude when the range is 0).
REFERENCE_MARGIN = 0.1

MSG_BAD_REFERENCE = "reference: needs one finite value per objective ({names}); got {value!r}"
MSG_UNKNOWN_REFERENCE = (
    "reference: {extra} {verb} not an objective of this analysis; allowed: {names} (one "
    "metric=value per objective; --objective chooses the objectives)"
)
#: Said with a hypervolume of 0 that comes from the reference, not from an empty front.
MSG_REFERENCE_UNBEATEN = (
    "hypervolume 0: no trial on the front beats the reference ({reference}) on every "
    "objective{why}; a reference point must be worse than the trials on each objective "
    "(the default: the worst value seen, 10 % of the range further out)"
)
#: Said under the best trial when the front beside it does not hold it (by design: the best
#: trial is ranked as regtune sweep and promote rank it, not by the front's extra objectives).
MSG_BEST_OFF_FRONT = (
    "not on the Pareto front: {other} dominates it ({values}); the best trial is ranked by "
    "{ranked}, ties by val_loss, as regtune sweep and promote rank it, not by {unranked}"
)
MSG_BEST_NO_VALUE = "not on the Pareto front: it has no value of {missing}"
MSG_NO_MODE = "objective {metric!r}: no direction known; write it as {metric}:min or {metric}:max"


@dataclass(frozen=True)
class Front:
    """A Pareto analysis.

    ``table``: one row per trial (index ``trial_id``) with the objective values,
    ``on_front`` (bool), and ``excluded`` (why a trial was left out: ``""``,
    ``"error"`` (the trial failed), ``"degenerate"`` or ``"no value"``).
    ``reference`` is the reference point in the objectives' own units (NaN for each
    objective when no trial was considered and none was given: nothing to take it from),
    ``hypervolume`` the volume the front dominates up to it (in the product
    of those units). ``notes``: what the numbers need said beside them (a
    hypervolume of 0 because no trial beats the reference given,
    :data:`MSG_REFERENCE_UNBEATEN`).
    """

    table: pd.DataFrame
    objectives: tuple[tuple[str, str], ...]
    reference: dict[str, float]
    hypervolume: float
    notes: tuple[str, ...] = ()

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
    """Worst finite value per column (minimisation space), pushed out by the margin; NaN
    for every column when there is no finite value to take it from (nothing to measure
    against: an empty front has no reference, rather than a made-up one)."""
    finite = np.where(np.isfinite(points), points, np.nan)
    if points.shape[0] == 0 or np.all(np.isnan(finite)):
        return np.full(points.shape[1], np.nan)
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
    incomplete: Collection[str] = (),
) -> Front:
    """The non-dominated trials of ``summary`` under ``objectives``.

    Trials with no value (NaN) for an objective, errored trials (``status``
    ``error``, as the sweep summary's front leaves them out), degenerate
    trials unless ``include_degenerate``, and the trials named in ``incomplete`` (stored
    epochs lost; marked ``"incomplete"``, whatever else holds) are kept in the table but
    marked ``excluded`` and never on the front. ``reference`` (objective -> value, in its own units)
    overrides the default reference point; when no trial on the front beats it
    on every objective (a hypervolume of 0 that is the reference's doing),
    ``notes`` says so and on which objectives.

    Raises:
        SpecError: an objective is not a column of ``summary`` (the message
            lists the metrics present), or ``reference`` lacks an objective or
            names a metric that is not one (the message names the objectives).
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
    excluded[failed_flags(summary)] = "error"
    excluded[summary.index.isin(list(incomplete))] = "incomplete"
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
        extra = [str(k) for k in reference if k not in names]
        if extra:
            raise SpecError(
                MSG_UNKNOWN_REFERENCE.format(
                    extra=", ".join(repr(k) for k in extra),
                    verb="is" if len(extra) == 1 else "are",
                    names=", ".join(names),
                )
            )
        ref_min = ref_raw * signs
    volume = hypervolume(points[mask], ref_min) if points.size else 0.0
    table = summary[names].copy()
    table["on_front"] = on_front
    table["excluded"] = excluded
    ref = {
        name: float(value * sign) for name, value, sign in zip(names, ref_min, signs, strict=True)
    }
    notes: tuple[str, ...] = ()
    if points.size and not np.all(points[mask] < ref_min, axis=1).any():
        notes = (_unbeaten(objectives, points[mask], ref_min, ref),)
    return Front(
        table=table,
        objectives=objectives,
        reference=ref,
        hypervolume=float(volume),
        notes=notes,
    )


def _unbeaten(
    objectives: Sequence[tuple[str, str]],
    points: np.ndarray,
    ref_min: np.ndarray,
    ref: Mapping[str, float],
) -> str:
    """:data:`MSG_REFERENCE_UNBEATEN`, naming each objective on which no trial on the front
    (``points``, minimisation space) is better than the reference."""
    blocked = []
    for k, (metric, mode) in enumerate(objectives):
        if not (points[:, k] < ref_min[k]).any():
            side = "above" if mode == "max" else "below"
            blocked.append(f"{metric}: none {side} {ref[metric]:.4g}")
    reference = ", ".join(f"{name}={value:.4g}" for name, value in ref.items())
    return MSG_REFERENCE_UNBEATEN.format(
        reference=reference, why=f" ({'; '.join(blocked)})" if blocked else ""
    )


def best_off_front(front: Front, best: str, ranked: Sequence[str]) -> str | None:
    """One line for the best trial when the front shown beside it does not hold it, else
    None: a trial on the front dominates it (the front weighs an objective the best trial's
    ranking does not: ``ranked`` are the metrics it is ranked by, e.g. the front's ``ece``
    beside a single ``val_acc`` objective), or it has no value of a front objective.
    """
    table = front.table
    if best not in table.index or bool(table.loc[best, "on_front"]):
        return None
    names = [metric for metric, _mode in front.objectives]
    row = table.loc[best]
    if row["excluded"] == "no value":
        missing = [m for m in names if pd.isna(pd.to_numeric(row[m], errors="coerce"))]
        return MSG_BEST_NO_VALUE.format(missing=" or ".join(missing) or "an objective")
    if row["excluded"] != "":
        return None
    modes = [mode for _metric, mode in front.objectives]
    on = front.front
    mine = to_minimization(row[names].to_numpy(dtype=np.float64)[None, :], modes)[0]
    theirs = to_minimization(on[names].to_numpy(dtype=np.float64), modes)
    dominating = np.flatnonzero(np.all(theirs <= mine, axis=1) & np.any(theirs < mine, axis=1))
    if dominating.size == 0:
        return None
    other = str(on.index[dominating[0]])
    values = ", ".join(
        f"{m} {float(on.iloc[dominating[0]][m]):.4g} vs {float(row[m]):.4g}" for m in names
    )
    unranked = [m for m in names if m not in ranked]
    return MSG_BEST_OFF_FRONT.format(
        other=other,
        values=values,
        ranked=", ".join(m for m in ranked) or names[0],
        unranked=", ".join(unranked) or "the front's objectives",
    )

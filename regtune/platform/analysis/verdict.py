"""The sweep-level verdict: where the next sweep should look.

Two kinds of evidence, each named in the sentences it gives:

- the regularization path (the objective's median per strength): where the
  best strength sits in the range that was swept. Within the first or last
  :data:`EDGE_SHARE` of the range (on the log scale for a log-scaled
  parameter), with no worse strength tried beyond it: widen the range that
  way (or, at a lower bound of 0, the penalty may be unneeded); inside:
  narrow around it.
- the diagnosis (each trial's loss curves): what most trials suffered from
  (mostly overfit: shift regularization up; mostly underfit: down; many
  unstable: smaller steps, on the learning rate's upper bound when it was swept,
  else on ``training.lr``). When it points the other way from an edge of the
  path, the sentence says so and which evidence is which.

Degenerate trials (constant predictors: the diagnosis's ``degenerate``
column) come first, when there are any: the first sentence says when every
trial is one, or when the trial the objective ranks first is one (a constant
predictor's accuracy is the share of its class, which can beat every model
that learnt something), whether the front and the best left them out (the
default) or kept them eligible (``--include-degenerate``), and what their own
evidence asks for; a penalty whose degenerate trials all lie past every other
trial's strength gets a sentence of its own. The label shares above are over
the other trials.

Failed trials (``status`` ``error``) are left out of all of it, as the path,
the front and the best trial leave them out; the first sentence says how many
failed of every trial (trials that failed before reporting an epoch, or whose
stored epochs were lost to an unreadable part, included), and when every
trial failed it is the only one (no range or curve advice is built on failed
trials).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np
import pandas as pd

from regtune.platform.analysis.best import best_trial_id
from regtune.platform.analysis.diagnosis import MIN_EPOCHS, RARE_CLASS_SHARE, learnt_little
from regtune.platform.analysis.load import UNKNOWN
from regtune.platform.analysis.path import PATH_BINS
from regtune.platform.analysis.summary import failed_flags
from regtune.platform.analysis.swept import SweptParameter, role_of
from regtune.platform.results.trials import ERROR, RUNNING, STOPPED_EARLY

__all__ = [
    "EDGE_COLUMNS",
    "EDGE_SHARE",
    "MOSTLY",
    "NARROW_MAX_SHARE",
    "TIE_ATOL",
    "UNSTABLE_SHARE",
    "WIDEN_FACTOR",
    "edges",
    "range_position",
    "sweep_verdict",
]

#: A best strength within this share of the swept range from one end is "at that edge":
#: the first or last of the :data:`~regtune.platform.analysis.path.PATH_BINS`
#: equal-width bins a sampled path is grouped into (log-spaced for a log-scaled parameter).
EDGE_SHARE = 1.0 / PATH_BINS
#: A label shared by at least this share of the trials that could be diagnosed sets the verdict.
MOSTLY = 0.5
#: This share of unstable trials is enough to say so (a few diverged runs waste a sweep).
UNSTABLE_SHARE = 0.2
#: Path medians this close to the best one tie with it (equal metrics, up to rounding).
TIE_ATOL = 1e-12
#: How far to widen a log-scaled range past its edge (a factor), or a linear one (share of width).
WIDEN_FACTOR = 10.0
#: A narrower range is advised only when it spans at most this share of the range swept (on
#: the log scale for a log-scaled parameter): it must drop a quarter of the range or more.
#: Narrowing [1e-6, 1e-2] to [1.25e-6, 1e-2] (97.6 % of the decades) changes nothing.
NARROW_MAX_SHARE = 0.75

#: Columns of :func:`edges`.
EDGE_COLUMNS = [
    "parameter",
    "best",
    "low",
    "high",
    "position",
    "edge",
    "tied",
    "tied_low",
    "tied_high",
    "next_low",
    "next_high",
]


def _zero_log(value: float, floor: float) -> float:
    """``value`` on a log scale with 0 one decade below ``floor`` (the path figure's symlog
    axis): 0 at 0, ``floor`` at 1, each decade above it 1 more, linear below it."""
    if value < floor:
        return value / floor
    return 1.0 + math.log10(value / floor)


def range_position(
    value: float, low: float, high: float, log: bool, floor: float | None = None
) -> float:
    """Where ``value`` sits in ``[low, high]``: 0 at ``low``, 1 at ``high``, on the log scale
    when ``log`` and both ends are positive (a value <= 0 there is at 0).

    A log range starting at 0 (a grid with an "off" point) with ``floor`` its smallest
    positive value is read on the log scale of its positive values, 0 a point of its own
    one decade below ``floor`` (as the path figure draws it): on ``[0, 1e-4, 1e-2, 1]``,
    1e-4 is at 20 %, 1e-2 at 60 %. Without ``floor`` such a range is read linearly."""
    if not high > low:
        return 0.0
    if log and low > 0:
        if value <= 0:
            return 0.0
        share = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    elif log and low == 0 and floor is not None and 0 < floor < high:
        share = _zero_log(value, floor) / _zero_log(high, floor)
    else:
        share = (value - low) / (high - low)
    return float(min(max(share, 0.0), 1.0))


def _suggest(parameter: SweptParameter, side: str) -> tuple[float, float] | None:
    low, high = parameter.low, parameter.high
    if low is None or high is None:
        return None
    if parameter.log and low > 0:
        return (low / WIDEN_FACTOR, high) if side == "lower" else (low, high * WIDEN_FACTOR)
    if parameter.log and low == 0:
        # A log range with its "off" point: x10 upward; it already includes 0 below.
        return (low, high) if side == "lower" else (low, high * WIDEN_FACTOR)
    width = high - low
    if side == "lower":
        return (max(low - width / 2, 0.0) if low >= 0 else low - width / 2, high)
    return (low, high + width / 2)


def _tied(points: pd.DataFrame, best_index: int) -> list[int]:
    """Indices of the path points whose median equals the best one's (the best included)."""
    medians = points["median"].to_numpy(dtype=float)
    target = medians[best_index]
    found = np.flatnonzero(np.isclose(medians, target, rtol=0.0, atol=TIE_ATOL))
    return [int(i) for i in found] or [best_index]


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return bool(np.allclose(a, b, rtol=1e-9, atol=0.0))


def edges(paths: Mapping[str, pd.DataFrame], swept: Sequence[SweptParameter]) -> pd.DataFrame:
    """Per swept parameter: the best strength, the range swept, whether it is at an edge, and
    the range the next sweep should use.

    Columns (:data:`EDGE_COLUMNS`): ``parameter``, ``best``, ``low``, ``high``
    (the range swept), ``position`` (the best strength's share of the range,
    0 at ``low``, 1 at ``high``, log scale for log parameters), ``edge``
    (``"lower"``, ``"upper"`` or ``""``), ``tied`` (how many path strengths
    share the best median), ``tied_low``/``tied_high`` (the smallest and
    largest of them), ``next_low``, ``next_high``.

    ``edge`` is ``"lower"`` when every strength tied for best lies within
    :data:`EDGE_SHARE` of the range from ``low`` and no worse strength was
    tried below them (``"upper"`` likewise): a plateau reaching inward, or a
    best with a worse strength tried past it, says nothing about what lies
    past the edge. At an edge, ``next_*`` widens the range that way (x
    :data:`WIDEN_FACTOR` on a log scale, half the width on a linear one);
    where it cannot go lower (a range starting at 0), ``next_*`` is the
    low end up to the next strength tried. A log range starting at 0 (a grid
    with an "off" point) is read on the log scale of its positive values, 0 one
    decade below the smallest (:func:`range_position`): its lower edge is a best
    of 0 itself, and its upper edge widens x :data:`WIDEN_FACTOR`. Seeds
    (:attr:`~regtune.platform.analysis.swept.SweptParameter.replicate`) get no
    row. Inside, ``next_*`` spans the neighbouring path points (the range's own
    end where no point lies beyond). A narrower ``next_*`` (inside, or the low end of a range that
    cannot go lower) is kept only when it spans at most
    :data:`NARROW_MAX_SHARE` of the range (log scale for log parameters);
    otherwise ``next_*`` equals ``low``/``high`` and the verdict says the sweep
    is too coarse to narrow.

    Path points with no trial of a value of the objective and no degenerate
    trial (``n_trials`` and ``n_degenerate`` 0: their trials failed or never
    reported the metric) are not read: they say nothing about the range.
    """
    rows = []
    for parameter in swept:
        path = paths.get(parameter.name)
        if parameter.replicate or path is None or path.empty or not path["best"].any():
            continue  # a seed's values are replicates: no range to advise on
        metric = path.attrs.get("objective_metric")
        if metric is not None and "metric" in path and (path["metric"] == metric).any():
            path = path[path["metric"] == metric]  # the medians that decided "best"
        points = path.drop_duplicates("strength")
        # A log range with an "off" point (0): its smallest positive strength sets the scale.
        every = points["strength"].to_numpy(dtype=float)
        floor = float(every[every > 0].min()) if (every > 0).any() else None
        if {"n_trials", "n_degenerate"} <= set(points.columns):
            # A strength with no value of the objective and no constant predictor (its
            # trials all failed, or never reached the metric) says nothing about the range.
            judged = (points["n_trials"] > 0) | (points["n_degenerate"] > 0)
            points = points[judged.to_numpy(dtype=bool)]
        points = points.reset_index(drop=True)
        if not points["best"].any():
            continue
        best_index = int(np.flatnonzero(points["best"].to_numpy())[0])
        best = float(points.loc[best_index, "strength"])
        tied = _tied(points, best_index)
        low = parameter.low if parameter.low is not None else float(points["low"].min())
        high = parameter.high if parameter.high is not None else float(points["high"].max())
        strengths = points["strength"].to_numpy(dtype=float)
        position = partial(range_position, low=low, high=high, log=parameter.log, floor=floor)
        where = [position(float(strengths[i])) for i in tied]
        last = len(points) - 1
        edge = ""
        # On a log range with 0, 0 itself is the lower edge (a positive strength is a decade
        # or more above it); elsewhere the first EDGE_SHARE of the range.
        zero_log = parameter.log and low == 0
        near_low = max(strengths[tied]) <= 0 if zero_log else max(where) < EDGE_SHARE
        if tied[0] == 0 and near_low:
            edge = "lower"
        elif tied[-1] == last and min(where) > 1.0 - EDGE_SHARE:
            edge = "upper"
        ranged = SweptParameter(parameter.name, parameter.kind, low, high, parameter.log, True)
        suggestion = _suggest(ranged, edge) if edge else None
        if edge == "lower" and (suggestion is None or suggestion[0] >= low):
            # Cannot go lower: the low end, up to the next strength tried past the tied ones.
            after = min(tied[-1] + 1, last)
            suggestion = (low, float(points.loc[after, "high"]) if after > tied[-1] else high)
        elif suggestion is None:
            # Narrow to the neighbouring path points around the best one(s); past the
            # outermost point tried, up to the range's own end (untried, not ruled out).
            lo_i, hi_i = tied[0] - 1, tied[-1] + 1
            suggestion = (
                float(points.loc[lo_i, "low"]) if lo_i >= 0 else low,
                float(points.loc[hi_i, "high"]) if hi_i <= last else high,
            )
        if not edge or (edge == "lower" and suggestion[0] >= low):
            # A narrower range (inside, or the low end of a range that cannot go lower) only
            # when it is materially narrower; else the whole range (the verdict says so).
            share = position(suggestion[1]) - position(suggestion[0])
            if share > NARROW_MAX_SHARE:
                suggestion = (low, high)
        rows.append(
            {
                "parameter": parameter.name,
                "best": best,
                "low": low,
                "high": high,
                "position": position(best),
                "edge": edge,
                "tied": len(tied),
                "tied_low": float(points.loc[tied[0], "strength"]),
                "tied_high": float(points.loc[tied[-1], "strength"]),
                "next_low": suggestion[0],
                "next_high": suggestion[1],
            }
        )
    return pd.DataFrame(rows, columns=EDGE_COLUMNS)


#: How many trials with no value of the objective the verdict names by id.
VALUELESS_SHOWN = 5


def _valueless(
    summary: pd.DataFrame | None,
    objective: tuple[str, str] | None,
    status: pd.Series | None,
) -> list[str]:
    """The trials (sorted ids) that did not fail and have no value of the objective's
    metric: they ran, but say nothing on the path (e.g. stopped before the test split was
    scored); more trials would not fill those strengths, those trials are the gap."""
    if summary is None or objective is None or summary.empty:
        return []
    metric = objective[0]
    values = (
        pd.to_numeric(summary[metric], errors="coerce")
        if metric in summary
        else pd.Series(np.nan, index=summary.index)
    )
    failed = failed_flags(
        None if status is None else status.to_frame("status"), summary.index
    ) | failed_flags(summary)
    return sorted(
        str(t)
        for t, v, f in zip(summary.index, values, failed, strict=True)
        if pd.isna(v) and not f
    )


def _valueless_phrase(trials: Sequence[str], metric: str) -> str:
    """``3 trials have no test_acc (a, b, c)``: the trials behind the path's empty points."""
    shown = ", ".join(trials[:VALUELESS_SHOWN]) + (", ..." if len(trials) > VALUELESS_SHOWN else "")
    verb = "trial has" if len(trials) == 1 else "trials have"
    return f"{len(trials)} {verb} no {metric} ({shown})"


def _path_lines(
    table: pd.DataFrame,
    paths: Mapping[str, pd.DataFrame],
    swept: Sequence[SweptParameter],
    valueless: Sequence[str] = (),
    valueless_metric: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The path's sentences, and per penalty the regularization its edge asks for
    (``"more"``/``"less"``, ``"inside"`` when the best is inside the range).

    ``valueless``: trials that ran but have no value of ``valueless_metric`` (the
    objective): a path on that metric says they are what it lacks, rather than advising
    more trials, and an edge is read with them named (their strengths are untested)."""
    penalty = {p.name: p.is_penalty for p in swept}
    logs = {p.name: p.log for p in swept}
    lines: list[str] = []
    wants: dict[str, str] = {}
    for row in table.itertuples(index=False):
        name = str(row.parameter)
        metric = paths[name].attrs.get("objective_metric", "objective")
        missing = (
            _valueless_phrase(valueless, metric) if valueless and metric == valueless_metric else ""
        )
        # Said after an edge: the trials with no value may sit past it.
        caveat = f" (but {missing}: their strengths are not judged)" if missing else ""
        rng = f"[{row.low:.3g}, {row.high:.3g}]"
        nxt = f"[{row.next_low:.3g}, {row.next_high:.3g}]"
        whole = _same((row.next_low, row.next_high), (row.low, row.high))
        best = f"best {name} ({row.best:.3g}, by median {metric})"
        if row.edge == "upper":
            lines.append(
                f"{best} is at the upper edge of its range {rng}: widen it upward, e.g. to {nxt}"
                + caveat
            )
        elif row.edge == "lower" and logs.get(name) and row.low == 0:
            # A log range with its "off" point: the best is 0, already tried, so there is
            # nothing below to widen to and no run without it to compare with.
            what = (
                "0 is no regularization, so the penalty may be unneeded"
                if role_of(name) == "regularizer"
                else "the sweep prefers 0"
            )
            tail = (
                ""
                if whole
                else f"; to look between 0 and the smallest strength tried, sweep e.g. {nxt}"
            )
            lines.append(
                f"{best} is at the lower end of its range {rng}, which already includes 0 and "
                f"cannot be widened downward: {what}{tail}{caveat}"
            )
        elif row.edge == "lower" and row.next_low >= row.low:
            what = (
                "the penalty may be unneeded; compare with a run without it"
                if penalty.get(name)
                else "the sweep prefers its lowest value"
            )
            tail = "" if whole else f", or sweep the low end, e.g. {nxt}"
            lines.append(
                f"{best} is at the lower end of its range {rng}, which cannot go lower: "
                f"{what}{tail}{caveat}"
            )
        elif row.edge == "lower":
            lines.append(
                f"{best} is at the lower edge of its range {rng}: widen it downward, e.g. to {nxt}"
                + caveat
            )
        elif row.tied > 1:
            if whole and missing:
                # Strengths were tried around them; their trials lack the objective.
                advice = (
                    f"judge them on another metric (too few strengths have a value of {metric} "
                    f"to narrow the range: {missing}; rank by a metric every trial reports or "
                    "let those trials finish)"
                )
            elif whole:
                advice = (
                    "judge them on another metric (too few strengths were tried around them to "
                    "narrow the range)"
                )
            else:
                advice = f"narrow the next sweep to {nxt} or judge them on another metric"
            lines.append(
                f"{row.tied} values of {name} tie for best (by median {metric}), from "
                f"{row.tied_low:.3g} to {row.tied_high:.3g} (range swept {rng}): the objective "
                f"cannot tell them apart; {advice}"
            )
        elif whole and missing:
            # Trials were tried around it; they lack the objective, so more trials are not
            # what is missing.
            lines.append(
                f"{best} is inside its range {rng} ({row.position:.0%} of the way up): too few "
                f"strengths have a value of {metric} to narrow the range by "
                f"{1 - NARROW_MAX_SHARE:.0%} or more: {missing}; keep the range, and rank by a "
                "metric every trial reports or let those trials finish"
            )
        elif whole:
            lines.append(
                f"{best} is inside its range {rng} ({row.position:.0%} of the way up): too few "
                f"strengths were tried around it to narrow the range by {1 - NARROW_MAX_SHARE:.0%} "
                "or more; keep the range and add trials"
            )
        else:
            lines.append(
                f"{best} is inside its range {rng} ({row.position:.0%} of the way up): narrow "
                f"the next sweep to {nxt}"
            )
        if row.edge and penalty.get(name):
            more = (row.edge == "upper") == (role_of(name) == "regularizer")
            wants[name] = "more" if more else "less"
        elif penalty.get(name):
            wants[name] = "inside"
    return lines, wants


def _disagreement(wants: Mapping[str, str], direction: str) -> str:
    """A clause naming the path lines that do not ask for ``direction`` (``"more"`` or
    ``"less"`` regularization), and which evidence each reads."""
    opposite = "less" if direction == "more" else "more"
    other = [name for name, want in wants.items() if want == opposite]
    inside = [name for name, want in wants.items() if want == "inside"]
    if other:
        return (
            f"; this reads the trials' loss curves, while the path of {', '.join(other)} "
            f"above ranks them by the objective and points toward {opposite} regularization: "
            "check the best trials' curves before moving the range"
        )
    if inside:
        return (
            f"; this reads the trials' loss curves, while the path of {', '.join(inside)} "
            "above ranks them by the objective, which is best inside the range: shift the "
            "range only if the best trials themselves show it"
        )
    return ""


def sweep_verdict(
    paths: Mapping[str, pd.DataFrame],
    diagnosis: pd.DataFrame,
    swept: Sequence[SweptParameter],
    status: pd.Series | None = None,
    *,
    summary: pd.DataFrame | None = None,
    objective: tuple[str, str] | None = None,
    include_degenerate: bool = False,
    no_epochs: Mapping[str, str] | None = None,
) -> list[str]:
    """Sentences saying where the next sweep should look, most important first.

    ``status`` (the trial table's ``status`` by trial id, optional) tells
    trials a scheduler or early stopping ended (``stopped early``) from those
    whose whole budget was too short to diagnose, and which failed (``error``):
    failed trials count in no sentence but the first, which says how many
    failed (when every trial failed it is the only sentence: there is nothing
    to advise on). ``summary`` (the per-trial
    table) and ``objective`` (the primary one), when given, let the first
    sentence say that the trial the objective ranks first is degenerate, and
    give each penalty's strengths of the degenerate and the other trials.
    ``include_degenerate``: the analysis kept degenerate trials eligible for the front
    and the best (``--include-degenerate``); the first sentence says so rather than
    that they were left out.
    ``no_epochs``: trials not in ``diagnosis`` (trial -> stored status): those that reported
    no epoch, and those left out as their stored epochs are incomplete (some or all lost to an
    unreadable part); the failed ones among them count in that first sentence, and every one
    in its total, so that total is every trial of the experiment.
    """
    valueless = _valueless(summary, objective, status)
    lines, wants = _path_lines(
        edges(paths, swept),
        paths,
        swept,
        valueless,
        objective[0] if objective is not None else None,
    )
    rowless = list((no_epochs or {}).values())
    if diagnosis.empty and not rowless:
        return lines
    failed = failed_flags(None if status is None else status.to_frame("status"), diagnosis.index)
    n_failed = int(failed.sum()) + sum(s == ERROR for s in rowless)
    if n_failed:
        # Failed trials are judged on nothing below (as they are off the path, the front and
        # the best); the first line says how many there were.
        total = len(diagnosis) + len(rowless)
        if failed.all() and n_failed == total:
            return [
                f"every trial failed ({n_failed} of {n_failed}, status error): there is "
                "nothing to judge the range or the loss curves on, so no advice on them; fix "
                "what made them fail (the sweep's output names each error) and run it again"
            ]
        lines.insert(
            0,
            f"{n_failed} of {total} trials failed (status error): they are left out "
            "of the path, the front, the best trial and the diagnosis's shares",
        )
        diagnosis = diagnosis[~failed]
    if diagnosis.empty:
        return lines
    degenerate = (
        diagnosis["degenerate"].to_numpy(dtype=bool)
        if "degenerate" in diagnosis.columns
        else np.zeros(len(diagnosis), dtype=bool)
    )
    if degenerate.any():
        lines[int(n_failed > 0) : int(n_failed > 0)] = _degenerate_lines(
            diagnosis, degenerate, swept, summary, objective, include_degenerate
        )
    judged = ~diagnosis["too_short"].to_numpy(dtype=bool) & ~degenerate
    total = int(judged.sum())
    if total:
        share = {
            label: float(diagnosis[label].to_numpy(dtype=bool)[judged].mean())
            for label in ("overfit", "underfit", "unstable", "biased")
        }
        regularizers = [p.name for p in swept if p.is_penalty] or ["the penalties"]
        names = ", ".join(regularizers)
        if share["overfit"] >= MOSTLY:
            lines.append(
                f"{share['overfit']:.0%} of {total} trials overfit: shift {names} toward "
                "more regularization (or add data)" + _disagreement(wants, "more")
            )
        if share["underfit"] >= MOSTLY:
            lines.append(
                f"{share['underfit']:.0%} of {total} trials underfit: shift {names} toward "
                "less regularization or add capacity" + _disagreement(wants, "less")
            )
        if share["unstable"] >= UNSTABLE_SHARE:
            lines.append(_unstable_line(diagnosis[judged], share["unstable"], total, swept))
        if share["biased"] >= MOSTLY:
            strength = any(p.name == "penalties.fairness.strength" for p in swept)
            lines.append(
                f"{share['biased']:.0%} of {total} trials show a group gap: "
                + (
                    "sweep penalties.fairness.strength higher"
                    if strength
                    else "add or tighten a fairness constraint (penalties.fairness: kind dp "
                    "or eo, with a strength, a bound or post-processing; docs/trainables.md)"
                )
            )
    short = diagnosis.index[diagnosis["too_short"].to_numpy(dtype=bool)]
    if len(short):
        lines.append(_short_line(diagnosis.loc[short, "epochs"], status, short))
    return lines


#: The parameter an unstable sweep should lower (its upper bound, when swept).
_LR = "training.lr"


def _degenerate_lines(
    diagnosis: pd.DataFrame,
    degenerate: np.ndarray,
    swept: Sequence[SweptParameter],
    summary: pd.DataFrame | None,
    objective: tuple[str, str] | None,
    include_degenerate: bool = False,
) -> list[str]:
    """The sentences on the degenerate trials: how many, whether the objective's top trial
    (or every trial) is one, whether the front and the best left them out (by default) or
    kept them eligible (``include_degenerate``), what their own evidence asks for, and per
    penalty where they lie against the other trials."""
    n, total = int(degenerate.sum()), len(diagnosis)
    each = "each predicts one class for every row, a constant predictor"
    if n == total:
        head = f"all {total} trials are degenerate ({each}): " + (
            "--include-degenerate keeps them eligible, so any best trial or front point "
            "is a constant predictor"
            if include_degenerate
            else "by default no trial is best and the front is empty"
        )
    else:
        head = f"{n} of {total} trials are degenerate ({each})"
        top = _top_trial(summary, objective)
        if (
            summary is not None
            and objective is not None
            and top is not None
            and top in diagnosis.index
            and bool(diagnosis.loc[top, "degenerate"])
        ):
            metric = objective[0]
            value = float(pd.to_numeric(summary.loc[top, metric]))
            head = f"the top trial by {metric}, {top} ({metric} {value:.4g}), is degenerate: {head}"
        head += (
            "; --include-degenerate keeps them eligible for the front and the best"
            if include_degenerate
            else "; by default they are left off the front and the best"
        )
    rows = diagnosis[degenerate]
    causes = []
    unstable = int(rows["unstable"].astype(bool).sum()) if "unstable" in rows else 0
    little = sum(
        1 for row in rows.to_dict("records") if not row.get("unstable") and learnt_little(row)
    )
    if unstable:
        causes.append(f"{unstable} unstable: lower {_LR}")
    if little:
        weaker = [p.name for p in swept if p.is_penalty]
        causes.append(
            f"{little} barely left {'its' if little == 1 else 'their'} starting loss: train "
            "longer (budget.max_epochs) or "
            f"with a higher {_LR}" + (f", or weaken {', '.join(weaker)}" if weaker else "")
        )
    shares = pd.to_numeric(rows.get("class_share", pd.Series(dtype=float))).dropna()
    if len(shares) and float(shares.max()) >= 1.0 - RARE_CLASS_SHARE:
        top_share = float(shares.max())
        causes.append(
            f"their val_acc (up to {top_share:.4g}) is only the share of the class they "
            f"predict, the other classes hold {1.0 - top_share:.1%} of the val rows: resample "
            "the training file so the rare class is commoner (regtune has no class weights yet)"
        )
    lines = [head + ("; " + "; ".join(causes) if causes else "")]
    if summary is not None and n < total:
        lines += _degenerate_strengths(summary, diagnosis.index[degenerate], swept)
    return lines


def _top_trial(summary: pd.DataFrame | None, objective: tuple[str, str] | None) -> str | None:
    """The trial ``objective`` ranks first, degenerate ones included, when its value beats the
    best eligible trial's (a tie with it is no news); None without ``summary`` or
    ``objective``."""
    if summary is None or objective is None or objective[0] not in summary.columns:
        return None
    top = best_trial_id(summary, objective, include_degenerate=True)
    eligible = best_trial_id(summary, objective)
    if top is None or eligible is None or top == eligible:
        return top
    values = pd.to_numeric(summary[objective[0]], errors="coerce")
    return None if values[top] == values[eligible] else top


def _degenerate_strengths(
    summary: pd.DataFrame, degenerate: pd.Index, swept: Sequence[SweptParameter]
) -> list[str]:
    """Per numeric penalty: a sentence when every degenerate trial's strength regularizes
    more than every other trial's (all above them, or below for an inverse strength)."""
    lines = []
    for parameter in swept:
        if not (parameter.numeric and parameter.is_penalty) or parameter.column not in summary:
            continue
        values = pd.to_numeric(summary[parameter.column], errors="coerce")
        bad = values.reindex(degenerate).dropna()
        good = values.drop(index=degenerate, errors="ignore").dropna()
        if bad.empty or good.empty:
            continue
        name = parameter.name
        if parameter.role == "regularizer" and bad.min() > good.max():
            lines.append(
                f"every degenerate trial has {name} >= {bad.min():.3g}, every other trial "
                f"<= {good.max():.3g}: a penalty this strong holds the model at one class; "
                f"keep the next sweep's {name} below {bad.min():.3g}"
            )
        elif parameter.role == "inverse" and bad.max() < good.min():
            lines.append(
                f"every degenerate trial has {name} <= {bad.max():.3g}, every other trial "
                f">= {good.min():.3g}: regularization this strong holds the model at one class; "
                f"keep the next sweep's {name} above {bad.max():.3g}"
            )
    return lines


def _unstable_causes(unstable: pd.DataFrame) -> list[str]:
    """How many of the unstable trials each cause marked, from the diagnosis columns present
    (one trial may show several causes)."""

    def column(name: str) -> pd.Series:
        return unstable[name] if name in unstable else pd.Series(0, index=unstable.index)

    spiked = column("spiked").astype(str)
    counts = (
        ("with NaN/inf losses", int((pd.to_numeric(column("n_nonfinite")) > 0).sum())),
        ("whose first epoch exploded", int(column("exploded").astype(bool).sum())),
        ("with a train-loss spike", int(spiked.str.contains("train", regex=False).sum())),
        ("with a val-loss spike beyond its noise", int(spiked.str.contains("val").sum())),
    )
    return [f"{n} {what}" for what, n in counts if n]


def _unstable_line(
    judged: pd.DataFrame, share: float, total: int, swept: Sequence[SweptParameter]
) -> str:
    """The sentence for a sweep with many unstable trials: what made them unstable and the
    change that can help: lower the upper bound of ``training.lr`` when the sweep varied it,
    else lower ``training.lr`` itself (the only step size a fixed-lr sweep has)."""
    causes = _unstable_causes(judged[judged["unstable"].to_numpy(dtype=bool)])
    why = f" ({', '.join(causes)})" if causes else ""
    lr = next((p for p in swept if p.name == _LR), None)
    if lr is None:
        advice = f"lower {_LR} (this sweep kept it fixed)"
    elif lr.high is not None:
        advice = f"lower the upper bound of {_LR} (swept up to {lr.high:.3g})"
    else:
        advice = f"lower the upper bound of {_LR} (its largest value swept)"
    return f"{share:.0%} of {total} trials are unstable{why}: {advice}"


def _short_line(epochs: pd.Series, status: pd.Series | None, short: pd.Index) -> str:
    """How many trials were too short to diagnose and their epochs; of them, how many the
    trial table says ``stopped early`` (a scheduler or early stopping) or ``running`` (still
    running, or interrupted: ``--resume`` continues them), and how many are of unknown
    status (the trial table could not be read: a scheduler may have stopped them). Only
    when some are none of these is more budget advised."""
    counts = epochs.to_numpy(dtype=np.int64)
    lo, hi = int(counts.min()), int(counts.max())
    span = f"{lo}" if lo == hi else f"{lo}-{hi}"
    line = (
        f"{len(short)} trial(s) too short to diagnose ({span} epoch{'s' if hi > 1 else ''} "
        f"< {MIN_EPOCHS})"
    )
    states = (
        status.reindex(short).astype(object)
        if status is not None
        else pd.Series(None, index=short, dtype=object)
    )
    stopped = int((states == STOPPED_EARLY).sum())
    running = int((states == RUNNING).sum())
    # The trial table could not be read: a scheduler may have stopped these, or not.
    unknown = int((states == UNKNOWN).sum())
    parts = []
    if stopped:
        parts.append(f"{stopped} stopped early (by the scheduler or early stopping)")
    if running:
        parts.append(f"{running} not finished (running, or interrupted: --resume continues them)")
    if unknown:
        parts.append(f"{unknown} of unknown status (the trial table could not be read)")
    if parts:
        line += ": " + ", ".join(parts)
    if stopped + running + unknown < len(short):
        line += f"; {MIN_EPOCHS} or more epochs (budget.max_epochs) are needed to diagnose a trial"
    return line

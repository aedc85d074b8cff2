"""The sweep-level verdict: where the next sweep should look.

Two kinds of evidence: where the best strength of each path sits in the range
that was swept (at an edge: widen the range that way; inside: narrow around
it), and what most trials suffered from (mostly overfit: shift regularization
up; mostly underfit: down; many unstable: smaller steps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from regtune.platform.analysis.swept import SweptParameter

__all__ = [
    "EDGE_BINS",
    "MOSTLY",
    "TIE_ATOL",
    "UNSTABLE_SHARE",
    "WIDEN_FACTOR",
    "edges",
    "sweep_verdict",
]

#: A best strength in the first or last this-many path bins is "at the edge".
EDGE_BINS = 1
#: A label shared by at least this share of the trials that could be diagnosed sets the verdict.
MOSTLY = 0.5
#: This share of unstable trials is enough to say so (a few diverged runs waste a sweep).
UNSTABLE_SHARE = 0.2
#: Path medians this close to the best one tie with it (equal metrics, up to rounding).
TIE_ATOL = 1e-12
#: How far to widen a log-scaled range past its edge (a factor), or a linear one (share of width).
WIDEN_FACTOR = 10.0


def _suggest(parameter: SweptParameter, side: str) -> tuple[float, float] | None:
    low, high = parameter.low, parameter.high
    if low is None or high is None:
        return None
    if parameter.log and low > 0:
        return (low / WIDEN_FACTOR, high) if side == "lower" else (low, high * WIDEN_FACTOR)
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


def edges(paths: Mapping[str, pd.DataFrame], swept: Sequence[SweptParameter]) -> pd.DataFrame:
    """Per swept parameter: the best strength, the range swept, whether it is at an edge, and
    the range the next sweep should use.

    Columns: ``parameter``, ``best``, ``low``, ``high`` (the range swept),
    ``edge`` (``"lower"``, ``"upper"`` or ``""``), ``tied`` (how many path
    strengths share the best median; with several, ``edge`` is set only when
    all of them sit at that edge), ``tied_low``/``tied_high`` (the smallest and
    largest of them), ``next_low``, ``next_high``.
    """
    rows = []
    for parameter in swept:
        path = paths.get(parameter.name)
        if path is None or path.empty or not path["best"].any():
            continue
        metric = path.attrs.get("objective_metric")
        if metric is not None and "metric" in path and (path["metric"] == metric).any():
            path = path[path["metric"] == metric]  # the medians that decided "best"
        points = path.drop_duplicates("strength").reset_index(drop=True)
        best_index = int(np.flatnonzero(points["best"].to_numpy())[0])
        best = float(points.loc[best_index, "strength"])
        tied = _tied(points, best_index)
        low = parameter.low if parameter.low is not None else float(points["low"].min())
        high = parameter.high if parameter.high is not None else float(points["high"].max())
        edge = ""
        # An edge only when every strength tied for best is there: a plateau reaching
        # inward says nothing about what lies past the edge.
        if len(points) > 2 * EDGE_BINS:
            if tied[-1] < EDGE_BINS:
                edge = "lower"
            elif tied[0] >= len(points) - EDGE_BINS:
                edge = "upper"
        ranged = SweptParameter(parameter.name, parameter.kind, low, high, parameter.log, True)
        if edge:
            suggestion = _suggest(ranged, edge) or (low, high)
        else:
            # Narrow to the neighbouring path points around the best one(s).
            lo_i, hi_i = max(tied[0] - 1, 0), min(tied[-1] + 1, len(points) - 1)
            suggestion = (float(points.loc[lo_i, "low"]), float(points.loc[hi_i, "high"]))
        rows.append(
            {
                "parameter": parameter.name,
                "best": best,
                "low": low,
                "high": high,
                "edge": edge,
                "tied": len(tied),
                "tied_low": float(points.loc[tied[0], "strength"]),
                "tied_high": float(points.loc[tied[-1], "strength"]),
                "next_low": suggestion[0],
                "next_high": suggestion[1],
            }
        )
    columns = [
        "parameter",
        "best",
        "low",
        "high",
        "edge",
        "tied",
        "tied_low",
        "tied_high",
        "next_low",
        "next_high",
    ]
    return pd.DataFrame(rows, columns=columns)


def sweep_verdict(
    paths: Mapping[str, pd.DataFrame],
    diagnosis: pd.DataFrame,
    swept: Sequence[SweptParameter],
) -> list[str]:
    """Sentences saying where the next sweep should look, most important first."""
    lines: list[str] = []
    for row in edges(paths, swept).itertuples(index=False):
        rng = f"[{row.low:.3g}, {row.high:.3g}]"
        if row.edge == "upper":
            lines.append(
                f"best {row.parameter} ({row.best:.3g}) is at the upper edge of its range {rng}: "
                f"widen it upward, e.g. to [{row.next_low:.3g}, {row.next_high:.3g}]"
            )
        elif row.edge == "lower" and row.next_low >= row.low:
            lines.append(
                f"best {row.parameter} ({row.best:.3g}) is at the lower edge of its range {rng}, "
                "which cannot go lower: the sweep prefers it off or weak; drop it or narrow the "
                "range toward its lower end"
            )
        elif row.edge == "lower":
            lines.append(
                f"best {row.parameter} ({row.best:.3g}) is at the lower edge of its range {rng}: "
                f"widen it downward, e.g. to [{row.next_low:.3g}, {row.next_high:.3g}]"
            )
        elif row.tied > 1:
            lines.append(
                f"{row.tied} values of {row.parameter} tie for best, from {row.tied_low:.3g} to "
                f"{row.tied_high:.3g} (range swept {rng}): the objective cannot tell them apart; "
                f"narrow the next sweep to [{row.next_low:.3g}, {row.next_high:.3g}] or judge "
                "them on another metric"
            )
        else:
            lines.append(
                f"best {row.parameter} ({row.best:.3g}) is inside its range {rng}: narrow the "
                f"next sweep to [{row.next_low:.3g}, {row.next_high:.3g}]"
            )
    if not diagnosis.empty:
        judged = ~diagnosis["too_short"].to_numpy(dtype=bool)
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
                    "more regularization (or add data)"
                )
            if share["underfit"] >= MOSTLY:
                lines.append(
                    f"{share['underfit']:.0%} of {total} trials underfit: shift {names} toward "
                    "less regularization or add capacity"
                )
            if share["unstable"] >= UNSTABLE_SHARE:
                lines.append(
                    f"{share['unstable']:.0%} of {total} trials are unstable (NaN or spikes): "
                    "lower the learning rate or its upper bound"
                )
            if share["biased"] >= MOSTLY:
                lines.append(
                    f"{share['biased']:.0%} of {total} trials show a group gap: sweep "
                    "penalties.fairness.strength higher"
                )
        short = int(diagnosis["too_short"].sum())
        if short:
            lines.append(
                f"{short} trial(s) stopped before they could be diagnosed (early stopping)"
            )
    return lines

"""Every figure of an analysis as a PNG (matplotlib, Agg backend: no display needed).

Each ``*_figure`` function returns PNG bytes; :func:`write_figures` writes them
all into a folder and returns their paths by name.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from regtune.platform.analysis.best import BestTrial
from regtune.platform.analysis.compare import figure_stem
from regtune.platform.analysis.front import Front
from regtune.platform.analysis.run import Analysis

__all__ = [
    "DPI",
    "FRONT_EMPTY",
    "MAX_PATH_PANELS",
    "NO_VALUES",
    "calibration_figure",
    "calibration_plot",
    "compare_fronts_figure",
    "compare_paths_figure",
    "comparison_figures",
    "curves_figure",
    "diagnosis_figure",
    "diagnosis_plot",
    "excluded_label",
    "figures",
    "front_figure",
    "front_plot",
    "groups_figure",
    "heatmap_caption",
    "heatmap_figure",
    "heatmap_plot",
    "path_figure",
    "ranked",
    "write_figures",
    "write_pngs",
]

#: Resolution of the PNGs: sharp in a report, small enough to mail (~50 KB each).
DPI = 90
#: Metrics drawn on one path figure (the objective and the losses first).
MAX_PATH_PANELS = 9
_FRONT_COLOR, _DOMINATED_COLOR, _EXCLUDED_COLOR = "#d62728", "#9e9e9e", "#1f77b4"
#: A path panel whose metric no trial reported (no made-up ticks drawn).
NO_VALUES = "no values of {metric}"
#: The legend entry of an experiment whose front holds no trial (not "hypervolume 0").
FRONT_EMPTY = "front empty"


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _xscale(ax: plt.Axes, table: pd.DataFrame, log: bool) -> None:
    """The x axis of a path: log (padded x1.5 each way) for a log-scaled parameter, symlog
    when its strengths include 0 (linear up to the smallest positive one; the axis starts
    at the lowest strength, never a made-up negative one, and ends x1.5 past the highest),
    else linear with 5 % of the range as padding."""
    strengths = table["strength"].to_numpy(dtype=float)
    strengths = strengths[np.isfinite(strengths)]
    lo, hi = (float(strengths.min()), float(strengths.max())) if strengths.size else (0.0, 0.0)
    if log:
        positive = strengths[strengths > 0]
        if len(positive) and (strengths <= 0).any():
            ax.set_xscale("symlog", linthresh=float(positive.min()))
            # Padding in linear units would reach below 0, which the symlog axis shows as
            # decades of negative strengths: start at the lowest strength (0) instead.
            ax.set_xlim(lo, hi * 1.5)
            return
        elif len(positive):
            if hi > lo:  # the whole path's range, even where a metric has one value
                ax.set_xlim(lo / 1.5, hi * 1.5)
            ax.set_xscale("log")
            return
    if hi > lo:
        pad = 0.05 * (hi - lo)
        ax.set_xlim(lo - pad, hi + pad)


def path_figure(path: pd.DataFrame, objective: str) -> bytes:
    """One panel per metric: median vs strength, the inter-quartile band, the best strength
    as a dashed line; the first panel overlays train and val loss."""
    parameter = str(path["parameter"].iloc[0]) if len(path) else "?"
    log = bool(path.attrs.get("log", False))
    metrics = list(dict.fromkeys(path["metric"]))
    order = [objective] + [m for m in metrics if m not in (objective, "train_loss", "val_loss")]
    panels = (["losses"] if {"train_loss", "val_loss"} <= set(metrics) else []) + [
        m for m in order if m in metrics
    ]
    panels = panels[:MAX_PATH_PANELS]
    cols = min(3, len(panels)) or 1
    rows = math.ceil(len(panels) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    best = path.loc[path["best"], "strength"]
    for ax, panel in zip(axes.flat, panels, strict=False):
        names = ["train_loss", "val_loss"] if panel == "losses" else [panel]
        for name in names:
            part = path[path["metric"] == name]
            ax.plot(part["strength"], part["median"], marker="o", label=name)
            ax.fill_between(part["strength"], part["q25"], part["q75"], alpha=0.25)
        medians = path.loc[path["metric"].isin(names), "median"].to_numpy(dtype=float)
        if not np.isfinite(medians).any():
            # No trial reported the metric: say so rather than draw made-up ticks.
            ax.text(
                0.5,
                0.5,
                NO_VALUES.format(metric=" or ".join(names)),
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=9,
                color="#555",
            )
            ax.set_yticks([])
        if len(best):
            ax.axvline(float(best.iloc[0]), color="k", linestyle="--", linewidth=1)
        _xscale(ax, path, log)
        ax.set_title("train vs val loss" if panel == "losses" else panel, fontsize=10)
        ax.set_xlabel(parameter)
        if panel == "losses" and np.isfinite(medians).any():
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"regularization path: {parameter} (median, IQR; dashed: best by {objective})")
    fig.tight_layout()
    return _png(fig)


def heatmap_caption(cells: pd.DataFrame) -> str | None:
    """What the heat map left out or kept in: the degenerate trials, and the failed ones
    (``attrs["n_failed"]``, status ``error``: in no cell); None when there were none."""
    parts = []
    total = int(cells.attrs.get("n_degenerate", 0))
    if total and cells.attrs.get("include_degenerate"):
        parts.append(
            f"{total} degenerate trial(s) (constant predictors) kept in the cells' medians "
            "and counts (--include-degenerate)"
        )
    elif total:
        only = int(((cells["n_trials"] == 0) & (cells["n_degenerate"] > 0)).sum())
        hatched = f"; {only} hatched cell(s) held only degenerate trials" if only else ""
        parts.append(
            f"{total} degenerate trial(s) (constant predictors) left out of the cells' medians "
            f"and counts{hatched}; --include-degenerate keeps them"
        )
    failed = int(cells.attrs.get("n_failed", 0))
    if failed:
        parts.append(f"{failed} failed trial(s) (status error) left out: in no cell")
    return "; ".join(parts) or None


def _text_colour(rgba: Sequence[float] | np.ndarray) -> str:
    """Black on a light cell, white on a dark one (relative luminance of the
    cell's colour, sRGB weights): viridis runs from dark blue to bright yellow."""
    red, green, blue = rgba[:3]
    return "k" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5 else "w"


def heatmap_figure(heat: pd.DataFrame) -> bytes:
    """:func:`heatmap_plot` as PNG bytes."""
    return _png(heatmap_plot(heat))


def heatmap_plot(heat: pd.DataFrame) -> Figure:
    """Median of the metric per (x, y) strength cell, with trial counts.

    ``heat``: ``analysis.heatmap`` (built with the analysis's ``include_degenerate``); a cell says
    how many degenerate trials it left out (``k degenerate left out``), a cell of only
    those is hatched grey (``only degenerate (k)``), and the title says what was left out
    (:func:`heatmap_caption`)."""
    attrs = heat.attrs
    xs = np.unique(heat["x"].to_numpy())
    ys = np.unique(heat["y"].to_numpy())
    grid = np.full((ys.size, xs.size), np.nan)
    counts = np.zeros_like(grid)
    left_out = np.zeros_like(grid)
    included = bool(attrs.get("include_degenerate", False))
    has_degenerate = "n_degenerate" in heat.columns
    for row in heat.itertuples(index=False):
        i, j = np.searchsorted(ys, row.y), np.searchsorted(xs, row.x)
        grid[i, j] = row.median
        counts[i, j] = row.n_trials
        left_out[i, j] = row.n_degenerate if has_degenerate else 0
    fig, ax = plt.subplots(figsize=(1.1 * xs.size + 2.5, 0.8 * ys.size + 1.8))
    finite = grid[np.isfinite(grid)]
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    if finite.size:
        fig.colorbar(image, ax=ax, label=str(attrs.get("metric", "")))
    ax.set_xticks(range(xs.size), [f"{v:.2g}" for v in xs], rotation=45)
    ax.set_yticks(range(ys.size), [f"{v:.2g}" for v in ys])
    for (i, j), n in np.ndenumerate(counts):
        d = int(left_out[i, j])
        if n and not np.isnan(grid[i, j]):
            text = f"{grid[i, j]:.3g}\n(n={int(n)})"
            if d:
                text += f"\n(incl. {d} degenerate)" if included else f"\n{d} degenerate\nleft out"
            colour = _text_colour(image.cmap(image.norm(grid[i, j])))
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
        elif d and not included:
            ax.add_patch(
                Rectangle(
                    (j - 0.5, i - 0.5), 1, 1, facecolor="#d9d9d9", edgecolor="#7f7f7f", hatch="//"
                )
            )
            ax.text(
                j, i, f"only\ndegenerate\n({d})", ha="center", va="center", fontsize=7, color="k"
            )
    ax.set_xlabel(str(attrs.get("x", "")))
    ax.set_ylabel(str(attrs.get("y", "")))
    title = f"median {attrs.get('metric', '')}"
    caption = heatmap_caption(heat)
    if caption:
        # Wrapped: the figure is as narrow as its cells.
        title += "\n" + textwrap.fill(caption, width=max(40, int(14 * xs.size + 30)))
        ax.set_title(title, fontsize=9)
    else:
        ax.set_title(title)
    fig.tight_layout()
    return fig


#: Why a trial is off the front (the front table's ``excluded``), in the legend's order.
EXCLUDED_KINDS = ("error", "degenerate", "no value", "incomplete")


def excluded_label(excluded: pd.Series) -> str:
    """The legend entry of the excluded trials: the reasons among ``excluded`` (the front
    table's ``excluded`` of those trials), e.g. ``excluded (error / incomplete)``."""
    present = set(excluded.astype(str))
    kinds = [k for k in EXCLUDED_KINDS if k in present]
    kinds += sorted(present - set(EXCLUDED_KINDS) - {""})
    return f"excluded ({' / '.join(kinds)})" if kinds else "excluded"


def front_figure(front: Front) -> bytes:
    """:func:`front_plot` as PNG bytes."""
    return _png(front_plot(front))


def ranked(front: Front) -> pd.DataFrame:
    """A one-objective front's trials with a value of the objective, best first, with
    their ``rank`` (1 = best): what its figure draws instead of the metric against itself.
    Excluded trials that have a value come after the others (ranked among themselves)."""
    metric, mode = front.objectives[0]
    values = pd.to_numeric(front.table[metric], errors="coerce").to_numpy(dtype=float)
    table = front.table[np.isfinite(values)].copy()
    key = table[metric].astype(float) * (1.0 if mode == "min" else -1.0)
    order = np.lexsort((key.to_numpy(), (table["excluded"] != "").to_numpy()))
    table = table.iloc[order].copy()
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def _ranked_plot(front: Front) -> Figure:
    """One objective: each trial's value against its rank (1 = best), front members red,
    dominated grey, excluded blue x (those with a value; the title counts those without)."""
    metric, mode = front.objectives[0]
    table = ranked(front)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    dominated = table[(table["excluded"] == "") & ~table["on_front"]]
    excluded = table[table["excluded"] != ""]
    on = table[table["on_front"]]
    if len(dominated):
        ax.scatter(dominated["rank"], dominated[metric], s=8, c=_DOMINATED_COLOR, label="not best")
    if len(excluded):
        ax.scatter(
            excluded["rank"],
            excluded[metric],
            s=14,
            c=_EXCLUDED_COLOR,
            marker="x",
            label=excluded_label(excluded["excluded"]),
        )
    if len(on):
        ax.scatter(on["rank"], on[metric], s=30, c=_FRONT_COLOR, label="front (best)", zorder=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"trials ranked by {metric} (1 = best)")
    ax.set_ylabel(f"{metric} ({mode})")
    ref = ", ".join(f"{k}={v:.3g}" for k, v in front.reference.items())
    title = (
        f"one objective: {metric} per trial; hypervolume {front.hypervolume:.4g} (reference {ref})"
    )
    missing = len(front.table) - len(table)
    if missing:
        title += f"\n{missing} trial(s) with no value of {metric} not drawn"
    ax.set_title(title, fontsize=9)
    if len(table):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def front_plot(front: Front) -> Figure:
    """The first two objectives: front (red), dominated (grey), excluded (blue x, the
    legend naming why: :func:`excluded_label`); with a third objective, front points are
    sized by it. With one objective, each trial's value against its rank (:func:`ranked`),
    not the metric against itself."""
    if len(front.objectives) == 1:
        return _ranked_plot(front)
    table = front.table
    (mx, _), (my, _) = front.objectives[0], front.objectives[1]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    dominated = front.dominated
    excluded = table[table["excluded"] != ""]
    on = front.front
    ax.scatter(dominated[mx], dominated[my], s=8, c=_DOMINATED_COLOR, label="dominated")
    if len(excluded):
        ax.scatter(
            excluded[mx],
            excluded[my],
            s=14,
            c=_EXCLUDED_COLOR,
            marker="x",
            label=excluded_label(excluded["excluded"]),
        )
    ordered = on.sort_values(mx)
    size = 30
    if len(front.objectives) >= 3:
        third = on[front.objectives[2][0]].to_numpy(dtype=float)
        span = np.ptp(third) if third.size else 0.0
        size = 20 + 80 * ((third - third.min()) / span if span > 0 else np.ones_like(third))
    ax.scatter(on[mx], on[my], s=size, c=_FRONT_COLOR, label="Pareto front", zorder=3)
    ax.plot(ordered[mx], ordered[my], c=_FRONT_COLOR, linewidth=0.8)
    ax.set_xlabel(f"{mx} ({front.objectives[0][1]})")
    ax.set_ylabel(f"{my} ({front.objectives[1][1]})")
    ref = ", ".join(f"{k}={v:.3g}" for k, v in front.reference.items())
    ax.set_title(f"hypervolume {front.hypervolume:.4g} (reference {ref})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curves_figure(best: BestTrial) -> bytes:
    """The best trial's learning curves: losses (left), accuracy (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name in ("train_loss", "val_loss"):
        if name in best.curves:
            left.plot(best.curves.index, best.curves[name], marker=".", label=name)
    left.set_xlabel("epoch")
    left.legend(fontsize=8)
    left.set_title("loss")
    for name in ("val_acc", "robust_acc"):
        if name in best.curves:
            right.plot(best.curves.index, best.curves[name], marker=".", label=name)
    right.set_xlabel("epoch")
    right.legend(fontsize=8)
    right.set_title("accuracy")
    fig.suptitle(f"best trial {best.trial_id}: learning curves")
    fig.tight_layout()
    return _png(fig)


def _reliability_axes(ax: plt.Axes, best: BestTrial) -> None:
    """Reliability diagram: accuracy vs mean confidence per slot (marker area ~ count),
    the diagonal of perfect calibration, and the gap of each slot as a bar."""
    table = best.reliability[best.reliability["count"] > 0]
    ax.plot([0, 1], [0, 1], color="#9e9e9e", linestyle="--", linewidth=1, label="perfect")
    total = float(table["count"].sum()) or 1.0
    ax.bar(
        table["conf"],
        table["acc"] - table["conf"],
        bottom=table["conf"],
        width=0.02,
        color="#d62728",
        alpha=0.35,
        label="gap (acc - conf)",
    )
    ax.plot(table["conf"], table["acc"], color="#1f77b4", linewidth=1)
    ax.scatter(
        table["conf"],
        table["acc"],
        s=20 + 300 * table["count"] / total,
        color="#1f77b4",
        zorder=3,
        label="slot (area ~ count)",
    )
    for row in table.itertuples(index=False):
        ax.annotate(
            f"{int(row.count)}",
            (row.conf, row.acc),
            fontsize=6,
            xytext=(3, -9),
            textcoords="offset points",
        )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean confidence (top label)")
    ax.set_ylabel("accuracy")
    stored = best.row.get(f"{best.split}_ece" if best.split else "ece")
    extra = f"; stored {best.split}_ece {float(stored):.4g}" if stored is not None else ""
    ax.set_title(
        f"reliability ({best.split or 'stored'} split): ECE {best.reliability_ece:.4g}{extra}",
        fontsize=9,
    )


def _counts_axes(ax: plt.Axes, best: BestTrial) -> None:
    """Examples per confidence slot, as bars over the slot's range (conf == 1.0: at 1)."""
    table = best.reliability
    width = (table["high"] - table["low"]).to_numpy(dtype=float)
    width = np.where(width > 0, width, 0.02)
    ax.bar(table["low"], table["count"], width=width, align="edge", color="#9e9e9e")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("mean confidence (top label)")
    ax.set_ylabel("examples")


def calibration_figure(best: BestTrial) -> bytes:
    """:func:`calibration_plot` as PNG bytes."""
    return _png(calibration_plot(best))


def calibration_plot(best: BestTrial) -> Figure:
    """The calibration curve (reliability diagram) of the kept model with the diagonal,
    slot counts and its ECE (when bins are stored), and ECE/Brier per epoch (when stored).
    The curve's legend sits below the panels, off every point."""
    has_bins = len(best.reliability) > 0 and bool((best.reliability["count"] > 0).any())
    has_epochs = len(best.calibration.columns) > 0
    if has_bins:
        cols = 2 if has_epochs else 1
        fig = plt.figure(figsize=(5.2 * cols, 5.0))
        grid = fig.add_gridspec(2, cols, height_ratios=[3, 1])
        curve = fig.add_subplot(grid[0, 0])
        _reliability_axes(curve, best)
        curve.set_xlabel("")
        _counts_axes(fig.add_subplot(grid[1, 0], sharex=curve), best)
        right = fig.add_subplot(grid[:, 1]) if has_epochs else None
    else:
        fig, right = plt.subplots(figsize=(5.5, 3.2))
    if right is not None:
        for name in best.calibration.columns:
            right.plot(best.calibration.index, best.calibration[name], marker=".", label=name)
        right.set_xlabel("epoch")
        right.set_title(
            "ECE and Brier per epoch (validation)"
            if has_bins
            else "calibration per epoch (no reliability bins stored)",
            fontsize=9,
        )
        if has_epochs:
            right.legend(fontsize=8)
    fig.suptitle(f"best trial {best.trial_id}: calibration")
    if has_bins:
        handles, labels = curve.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7)
        fig.tight_layout(rect=(0.0, 0.06, 1.0, 1.0))  # the bottom strip holds the legend
    else:
        fig.tight_layout()
    return fig


def groups_figure(best: BestTrial) -> bytes:
    """Per-group accuracy, positive rate, TPR and FPR of the best trial, one panel per
    stat, with their confidence intervals as error bars where stored; gaps in the title."""
    rates = best.group_rates
    stats = list(dict.fromkeys(rates["stat"])) if len(rates) else []
    panels = max(1, len(stats))
    fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels + 0.6, 3.4), squeeze=False)
    for ax, stat in zip(axes.flat, stats, strict=False):
        part = rates[rates["stat"] == stat]
        value = part["value"].to_numpy(dtype=float)
        low = part["ci_low"].to_numpy(dtype=float)
        high = part["ci_high"].to_numpy(dtype=float)
        err = np.vstack(
            [np.where(np.isnan(low), 0, value - low), np.where(np.isnan(high), 0, high - value)]
        )
        x = np.arange(len(part))
        ax.bar(x, np.nan_to_num(value), color="#1f77b4", alpha=0.8)
        ax.errorbar(x, value, yerr=np.clip(err, 0, None), fmt="none", ecolor="k", capsize=4)
        ax.set_xticks(x, [str(g) for g in part["group"]], rotation=30, ha="right", fontsize=8)
        split = str(part["split"].iloc[0])
        ax.set_title(f"{split + ' ' if split else ''}{stat}", fontsize=9)
        ax.set_ylim(0, 1)
    if not stats:
        axes.flat[0].set_axis_off()
    gaps = []
    for name, value in best.gaps.items():
        if name.endswith(("_ci_low", "_ci_high")):
            continue
        low, high = best.gaps.get(f"{name}_ci_low"), best.gaps.get(f"{name}_ci_high")
        ends = f" [{low:.3g}, {high:.3g}]" if low is not None and high is not None else ""
        gaps.append(f"{name}={value:.3g}{ends}")
    title = f"best trial {best.trial_id}: per-group rates (error bars: stored intervals)"
    if gaps:
        title += "\n" + ", ".join(gaps)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def diagnosis_figure(diagnosis: pd.DataFrame) -> bytes:
    """:func:`diagnosis_plot` as PNG bytes."""
    return _png(diagnosis_plot(diagnosis))


def diagnosis_plot(diagnosis: pd.DataFrame) -> Figure:
    """How many trials got each diagnosis (whole-number ticks: these are counts)."""
    counts = diagnosis["diagnosis"].value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    ax.barh(counts.index.astype(str), counts.to_numpy())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trials")
    ax.set_title("diagnosis")
    fig.tight_layout()
    return fig


def figures(analysis: Analysis) -> dict[str, bytes]:
    """Every figure of ``analysis`` as PNG bytes, by file stem."""
    out: dict[str, bytes] = {}
    stem = figure_stem(analysis.name)
    for name, path in analysis.paths.items():
        out[f"{stem}-path-{name}"] = path_figure(path, analysis.objective[0])
    cells = analysis.heatmap
    if cells is not None and len(cells):
        out[f"{stem}-heatmap"] = heatmap_figure(cells)
    if analysis.front is not None and len(analysis.front.front):
        out[f"{stem}-front"] = front_figure(analysis.front)
    out[f"{stem}-diagnosis"] = diagnosis_figure(analysis.diagnosis)
    if analysis.best is not None:
        out[f"{stem}-best-curves"] = curves_figure(analysis.best)
        if len(analysis.best.calibration.columns) or len(analysis.best.reliability):
            out[f"{stem}-best-calibration"] = calibration_figure(analysis.best)
        if len(analysis.best.group_rates) or analysis.best.gaps:
            out[f"{stem}-best-groups"] = groups_figure(analysis.best)
    return out


def compare_paths_figure(analyses: Sequence[Analysis], parameter: str) -> bytes:
    """The objective's median (and IQR) along one parameter's path, one line per experiment."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    objective = analyses[0].objective[0]
    log = False
    parts = []
    for analysis in analyses:
        path = analysis.paths.get(parameter)
        if path is None:
            continue
        part = path[path["metric"] == objective]
        ax.plot(part["strength"], part["median"], marker="o", label=analysis.name or analysis.path)
        ax.fill_between(part["strength"], part["q25"], part["q75"], alpha=0.2)
        log = log or bool(path.attrs.get("log", False))
        parts.append(part)
    if parts:
        # One axis for every experiment's strengths (not the last one's range).
        _xscale(ax, pd.concat(parts), log)
    ax.set_xlabel(parameter)
    ax.set_ylabel(objective)
    ax.set_title(f"{objective} vs {parameter}, side by side")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def compare_fronts_figure(analyses: Sequence[Analysis]) -> bytes:
    """Each experiment's front on the first two objectives of the first experiment (one
    objective: each experiment's trials ranked by it); an empty front is labelled
    :data:`FRONT_EMPTY`, not with a hypervolume of 0."""
    first = analyses[0].front
    assert first is not None  # callers check
    one = len(first.objectives) == 1
    (mx, dx) = first.objectives[0]
    my = first.objectives[0 if one else 1][0]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for analysis in analyses:
        front = analysis.front
        if front is None or mx not in front.table or my not in front.table:
            continue
        name = analysis.name or analysis.path
        if not len(front.front):
            label = f"{name} ({FRONT_EMPTY})"
        else:
            label = f"{name} (hypervolume {front.hypervolume:.3g})"
        if one:
            table = ranked(front)
            table = table[table["excluded"] == ""]
            ax.plot(table["rank"], table[mx], marker="o", markersize=3, label=label)
        else:
            on = front.front.sort_values(mx)
            ax.plot(on[mx], on[my], marker="o", label=label)
    if one:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"trials ranked by {mx} (1 = best)")
        ax.set_ylabel(f"{mx} ({dx})")
        title = f"{mx} per trial side by side (hypervolume: each against its own reference point)"
    else:
        ax.set_xlabel(mx)
        ax.set_ylabel(my)
        title = "Pareto fronts side by side (each against its own reference point)"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def comparison_figures(analyses: Sequence[Analysis]) -> dict[str, bytes]:
    """Side-by-side figures of several experiments: shared paths, and fronts when the
    experiments share their first two objectives."""
    if len(analyses) < 2:
        return {}
    out: dict[str, bytes] = {}
    shared = set(analyses[0].paths)
    for analysis in analyses[1:]:
        shared &= set(analysis.paths)
    for parameter in sorted(shared):
        out[f"compare-path-{parameter}"] = compare_paths_figure(analyses, parameter)
    fronts = [a.front for a in analyses]
    if all(f is not None for f in fronts):
        keys = {tuple(m for m, _ in f.objectives[:2]) for f in fronts if f is not None}
        if len(keys) == 1:
            out["compare-fronts"] = compare_fronts_figure(analyses)
    return out


def write_figures(analysis: Analysis, folder: str | Path) -> dict[str, Path]:
    """Write every figure as ``<folder>/<stem>.png``; returns the paths by stem."""
    return write_pngs(figures(analysis), folder)


def write_pngs(images: dict[str, bytes], folder: str | Path) -> dict[str, Path]:
    """Write PNG bytes as ``<folder>/<stem>.png``; returns the paths by stem."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for stem, data in images.items():
        path = target / f"{stem}.png"
        path.write_bytes(data)
        written[stem] = path
    return written

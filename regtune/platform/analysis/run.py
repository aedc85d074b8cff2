"""One analysis of one experiment: every table the report and the CLI show.

:func:`analyze_tables` is the core (DataFrames in, DataFrames out);
:func:`analyze_experiment` reads an experiment directory first, only the
columns it needs. :meth:`Analysis.to_dict` is the ``--json`` output.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from regtune.errors import SpecError
from regtune.platform.analysis.best import BestTrial, best_trial, best_trial_id
from regtune.platform.analysis.columns import detail_columns
from regtune.platform.analysis.curves import Segments, segments
from regtune.platform.analysis.diagnosis import diagnose, explain, group_columns
from regtune.platform.analysis.front import (
    Front,
    best_off_front,
    pareto_table,
    resolve_objectives,
)
from regtune.platform.analysis.kept import KEPT_COLUMNS
from regtune.platform.analysis.load import (
    RUNNING_NOTE,
    Experiment,
    final_values,
    load_experiment,
    stored_columns,
    stored_spec,
)
from regtune.platform.analysis.path import BOOKKEEPING_SUFFIXES, heatmap, regularization_path
from regtune.platform.analysis.summary import (
    BOOKKEEPING_COLUMNS,
    check_metric,
    degenerate_flags,
    list_metrics,
    metric_columns,
    trial_summary,
)
from regtune.platform.analysis.swept import SweptParameter, find_parameter, swept_parameters
from regtune.platform.analysis.verdict import edges, sweep_verdict
from regtune.platform.results.outcome import no_best_reason
from regtune.platform.results.schema import metric_columns as stored_metric_columns
from regtune.platform.results.trials import ERROR, UNKNOWN
from regtune.search_spaces import SweepSpec
from regtune.trainables.config import METRIC_MODES

__all__ = [
    "DEFAULT_OBJECTIVE",
    "MSG_NOTHING_TO_DIAGNOSE",
    "MSG_NOTHING_TO_DRAW",
    "MSG_NO_EPOCHS",
    "MSG_NO_LOSSES",
    "SECOND_OBJECTIVE",
    "Analysis",
    "analyze_experiment",
    "analyze_tables",
    "needed_columns",
]

#: The primary objective when neither the spec nor the caller names one.
DEFAULT_OBJECTIVE = ("val_acc", "max")
#: With a single-objective spec the front is drawn against this second objective
#: (accuracy vs calibration: the trade-off regularization moves along).
SECOND_OBJECTIVE = ("ece", "min")
#: Trials whose diagnosis is spelt out in the terminal, JSON and report, per label.
EXAMPLES_PER_LABEL = 3

#: In :data:`~regtune.platform.analysis.load.RUNNING_NOTE`, whichever experiment it names.
_RUNNING_MARK = " trials running or interrupted; "
MSG_NO_LOSSES = "diagnosis needs train_loss and val_loss; metrics present: {present}"
#: Why there is no best trial when every trial lost stored epochs to a skipped part.
MSG_ALL_INCOMPLETE = (
    "every trial ({n}) lost stored epochs to an unreadable part (see the notes), so none is ranked"
)
#: In place of a path table with no row: every trial was left out (the notes say why).
MSG_NOTHING_TO_DRAW = "no trial to draw: {n} left out (see the notes)"
#: In place of an empty diagnosis table.
MSG_NOTHING_TO_DIAGNOSE = "no trial to diagnose: {n} left out (see the notes)"
#: Why the front is empty: every trial was left out, for these reasons.
MSG_EMPTY_FRONT = "the front is empty: every trial was left out ({reasons})"
#: The note naming the trials the stored trial table holds that reported no epoch.
MSG_NO_EPOCHS = (
    "{n} trial(s) reported no epoch: {trials}; they count among the trials (and a failed "
    "one among the failed) but, with no metrics, are in no path, front, best trial or diagnosis"
)
#: How each kind of left-out trial is counted in :data:`MSG_EMPTY_FRONT`.
_LEFT_OUT = {
    "degenerate": "{n} degenerate: each predicts one class for every row; --include-degenerate "
    "keeps them",
    "error": "{n} failed",
    "incomplete": "{n} that lost stored epochs to an unreadable part (see the notes)",
    "no value": "{n} with no value of {objectives}",
}


@dataclass
class Analysis:
    """Everything analysed about one experiment. Tables are pandas DataFrames:

    ``summary`` (one row per trial), ``paths`` (parameter name -> path table),
    ``heatmap`` (or ``None`` with fewer than two numeric swept parameters, seeds not counted),
    ``front`` (:class:`~regtune.platform.analysis.front.Front`), ``diagnosis``
    (one row per trial), ``edges`` (best strength vs range per parameter),
    ``verdict`` (sentences), ``best`` (:class:`~regtune.platform.analysis.best.BestTrial`;
    ``None`` when no trial is eligible: :meth:`no_best_reason` says why).
    ``include_degenerate``: whether degenerate trials were eligible for the front and best
    and counted in the paths' and heat map's medians (``n_degenerate`` counts them either way).
    """

    name: str
    path: str
    objective: tuple[str, str]
    swept: list[SweptParameter]
    summary: pd.DataFrame
    paths: dict[str, pd.DataFrame]
    heatmap: pd.DataFrame | None
    front: Front | None
    diagnosis: pd.DataFrame
    edges: pd.DataFrame
    verdict: list[str]
    best: BestTrial | None
    spec: SweepSpec | None = None
    notes: list[str] = field(default_factory=list)
    #: Wall seconds spent reading (``read_s``) and analysing (``analyze_s``), and the CPU
    #: seconds of each (``read_cpu_s``, ``analyze_cpu_s``), when measured; ``best_read_s``:
    #: the part of ``read_s`` that read the best trial's bins and intervals.
    timings: dict[str, float] = field(default_factory=dict)
    include_degenerate: bool = False
    #: Trials that lost stored epochs with a skipped part (trial -> which epochs): listed in
    #: ``summary`` but left off the best trial, the front, the paths, the heat map and the
    #: diagnosis, whose numbers would be of the wrong epochs.
    incomplete: dict[str, str] = field(default_factory=dict)
    #: Trials the stored trial table names that have no epoch row (failed before their first
    #: report, not started): trial -> status. Counted in :attr:`n_trials` (and, when failed,
    #: :attr:`n_failed`) but in no table built on metrics (summary, paths, heat map, front,
    #: best, diagnosis): they have none.
    no_epochs: dict[str, str] = field(default_factory=dict)
    #: Trials of :attr:`incomplete` whose every stored epoch was lost (so not in
    #: :attr:`summary`): trial -> the status the trial table stores. A failed one counts in
    #: :attr:`failed`, as it would with its epochs.
    lost_status: dict[str, str] = field(default_factory=dict)

    def no_best_reason(self) -> str | None:
        """Why :attr:`best` is None (None when there is a best), in the words of the sweep
        summary's ``no best:`` line (:func:`~regtune.platform.results.outcome.no_best_reason`):
        every trial failed, predicts one class for every row, or has no finite value of
        the primary objective; with a mix, how many of each."""
        if self.best is not None:
            return None
        metric = self.objective[0]
        summary = self.summary.drop(index=list(self.incomplete), errors="ignore")
        # Every incomplete trial: with some stored epochs left (in the summary) or none.
        lost = len(self.summary) - len(summary) + len(self.lost_status)
        if lost and summary.empty and not self.no_epochs:
            return MSG_ALL_INCOMPLETE.format(n=lost)
        n = len(summary)
        status = summary["status"] if "status" in summary else pd.Series("", index=summary.index)
        degenerate = pd.Series(
            degenerate_flags(summary) & (not self.include_degenerate), index=summary.index
        )
        values = (
            pd.to_numeric(summary[metric], errors="coerce")
            if metric in summary
            else pd.Series(math.nan, index=summary.index)
        )
        trials = [
            (str(status.iloc[i]), bool(degenerate.iloc[i]), float(values.iloc[i])) for i in range(n)
        ]
        # A trial with no epoch has no value: it counts as failed (error) or valueless.
        trials += [(state, False, math.nan) for state in self.no_epochs.values()]
        reason = no_best_reason(trials, metric)
        if lost and reason is not None:
            reason += f" (of those left after the {lost} with stored epochs lost)"
        return reason

    def empty_front_reason(self) -> str | None:
        """Why the front holds no trial, naming how many trials were left out for each
        reason (None when there is no front or it holds a trial)."""
        if self.front is None or len(self.front.front):
            return None
        return MSG_EMPTY_FRONT.format(reasons="; ".join(self.excluded_reasons()) or "no trial")

    def excluded_reasons(self) -> list[str]:
        """How many trials the front left out for each reason, one phrase per reason
        (``3 with no value of test_acc``, ``1 failed``); empty when none was left out or
        there is no front."""
        if self.front is None:
            return []
        counts = self.front.table["excluded"].value_counts()
        objectives = " or ".join(m for m, _ in self.front.objectives)
        return [
            text.format(n=int(counts[kind]), objectives=objectives)
            for kind, text in _LEFT_OUT.items()
            if kind in counts
        ]

    @property
    def n_trials(self) -> int:
        """Trials of the experiment: those with epoch rows (:attr:`summary`), those whose
        every row was lost to an unreadable part, and those that reported none
        (:attr:`no_epochs`)."""
        return len(set(map(str, self.summary.index)) | set(self.incomplete) | set(self.no_epochs))

    @property
    def failed(self) -> list[str]:
        """Trials that failed (status ``error``), sorted: with epoch rows, with none
        (:attr:`no_epochs`), and with every stored one lost (:attr:`lost_status`)."""
        status = self.summary["status"] if "status" in self.summary else pd.Series(dtype=object)
        with_rows = [str(t) for t, s in status.items() if s == ERROR]
        rowless = {**self.no_epochs, **self.lost_status}
        return sorted({*with_rows, *(t for t, s in rowless.items() if s == ERROR)})

    @property
    def n_failed(self) -> int:
        """How many trials failed (status ``error``), :attr:`no_epochs` included."""
        return len(self.failed)

    def examples(self) -> dict[str, list[dict[str, Any]]]:
        """A few trials per diagnosis label, each with its evidence sentence."""
        out: dict[str, list[dict[str, Any]]] = {}
        for label, group in self.diagnosis.groupby("diagnosis", sort=True):
            rows = []
            for trial_id in group.index[:EXAMPLES_PER_LABEL]:
                row = self.diagnosis.loc[trial_id].to_dict()
                rows.append({"trial_id": str(trial_id), "evidence": explain(row, self.swept)})
            out[str(label)] = rows
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able): counts, paths, front, verdict; no per-trial dumps
        beyond the front and a few examples per diagnosis."""
        front: dict[str, Any] | None = None
        if self.front is not None:
            on = self.front.front
            front = {
                "objectives": [list(o) for o in self.front.objectives],
                # An empty front has no hypervolume, and its default reference was computed
                # from no trial: null, not a made-up 0 (a reference given is kept).
                "reference": None
                if all(math.isnan(v) for v in self.front.reference.values())
                else self.front.reference,
                "hypervolume": None if len(on) == 0 else self.front.hypervolume,
                "n_front": len(on),
                "n_dominated": len(self.front.dominated),
                "n_excluded": int((self.front.table["excluded"] != "").sum()),
                "empty": self.empty_front_reason(),
                "trials": _records(on.reset_index()),
            }
        best = None
        if self.best is not None:
            best = {
                "trial_id": self.best.trial_id,
                "metrics": _plain(self.best.row.to_dict()),
                "diagnosis": explain(self.diagnosis.loc[self.best.trial_id].to_dict(), self.swept)
                if self.best.trial_id in self.diagnosis.index
                else None,
                "groups": _plain(self.best.groups.to_dict()),
                "group_rates": _records(self.best.group_rates),
                "gaps": _plain(self.best.gaps),
                "reliability": _records(self.best.reliability),
                "reliability_ece": _plain(self.best.reliability_ece),
                "notes": self.best.notes,
            }
        counts = self.diagnosis["diagnosis"].value_counts().sort_index()
        return {
            "experiment": self.name,
            "path": self.path,
            "n_trials": self.n_trials,
            "n_failed": self.n_failed,
            "failed": self.failed,
            "no_epochs": dict(self.no_epochs),
            "objective": list(self.objective),
            "swept": [
                {"name": p.name, "kind": p.kind, "low": p.low, "high": p.high, "log": p.log}
                for p in self.swept
            ],
            "paths": {name: _records(table) for name, table in self.paths.items()},
            "heatmap": None
            if self.heatmap is None
            else {
                **{k: _plain(v) for k, v in self.heatmap.attrs.items()},
                "cells": _records(self.heatmap),
            },
            "front": front,
            "diagnosis": {
                "counts": {str(k): int(v) for k, v in counts.items()},
                "examples": self.examples(),
            },
            "edges": _records(self.edges),
            "verdict": self.verdict,
            "best": best,
            "no_best": self.no_best_reason(),
            "incomplete": dict(self.incomplete),
            "notes": self.notes,
            "timings": self.timings,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [_plain(r) for r in table.to_dict(orient="records")]


def _primary(spec: SweepSpec | None, objectives: Sequence[str] | None) -> tuple[str, str]:
    if objectives:
        return resolve_objectives([objectives[0]], _spec_modes(spec))[0]
    if spec is not None and spec.objectives:
        first = spec.objectives[0]
        return (first.metric, first.mode)
    return DEFAULT_OBJECTIVE


def _spec_modes(spec: SweepSpec | None) -> dict[str, str]:
    return {o.metric: o.mode for o in spec.objectives} if spec is not None else {}


def _chosen_objectives(
    spec: SweepSpec | None, objectives: Sequence[str] | None
) -> list[tuple[str, str]]:
    """The objectives asked for, else the spec's, else the default one."""
    if objectives:
        return list(resolve_objectives(list(objectives), _spec_modes(spec)))
    chosen: list[tuple[str, str]] = (
        [(o.metric, str(o.mode)) for o in spec.objectives] if spec is not None else []
    )
    return chosen or [DEFAULT_OBJECTIVE]


def _front_objectives(
    spec: SweepSpec | None, objectives: Sequence[str] | None, present: Sequence[str]
) -> tuple[tuple[str, str], ...]:
    if objectives:
        return tuple(_chosen_objectives(spec, objectives))
    chosen = _chosen_objectives(spec, objectives)
    if len(chosen) == 1 and SECOND_OBJECTIVE[0] in present and chosen[0] != SECOND_OBJECTIVE:
        chosen.append(SECOND_OBJECTIVE)
    return tuple(chosen)


def needed_columns(
    available: Sequence[str],
    spec: SweepSpec | None,
    *,
    objectives: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> list[str]:
    """The epoch columns an analysis reads: swept ``config.*`` columns, those that
    tell which epoch a trial keeps (:data:`~regtune.platform.analysis.kept.KEPT_COLUMNS`),
    the losses, the objectives, the path metrics (default: every metric but the best trial's
    detail columns, i.e. reliability bins and interval ends), group metrics.

    Raises:
        SpecError: a named metric or objective is not stored (the message lists
            the metrics present).
    """
    present = [c for c in stored_metric_columns(available) if c not in BOOKKEEPING_COLUMNS]
    for name in objectives or []:
        check_metric(name.partition(":")[0], present, "objective")
    for name in metrics or []:
        check_metric(name, present, "metric")
    if spec is not None:
        config = [f"config.{'.'.join(p)}" for p, _ in spec.iter_distributions()]
    else:
        config = [c for c in available if c.startswith("config.")]
    wanted = [c for c in config if c in available]
    wanted += [m for m in ("train_loss", "val_loss", "dp_diff", "eo_diff") if m in present]
    primary = _primary(spec, objectives)[0]
    wanted += [primary] + [o.partition(":")[0] for o in objectives or []]
    if spec is not None:
        wanted += [o.metric for o in spec.objectives]
    if SECOND_OBJECTIVE[0] in present:
        wanted.append(SECOND_OBJECTIVE[0])
    # Reliability bins and interval ends are read for the best trial only (final_values).
    detail = set(detail_columns(present))
    wanted += list(metrics) if metrics is not None else [m for m in present if m not in detail]
    for columns in group_columns(present).values():
        wanted += list(columns.values())
    # Which epoch each trial keeps (the row it is judged on) is decided from these;
    # for results stored before kept_epoch, early stopping's metric too, which may
    # be any of the platform metrics (a handful of columns).
    wanted += list(KEPT_COLUMNS) + list(METRIC_MODES)
    return [c for c in dict.fromkeys(wanted) if c in available]


def analyze_tables(
    epochs: pd.DataFrame,
    *,
    trials: pd.DataFrame | None = None,
    spec: SweepSpec | None = None,
    objectives: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    penalties: Sequence[str] | None = None,
    heatmap_metric: str | None = None,
    reference: Mapping[str, float] | None = None,
    include_degenerate: bool = False,
    name: str = "",
    path: str = "",
    notes: Sequence[str] = (),
    seg: Segments | None = None,
    incomplete: Mapping[str, str] | None = None,
) -> Analysis:
    """Analyse an epochs table (the results contract's shape).

    ``objectives``: ``metric`` or ``metric:mode`` strings; the first is the
    primary objective (best strength, best trial), all of them span the front
    (default: the spec's objectives; with a single one, also ``ece``).
    ``metrics``: the metrics drawn along each path (default: all).
    ``penalties``: the swept parameters to draw paths for (default: all swept but the seeds,
    :func:`~regtune.platform.analysis.swept.is_replicate`: replicates, which each path's
    medians are over; a seed named here gets a path, never range advice).
    ``seg``: the table's segments if already computed (they must be of ``epochs``).
    ``trials``: the trial table (``trial_id``, ``status``, ``degenerate``); a trial it names
    with no epoch row (failed before its first report, not started) is counted
    (:attr:`Analysis.no_epochs`, a note naming it, the verdict's failed count) but is in no
    table built on metrics.
    ``incomplete``: trials whose stored epochs are incomplete (trial -> which are missing,
    :attr:`~regtune.platform.analysis.load.Experiment.incomplete`): they stay in the
    summary but are left off the best trial, the front (``excluded`` ``"incomplete"``),
    the paths, the heat map and the diagnosis.

    A note that no trial beats the hypervolume's reference (:attr:`Front.notes`) is added to
    the notes, and a best trial the front does not hold says so in its own notes
    (:func:`~regtune.platform.analysis.front.best_off_front`), so the API and every output of
    ``regtune analyze`` say the same.

    Raises:
        SpecError: an unknown metric, objective or parameter; the message lists
            the ones present.
        DataError: the table lacks ``trial_id``/``iteration``.
    """
    present = metric_columns(epochs)
    primary = _primary(spec, objectives)
    check_metric(primary[0], present, "objective")
    for metric in metrics or []:
        check_metric(metric, present, "metric")
    if not {"train_loss", "val_loss"} <= set(present):
        raise SpecError(MSG_NO_LOSSES.format(present=list_metrics(present)))
    seg = seg if seg is not None else segments(epochs)
    summary = trial_summary(epochs, primary, trials=trials, seg=seg)
    lost = sorted(set(incomplete or {}) & {str(t) for t in summary.index})
    # Trials the trial table names without an epoch row: counted, never ranked or drawn.
    # (One whose rows were all in a skipped part reported epochs: it is incomplete instead.)
    rowless = _rowless(trials, summary.index)
    gone = {t: str((incomplete or {})[t]) for t in rowless if t in (incomplete or {})}
    no_epochs = {t: s for t, s in rowless.items() if t not in gone}
    # What is ranked, drawn and diagnosed: the trials whose stored epochs are all there.
    ranked = summary.drop(index=lost) if lost else summary
    swept = swept_parameters(summary, spec)
    if penalties:
        swept = [find_parameter(swept, p, "penalty") for p in penalties]
        numeric = [p for p in swept if p.numeric]
    else:
        # Seeds are replicates: each path's medians are over them, they are no strength.
        numeric = [p for p in swept if p.numeric and not p.replicate]
    if metrics is not None:
        path_metrics = list(metrics)
    else:  # every metric with a value, but not the bins and interval ends of the best trial
        detail = set(detail_columns(present))
        path_metrics = [
            m
            for m in present
            if m not in detail and not m.endswith(BOOKKEEPING_SUFFIXES) and ranked[m].notna().any()
        ]
    if primary[0] not in path_metrics:
        path_metrics.insert(0, primary[0])
    paths = {
        p.name: regularization_path(
            ranked, p, primary, path_metrics, include_degenerate=include_degenerate
        )
        for p in numeric
    }
    heat = None
    if len(numeric) >= 2:
        heat = heatmap(
            ranked,
            numeric[0],
            numeric[1],
            heatmap_metric or primary[0],
            include_degenerate=include_degenerate,
        )
    front_objectives = _front_objectives(spec, objectives, present)
    front = pareto_table(
        summary,
        front_objectives,
        reference=reference,
        include_degenerate=include_degenerate,
        incomplete=lost,
    )
    diagnosis = diagnose(epochs, summary, seg=seg)
    if lost:
        diagnosis = diagnosis.drop(index=lost, errors="ignore")
    # The verdict counts every trial, as n_trials and n_failed do: those it judges
    # (diagnosis) and, by their stored status, those it cannot (no epoch, epochs lost).
    status = summary["status"] if "status" in summary else pd.Series(UNKNOWN, index=summary.index)
    unjudged = {**{str(t): str(status.loc[t]) for t in lost}, **rowless}
    verdict = sweep_verdict(
        paths,
        diagnosis,
        swept,
        ranked.get("status"),
        summary=ranked,
        no_epochs=unjudged,
        objective=primary,
        include_degenerate=include_degenerate,
    )
    # Ties go as in the sweep summary: the other objectives asked for (not the front's ece).
    others = [o for o in _chosen_objectives(spec, objectives) if o[0] != primary[0]]
    best_id = best_trial_id(ranked, primary, others=others, include_degenerate=include_degenerate)
    best = best_trial(epochs, summary, best_id, seg) if best_id is not None else None
    ranked_by = [m for m, _ in _chosen_objectives(spec, objectives)]
    _note_off_front(best, front, ranked_by)
    all_notes = list(notes)
    if no_epochs:
        listed = ", ".join(f"{t} ({s})" for t, s in no_epochs.items())
        all_notes.append(MSG_NO_EPOCHS.format(n=len(no_epochs), trials=listed))
    # What the front's numbers need said beside them (a hypervolume of 0 the reference caused).
    all_notes += [n for n in front.notes if n not in all_notes]
    if trials is not None and "status" in trials.columns:
        running = int((trials["status"] == "running").sum())
        # Said once: an experiment loaded from its folder has it already (with the path).
        if running and not any(_RUNNING_MARK in n for n in all_notes):
            all_notes.append(
                RUNNING_NOTE.format(running=running, total=len(trials), name=name or "NAME")
            )
    return Analysis(
        name=name or (spec.name if spec is not None else ""),
        path=path,
        objective=primary,
        swept=swept,
        summary=summary,
        paths=paths,
        heatmap=heat,
        front=front,
        diagnosis=diagnosis,
        edges=edges(paths, swept),
        verdict=verdict,
        best=best,
        spec=spec,
        notes=all_notes,
        include_degenerate=include_degenerate,
        incomplete={**{t: str((incomplete or {})[t]) for t in lost}, **gone},
        no_epochs=no_epochs,
        lost_status={t: rowless[t] for t in gone},
    )


def _rowless(trials: pd.DataFrame | None, present: pd.Index) -> dict[str, str]:
    """Trials of the trial table ``trials`` with no epoch row (not in ``present``): trial ->
    status (``unknown`` without a status column), sorted by trial."""
    if trials is None or "trial_id" not in trials.columns or trials.empty:
        return {}
    seen = {str(t) for t in present}
    ids = trials["trial_id"].astype(str)
    status = (
        trials["status"].astype(object).where(trials["status"].notna(), UNKNOWN)
        if "status" in trials.columns
        else pd.Series(UNKNOWN, index=trials.index)
    )
    return {t: str(s) for t, s in sorted(zip(ids, status, strict=True)) if t not in seen}


def _note_off_front(best: BestTrial | None, front: Front | None, ranked: Sequence[str]) -> None:
    """Add to the best trial's notes the line saying that the front beside it does not hold
    it (:func:`~regtune.platform.analysis.front.best_off_front`; ``ranked``: the metrics it is
    ranked by), once."""
    if best is None or front is None:
        return
    line = best_off_front(front, best.trial_id, ranked)
    if line is not None and line not in best.notes:
        best.notes.append(line)


def analyze_experiment(
    exp: str,
    *,
    objectives: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    penalties: Sequence[str] | None = None,
    heatmap_metric: str | None = None,
    reference: Mapping[str, float] | None = None,
    include_degenerate: bool = False,
) -> Analysis:
    """Read experiment ``exp`` (path or URI; only the columns needed) and analyse it.

    Raises:
        DataError: missing or empty experiment, or a part of another schema version.
        SpecError: as :func:`analyze_tables`.
    """
    started, started_cpu = time.perf_counter(), time.process_time()
    available, _notes = stored_columns(exp)
    # Read once: the columns to read depend on it; load_experiment reports its problems.
    spec = stored_spec(exp)
    columns = needed_columns(available, spec.spec, objectives=objectives, metrics=metrics)
    experiment: Experiment = load_experiment(exp, columns=columns, spec=spec)
    read, read_cpu = time.perf_counter(), time.process_time()
    analysis = analyze_tables(
        experiment.epochs,
        trials=experiment.trials,
        spec=experiment.spec,
        objectives=objectives,
        metrics=metrics,
        penalties=penalties,
        heatmap_metric=heatmap_metric,
        reference=reference,
        include_degenerate=include_degenerate,
        name=experiment.name,
        path=experiment.path,
        notes=experiment.notes,
        seg=experiment.segments,
        incomplete=experiment.incomplete,
    )
    detail_s = detail_cpu_s = 0.0
    if analysis.best is not None:
        # The best trial's reliability bins and interval ends: read for that trial alone.
        wanted = [c for c in detail_columns(available) if c not in experiment.epochs.columns]
        if wanted:
            before, before_cpu = time.perf_counter(), time.process_time()
            detail = final_values(exp, analysis.best.trial_id, wanted, analysis.notes)
            detail_s = time.perf_counter() - before
            detail_cpu_s = time.process_time() - before_cpu
            analysis.best = best_trial(
                experiment.epochs,
                analysis.summary,
                analysis.best.trial_id,
                experiment.segments,
                detail=detail,
            )
            # The best trial was rebuilt with its details: its notes too.
            _note_off_front(
                analysis.best,
                analysis.front,
                [m for m, _ in _chosen_objectives(experiment.spec, objectives)],
            )
    # CPU seconds next to wall seconds: on a shared machine the wall clock also counts
    # the time other processes held the cores.
    # The best trial's own read counts as reading (``best_read_s`` says how much of it).
    analysis.timings = {
        "read_s": read - started + detail_s,
        "analyze_s": time.perf_counter() - read - detail_s,
        "read_cpu_s": read_cpu - started_cpu + detail_cpu_s,
        "analyze_cpu_s": time.process_time() - read_cpu - detail_cpu_s,
        "best_read_s": detail_s,
    }
    return analysis

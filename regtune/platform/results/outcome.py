"""What a sweep produced: one :class:`TrialSummary` per trial, in a :class:`SweepOutcome`.

An outcome is built by ``run_sweep`` from Tune's ``ResultGrid``
(:func:`outcome_from_grid`) or later from the results folder alone
(:meth:`SweepOutcome.from_path`, no Ray needed), and turned into plain
JSON-able data with :meth:`SweepOutcome.to_dict`.

Degenerate trials (constant predictors, see
:mod:`~regtune.platform.results.degenerate`) and errored trials are kept in
``trials`` and marked, but left off ``front`` and never ``best``.

Which epoch a trial is ranked on: the one whose weights it keeps, by the
trainer's rule read from the stored rows
(:mod:`~regtune.platform.analysis.kept`: a fairness bound's ``kept_epoch``,
else early stopping's best epoch, else the last epoch), with the final
report's ``test_*`` values (scored on those weights). The analysis judges a
trial on the same row (:func:`~regtune.platform.analysis.summary.trial_summary`)
and promotion ranks the weights it ships, so ``regtune sweep``, ``regtune
analyze`` and ``regtune promote`` compare the same numbers;
:attr:`TrialSummary.epoch` says which epoch that is.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from regtune.platform.results.degenerate import is_constant_predictor
from regtune.platform.results.files import as_uri, locate
from regtune.platform.results.ranking import best_first
from regtune.platform.results.schema import (
    CONFIG_PREFIX,
    NOT_METRICS,
    flatten_config,
    is_number,
)
from regtune.platform.results.trials import ERROR, config_of, trial_status
from regtune.search_spaces import SweepSpec

__all__ = [
    "NO_BEST_DOCS",
    "SweepOutcome",
    "TrialSummary",
    "json_safe",
    "no_best_reason",
    "outcome_from_grid",
    "pareto_indices",
    "ranked_rows",
]


#: Where a user reads why a sweep has no best trial and what to do.
NO_BEST_DOCS = "docs/sweeps.md 'No best trial'"
#: Why no trial can be best, by kind: (when every trial is of that kind, a count of them).
_NO_BEST_KINDS = {
    "error": ("every trial failed", "{n} failed"),
    "constant": (
        "every trial predicts one class for every row (a constant predictor)",
        "{n} predict one class for every row (constant predictors)",
    ),
    "no value": ("no trial reported a finite {metric}", "{n} reported no finite {metric}"),
}
#: Said of constant predictors ranked on an accuracy: their score is a class share.
_CONSTANT_SHARE = (
    "; for a constant predictor, {metric} ({value:.4f} here) is only the share of the rows in "
    "the class it predicts (the other {other:.1%} are in other classes), which accuracy rewards "
    "when a class is rare"
)


def no_best_reason(trials: Sequence[tuple[str, bool, float]], metric: str) -> str:
    """Why none of ``trials`` can be best, as :meth:`SweepOutcome.no_best_reason`
    says it; pure, for any caller that knows each trial's ``(status, degenerate,
    value of the first objective metric)`` (e.g. ``regtune analyze``'s trial
    summary). It assumes none is eligible: each trial failed, is a constant
    predictor, or has no finite value."""
    if not trials:
        return "no trial reported a result"
    kinds: dict[str, list[float]] = {}
    for status, degenerate, value in trials:
        kind = "error" if status == ERROR else "constant" if degenerate else "no value"
        kinds.setdefault(kind, []).append(float(value))
    present = [k for k in _NO_BEST_KINDS if k in kinds]
    if len(present) == 1:
        text = _NO_BEST_KINDS[present[0]][0].format(metric=metric)
    else:
        counts = [_NO_BEST_KINDS[k][1].format(n=len(kinds[k]), metric=metric) for k in present]
        text = f"of {len(trials)} trials, " + ", ".join(counts)
    values = [v for v in kinds.get("constant", []) if math.isfinite(v)]
    if values and metric.endswith("acc"):
        text += _CONSTANT_SHARE.format(metric=metric, value=max(values), other=1 - max(values))
    return f"{text}; see {NO_BEST_DOCS}" if "constant" in kinds else text


@dataclass(frozen=True)
class TrialSummary:
    """One trial's outcome.

    ``params`` are the sampled values (dotted key path -> value), ``config``
    the whole nested training config; ``metrics`` are the platform metrics
    of the last reported epoch only (no config, no Ray bookkeeping; a NaN
    value is left out, as the stored trial table cannot tell it from a metric
    the trial never reported, so a summary from Tune equals one rebuilt from
    disk), and
    ``objectives`` the spec's objectives at the epoch the trial is ranked on
    (``epoch``, see the module; NaN when missing), and ``ranked`` every
    platform metric at that epoch (what ties are broken on).
    ``run_info`` keeps Tune's bookkeeping of that result
    (``iterations_since_restore``, ``pid``, ...) when the outcome came from
    Tune; it is empty when rebuilt from disk.
    """

    trial_id: str
    status: str  # finished | stopped early | error | running | not started | unknown
    iterations: int
    params: dict[str, Any]
    objectives: dict[str, float]
    metrics: dict[str, Any]
    checkpoint: str | None
    config: dict[str, Any] = field(default_factory=dict)
    degenerate: bool = False
    run_info: dict[str, Any] = field(default_factory=dict)
    #: The epoch ``objectives`` and ``ranked`` come from (None: the last reported one).
    epoch: int | None = None
    ranked: dict[str, float] = field(default_factory=dict)


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` returns, and what :meth:`from_path` rebuilds."""

    name: str
    path: str
    objectives: tuple[tuple[str, str], ...]
    trials: list[TrialSummary]
    elapsed_s: float
    front: list[int] = field(default_factory=list)

    @property
    def best(self) -> TrialSummary | None:
        """Best trial by the first objective, ties broken as everywhere
        (:mod:`~regtune.platform.results.ranking`); errored and degenerate trials excluded."""
        ok = [t for t in self.trials if not t.degenerate and t.status != ERROR]
        order = best_first(
            [{**t.metrics, **t.ranked, **t.objectives} for t in ok],
            [t.trial_id for t in ok],
            self.objectives,
        )
        return ok[order[0]] if order else None

    def no_best_reason(self) -> str | None:
        """Why :attr:`best` is None, in a sentence a user can act on (None when
        there is a best): every trial failed, predicts one class for every row
        (a constant predictor, whose accuracy is then just that class's share
        of the rows), or reported no finite value of the first objective; with
        several of these, how many trials each."""
        if self.best is not None:
            return None
        metric = self.objectives[0][0] if self.objectives else "objective"
        return no_best_reason(
            [(t.status, t.degenerate, t.objectives.get(metric, math.nan)) for t in self.trials],
            metric,
        )

    def counts(self) -> dict[str, int]:
        """Trials per status."""
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out

    @property
    def results_path(self) -> str:
        """The experiment's results folder (see ``docs/results.md``)."""
        return f"{self.path.rstrip('/')}/results"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``json.dumps`` (NaN and infinities become ``None``)."""
        best = self.best
        out = {
            "name": self.name,
            "path": self.path,
            "results": self.results_path,
            "elapsed_s": round(self.elapsed_s, 3),
            "objectives": [{"metric": m, "mode": md} for m, md in self.objectives],
            "counts": self.counts(),
            "front": list(self.front),
            # A mapping, so the CLI can add its `regtune train` command to it.
            "best": None if best is None else {"trial_id": best.trial_id, "params": best.params},
            "no_best": self.no_best_reason(),
            "trials": [
                {
                    "trial_id": t.trial_id,
                    "status": t.status,
                    "iterations": t.iterations,
                    "degenerate": t.degenerate,
                    "params": t.params,
                    "objectives": t.objectives,
                    "epoch": t.epoch,
                    "metrics": t.metrics,
                    "config": t.config,
                    "checkpoint": t.checkpoint,
                }
                for t in self.trials
            ],
        }
        return dict(json_safe(out))

    @classmethod
    def from_path(cls, exp: str) -> SweepOutcome:
        """Rebuild the outcome of experiment ``exp`` (path or URI) from its
        results folder. ``elapsed_s`` is the time the sweep ran, summed over
        resumed sessions; ``run_info`` is empty.

        Raises:
            DataError: no results there, or a stored file is unusable.
        """
        from regtune.platform.results.read import (
            ResultsWarning,
            incomplete_message,
            read_spec,
            read_store,
            trials_frame,
        )

        spec = read_spec(exp)
        loc = locate(exp)
        # Read once: the trial table and the ranked rows.
        read = read_store(loc, exp, "epoch rows")
        epochs, run_s = read.epochs, read.stored.run_s
        if read.lost:
            warnings.warn(incomplete_message(read.parts, read.lost), ResultsWarning, 2)
        # Column by column: a 10,000-trial table holds over a million cells. A stored table
        # that cannot be used makes every status unknown, as in read_trials.
        table = trials_frame(loc, epochs, stored=read.stored, best=False)
        ranks = ranked_rows(epochs, spec)
        base = flatten_config(spec.base_config())
        sampled = [path for path, _ in spec.iter_distributions()]
        names = [c[len("last.") :] for c in table.columns if c.startswith("last.")]
        last = table[[f"last.{m}" for m in names]].to_numpy(dtype=float).tolist()
        config_names = [c for c in table.columns if c.startswith(CONFIG_PREFIX)]
        configs = table[config_names].to_dict("records") if config_names else [{}] * len(table)
        trials = []
        for tid, status, iterations, checkpoint, degenerate, values, stored in zip(
            table["trial_id"].tolist(),
            table["status"].tolist(),
            table["iterations"].tolist(),
            table["checkpoint"].tolist(),
            table["degenerate"].tolist(),
            last,
            configs,
            strict=True,
        ):
            config = _restore_types(config_of(stored), base)
            # NaN is the one value unequal to itself: a metric never reported.
            metrics = {m: v for m, v in zip(names, values, strict=True) if v == v}
            epoch, ranked = ranks.get(str(tid), (None, metrics))
            trials.append(
                TrialSummary(
                    trial_id=str(tid),
                    status=str(status),
                    iterations=int(iterations),
                    params=_params_at(sampled, config),
                    objectives=_objectives(spec, ranked),
                    metrics=metrics,
                    checkpoint=None if _is_nan(checkpoint) else checkpoint,
                    config=config,
                    degenerate=bool(degenerate),
                    epoch=epoch,
                    ranked=dict(ranked),
                )
            )
        objectives = tuple((o.metric, o.mode) for o in spec.objectives)
        name = exp.rstrip("/").rsplit("/", 1)[-1] if "://" in exp else Path(exp).name
        return cls(
            name=name,
            path=exp if "://" in exp else str(Path(exp).expanduser().resolve()),
            objectives=objectives,
            trials=trials,
            elapsed_s=run_s,
            front=pareto_indices(objectives, trials),
        )


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def json_safe(value: Any) -> Any:
    """``value`` as JSON can hold it: non-finite floats become ``None``, numpy
    scalars plain numbers, tuples lists, keys text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return json_safe(value.item())
    return value


def _restore_types(config: dict[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """Stored numbers are float64 and lists JSON text: give back ints and
    lists where the spec's base config has them."""

    def walk(node: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                out[key] = walk(value, f"{name}.")
            elif (
                isinstance(value, float)
                and value.is_integer()
                and isinstance(base.get(name), int)
                and not isinstance(base.get(name), bool)
            ):
                out[key] = int(value)
            elif isinstance(value, str) and isinstance(base.get(name), (list, dict)):
                try:
                    out[key] = json.loads(value)
                except ValueError:
                    out[key] = value
            else:
                out[key] = value
        return out

    return walk(config, "config.")


def _sampled_params(spec: SweepSpec, config: Mapping[str, Any]) -> dict[str, Any]:
    return _params_at([path for path, _ in spec.iter_distributions()], config)


def _params_at(paths: Sequence[Sequence[str]], config: Mapping[str, Any]) -> dict[str, Any]:
    """The value at each sampled ``paths`` of ``config`` (dotted path -> value, None if absent)."""
    out: dict[str, Any] = {}
    for path in paths:
        node: Any = config
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        out[".".join(path)] = node
    return out


def _objectives(spec: SweepSpec, metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        o.metric: math.nan if metrics.get(o.metric) is None else float(metrics[o.metric])
        for o in spec.objectives
    }


def ranked_rows(epochs: pd.DataFrame, spec: SweepSpec) -> dict[str, tuple[int, dict[str, float]]]:
    """Per trial, the epoch it is ranked on (the one whose weights it keeps, see the
    module) and its metrics there (finite ones); ``{}`` when the first objective was
    never reported. ``epochs``: the store's epoch rows (:func:`read_epochs`)."""
    from regtune.platform.analysis.summary import metric_columns, trial_summary

    first = spec.objectives[0]
    if epochs.empty or first.metric not in metric_columns(epochs):
        return {}
    summary = trial_summary(epochs, (first.metric, first.mode), at="kept")
    metrics = [c for c in metric_columns(epochs) if c in summary.columns]
    out: dict[str, tuple[int, dict[str, float]]] = {}
    for tid, iteration, values in zip(
        summary.index, summary["iteration"], summary[metrics].to_numpy(dtype=float), strict=True
    ):
        ranked = {m: float(v) for m, v in zip(metrics, values, strict=True) if math.isfinite(v)}
        out[str(tid)] = (int(iteration), ranked)
    return out


def _stored_ranks(spec: SweepSpec, path: str) -> dict[str, tuple[int, dict[str, float]]]:
    """:func:`ranked_rows` from the results folder the sweep wrote; ``{}`` when it
    wrote none there or it cannot be read now (then trials are ranked on their last
    epoch, as Tune reported it: the sweep's own outcome never fails on its store)."""
    from regtune.errors import DataError
    from regtune.platform.results.read import read_epochs

    try:
        return ranked_rows(read_epochs(path), spec)
    except (DataError, OSError):
        return {}


def split_result(result: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Tune result dict as (platform metrics, Tune's bookkeeping); the config is in neither.

    Metrics are the numbers (numpy scalars too, not booleans) outside
    :data:`~regtune.platform.results.schema.NOT_METRICS`; NaN metrics are left
    out (see :class:`TrialSummary`)."""
    metrics: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for key, value in result.items():
        if key == "config":
            continue
        if key in NOT_METRICS or value is None or not is_number(value):
            info[key] = value
        elif not math.isnan(value):
            metrics[key] = float(value)
    return metrics, info


def _summaries(
    spec: SweepSpec, grid: Any, exp_path: str, unfinished: Collection[str] = ()
) -> list[TrialSummary]:
    max_t = spec.budget.max_epochs
    ranks = _stored_ranks(spec, exp_path)
    trials = []
    for result in grid:
        metrics, info = split_result(dict(result.metrics or {}))
        iterations = int(info.get("training_iteration", 0) or 0)
        config = dict(result.config or {})
        checkpoint = result.checkpoint.path if result.checkpoint is not None else None
        trial_id = str(info.get("trial_id", Path(result.path).name))
        epoch, ranked = ranks.get(trial_id, (None, metrics))
        trials.append(
            TrialSummary(
                trial_id=trial_id,
                # An unfinished trial that reported did not end (a resume continues it).
                status=trial_status(
                    iterations,
                    max_t,
                    error=result.error is not None,
                    ended=iterations == 0 or trial_id not in unfinished,
                ),
                iterations=iterations,
                params=_sampled_params(spec, config),
                objectives=_objectives(spec, ranked),
                metrics=metrics,
                checkpoint=None if checkpoint is None else as_uri(exp_path, checkpoint),
                config=config,
                degenerate=is_constant_predictor(metrics),
                run_info=info,
                epoch=epoch,
                ranked=dict(ranked),
            )
        )
    return trials


def pareto_indices(
    objectives: Sequence[tuple[str, str]],
    trials: Sequence[TrialSummary],
    *,
    include_degenerate: bool = False,
) -> list[int]:
    """Indices of the trials on the Pareto front of ``objectives`` (empty
    with fewer than two objectives). Errored trials are never on it;
    degenerate ones only with ``include_degenerate``."""
    import numpy as np

    from regtune.platform.analysis.pareto import pareto_front, to_minimization

    ok = [
        i
        for i, t in enumerate(trials)
        if t.status != ERROR and (include_degenerate or not t.degenerate)
    ]
    if len(objectives) < 2 or not ok:
        return []
    values = np.array(
        [[trials[i].objectives.get(m, math.nan) for m, _ in objectives] for i in ok], dtype=float
    )
    points = to_minimization(values, [md for _, md in objectives])
    return [ok[j] for j in pareto_front(points)]


def outcome_from_grid(
    spec: SweepSpec,
    grid: Any,
    *,
    name: str,
    path: str,
    elapsed_s: float,
    unfinished: Collection[str] = (),
) -> SweepOutcome:
    """Summarise Tune's ``ResultGrid`` of a finished or interrupted sweep.

    ``unfinished``: the trials an interrupt (Ctrl+C) cut off; each that reported an
    epoch is ``running`` (as the results store holds it: ``--resume`` continues it),
    not the ``stopped early`` its epochs alone would say; one that never reported
    stays ``not started``."""
    trials = _summaries(spec, grid, path, unfinished)
    objectives = tuple((o.metric, o.mode) for o in spec.objectives)
    return SweepOutcome(
        name=name,
        path=path,
        objectives=objectives,
        trials=trials,
        elapsed_s=elapsed_s,
        front=pareto_indices(objectives, trials),
    )

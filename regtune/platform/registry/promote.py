"""Promotion: the best (or Pareto-chosen) trials of a sweep, as one gated ensemble version.

:func:`promote` reads the sweep's trials, ranks them by the objectives (the
sweep's own unless given), rebuilds the top ``k`` members from their
checkpoints, scores their ensemble (mean of member probabilities) on the
dataset they were trained on, and writes a version only when every gate holds.
When a gate fails nothing is written and the result says which gate failed
and by how much.

Post-processing (see :mod:`.postfit`): when the best member was trained with
``training.calibration`` and/or a fairness method ending in ``postprocess``,
the version gets temperatures and per-group thresholds: a single-trial
version keeps the trial's own fitted values, an ensemble gets its own, fitted
on the validation split with the best member's settings. The gates then see
the post-processed test metrics (what a server answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regtune.errors import CheckpointError, SpecError, did_you_mean
from regtune.platform.registry.ensemble import (
    GREEDY_METRICS,
    VALIDATION_METRICS,
    ValidationComparison,
    compare_on_validation,
    greedy_members,
)
from regtune.platform.registry.evaluation import evaluate_module
from regtune.platform.registry.gates import (
    Gate,
    GateResult,
    check_gate_names,
    check_gates,
    failed,
    parse_gate,
)
from regtune.platform.registry.location import check_name
from regtune.platform.registry.postfit import fit_postprocessing, settings_of
from regtune.platform.registry.postprocess import PostProcessing
from regtune.platform.registry.selection import Objective, rank
from regtune.platform.registry.trials import (
    SweepTrial,
    TrialWeights,
    excluded_by_results_store,
    experiment_path,
    read_objectives,
    read_sweep_trials,
    read_weights,
)
from regtune.platform.registry.version import (
    Member,
    ModelVersion,
    build_module,
    check_same_data,
    robust_settings,
    save_version,
)
from regtune.platform.results.schema import is_finite_number
from regtune.trainables.config import parse_train_config

if TYPE_CHECKING:
    from torch import nn

    from regtune.trainables.data import Dataset

__all__ = [
    "SELECTIONS",
    "GatesNotMet",
    "Promotion",
    "check_objectives_reported",
    "describe_left_out",
    "inherited_gates",
    "left_out_reasons",
    "parent_gates",
    "promote",
]

BAD_TOP_K = "--top-k {value!r} is not allowed; expected an integer >= 1"
#: How the members are chosen among the top-k ranked trials.
SELECTIONS = ("top", "greedy")
FEWER_THAN_TOP_K = (
    "--top-k {top_k}: only {n} trial(s) have a checkpoint and every objective, so the "
    "ensemble has {n} member(s)"
)
BAD_SELECT = "--select {value!r} is not allowed; expected one of: top, greedy"
BAD_GREEDY_OBJECTIVES = (
    "--select greedy scores one objective on validation, one of {allowed}; got {objectives}"
)
NO_OBJECTIVES = (
    "experiment {path} does not record its objectives (no results/spec.json); "
    "pass --objective METRIC:MODE"
)
#: No trial can be ranked: every trial named with why (see :func:`left_out_reasons`).
NO_CANDIDATES = "experiment {path}: no trial can be promoted; left out: {left_out}{advice}"
#: Fewer trials qualify than --top-k asks for, and some were left out.
FEWER_THAN_TOP_K_LEFT_OUT = (
    "--top-k {top_k}: only {n} of {total} trial(s) can be promoted, so the ensemble has {n} "
    "member(s); left out: {left_out}"
)
#: Why a trial is not ranked (besides the results store's own reasons).
NO_CHECKPOINT = "no complete checkpoint"
NO_VALUE = "no finite {metrics}"
#: The results store's reasons (registry.trials.excluded_by_results_store), as shown.
STORE_REASONS = {
    "constant predictor": "constant predictor (one class for every row)",
    "error": "failed",
}
#: Said when every trial is a constant predictor; ``share`` only for an accuracy
#: objective (a constant predictor's accuracy is the share of the class it predicts).
CONSTANT_ADVICE = "{share}; see docs/registry.md 'Trials promotion leaves out'"
CONSTANT_SHARE = (
    ". The best {metric}, {value}, is only the share of the class predicted, which accuracy "
    "rewards when another class is rare"
)
#: Trial ids named per reason before "and N more".
NAMED_PER_REASON = 3
#: A checkpoint that passed the header check but cannot be loaded (a left_out reason).
UNREADABLE_CHECKPOINT = "checkpoint cannot be read ({error})"
#: A trial promoted from an older checkpoint because its newer ones are damaged.
OLDER_CHECKPOINT = (
    "trial {trial_id}: promoted from its newest complete checkpoint {used} (epoch {epoch}); "
    "newer ones are damaged: {damaged}"
)
#: An objective no trial reports (a misspelt metric), refused before anything is built.
NOT_REPORTED = (
    "objective {metric!r}: no trial of experiment {path} reports a metric of that "
    "name{hint}; the trials report: {reported}"
)
#: Numbers a trial reports that are no metric (left out of :data:`NOT_REPORTED`'s list).
BOOKKEEPING = frozenset(
    {
        "epoch",
        "epoch_time_s",
        "kept_epoch",
        "train_time_s",
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        "timestamp",
        "pid",
        "iterations_since_restore",
        "time_since_restore",
    }
)
#: A quantized or distilled version that would become its parent's model's latest
#: version and misses a gate the parent's lineage records: nothing is written.
PARENT_GATES_FAILED = (
    "{what} would become the latest version of {name!r}, but it does not meet the "
    "gate(s) {parent} was registered with: {failed}; nothing was written. Register it "
    "under another name with --as NAME (its lineage then lists only the gates it meets, "
    "the others under gates_not_met)"
)
#: A gate on a metric the new version does not measure (e.g. test_robust_acc of an int8 copy).
NOT_MEASURED = "{text}: {metric} is not measured on this version"


class GatesNotMet(SpecError):
    """A quantized or distilled version misses a gate of its parent (nothing written)."""


@dataclass
class Promotion:
    """What :func:`promote` did: the members, their scores, the gates, the version if any."""

    experiment: str
    objectives: list[Objective]
    members: list[SweepTrial]
    metrics: dict[str, float]
    gates: list[GateResult]
    version: ModelVersion | None = None
    skipped: list[str] = field(default_factory=list)
    postprocessing: PostProcessing | None = None
    #: the ensemble's and each member's validation scores on the objectives
    #: (None for one member, or an objective a validation split cannot score)
    validation: ValidationComparison | None = None
    #: what the user should know although every gate held (e.g. a member alone
    #: does better on validation than the ensemble)
    warnings: list[str] = field(default_factory=list)
    #: how members were chosen (``top`` or ``greedy``) and, for greedy, the
    #: top-k trials it left out (their addition did not improve validation)
    select: str = "top"
    dropped: list[str] = field(default_factory=list)
    #: trials that were not ranked at all, with why (see :func:`left_out_reasons`)
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every gate held."""
        return not failed(self.gates)


def promote(
    experiment: str,
    *,
    name: str,
    top_k: int = 3,
    objectives: Sequence[Objective] | None = None,
    gates: Sequence[Gate] = (),
    storage: str | None = None,
    root: str | None = None,
    select: str = "top",
) -> Promotion:
    """Build, score and (if every gate holds) register an ensemble of a sweep's best trials.

    Args:
        experiment: experiment name under the storage root, or its path.
        name: the model name to register under.
        top_k: members of the ensemble (fewer when fewer trials qualify).
        objectives: ``(metric, mode)`` pairs ranking the trials; default: the
            sweep's. Several objectives choose along the Pareto front.
        gates: parsed gates (see :mod:`.gates`), checked on the ensemble's metrics.
        storage: storage root holding the experiment (default: the usual one).
        root: registry root (default: ``<storage>/registry``).
        select: ``top``: the ``top_k`` best trials; ``greedy``: of those, the
            ones greedy forward selection on validation keeps (start from the
            best alone, add a member only while it improves the ensemble's
            validation score on the one objective; see :mod:`.ensemble`).

    Raises:
        SpecError: bad name, top-k, select or objectives, unknown experiment, no usable
            trial, a gate on a metric the ensemble does not have.
        CheckpointError: a member's checkpoint cannot be read or its dataset changed.
    """
    from regtune.trainables.data import load_dataset

    check_name(name)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise SpecError(BAD_TOP_K.format(value=top_k))
    if select not in SELECTIONS:
        raise SpecError(BAD_SELECT.format(value=select))
    check_gate_names(gates)
    path = experiment_path(experiment, storage)
    chosen_objectives = list(objectives or read_objectives(path) or [])
    if not chosen_objectives:
        raise SpecError(NO_OBJECTIVES.format(path=path))
    if select == "greedy" and (
        len(chosen_objectives) != 1 or chosen_objectives[0][0] not in GREEDY_METRICS
    ):
        raise SpecError(
            BAD_GREEDY_OBJECTIVES.format(
                allowed=", ".join(GREEDY_METRICS),
                objectives=", ".join(f"{m}:{mode}" for m, mode in chosen_objectives),
            )
        )
    trials = read_sweep_trials(path)
    check_objectives_reported(path, trials, chosen_objectives)
    excluded = excluded_by_results_store(path)
    candidates = [t for t in trials if t.checkpoint is not None and t.trial_id not in excluded]
    order = rank(
        [t.metrics for t in candidates], chosen_objectives, [t.trial_id for t in candidates]
    )
    ranked = {candidates[i].trial_id for i in order}
    left_out = left_out_reasons(trials, ranked, excluded, chosen_objectives)
    if not order:
        raise SpecError(_no_candidates(path, trials, left_out, chosen_objectives[0][0]))
    picked, weights = _read_best(candidates, order, top_k, left_out)
    if not picked:
        raise SpecError(_no_candidates(path, trials, left_out, chosen_objectives[0][0]))
    short = [_fewer(top_k, len(picked), len(trials), left_out)] if len(picked) < top_k else []
    short += [
        OLDER_CHECKPOINT.format(
            trial_id=t.trial_id,
            used=t.checkpoint.parent.name if t.checkpoint else "-",
            epoch=t.checkpoint_epoch,
            damaged="; ".join(t.damaged),
        )
        for t in picked
        if t.damaged
    ]
    dataset = load_dataset(parse_train_config(weights[0].config, stored=True).dataset)
    for trial, w in zip(picked, weights, strict=True):
        check_same_data(f"trial {trial.trial_id}", w.fingerprint, dataset)
    members = [
        Member(config=w.config, state=w.state, trial_id=t.trial_id)
        for t, w in zip(picked, weights, strict=True)
    ]
    dropped: list[str] = []
    if select == "greedy" and len(members) > 1:
        nets = [build_module([m], dataset) for m in members]
        keep = greedy_members(nets, dataset, chosen_objectives[0])
        dropped = [t.trial_id for i, t in enumerate(picked) if i not in keep]
        picked, weights, members = (
            [picked[i] for i in keep],
            [weights[i] for i in keep],
            [members[i] for i in keep],
        )
    skipped = [t.trial_id for t in trials if t not in picked]
    module = build_module(members, dataset)
    configs = [m.config for m in members]
    post = _postprocessing(module, dataset, picked, weights)
    metrics = evaluate_module(module, dataset, robust=robust_settings(configs), post=post)
    results = check_gates(gates, metrics)
    validation = _validation(module, members, dataset, chosen_objectives)
    warning = None if validation is None else validation.warning()
    outcome = Promotion(
        experiment=str(path),
        objectives=chosen_objectives,
        members=picked,
        metrics=metrics,
        gates=results,
        skipped=skipped,
        postprocessing=post,
        validation=validation,
        warnings=short + ([] if warning is None else [warning]),
        select=select,
        dropped=dropped,
        left_out=left_out,
    )
    if not outcome.passed:
        return outcome
    lineage: dict[str, Any] = {
        "experiment": path.name,
        "experiment_path": str(path),
        "objectives": [{"metric": m, "mode": mode} for m, mode in chosen_objectives],
        "selection": "pareto" if len(chosen_objectives) > 1 else "best",
        "top_k": top_k,
        "member_selection": select,
        "dropped_by_selection": dropped,
        "trial_objectives": {
            t.trial_id: {m: t.metrics.get(m) for m, _ in chosen_objectives} for t in picked
        },
        "trial_epochs": {t.trial_id: t.epoch for t in picked},
        "gates": [r.gate.text for r in results],
        "excluded": excluded,
        "left_out": left_out,
        "teacher": None,
        "warnings": outcome.warnings,
    }
    outcome.version = save_version(
        name, members, dataset, metrics=metrics, lineage=lineage, root=root, postprocessing=post
    )
    return outcome


def _read_best(
    candidates: Sequence[SweepTrial], order: Sequence[int], top_k: int, left_out: dict[str, str]
) -> tuple[list[SweepTrial], list[TrialWeights]]:
    """The ``top_k`` best ranked trials whose checkpoint loads, and their weights; a
    checkpoint that cannot be read leaves its trial out (added to ``left_out``)
    and the next ranked trial takes its place."""
    picked: list[SweepTrial] = []
    weights: list[TrialWeights] = []
    for index in order:
        if len(picked) == top_k:
            break
        trial = candidates[index]
        try:
            weights.append(read_weights(trial))
        except CheckpointError as exc:
            left_out[trial.trial_id] = UNREADABLE_CHECKPOINT.format(error=exc)
            continue
        picked.append(trial)
    return picked, weights


def check_objectives_reported(
    path: Any, trials: Sequence[SweepTrial], objectives: Sequence[Objective]
) -> None:
    """Refuse an objective no trial reports at all (a misspelt metric), naming the
    closest reported names and every one. Trials that report nothing (no
    ``result.json``) leave the check to the usual left-out reasons.

    Raises:
        SpecError: :data:`NOT_REPORTED`.
    """
    reported = sorted(set().union(*(t.metrics.keys() for t in trials)))
    if not reported:
        return
    for metric, _ in objectives:
        if metric not in reported:
            raise SpecError(
                NOT_REPORTED.format(
                    metric=metric,
                    path=path,
                    hint=did_you_mean(metric, reported, n=3),
                    reported=_main_names(reported),
                )
            )


def _main_names(names: Sequence[str]) -> str:
    """``names`` less per-group and per-bin names (a dot), interval ends and a trial's
    bookkeeping, with how many were not shown: a message stays readable."""
    main = [
        n
        for n in names
        if "." not in n and not n.endswith(("_ci_low", "_ci_high")) and n not in BOOKKEEPING
    ]
    rest = len(names) - len(main)
    more = f" (and {rest} per-group, interval or bookkeeping names)" if rest else ""
    return ", ".join(main) + more


def parent_gates(parent: ModelVersion) -> list[Gate]:
    """The gates ``parent``'s lineage records (``lineage.gates``: a promotion's, or
    those a quantized or distilled version was checked against and meets).

    Raises:
        CheckpointError: ``lineage.gates`` is not a list of gates.
    """
    from regtune.platform.registry.meta_checks import field_error

    lineage = parent.meta.get("lineage")
    texts = lineage.get("gates") if isinstance(lineage, dict) else None
    if texts is None:
        return []
    try:
        if not isinstance(texts, list):
            raise TypeError
        return [parse_gate(text) for text in texts]
    except (SpecError, TypeError):
        raise field_error(
            parent.path, "lineage.gates", texts, "a list of gates (METRIC OP NUMBER)"
        ) from None


def inherited_gates(
    parent: ModelVersion, metrics: dict[str, float], *, name: str, what: str
) -> dict[str, list[str]]:
    """Check ``parent``'s gates (:func:`parent_gates`) on a derived version's own
    ``metrics`` before it is written as ``name``.

    Returns:
        The lineage entries: ``gates``, the gates it meets, and when it misses
        some, ``gates_not_met`` (each as ``GateResult.describe`` words).

    Raises:
        GatesNotMet: a gate fails and ``name`` is the parent's model, whose
            latest version the derived one would become.
    """
    held: list[str] = []
    missed: list[str] = []
    for gate in parent_gates(parent):
        if gate.metric not in metrics:
            missed.append(NOT_MEASURED.format(text=gate.text, metric=gate.metric))
            continue
        (result,) = check_gates([gate], metrics)
        if result.passed:
            held.append(gate.text)
        else:
            missed.append(result.describe())
    if missed and name == parent.name:
        raise GatesNotMet(
            PARENT_GATES_FAILED.format(
                what=what, name=name, parent=parent.ref, failed="; ".join(missed)
            )
        )
    return {"gates": held, **({"gates_not_met": missed} if missed else {})}


def left_out_reasons(
    trials: Sequence[SweepTrial],
    ranked: set[str],
    excluded: dict[str, str],
    objectives: Sequence[Objective],
) -> dict[str, str]:
    """Why each trial not in ``ranked`` was not ranked (``{trial_id: reason}``, in
    ``trials``' order): the results store's reason (:data:`STORE_REASONS`: a
    constant predictor, a failed trial), else :data:`NO_CHECKPOINT`, else the
    objectives it has no finite value of. A trial whose ``params.json`` cannot be
    read gives that (``SweepTrial.problem``) after the store's reasons."""
    out: dict[str, str] = {}
    for t in trials:
        if t.trial_id in ranked:
            continue
        if t.trial_id in excluded:
            reason = excluded[t.trial_id]
            out[t.trial_id] = STORE_REASONS.get(reason, reason)
        elif t.problem is not None:
            out[t.trial_id] = t.problem
        elif t.checkpoint is None:
            out[t.trial_id] = NO_CHECKPOINT
        else:
            missing = [m for m, _ in objectives if not is_finite_number(t.metrics.get(m))]
            out[t.trial_id] = NO_VALUE.format(metrics=", ".join(missing or [objectives[0][0]]))
    return out


def describe_left_out(left_out: dict[str, str], *, named: int = NAMED_PER_REASON) -> str:
    """``left_out`` grouped by reason, ``named`` trial ids each then "and N more":
    ``constant predictor (one class for every row): t1, t2; no complete checkpoint: t3``."""
    by_reason: dict[str, list[str]] = {}
    for trial_id, reason in left_out.items():
        by_reason.setdefault(reason, []).append(trial_id)
    parts = []
    for reason, ids in by_reason.items():
        shown = ", ".join(ids[:named])
        more = f" and {len(ids) - named} more" if len(ids) > named else ""
        parts.append(f"{reason}: {shown}{more}")
    return "; ".join(parts)


def _no_candidates(
    path: Any, trials: Sequence[SweepTrial], left_out: dict[str, str], objective: str
) -> str:
    """The refusal when no trial can be ranked: every trial with why, and what a
    constant predictor's score means when that is the reason for all of them."""
    advice = ""
    if all(r == STORE_REASONS["constant predictor"] for r in left_out.values()):
        found = [t.metrics.get(objective) for t in trials]
        values = [float(v) for v in found if v is not None and is_finite_number(v)]
        share = ""
        if objective.endswith("acc") and values:
            share = CONSTANT_SHARE.format(metric=objective, value=f"{max(values):.4f}")
        advice = CONSTANT_ADVICE.format(share=share)
    return NO_CANDIDATES.format(path=path, left_out=describe_left_out(left_out), advice=advice)


def _fewer(top_k: int, n: int, total: int, left_out: dict[str, str]) -> str:
    """The warning when fewer trials qualify than ``top_k``."""
    if not left_out:
        return FEWER_THAN_TOP_K.format(top_k=top_k, n=n)
    return FEWER_THAN_TOP_K_LEFT_OUT.format(
        top_k=top_k, n=n, total=total, left_out=describe_left_out(left_out)
    )


def _validation(
    module: nn.Module, members: list[Member], dataset: Dataset, objectives: list[Objective]
) -> ValidationComparison | None:
    """The ensemble against each member alone, on validation (see :mod:`.ensemble`)."""
    if len(members) < 2 or any(m not in VALIDATION_METRICS for m, _ in objectives):
        return None
    nets = {m.trial_id or str(i): build_module([m], dataset) for i, m in enumerate(members)}
    return compare_on_validation(module, nets, dataset, objectives)


def _postprocessing(
    module: nn.Module, dataset: Dataset, picked: list[SweepTrial], weights: list[TrialWeights]
) -> PostProcessing | None:
    """The version's post-processing: the trial's own for one member, else fitted
    on validation with the best member's settings (see the module docstring)."""
    settings = settings_of(weights[0].config)
    if settings is None:
        return None
    pairs = zip(picked, weights, strict=True)
    # A seed ensemble's members differ in training.seed, which a robust
    # constraint carries (its resamples' seed): not a difference of settings.
    differ = [
        t.trial_id for t, w in pairs if _unseeded(settings_of(w.config)) != _unseeded(settings)
    ]
    provenance: dict[str, Any] = {"settings_from": picked[0].trial_id}
    if differ:
        provenance["members_with_other_settings"] = differ
    single = len(weights) == 1
    return fit_postprocessing(
        module,
        dataset,
        settings,
        stored_temperatures=weights[0].temperatures if single else None,
        stored_thresholds=weights[0].thresholds if single else None,
        provenance=provenance,
    )


def _unseeded(settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """Post-processing settings less the robust constraint's seed."""
    if settings is None or not settings.get("constraint"):
        return settings
    constraint = {k: v for k, v in settings["constraint"].items() if k != "seed"}
    return {**settings, "constraint": constraint}

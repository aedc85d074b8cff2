"""Rules across a spec's sections: what one section demands of another.

Each check takes the sections already validated on their own and logs, in a
:class:`~regtune.search_spaces.problems.ProblemLog`, every rule they break
together (e.g. a single-objective scheduler with several objectives, a
fairness metric on a dataset without a sensitive attribute, a PBT mutation
that would drift out of what the trainable accepts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel

from regtune.search_spaces.distributions import (
    DISTRIBUTION_KINDS,
    Distribution,
    Grid,
    KeyPath,
    LogUniform,
    QUniform,
    RandInt,
    Uniform,
    grid_combinations,
    without_distributions,
)
from regtune.search_spaces.probe import probe_value, train_problems
from regtune.search_spaces.problems import ProblemLog, dotted
from regtune.search_spaces.sections import (
    PBT_FROZEN_KEYS,
    TRAIN_KEYS,
    AshaConfig,
    BudgetConfig,
    CheckpointConfig,
    GridSearchConfig,
    HyperbandConfig,
    HyperoptConfig,
    MedianConfig,
    Objective,
    ParetoAshaConfig,
    PbtConfig,
    ResourcesConfig,
    asha_brackets_problem,
    asha_rung_levels,
    pbt_paths,
)
from regtune.trainables.catalog import FAIRNESS_DATASETS, IMAGE_DATASETS
from regtune.trainables.config import (
    DEPENDENCIES,
    Dependency,
    TrainConfig,
    default_value,
    has_sensitive,
    robust_due,
)

__all__ = [
    "cross_budget",
    "cross_idle",
    "cross_objectives",
    "cross_pbt",
    "cross_resources",
    "cross_robust_rungs",
    "cross_searcher",
    "possible_values",
]

FAIRNESS_METRICS: tuple[str, ...] = ("dp_diff", "eo_diff")

# Keys PBT may perturb mid-training: the optimiser and the penalties. Model and
# dataset keys change the weights' shapes, so a copied checkpoint cannot load.
PBT_MUTABLE_PREFIXES: tuple[str, ...] = ("penalties", "training")
# PBT multiplies a continuous value by one of its factors at every
# perturbation; a value must stay valid after this many moves the same way.
PBT_DRIFT_STEPS = 10

# Schedulers that rank trials by one metric.
SINGLE_OBJECTIVE_SCHEDULERS: tuple[str, ...] = ("asha", "hyperband", "median", "pbt")

SINGLE_OBJECTIVE_SCHEDULER = (
    "scheduler {kind!r} optimises one metric but {n} objectives are given ({metrics}); "
    "use scheduler pareto-asha (or none) for several objectives"
)
PARETO_NEEDS_SEVERAL = (
    "scheduler pareto-asha needs at least 2 objectives; got {n}; use asha for one objective"
)
HYPEROPT_ONE_OBJECTIVE = (
    "searcher hyperopt (TPE) optimises one metric but {n} objectives are given; "
    "use searcher random or grid"
)
HYPEROPT_NO_GRID = (
    "searcher hyperopt cannot enumerate a grid; use searcher grid or random, or make this a choice"
)
GRID_ONLY_GRIDS = (
    "searcher grid enumerates only grid values; got {kind}; use grid here, "
    "or searcher random or hyperopt"
)
#: Ray Tune's limit on a grid it can save its place in (``SERIALIZATION_THRESHOLD``
#: of ``ray.tune.search.basic_variant``): above it a sweep could not be resumed.
GRID_LIMIT = 1_000_000
GRID_TOO_LARGE = (
    "the grids make {n:,} combinations (one trial each); at most {limit:,}, the most "
    "Ray Tune can save its place in for --resume: use fewer grid values, or choice"
)
NOTHING_TO_SEARCH = (
    "the spec samples nothing: put a distribution ({kinds}) under model, training or "
    "penalties (e.g. training.seed: {{grid: [0, 1, 2]}} to repeat one config)"
)
#: Schedulers whose first stop is at epoch ``grace_period``.
GRACE_SCHEDULERS = (AshaConfig, MedianConfig, ParetoAshaConfig)
GRACE_NO_STOP = (
    "scheduler {kind} would stop no trial early: grace_period {grace} is not below "
    "budget.max_epochs {max_epochs}, and every trial ends at max_epochs anyway; {fix}"
)
GRACE_FIX = (
    "set grace_period to at most {below}, raise budget.max_epochs above {grace}, "
    "or use scheduler.kind none"
)
HYPERBAND_NO_STOP = (
    "scheduler hyperband would stop no trial early: reduction_factor {factor:g} is above "
    "budget.max_epochs {max_epochs}, so no bracket has a milestone below max_epochs; {fix}"
)
HYPERBAND_FIX = (
    "set reduction_factor to at most {max_epochs}, raise budget.max_epochs to at least "
    "{least}, or use scheduler.kind none"
)
ONE_EPOCH_FIX = (
    "with budget.max_epochs 1 no scheduler can stop a trial earlier: raise "
    "budget.max_epochs, or use scheduler.kind none"
)
#: HyperBand pauses a trial at a milestone until the rest of its bracket gets
#: there; Ray Tune's searchers (BasicVariantGenerator, ConcurrencyLimiter)
#: count a paused trial as live, so with a cap the bracket never fills.
HYPERBAND_MAX_CONCURRENT = (
    "max_concurrent {n} cannot be used with scheduler.kind hyperband: HyperBand pauses "
    "trials at each milestone until their bracket is full, and Ray Tune counts paused "
    "trials against searcher.max_concurrent, so the bracket never fills and no trial is "
    "stopped early; remove searcher.max_concurrent (trials then run as many at once as "
    "the CPUs and GPUs of Ray allow at resources.cpu/gpu each), or use scheduler.kind asha"
)
PBT_SEARCHER = (
    "scheduler pbt picks and perturbs configs itself and Ray Tune refuses a search "
    "algorithm with it; use searcher random (or grid)"
)
PBT_NOTHING = (
    "scheduler pbt needs a distribution to perturb: none under penalties, and "
    "scheduler.hyperparam_mutations lists none"
)
PBT_NOT_A_DISTRIBUTION = "{key!r} is not a distribution of this spec; distributions: {allowed}"
PBT_IMMUTABLE = (
    "{key!r} cannot change mid-training: pbt may perturb only keys under "
    "{prefixes} (others change the weights' shapes)"
)
PBT_FROZEN = "{key!r} cannot be perturbed by pbt: {reason}; remove it from hyperparam_mutations"
PBT_BATCH_UNDER_SCHEDULE = (
    "pbt cannot perturb training.batch_size under lr_schedule {schedule!r}: the restored "
    "schedule's length is counted in steps of the old batch size; use lr_schedule constant "
    "or keep batch_size fixed"
)
IDLE_IN_EVERY_TRIAL = (
    "has no effect in any trial: {reason}; remove it, or let {on} take a value where it applies"
)
PBT_GRID = "scheduler pbt cannot perturb a grid; use choice"
PBT_DRIFT = (
    "scheduler pbt multiplies {kind} values by {factors} at each perturbation, so this "
    "value can drift from [{low}, {high}] to {value:.4g}, which the trainable rejects: "
    "{reason}; use choice (pbt then moves between the listed values)"
)
PBT_CHECKPOINTS = (
    "scheduler pbt copies weights between trials through checkpoints; set "
    "checkpoint.every to at least 1 (ideally scheduler.perturbation_interval)"
)
PBT_INTERVAL = (
    "perturbation_interval must be < budget.max_epochs ({max_epochs}) for pbt to "
    "perturb at all; got {interval}"
)
ROBUST_NEEDS_EVAL = (
    "objective robust_acc is measured only when training.robust_every > 0; "
    "set training.robust_every (e.g. 1)"
)
#: A scheduler that ranks trials on robust_acc at epochs where the trainer only
#: carries an earlier measurement forward (config.robust_due: epoch 1, every
#: robust_every epochs, and the last).
ROBUST_STALE_RUNGS = (
    "objective robust_acc is measured at epoch 1, every training.robust_every {every} "
    "epochs and at the last, and carried forward in between, so scheduler {kind} would "
    "judge trials at {where} {stale} on an earlier epoch's robust accuracy ({carried}); "
    "set training.robust_every to {fix} (then it is measured afresh at every {what}: "
    "{rungs}), or {alternative}"
)
ROBUST_STALE_ASHA_FIX = (
    "set scheduler.grace_period to a multiple of {every} and reduction_factor to a whole number"
)
ROBUST_STALE_PBT_FIX = "set scheduler.perturbation_interval to a multiple of {every}"
#: HyperBand's milestones follow from budget.max_epochs and reduction_factor
#: alone, and the median rule may stop a trial at any epoch from its
#: grace_period on: neither has a knob that lines its epochs up, ASHA has.
ROBUST_STALE_OTHER_FIX = (
    "rank trials on another objective, or use scheduler asha with grace_period a multiple "
    "of {every} and a whole reduction_factor"
)
NEEDS_SENSITIVE = (
    "{what} needs a dataset with a sensitive attribute: one of {datasets}, or csv/parquet "
    "with dataset.sensitive; got dataset {name!r}"
)
CNN_NEEDS_IMAGES = "arch 'cnn' needs an image dataset ({datasets}); got dataset {name!r}"
CUDA_NEEDS_GPU = "device 'cuda' needs resources.gpu > 0"
GPU_UNUSED = (
    "resources.gpu {gpu:g} holds a GPU for each trial, but training.device is 'cpu' in "
    "every trial, so the GPU would sit idle while the trial trains on the CPU; set "
    "resources.gpu to 0, or training.device to auto or cuda"
)


def cross_objectives(
    log: ProblemLog,
    objectives: tuple[Objective, ...],
    scheduler: BaseModel | None,
    searcher: BaseModel | None,
    samples: list[TrainConfig],
) -> None:
    """Objectives against the scheduler, the searcher and every config seen
    while probing (fairness metrics and penalties need a sensitive attribute,
    robust_acc needs robust evaluation, the CNN needs images)."""
    n = len(objectives)
    metrics = ", ".join(o.metric for o in objectives)
    kind = getattr(scheduler, "kind", None)
    if kind in SINGLE_OBJECTIVE_SCHEDULERS and n > 1:
        message = SINGLE_OBJECTIVE_SCHEDULER.format(kind=kind, n=n, metrics=metrics)
        log.add(("scheduler", "kind"), message)
    if kind == "pareto-asha" and n < 2:
        log.add(("scheduler", "kind"), PARETO_NEEDS_SEVERAL.format(n=n))
    if isinstance(searcher, HyperoptConfig) and n > 1:
        log.add(("searcher", "kind"), HYPEROPT_ONE_OBJECTIVE.format(n=n))
    for index, objective in enumerate(objectives):
        where = ("objectives", str(index), "metric")
        if objective.metric == "robust_acc" and any(c.training.robust_every == 0 for c in samples):
            log.add(("training", "robust_every"), ROBUST_NEEDS_EVAL)
        if objective.metric in FAIRNESS_METRICS:
            for config in samples:
                if not has_sensitive(config.dataset):
                    message = _needs_sensitive(f"metric {objective.metric}", config)
                    log.add(where, message, because="dataset.name")
    for config in samples:
        if config.penalties.fairness.kind != "none" and not has_sensitive(config.dataset):
            what = f"fairness penalty {config.penalties.fairness.kind!r}"
            message = _needs_sensitive(what, config)
            log.add(("penalties", "fairness", "kind"), message, because="dataset.name")
        if config.model.arch == "cnn" and config.dataset.name not in IMAGE_DATASETS:
            message = CNN_NEEDS_IMAGES.format(
                datasets=", ".join(IMAGE_DATASETS), name=config.dataset.name
            )
            log.add(("model", "arch"), message, because="dataset.name")


def cross_budget(
    log: ProblemLog, budget: BudgetConfig, scheduler: BaseModel | None, *, stored: bool = False
) -> None:
    """A scheduler's grace period, ASHA brackets or PBT interval against
    budget.max_epochs (each made by that value: ``because`` names it).
    ``stored``: the spec of a sweep that ran, whose scheduler is kept even
    where it could stop no trial early (a rule for new input only)."""
    max_epochs = budget.max_epochs
    if (
        not stored
        and isinstance(scheduler, GRACE_SCHEDULERS)
        and scheduler.grace_period >= max_epochs
    ):
        grace = scheduler.grace_period
        fix = GRACE_FIX.format(below=max_epochs - 1, grace=grace)
        message = GRACE_NO_STOP.format(
            kind=scheduler.kind,
            grace=grace,
            max_epochs=max_epochs,
            fix=ONE_EPOCH_FIX if max_epochs == 1 else fix,
        )
        log.add(("scheduler", "grace_period"), message, because=MAX_EPOCHS)
    elif (
        not stored
        and isinstance(scheduler, HyperbandConfig)
        and scheduler.reduction_factor > max_epochs
    ):
        # Ray's HyperBand: bracket s >= 1 first halves at int(max_t / factor**s)
        # epochs, and skips a bracket where that is 0, so without factor <=
        # max_t only bracket 0 (every trial to max_t) is left.
        factor = scheduler.reduction_factor
        fix = HYPERBAND_FIX.format(max_epochs=max_epochs, least=math.ceil(factor))
        message = HYPERBAND_NO_STOP.format(
            factor=factor, max_epochs=max_epochs, fix=ONE_EPOCH_FIX if max_epochs == 1 else fix
        )
        log.add(("scheduler", "reduction_factor"), message, because=MAX_EPOCHS)
    elif (brackets := asha_brackets_problem(scheduler, budget.max_epochs)) is not None:
        log.add(("scheduler", "brackets"), brackets, because=MAX_EPOCHS)
    if isinstance(scheduler, PbtConfig) and scheduler.perturbation_interval >= budget.max_epochs:
        message = PBT_INTERVAL.format(
            max_epochs=budget.max_epochs, interval=scheduler.perturbation_interval
        )
        log.add(("scheduler", "perturbation_interval"), message, because=MAX_EPOCHS)


#: The key :func:`cross_budget` checks the scheduler against.
MAX_EPOCHS = "budget.max_epochs"


def hyperband_milestones(reduction_factor: float, max_t: int) -> list[int]:
    """The epochs below ``max_t`` at which Ray's ``HyperBandScheduler`` (its
    ``time_attr`` training_iteration, one per epoch) acts on a bracket, as it
    computes them: ``s_max + 1 = round(log(max_t) / log(eta)) + 1`` brackets;
    bracket ``s`` (skipped where its first milestone is 0) starts at
    ``r = int(max_t * eta**-s)`` and at each milestone keeps the top
    ``1/eta`` of its trials (compared on their result there) and moves on to
    ``r = int(min(r * eta, max_t))``; after ``s`` such halvings, at its last
    milestone, it stops every trial left, below ``max_t`` where ``int``
    truncated (max_t 10, eta 3: brackets 1 and 2 end at epoch 9), so those
    trials end, and are ranked, there. Milestones are whole epochs: ``int``
    truncates, where ASHA's fractional rungs round up. Bracket 0 runs every
    trial to ``max_t`` and decides nothing below it."""
    eta = reduction_factor
    # np.log and np.round as Ray has them: a bracket more or less moves milestones.
    s_max_1 = int(np.round(np.log(max_t) / np.log(eta))) + 1
    epochs: set[int] = set()
    for s in range(1, s_max_1):
        r = int(max_t * eta ** (-s))
        if r == 0:
            continue
        epochs.add(r)
        for _ in range(s):
            r = int(min(r * eta, max_t))
            epochs.add(r)
    return sorted(e for e in epochs if e < max_t)


def decision_epochs(scheduler: BaseModel | None, max_epochs: int) -> list[int]:
    """The epochs below ``max_epochs`` at which a scheduler ranks a trial's
    metrics against others, or stops it there: ASHA's and pareto-asha's rungs
    (every bracket's rungs are levels of one geometric series; Ray judges a
    trial at the first epoch at or past a fractional level), HyperBand's
    milestones (:func:`hyperband_milestones`, the halvings and each bracket's
    end), every epoch from the median rule's grace_period on (after each it
    may stop a trial whose best value is below the median of the others'
    running means) and PBT's perturbations. Empty for none. The last epoch
    is left out: every trial ends there anyway, with fresh metrics."""
    if isinstance(scheduler, AshaConfig | ParetoAshaConfig):
        levels = asha_rung_levels(
            scheduler.grace_period, float(scheduler.reduction_factor), max_epochs
        )
        return sorted({math.ceil(level - 1e-9) for level in levels})
    if isinstance(scheduler, HyperbandConfig):
        return hyperband_milestones(float(scheduler.reduction_factor), max_epochs)
    if isinstance(scheduler, MedianConfig):
        return list(range(scheduler.grace_period, max_epochs))
    if isinstance(scheduler, PbtConfig):
        return list(
            range(scheduler.perturbation_interval, max_epochs, scheduler.perturbation_interval)
        )
    return []


#: More ranges or epochs than this in a message are cut to the first ones, "..." and the last.
MAX_EPOCHS_SHOWN = 6


def epochs_text(epochs: list[int]) -> str:
    """Sorted epochs for a message: a run of three or more consecutive ones as
    ``first-last`` (``2-4, 6-9``), cut to the first few and the last where
    longer than :data:`MAX_EPOCHS_SHOWN` (the median rule's every epoch)."""
    items: list[str] = []
    start = 0
    for i, epoch in enumerate(epochs):
        if i + 1 < len(epochs) and epochs[i + 1] == epoch + 1:
            continue
        run = epochs[start : i + 1]
        items += [f"{run[0]}-{run[-1]}"] if len(run) >= 3 else [str(e) for e in run]
        start = i + 1
    if len(items) > MAX_EPOCHS_SHOWN:
        items = [*items[: MAX_EPOCHS_SHOWN - 1], "...", items[-1]]
    return ", ".join(items)


def _carried_text(stale: list[int], every: int) -> str:
    """Which measured epoch each stale epoch sees: ``epoch 3 sees epoch 1's,
    epochs 6-9 see epoch 5's`` (cut like :func:`epochs_text`)."""
    seen: dict[int, list[int]] = {}
    for epoch in stale:
        source = max(d for d in range(1, epoch) if robust_due(d, every, last=False))
        seen.setdefault(source, []).append(epoch)
    parts = [
        f"epoch {group[0]} sees epoch {source}'s"
        if len(group) == 1
        else f"epochs {epochs_text(group)} see epoch {source}'s"
        for source, group in seen.items()
    ]
    if len(parts) > MAX_EPOCHS_SHOWN // 2:
        parts = [*parts[: MAX_EPOCHS_SHOWN // 2 - 1], "...", parts[-1]]
    return ", ".join(parts)


def cross_robust_rungs(
    log: ProblemLog,
    objectives: tuple[Objective, ...],
    scheduler: BaseModel | None,
    budget: BudgetConfig,
    space: Mapping[str, Any],
    samples: list[TrainConfig],
    *,
    stored: bool = False,
) -> None:
    """A scheduler ranking trials on robust_acc at an epoch where it is not
    measured afresh (:func:`decision_epochs`): the trainer measures it at
    epoch 1, every ``robust_every`` epochs and at the last, and carries the
    last measurement forward in between. A rule for new input only
    (``stored``: a sweep that ran so is read back as it ran)."""
    if stored or not any(o.metric == "robust_acc" for o in objectives):
        return
    epochs = decision_epochs(scheduler, budget.max_epochs)
    if not epochs:
        return
    values = possible_values(space, ("training", "robust_every")) or [
        c.training.robust_every for c in samples
    ]
    # robust_every 0 measures nothing: cross_objectives says so (ROBUST_NEEDS_EVAL).
    everies = sorted({v for v in values if isinstance(v, int) and v > 0})
    for every in everies:
        stale = [e for e in epochs if not robust_due(e, every, last=False)]
        if not stale:
            continue
        fix = math.gcd(*(e for e in epochs if e != 1)) if any(e != 1 for e in epochs) else 1
        if isinstance(scheduler, PbtConfig):
            where, what = "perturbation epoch", "perturbation epoch"
            alternative = ROBUST_STALE_PBT_FIX.format(every=every)
            because = "scheduler.perturbation_interval"
        elif isinstance(scheduler, HyperbandConfig):
            where, what = "milestone epoch", "milestone"
            alternative = ROBUST_STALE_OTHER_FIX.format(every=every)
            because = "scheduler.reduction_factor"
        elif isinstance(scheduler, MedianConfig):
            where = "epoch"
            what = f"epoch from grace_period {scheduler.grace_period} on"
            alternative = ROBUST_STALE_OTHER_FIX.format(every=every)
            because = "scheduler.grace_period"
        else:
            where, what = "rung epoch", "rung"
            alternative = ROBUST_STALE_ASHA_FIX.format(every=every)
            because = "scheduler.grace_period"
        message = ROBUST_STALE_RUNGS.format(
            every=every,
            kind=getattr(scheduler, "kind", "?"),
            where=where + ("s" if len(stale) > 1 else ""),
            stale=epochs_text(stale),
            carried=_carried_text(stale, every),
            fix=fix,
            what=what,
            rungs=epochs_text(epochs),
            alternative=alternative,
        )
        log.add(("training", "robust_every"), message, because=because)


def cross_resources(
    log: ProblemLog, resources: ResourcesConfig, samples: list[TrainConfig], *, sweep: bool = True
) -> None:
    """Devices the configs ask for against the resources of a sweep's trial (a
    GPU that no trial would use only when ``sweep``: not for a stored spec, which
    ran so). One training run holds no trial resources: not called for it."""
    if resources.gpu == 0 and any(c.training.device == "cuda" for c in samples):
        log.add(("training", "device"), CUDA_NEEDS_GPU)
    if sweep and resources.gpu > 0 and samples and all(c.training.device == "cpu" for c in samples):
        message = GPU_UNUSED.format(gpu=resources.gpu)
        log.add(("resources", "gpu"), message, because="training.device")


def cross_searcher(
    log: ProblemLog,
    searcher: BaseModel | None,
    scheduler: BaseModel | None,
    dists: Mapping[KeyPath, Distribution],
) -> None:
    """The searcher against the distributions (hyperopt takes no grid, grid
    takes only grids) and the scheduler (pbt takes no search algorithm,
    hyperband no ``max_concurrent``); a spec that samples nothing is reported
    here."""
    if not dists and not any(p for p in log.problems if p.path.startswith(TRAIN_KEYS)):
        log.add(("searcher",), NOTHING_TO_SEARCH.format(kinds=", ".join(DISTRIBUTION_KINDS)))
    for path, dist in dists.items():
        if isinstance(searcher, HyperoptConfig) and isinstance(dist, Grid):
            log.add((*path, "grid"), HYPEROPT_NO_GRID, because="searcher.kind")
        if isinstance(searcher, GridSearchConfig) and not isinstance(dist, Grid):
            message = GRID_ONLY_GRIDS.format(kind=dist.kind)
            log.add((*path, dist.kind), message, because="searcher.kind")
    if isinstance(scheduler, PbtConfig) and isinstance(searcher, HyperoptConfig):
        log.add(("searcher", "kind"), PBT_SEARCHER, because="scheduler.kind")
    limit = getattr(searcher, "max_concurrent", None)
    if isinstance(scheduler, HyperbandConfig) and limit is not None:
        message = HYPERBAND_MAX_CONCURRENT.format(n=limit)
        log.add(("searcher", "max_concurrent"), message, because="scheduler.kind")
    combinations = grid_combinations(dists.values())
    if combinations > GRID_LIMIT:
        grids = {path: len(d.values) for path, d in dists.items() if isinstance(d, Grid)}
        largest = max(grids, key=grids.__getitem__)
        log.add((*largest, "grid"), GRID_TOO_LARGE.format(n=combinations, limit=GRID_LIMIT))


def cross_pbt(
    log: ProblemLog,
    scheduler: PbtConfig,
    space: dict[str, Any],
    dists: dict[KeyPath, Distribution],
    checkpoint: CheckpointConfig | None,
) -> None:
    """What pbt perturbs: listed keys must be distributions it may change
    mid-training, continuous values must stay valid after
    :data:`PBT_DRIFT_STEPS` perturbations, and checkpoints must be kept."""
    if checkpoint is not None and checkpoint.every == 0:
        log.add(("checkpoint", "every"), PBT_CHECKPOINTS)
    where: KeyPath = ("scheduler", "hyperparam_mutations")
    named = {dotted(p): p for p in dists}
    listed = scheduler.hyperparam_mutations
    paths = pbt_paths(scheduler, dists)
    schedules = [v for v in possible_values(space, ("training", "lr_schedule")) if v != "constant"]
    for index, key in enumerate(listed or ()):
        at = (*where, str(index))
        if key not in named:
            allowed = ", ".join(named) or "(none)"
            log.add(at, PBT_NOT_A_DISTRIBUTION.format(key=key, allowed=allowed))
        elif not key.startswith(tuple(f"{p}." for p in PBT_MUTABLE_PREFIXES)):
            prefixes = ", ".join(PBT_MUTABLE_PREFIXES)
            log.add(at, PBT_IMMUTABLE.format(key=key, prefixes=prefixes))
        elif key in PBT_FROZEN_KEYS:
            log.add(at, PBT_FROZEN.format(key=key, reason=PBT_FROZEN_KEYS[key]))
        elif key == "training.batch_size" and schedules:
            log.add(at, PBT_BATCH_UNDER_SCHEDULE.format(schedule=schedules[0]))
        else:
            continue
        paths = tuple(p for p in paths if p != named.get(key))
    if not listed and not paths:
        log.add(where, PBT_NOTHING)
    fixed = without_distributions(space)
    fixed_problems, _ = train_problems(fixed)
    up, down = max(scheduler.perturbation_factors), min(scheduler.perturbation_factors)
    for path in paths:
        dist = dists[path]
        if isinstance(dist, Grid):
            log.add((*path, "grid"), PBT_GRID)
        if not isinstance(dist, Uniform | LogUniform | QUniform | RandInt):
            continue
        high = dist.high - 1 if isinstance(dist, RandInt) else dist.high
        for value in (high * up**PBT_DRIFT_STEPS, dist.low * down**PBT_DRIFT_STEPS):
            drifted = round(value) if isinstance(dist, RandInt) else value
            factors = list(scheduler.perturbation_factors)
            probe_value(
                log,
                fixed,
                fixed_problems,
                path,
                dist,
                drifted,
                PBT_DRIFT,
                factors=factors,
                low=dist.low,
                high=dist.high,
            )


def possible_values(space: Mapping[str, Any], path: KeyPath) -> list[Any]:
    """Every value the key at ``path`` can take in a trial: its fixed value,
    its default when absent, or the probe values of its distribution (all
    listed values of a choice or grid). Empty when a distribution stands for
    a whole mapping above ``path`` (its values are not known key by key)."""
    node: Any = space
    for key in path:
        if isinstance(node, Distribution):
            return []
        if not isinstance(node, Mapping) or key not in node:
            return [default_value(dotted(path))]
        node = node[key]
    if isinstance(node, Distribution):
        return list(node.probe_values())
    return [node]


def _given(space: Mapping[str, Any], path: KeyPath) -> bool:
    node: Any = space
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def cross_idle(log: ProblemLog, space: Mapping[str, Any]) -> None:
    """Keys the spec sets that no trial can use: a dependent key (see
    :data:`regtune.trainables.config.DEPENDENCIES`) whose governing key is,
    in every trial, at a value that makes it idle (``training.momentum``
    with ``optimizer`` fixed at adamw). A governing key that is sampled
    makes the dependent key count in some trials, which is fine. So does a
    key of the dependency's ``active_if`` that can take, in some trial, a
    value making the dependent key matter anyway (``fairness.kind`` at
    strength 0 with a ``bound`` or a ``postprocess`` method)."""
    for dep in DEPENDENCIES:
        key, on = tuple(dep.key.split(".")), tuple(dep.on.split("."))
        if not _given(space, key):
            continue
        values = possible_values(space, on)
        if values and all(dep.idle(v) for v in values) and not _activated(space, dep):
            log.add(key, IDLE_IN_EVERY_TRIAL.format(reason=dep.reason, on=dep.on), because=dep.on)


def _activated(space: Mapping[str, Any], dep: Dependency) -> bool:
    """Whether some trial gives a key of ``dep.active_if`` a value that makes
    ``dep.key`` matter whatever ``dep.on`` is (a sampled key whose values are
    not known key by key counts as possibly activating)."""
    for path, holds in dep.active_if:
        values = possible_values(space, tuple(path.split(".")))
        if not values or any(holds(v) for v in values):
            return True
    return False


def _needs_sensitive(what: str, config: TrainConfig) -> str:
    datasets = ", ".join(FAIRNESS_DATASETS)
    return NEEDS_SENSITIVE.format(what=what, datasets=datasets, name=config.dataset.name)

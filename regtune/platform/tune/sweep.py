"""Run a :class:`~regtune.search_spaces.SweepSpec` on Ray Tune.

The spec is validated before Ray starts (``load_spec``); this module only
translates it: scheduler and searcher objects, resources, checkpoints,
failure retries, storage, resume. On this machine it starts a lean local Ray
(no dashboard unless asked: ~3 s and ~0.8 GB instead of ~5 s and ~1.7 GB);
with ``address`` it joins an existing cluster, where the sweep appears in
the dashboard under its name.

Naming (:mod:`regtune.platform.tune.naming`): without ``name`` a sweep gets
a new ``<spec name>-<time>-<hex>`` experiment; ``resume`` without ``name``
continues the newest experiment of the spec. Resume continues every
unfinished trial from its newest complete checkpoint on disk
(:mod:`~regtune.platform.tune.checkpoint_keeper`) with the early-stopping
scheduler's state as it was at the kill
(:mod:`~regtune.platform.tune.scheduler_state`).

Performance levers used on one machine: actor reuse (``reset_config``
instead of a ~1.5 s process per trial), the dataset put once in the object
store, and one torch thread per CPU given to a trial.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from regtune.errors import RegtuneError, SpecError
from regtune.platform.results.outcome import SweepOutcome, outcome_from_grid
from regtune.platform.storage import STORAGE_ENV, check_storage, storage_root
from regtune.platform.tune.runtime import ensure_ray
from regtune.search_spaces import (
    AshaConfig,
    GridSearchConfig,
    HyperbandConfig,
    HyperoptConfig,
    MedianConfig,
    ParetoAshaConfig,
    PbtConfig,
    RandomSearchConfig,
    SweepSpec,
)
from regtune.search_spaces.distributions import KeyPath

__all__ = [
    "STORAGE_ENV",
    "SweepOutcome",
    "build_scheduler",
    "build_search_alg",
    "check_dataset_fits",
    "default_storage",
    "finished_experiment",
    "resolve_name",
    "run_sweep",
    "tune_unfinished_trials",
    "unfinished_trials",
]

log = logging.getLogger(__name__)

#: Checkpoints kept per trial: the latest for restore, one before it in case
#: the latest was being written when the worker died. Tune's own retention is
#: off: CheckpointKeeper never deletes one the saved experiment state references.
CHECKPOINTS_KEPT = 2
#: PBT exploits other trials' checkpoints, so it must keep more of them.
PBT_CHECKPOINTS_KEPT = 4
#: Seconds between saves of Tune's experiment state (Tune's "auto" waits at
#: least 10 s): a killed driver then loses at most this much on --resume.
EXPERIMENT_STATE_PERIOD_S = "2"

EXISTS_MSG = (
    "experiment {name!r} already exists at {path}; pass --resume to continue it, "
    "or --name to start a new one (nothing was changed)"
)
NOTHING_TO_RESUME_MSG = (
    "--resume: no experiment {name!r} at {path} to continue; run without --resume to start it"
)
FUSE_MISMATCH_MSG = (
    "--resume: experiment {name!r} was run {was} fused trials but this spec asks {now} "
    "(resources.fuse); resume it with the resources.fuse it was run with (nothing was changed)"
)
NO_EXPERIMENT_OF_SPEC_MSG = (
    "--resume: no experiment of spec {spec!r} under {root} to continue (looked for "
    "{spec}-<time>-<hex> and {spec}); pass --name to pick one, or run without --resume"
)

OBJECTIVE_NEEDS_GROUPS_MSG = (
    "objectives.{index}.metric: {metric} is reported only for a dataset with a sensitive "
    "attribute and a two-class label; {data} has {sensitive} and a label of {n_classes} "
    "classes: {advice} (nothing was started)"
)
#: OBJECTIVE_NEEDS_GROUPS_MSG's advice, by what the dataset lacks.
_ADVICE_NO_SENSITIVE = "declare dataset.sensitive, or choose another metric"
_ADVICE_NOT_BINARY = "choose another metric (the fairness gaps need a two-class label)"
TRIAL_WOULD_FAIL_MSG = "a trial with {values} would fail at setup: {reason}"
#: The config keys ``loop.check_dataset_fits`` reads (keep in step with it): a
#: distribution at one of them, or at a section holding one (``penalties.fairness:
#: {choice: [...]}``), decides whether a trial's setup refuses the dataset.
_DATASET_CHECKED_KEYS = (
    ("penalties", "fairness", "kind"),
    ("training", "calibration"),
    ("training", "early_stopping", "metric"),
    ("training", "early_stopping", "patience"),
    ("penalties", "input_noise"),
    ("penalties", "adversarial", "method"),
    ("penalties", "adversarial", "eps"),
    ("training", "robust_every"),
    ("training", "robust_eps"),
    ("training", "robust_steps"),
    ("training", "robust_samples"),
)
#: At most this many combinations of those distributions' probe values are
#: checked before Ray starts. One check parses a config (no model is built):
#: ~0.2 ms, so the bound costs under a second (108 combinations of a spec
#: sweeping the fairness and early-stopping keys: ~11 ms). Values that set the
#: checked keys alike count once (a fairness section's strengths), so only a
#: spec listing hundreds of distinct values there reaches it; beyond it each
#: value is still checked alone and the first combinations in order, with a
#: warning: a trial drawing an unchecked combination the data cannot train
#: fails at setup with the same message.
MAX_PROBED_COMBINATIONS = 4096
_ABSENT = object()


def default_storage() -> str:
    """``$REGTUNE_STORAGE`` or ``~/regtune_runs``, absolute."""
    return storage_root()


def build_scheduler(spec: SweepSpec) -> Any:
    """The Tune scheduler the spec names (time unit: epochs).

    Early-stopping schedulers (asha, hyperband, median, pareto-asha) come
    wrapped in :class:`~regtune.platform.tune.scheduler_state.
    PersistentScheduler`, so their state is saved with the experiment.
    """
    from regtune.platform.tune.scheduler_state import PersistentScheduler

    if isinstance(spec.scheduler, (AshaConfig, HyperbandConfig, MedianConfig, ParetoAshaConfig)):
        return PersistentScheduler(_bare_scheduler(spec))
    return _bare_scheduler(spec)


def _bare_scheduler(spec: SweepSpec) -> Any:
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
    )

    from regtune.platform.tune.pareto_asha import ParetoASHA
    from regtune.platform.tune.space import pbt_mutations

    s, max_t = spec.scheduler, spec.budget.max_epochs
    if isinstance(s, AshaConfig):
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_t,
            grace_period=min(s.grace_period, max_t),
            reduction_factor=s.reduction_factor,
            brackets=s.brackets,
        )
    if isinstance(s, HyperbandConfig):
        return HyperBandScheduler(
            time_attr="training_iteration", max_t=max_t, reduction_factor=s.reduction_factor
        )
    if isinstance(s, MedianConfig):
        return MedianStoppingRule(
            time_attr="training_iteration",
            grace_period=s.grace_period,
            min_samples_required=s.min_samples_required,
        )
    if isinstance(s, PbtConfig):
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=s.perturbation_interval,
            hyperparam_mutations=pbt_mutations(spec),
            quantile_fraction=s.quantile_fraction,
            resample_probability=s.resample_probability,
            perturbation_factors=s.perturbation_factors,
        )
    if isinstance(s, ParetoAshaConfig):
        return ParetoASHA(
            objectives=[(o.metric, o.mode) for o in spec.objectives],
            max_t=max_t,
            grace_period=min(s.grace_period, max_t),
            reduction_factor=int(s.reduction_factor),
        )
    return FIFOScheduler()


def build_search_alg(spec: SweepSpec) -> Any:
    """The Tune search algorithm the spec names, with its concurrency limit.

    hyperopt (TPE) optimises the first objective; with several objectives
    the scheduler (pareto-asha) is what weighs them.
    """
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    s = spec.searcher
    limit = s.max_concurrent or None
    if isinstance(s, HyperoptConfig):
        from ray.tune.search.hyperopt import HyperOptSearch

        first = spec.objectives[0]
        search = HyperOptSearch(
            metric=first.metric,
            mode=first.mode,
            n_initial_points=s.n_initial_points,
            random_state_seed=s.seed,
        )
        if limit:
            return ConcurrencyLimiter(search, max_concurrent=limit)
        return search
    if isinstance(s, RandomSearchConfig):
        return BasicVariantGenerator(max_concurrent=limit or 0, random_state=s.seed)
    if isinstance(s, GridSearchConfig):
        return BasicVariantGenerator(max_concurrent=limit or 0)
    raise SpecError(f"searcher.kind {s.kind!r} is not supported")  # pragma: no cover


def resolve_name(
    spec: SweepSpec, *, name: str | None = None, resume: bool = False, storage: str | None = None
) -> str:
    """The experiment name a sweep of ``spec`` uses (the rule of
    :mod:`regtune.platform.tune.naming`): ``name`` when given; else, resuming,
    the newest experiment of the spec under ``storage``; else a new
    ``<spec name>-<time>-<hex>``.

    Raises:
        SpecError: ``name`` is not a valid name; ``resume`` without
            ``name`` finds no experiment of the spec, or looks in a storage
            root that cannot be used (:func:`~regtune.platform.storage.check_storage`).
    """
    from regtune.platform.tune.naming import check_name, new_experiment_name, newest_experiment

    if name is not None:
        return check_name(name)
    if not resume:
        return new_experiment_name(spec.name)
    root = check_storage(storage, create=False)  # a look-up: a typo'd root is not made
    found = newest_experiment(root, spec.name)
    if found is None:
        raise SpecError(NO_EXPERIMENT_OF_SPEC_MSG.format(spec=spec.name, root=root))
    return found


def finished_experiment(name: str, *, storage: str | None = None) -> SweepOutcome | None:
    """The stored outcome of experiment ``name`` when a resume has nothing left to
    do, else None; reads the results store only (no Ray).

    Nothing is left when the results store records as many trials as the
    stored spec starts (:attr:`~regtune.search_spaces.SweepSpec.n_trials`:
    the searcher has none left to suggest) and each of them ended
    ``finished`` or ``stopped early`` (an errored trial would be retried, a
    running one continued). When the store cannot tell (no store, an
    unreadable one, fewer trials, e.g. a sweep ended by its time limit),
    None: the resume goes ahead. None too when Tune's own saved experiment
    state holds a trial unfinished (:func:`tune_unfinished_trials`): Tune
    would continue it (an experiment interrupted by Ctrl+C under a regtune
    that stored its cut-off trials ``stopped early``).
    """
    from regtune.errors import DataError
    from regtune.platform.results.files import locate
    from regtune.platform.results.read import read_spec, stored_trial_states
    from regtune.platform.results.trials import FINISHED, NOT_STARTED, STOPPED_EARLY

    exp_path = f"{check_storage(storage, create=False).rstrip('/')}/{name}"
    try:
        stored = read_spec(exp_path)
        states, _ = stored_trial_states(locate(exp_path))
        if len(states) < stored.n_trials:
            return None
        if any(s.status not in (FINISHED, STOPPED_EARLY, NOT_STARTED) for s in states.values()):
            return None
        if tune_unfinished_trials(exp_path):
            return None
        return SweepOutcome.from_path(exp_path)
    except (DataError, OSError):
        return None


#: Tune's experiment state files (``TuneController.CKPT_FILE_TMPL``), one per session.
_TUNE_STATE_PREFIX = "experiment_state-"


def tune_unfinished_trials(exp_path: str) -> list[str]:
    """The trials Tune's newest saved experiment state (``experiment_state-
    <session>.json`` under ``exp_path``; Ray 2.60's format: ``trial_data``, a
    list of ``[trial JSON, run metadata JSON]``) holds unfinished (neither
    TERMINATED nor ERROR): the ones ``Tuner.restore`` continues. Empty when
    there is no such file (a fused experiment keeps its own state) or it
    cannot be read as that format: the results store decides then."""
    import json

    from pyarrow.fs import FileSelector

    from regtune.errors import DataError
    from regtune.platform.results.files import locate

    try:
        loc = locate(exp_path)
        root = loc.root.rsplit("/", 1)[0]  # <exp>/results -> <exp>
        names = [
            info.path
            for info in loc.fs.get_file_info(FileSelector(root))
            if info.base_name.startswith(_TUNE_STATE_PREFIX) and info.base_name.endswith(".json")
        ]
        if not names:
            return []
        with loc.fs.open_input_stream(max(names)) as handle:
            state = json.loads(handle.read())
        out = []
        for entry in state["trial_data"]:
            trial = json.loads(entry[0])
            if trial["status"] not in ("TERMINATED", "ERROR"):
                out.append(str(trial["trial_id"]))
        return out
    except (DataError, OSError, ValueError, KeyError, IndexError, TypeError):
        return []


def run_sweep(
    spec: SweepSpec,
    *,
    address: str | None = None,
    storage: str | None = None,
    name: str | None = None,
    resume: bool = False,
    dashboard: bool = False,
    callbacks: Sequence[Any] = (),
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    on_ray_start: Callable[[], None] | None = None,
    on_interrupt: Callable[[list[str]], None] | None = None,
) -> SweepOutcome:
    """Run the sweep to the end and summarise it.

    Args:
        address: an existing cluster (``auto``, ``ray://...``, ``host:port``);
            default: a fresh local Ray.
        storage: results root (path or ``s3://``/``gs://`` URI); default
            :func:`default_storage`.
        name: experiment name; default: see :func:`resolve_name` (a new
            ``<spec name>-<time>-<hex>``, or with ``resume`` the newest
            experiment of the spec). ``outcome.name`` is the one used.
        resume: continue an interrupted experiment: finished trials are kept,
            unfinished ones continue from their newest complete checkpoint,
            and the early-stopping scheduler continues from its saved state.
        callbacks: more Tune callbacks (also on resume).
        on_progress: called with running counts and the best objective so far.
        on_ray_start: called once, just before Ray is started or joined (after
            every check that refuses without Ray).
        on_interrupt: called with the ids of the trials left unfinished when
            the sweep was interrupted (Ctrl+C, SIGINT): the outcome is then
            returned as far as it got, those trials ``running`` (as stored),
            and ``resume`` continues them from their checkpoints. Not called
            for a sweep that ended by itself (``budget.time_limit_s``
            included). Fused sweeps alike (their driver says whether Ctrl+C
            stopped it: a time limit also leaves trials unfinished there).

    Raises:
        SpecError: with a local Ray regtune starts, one trial's
            ``resources.cpu``/``gpu`` above what this machine has (refused
            once Ray counted them, before any trial; joining a cluster, a
            warning is logged instead). Before Ray starts: a storage root
            that cannot be written
            (:func:`~regtune.platform.storage.check_storage`: a file, an
            unknown URI scheme, no bucket); a bad name; ``name`` exists
            (without ``resume``) or does not (with it); ``resume`` of a fused
            experiment with a spec that does not fuse, or the other way
            round; the loaded dataset does not fit the spec
            (:func:`check_dataset_fits`; with ``resume`` a setting that
            perturbs nothing ran so and is not refused). Refused before Ray starts; nothing
            stored is changed.
        DataError: the dataset cannot be loaded (before Ray starts too).
        RegtuneError: Tune failed.
    """
    from regtune.trainables.config import parse_train_config

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_STATE_PERIOD_S)
    # Frequent experiment snapshots are deliberate (see above): no warning per save.
    # Tune's default CSV and TensorBoard loggers cost ~10% of a small sweep's wall
    # time; the per-trial JSON log (result.json) is kept explicitly below.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # First: the experiment checks below would take an unusable root for an
    # empty one, and Tune would fail on it only after Ray had started.
    root = check_storage(storage)
    name = resolve_name(spec, name=name, resume=resume, storage=storage)
    exp_path = f"{root.rstrip('/')}/{name}"
    # Checked before Ray starts: a wrong name costs nothing. Whether the
    # experiment was fused is looked up once (requests, on object storage)
    # and that answer serves every check below.
    from regtune.platform.tune.fused_driver import is_fused_experiment

    was_fused = is_fused_experiment(exp_path)
    exists = was_fused or _tune_experiment_exists(exp_path)
    if resume and not exists:
        raise SpecError(NOTHING_TO_RESUME_MSG.format(name=name, path=exp_path))
    if not resume and exists:
        raise SpecError(EXISTS_MSG.format(name=name, path=exp_path))
    if resume and spec.resources.fuse != "auto":
        # A resume of the other kind (fused vs unfused) is refused (fuse: auto below).
        _check_fuse_matches(spec.resources.fuse != 1, was_fused, name)
    import ray

    from regtune.platform.tune.runtime import (
        check_trial_fits_machine,
        cluster_to_join,
        trial_fits_cluster,
    )

    # A local Ray regtune starts has this machine's CPUs and GPUs: a trial
    # asking for more would wait for ever (checked once Ray counted them,
    # below). A cluster (or a Ray someone else started) may grow: a warning.
    joining = ray.is_initialized() or cluster_to_join(address) is not None
    started = time.perf_counter()
    base = parse_train_config(spec.base_config(), stored=resume)
    # The dataset loads, and is checked against the spec, before Ray starts:
    # some of what a trial needs shows only in the rows (a file's label with
    # more than two classes, a sensitive column), and a sweep refused for it
    # never looks started. (It used to load while Ray's processes booted.)
    dataset = _load_data(base.dataset)
    # A resumed sweep's spec ran (the CLI reads it stored): its settings idle
    # on the data (nothing to perturb) ran so, and are not refused now.
    check_dataset_fits(spec, dataset, base=base, stored=resume)
    # K needs no Ray (the model's size on the dataset, for auto).
    fuse = _members_per_cohort(spec, base, dataset)
    if resume and spec.resources.fuse == "auto":
        # Refused before Ray starts too: whether it fuses comes from K.
        _check_fuse_matches(fuse > 1, was_fused, name)
    if on_ray_start is not None:
        on_ray_start()
    ensure_ray(address, dashboard=dashboard)
    if not joining:
        try:
            check_trial_fits_machine(spec.resources.cpu, spec.resources.gpu)
        except SpecError:
            ray.shutdown()  # the Ray this sweep started, no trial in it
            raise
    else:
        for warning in trial_fits_cluster(spec.resources.cpu, spec.resources.gpu):
            log.warning(f"warning: {warning}")

    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from regtune.platform.results.callback import results_callbacks
    from regtune.platform.tune.checkpoint_keeper import CheckpointKeeper
    from regtune.platform.tune.naming import trial_dir_name
    from regtune.platform.tune.progress import ProgressCallback
    from regtune.platform.tune.ray_private import set_restored_callbacks
    from regtune.platform.tune.space import to_param_space
    from regtune.platform.tune.trainable import make_trainable

    fused = _start_fused(spec, dataset, fuse)
    if fused is not None:
        return _run_fused(
            spec,
            fused,
            name=name,
            root=root,
            exp_path=exp_path,
            resume=resume,
            callbacks=callbacks,
            on_progress=on_progress,
            on_interrupt=on_interrupt,
            started=started,
        )
    threads = max(1, int(spec.resources.cpu))
    trainable = tune.with_resources(
        make_trainable(dataset, threads=threads),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    first = spec.objectives[0]
    progress = ProgressCallback(
        objectives=[(o.metric, o.mode) for o in spec.objectives],
        total=spec.n_trials,
        max_t=spec.budget.max_epochs,
        on_progress=on_progress,
    )
    keep = PBT_CHECKPOINTS_KEPT if isinstance(spec.scheduler, PbtConfig) else CHECKPOINTS_KEPT
    results = results_callbacks(spec, exp_path)
    # The same list, in the same order, on a fresh run and on resume: Tune
    # restores callback state by position.
    all_callbacks = [
        progress,
        JsonLoggerCallback(),
        CheckpointKeeper(keep=keep),
        *results,
        *callbacks,
    ]
    if resume:
        tuner = tune.Tuner.restore(
            exp_path, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
        # Tune would take the callbacks pickled when the experiment started
        # (without display hooks or the caller's new ones).
        set_restored_callbacks(tuner, all_callbacks)
    else:
        run_config = tune.RunConfig(
            name=name,
            storage_path=root,
            verbose=0,
            callbacks=all_callbacks,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
            checkpoint_config=tune.CheckpointConfig(
                checkpoint_frequency=spec.checkpoint.every,
                checkpoint_at_end=True,
                # Retention is CheckpointKeeper's (see CHECKPOINTS_KEPT).
                num_to_keep=None,
            ),
        )
        tuner = tune.Tuner(
            trainable,
            param_space=to_param_space(spec),
            tune_config=tune.TuneConfig(
                metric=first.metric,
                mode=first.mode,
                search_alg=build_search_alg(spec),
                scheduler=build_scheduler(spec),
                num_samples=spec.budget.samples,
                time_budget_s=spec.budget.time_limit_s,
                reuse_actors=True,
                trial_name_creator=trial_dir_name,
                trial_dirname_creator=trial_dir_name,
            ),
            run_config=run_config,
        )
    try:
        grid = tuner.fit()
    except tune.TuneError as exc:
        raise RegtuneError(f"sweep {name!r} failed: {exc}") from exc
    # Interrupted (Ctrl+C) when some are unfinished: Tune's clean-up ended the running
    # trials as it stopped them, and its result grid cannot tell them from trials a
    # scheduler stopped.
    unfinished = unfinished_trials(results)
    return _ended(spec, grid, name, exp_path, started, unfinished, on_interrupt)


def _ended(
    spec: SweepSpec,
    results: Any,
    name: str,
    path: str,
    started: float,
    unfinished: frozenset[str],
    on_interrupt: Callable[[list[str]], None] | None,
) -> SweepOutcome:
    """The outcome of a Tune run (its result grid, or a fused run's rows), the
    ``unfinished`` trials (cut off by Ctrl+C) as ``running``; ``on_interrupt``
    gets their ids when there are any."""
    outcome = outcome_from_grid(
        spec,
        results,
        name=name,
        path=path,
        elapsed_s=time.perf_counter() - started,
        unfinished=unfinished,
    )
    if unfinished and on_interrupt is not None:
        on_interrupt(sorted(unfinished))
    return outcome


def unfinished_trials(callbacks: Iterable[Any]) -> frozenset[str]:
    """The trials a Tune run just ended without finishing, as the results
    callback among ``callbacks`` saw them
    (:attr:`~regtune.platform.results.callback.ResultsCallback.unfinished`:
    Tune's last saved experiment state holds them unfinished, so the run was
    interrupted and ``--resume`` continues them); empty after a run that
    ended by itself."""
    from regtune.platform.results.callback import ResultsCallback

    out: frozenset[str] = frozenset()
    for callback in callbacks:
        if isinstance(callback, ResultsCallback):
            out |= callback.unfinished
    return out


def _run_fused(
    spec: SweepSpec,
    fused: Any,
    *,
    name: str,
    root: str,
    exp_path: str,
    resume: bool,
    callbacks: Sequence[Any],
    on_progress: Callable[[dict[str, Any]], None] | None,
    on_interrupt: Callable[[list[str]], None] | None,
    started: float,
) -> SweepOutcome:
    """A fused sweep, driven from here (:mod:`regtune.platform.tune.fused_driver`);
    ``on_interrupt`` as :func:`run_sweep`'s.

    Its cut-off trials are unfinished whether Ctrl+C or ``budget.time_limit_s``
    stopped the driver (both leave them to ``--resume``); only the driver knows
    which it was, and only an interrupt is reported as one."""
    from ray import tune
    from ray.exceptions import RayError

    from regtune.platform.results.callback import results_callbacks
    from regtune.platform.tune.fused_driver import run_fused_sweep
    from regtune.platform.tune.progress import ProgressCallback
    from regtune.platform.tune.space import to_param_space

    progress = ProgressCallback(
        objectives=[(o.metric, o.mode) for o in spec.objectives],
        total=spec.n_trials,
        max_t=spec.budget.max_epochs,
        on_progress=on_progress,
    )
    results = results_callbacks(spec, exp_path)
    try:
        run = run_fused_sweep(
            spec,
            manager=fused.manager,
            max_concurrent=fused.max_concurrent,
            exp_path=exp_path,
            name=name,
            root=root,
            resume=resume,
            callbacks=[progress, *results, *callbacks],
            # The driver runs at most fused.max_concurrent members; the search
            # algorithm keeps only the spec's own limit, so a scheduler such as
            # HyperBand sees the pending trials it places in brackets.
            search_alg=build_search_alg(spec),
            scheduler=build_scheduler(spec),
            param_space=to_param_space(spec),
        )
    except (RayError, tune.TuneError) as exc:
        raise RegtuneError(f"sweep {name!r} failed: {exc}") from exc
    finally:
        fused.stop()
    unfinished = unfinished_trials(results) if run.interrupted else frozenset()
    return _ended(spec, run.rows, name, exp_path, started, unfinished, on_interrupt)


def _members_per_cohort(spec: SweepSpec, base: Any, dataset: Any) -> int:
    """``resources.fuse`` as a number (1: unfused); for ``auto``, K comes from the
    size of ``base``'s model on ``dataset``
    (:func:`~regtune.platform.tune.fused.resolve_fuse`)."""
    if spec.resources.fuse != "auto":
        return int(spec.resources.fuse)
    from regtune.platform.tune.fused import resolve_fuse

    return resolve_fuse("auto", config=base, dataset=dataset)


def _start_fused(spec: SweepSpec, dataset: Any, fuse: int) -> Any:
    """The fused sweep's set-up (:mod:`regtune.platform.tune.fused`) with
    ``fuse`` members per cohort, or ``None`` when ``fuse`` is 1."""
    if fuse <= 1:
        return None
    from regtune.platform.tune.fused import decision_epochs, start_fused

    return start_fused(
        dataset,
        fuse=fuse,
        cpu=spec.resources.cpu,
        gpu=spec.resources.gpu,
        trials=spec.n_trials,
        stops=decision_epochs(spec),
    )


def check_dataset_fits(
    spec: SweepSpec, dataset: Any, *, base: Any = None, stored: bool = False
) -> None:
    """Refuse, before Ray starts, a sweep with a trial that would fail on the
    loaded ``dataset``: the trainable's own checks at setup (``loop.check_dataset_fits``: a
    fairness penalty, group calibration or early stopping on a fairness gap
    need a binary label and a sensitive attribute), made on the spec's
    representative config and on every combination of the values
    (``probe_values``) of the distributions at, above or below the keys it
    reads (:data:`MAX_PROBED_COMBINATIONS` bounds them); and an objective
    ``dp_diff``/``eo_diff``, which a trial reports only for such a dataset.
    ``base``: the representative config already parsed (parsed here when None).
    ``stored``: ``spec`` ran before (a resumed sweep's): the rules that guard only
    new input (a setting that perturbs nothing, ``loop.check_dataset_fits(stored=True)``)
    do not apply.

    Raises:
        SpecError: the first of them that fails (the trainable's message,
            after the drawn values that make it fail: only those it depends on,
            :func:`_failing_values`).
    """
    from regtune.trainables.config import GROUP_METRICS, parse_train_config
    from regtune.trainables.loop import check_dataset_fits as trainable_checks
    from regtune.trainables.loop import data_words, reports_gaps

    if base is None:
        base = parse_train_config(spec.base_config(), stored=stored)
    trainable_checks(base, dataset, stored=stored)

    def check(config: dict[str, Any]) -> None:
        trainable_checks(parse_train_config(config, stored=stored), dataset, stored=stored)

    for values, config in _probed_configs(spec):
        try:
            check(config)
        except SpecError as exc:
            named = _failing_values(spec, values, str(exc), check)
            shown = ", ".join(f"{'.'.join(path)}={value!r}" for path, value in named.items())
            raise SpecError(TRIAL_WOULD_FAIL_MSG.format(values=shown, reason=exc)) from exc
    for index, objective in enumerate(spec.objectives):
        if objective.metric in GROUP_METRICS and not reports_gaps(dataset):
            data, sensitive = data_words(base, dataset)
            raise SpecError(
                OBJECTIVE_NEEDS_GROUPS_MSG.format(
                    index=index,
                    metric=objective.metric,
                    data=data,
                    sensitive=sensitive,
                    n_classes=dataset.n_classes,
                    advice=_ADVICE_NO_SENSITIVE
                    if dataset.train.s is None and dataset.n_classes == 2
                    else _ADVICE_NOT_BINARY,
                )
            )


def _probe_plan(spec: SweepSpec) -> tuple[dict[KeyPath, list[Any]], dict[KeyPath, Any]]:
    """The probe values of the distributions that set a key in
    :data:`_DATASET_CHECKED_KEYS` (values setting those keys alike once), and every
    distribution's representative value."""
    dists = dict(spec.iter_distributions())
    at_rest = {path: dist.representative() for path, dist in dists.items()}
    probed: dict[KeyPath, list[Any]] = {}
    for path, dist in dists.items():
        keys = [key for key in _DATASET_CHECKED_KEYS if _nested(path, key) or _nested(key, path)]
        if keys:
            probed[path] = _distinct_on(dist.probe_values(), path, keys)
    return probed, at_rest


def _failing_values(
    spec: SweepSpec,
    values: Mapping[KeyPath, Any],
    reason: str,
    check: Callable[[dict[str, Any]], None],
) -> dict[KeyPath, Any]:
    """The drawn ``values`` that make a trial fail with ``reason``, less each one the
    failure does not depend on: a value is left out when, the kept ones fixed, every
    combination of the probe values of it and of those already left out still fails
    with ``reason`` (so an early stopping refusal does not name a fairness section,
    and the other way round). At least one value is kept."""
    from regtune.search_spaces.distributions import substitute

    probed, at_rest = _probe_plan(spec)
    kept = dict(values)
    for path in values:
        if len(kept) == 1:
            break
        rest = {p: v for p, v in kept.items() if p != path}
        free = [p for p in values if p not in rest]
        options = [probed.get(p, [values[p]]) for p in free]
        if math.prod(len(o) for o in options) > MAX_PROBED_COMBINATIONS:
            continue
        if all(
            _fails_with(
                substitute(spec.space, {**at_rest, **rest, **dict(zip(free, combo, strict=True))}),
                reason,
                check,
            )
            for combo in itertools.product(*options)
        ):
            kept = rest
    return kept


def _fails_with(
    config: dict[str, Any], reason: str, check: Callable[[dict[str, Any]], None]
) -> bool:
    """Whether ``check`` refuses ``config`` with the message ``reason``."""
    try:
        check(config)
    except SpecError as exc:
        return str(exc) == reason
    except Exception:  # another failure is not this one
        return False
    return False


def _probed_configs(spec: SweepSpec) -> Iterator[tuple[dict[KeyPath, Any], dict[str, Any]]]:
    """``(drawn values, config)`` for each combination of the probe values of the
    distributions that set a key in :data:`_DATASET_CHECKED_KEYS`, the others
    at their representative value; values of one distribution that set those
    keys alike are probed once. Past :data:`MAX_PROBED_COMBINATIONS`: each
    value alone, then the first combinations, with a warning."""
    from regtune.search_spaces.distributions import substitute

    probed, at_rest = _probe_plan(spec)
    if not probed:  # The representative config, checked already, is the only one.
        return
    combinations = math.prod(len(values) for values in probed.values())
    drawn: Iterable[dict[KeyPath, Any]] = (
        dict(zip(probed, combo, strict=True)) for combo in itertools.product(*probed.values())
    )
    if combinations > MAX_PROBED_COMBINATIONS:
        log.warning(
            "the %d combinations of %s exceed %d: checked against the data are each value "
            "alone and the first %d combinations; a trial drawing another that the data "
            "cannot train fails at setup",
            combinations,
            ", ".join(".".join(path) for path in probed),
            MAX_PROBED_COMBINATIONS,
            MAX_PROBED_COMBINATIONS,
        )
        alone = ({path: value} for path, values in probed.items() for value in values)
        drawn = itertools.chain(alone, itertools.islice(drawn, MAX_PROBED_COMBINATIONS))
    for values in drawn:
        yield values, substitute(spec.space, {**at_rest, **values})


def _nested(inner: KeyPath, outer: KeyPath) -> bool:
    """Whether ``inner`` is ``outer`` or a key path below it."""
    return inner[: len(outer)] == outer


def _distinct_on(values: Sequence[Any], path: KeyPath, keys: Sequence[KeyPath]) -> list[Any]:
    """``values`` (of the distribution at ``path``) less those that set each of
    ``keys`` as an earlier one does: the check reads only those keys."""
    seen: list[list[Any]] = []
    kept: list[Any] = []
    for value in values:
        sets = [_value_at(value, key[len(path) :]) if _nested(key, path) else value for key in keys]
        if sets not in seen:
            seen.append(sets)
            kept.append(value)
    return kept


def _value_at(node: Any, rest: KeyPath) -> Any:
    """What a distribution's value ``node`` puts at the key path ``rest`` below it."""
    for key in rest:
        if not isinstance(node, Mapping) or key not in node:
            return _ABSENT
        node = node[key]
    return node


def _load_data(config: Any) -> Any:
    # The trainable module is imported here too: it brings torch and ray.tune.
    import regtune.platform.tune.trainable  # noqa: F401
    from regtune.trainables.data import load_dataset

    return load_dataset(config)


def _check_fuse_matches(fused: bool, was_fused: bool, name: str) -> None:
    """A fused experiment resumes fused, an unfused one unfused (``was_fused``:
    :func:`~regtune.platform.tune.fused_driver.is_fused_experiment`).

    Raises:
        SpecError: they differ (nothing is changed).
    """
    if fused != was_fused:
        raise SpecError(
            FUSE_MISMATCH_MSG.format(
                name=name, was="without" if fused else "with", now="with" if fused else "without"
            )
        )


def _tune_experiment_exists(exp_path: str) -> bool:
    """Whether an unfused (Tune) experiment is stored at ``exp_path``."""
    from ray import tune

    try:
        return bool(tune.Tuner.can_restore(exp_path))
    except (OSError, ValueError):
        return False

"""Validate a raw sweep spec (parsed YAML) into the parts of a SweepSpec.

Everything is checked here, and every problem is reported at once, one line
each, naming the key path (and the YAML line) and what is allowed: each
section on its own (:mod:`~regtune.search_spaces.sections`), the config tree
against TrainConfig's keys and the values the trainable accepts
(:mod:`~regtune.search_spaces.probe`), then the rules across sections
(:mod:`~regtune.search_spaces.cross_checks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypedDict, TypeVar

from pydantic import BaseModel, ValidationError

from regtune.errors import ROOT, Problem, SpecError, did_you_mean, shown
from regtune.search_spaces.cross_checks import (
    cross_budget,
    cross_idle,
    cross_objectives,
    cross_pbt,
    cross_resources,
    cross_robust_rungs,
    cross_searcher,
)
from regtune.search_spaces.distributions import (
    DISTRIBUTION_KINDS,
    Grid,
    KeyPath,
    find_distribution,
    is_distribution,
    iter_distributions,
    parse_distribution,
    set_path,
    suggest_kind,
)
from regtune.search_spaces.probe import BASE_REJECTED, check_base_config, probe_space
from regtune.search_spaces.problems import (
    INVALID_SPEC,
    ProblemLog,
    describe,
    dotted,
    format_problems,
    in_line_order,
)
from regtune.search_spaces.sections import (
    SCHEDULER_MODELS,
    SEARCHER_MODELS,
    SPEC_KEYS,
    TRAIN_KEYS,
    BudgetConfig,
    CheckpointConfig,
    FailureConfig,
    GridSearchConfig,
    Header,
    Objective,
    PbtConfig,
    ResourcesConfig,
    SchedulerConfig,
    SearcherConfig,
    fuse_problem,
)
from regtune.trainables.config import (
    DEPENDENCIES,
    FILE_DATASETS,
    METRIC_MODES,
    STORED,
    DatasetConfig,
    TrainConfig,
    validation_problems,
)
from regtune.trainables.sources import URI_PATH, check_data_file

__all__ = ["SpecFields", "check_spec", "data_file_problems"]

# A grid searcher enumerates every combination; by default each runs once.
GRID_DEFAULT_SAMPLES = 1

UNKNOWN_KEY = "unknown key {key}; allowed: {allowed}"
DID_YOU_MEAN_DISTRIBUTION = (
    " (did you mean the distribution {suggestion!r}? distributions: {kinds})"
)
NOT_A_MAPPING = "must be a mapping; got {got}"
NOT_A_STRING_KEY = "keys must be strings; got {key}"
SCALAR_GOT_MAPPING = (
    "expected a single value or a one-key distribution mapping ({kinds}); "
    "got a mapping with keys {keys}"
)
DISTRIBUTION_ONE_KEY = "a distribution mapping has exactly one key; got keys {keys}"
MISSPELT_DISTRIBUTION = (
    "unknown key {key!r}: not a distribution (did you mean {kind!r}?); distributions: {kinds}"
)
NOT_FINITE = "must be a finite number (got {value!r})"
DATASET_FIXED = "a sweep trains on one dataset; distributions are not allowed under dataset"
DISTRIBUTION_IN_LIST = "distributions are not allowed inside a list; got {inner!r}"
EPOCHS_FROM_BUDGET = (
    "a sweep spec takes the number of epochs from budget.max_epochs; "
    "remove training.epochs and set budget.max_epochs"
)
UNKNOWN_METRIC = "unknown metric {metric}; allowed: {allowed}"
MODE_MISMATCH = (
    "mode {mode!r} contradicts metric {metric!r}, for which {expected!r} is better; "
    "omit mode to use {expected!r}"
)
MISSING_METRIC = "an objective needs a metric; allowed: {allowed}"
OBJECTIVE_SHAPE = "an objective is a metric name or {{metric: NAME, mode: min|max}}; got {got}"
NO_OBJECTIVES = "needs at least one objective, e.g. [{metric: val_acc, mode: max}]"
DUPLICATE_OBJECTIVE = "metric {metric!r} is listed more than once"
UNKNOWN_KIND = "unknown {section} {kind}; allowed: {allowed}"

_M = TypeVar("_M", bound=BaseModel)


class SpecFields(TypedDict):
    """The validated parts of a spec: :class:`~regtune.search_spaces.spec.SweepSpec`'s
    fields but its source."""

    name: str
    description: str
    space: dict[str, Any]
    objectives: tuple[Objective, ...]
    scheduler: SchedulerConfig
    searcher: SearcherConfig
    budget: BudgetConfig
    resources: ResourcesConfig
    failure: FailureConfig
    checkpoint: CheckpointConfig


def check_spec(
    raw: Any,
    origin: str = "<mapping>",
    lines: Mapping[str, int] | None = None,
    overridden: Iterable[str] = (),
    *,
    check_data: bool = True,
    one_run: bool = False,
    stored: bool = False,
) -> SpecFields:
    """Validate a raw mapping (parsed YAML) into the parts of a spec.

    Args:
        raw: the parsed spec.
        origin: where it came from, for the message header (a file name).
        lines: dotted key path -> YAML line, to point at lines in messages.
        overridden: ``--set`` texts applied to ``raw``; problems at their keys
            are blamed on the option.
        check_data: also check that a csv/parquet ``dataset.path`` exists and
            has the declared columns (reads only the column names).
        one_run: the spec will train one configuration (``regtune train``),
            not be searched: the rules of searching (something to sample, the
            searcher against the distributions, PBT's mutations) do not apply.
        stored: ``raw`` is a spec a sweep ran (its ``results/spec.json``), read
            back as it ran: the rules that guard only new input do not apply
            (a scheduler that could stop no trial early, a value listed twice
            in a choice or grid, a searcher seed out of range, a GPU no trial
            uses, PBT factors all 1.0).

    Raises:
        SpecError: every problem found, one line each.
    """
    if not isinstance(raw, Mapping):
        problem = Problem(
            ROOT, f"a sweep spec must be a mapping of {', '.join(SPEC_KEYS)}; got {describe(raw)}"
        )
        raise SpecError.from_problems(INVALID_SPEC.format(origin=origin), [problem])
    checker = _Checker(stored=stored)
    fields = checker.build(raw, check_data, one_run)
    if checker.problems or fields is None:
        overridden = list(overridden)
        problems = in_line_order(checker.problems, lines or {}, overridden)
        message = format_problems(problems, origin, lines or {}, overridden)
        raise SpecError(message, problems)
    return fields


def data_file_problems(dataset: DatasetConfig, *, check_data: bool = True) -> list[Problem]:
    """What is wrong with ``dataset.path``: a URI (``s3://...``) always, as the
    data is read from a local disk; with ``check_data``, also a missing file
    or missing columns (:func:`~regtune.trainables.sources.check_data_file`)."""
    path = dataset.path
    if dataset.name in FILE_DATASETS and path is not None and "://" in path:
        return [Problem("dataset.path", URI_PATH.format(path=path))]
    return check_data_file(dataset) if check_data else []


class _Checker(ProblemLog):
    """Collects every problem of one spec while building it; ``stored``: as
    :func:`check_spec`'s."""

    def __init__(self, *, stored: bool = False) -> None:
        super().__init__()
        self.stored = stored
        #: Sections holding an unknown key (a misspelt key of the config tree
        #: leaves its section at a default the user did not mean).
        self.unknown_in: set[str] = set()

    # -- the whole spec -------------------------------------------------------

    def build(
        self, raw: Mapping[str, Any], check_data: bool = True, one_run: bool = False
    ) -> SpecFields | None:
        """The validated parts of a spec, or ``None`` if any problem was logged."""
        for key in raw:
            if key not in SPEC_KEYS:
                self.unknown_key((), key, SPEC_KEYS)
        given = {k: v for k, v in raw.items() if k in SPEC_KEYS and v is not None}
        header = self.section(
            Header, {k: given[k] for k in ("name", "description") if k in given}, ()
        )
        objectives = self.objectives(given.get("objectives"))
        budget = self.section(BudgetConfig, given.get("budget", {}), ("budget",))
        resources = self.section(ResourcesConfig, given.get("resources", {}), ("resources",))
        failure = self.section(FailureConfig, given.get("failure", {}), ("failure",))
        checkpoint = self.section(CheckpointConfig, given.get("checkpoint", {}), ("checkpoint",))
        max_epochs = (budget or BudgetConfig()).max_epochs
        space = self.space({k: given[k] for k in TRAIN_KEYS if k in given}, max_epochs)
        dists = dict(iter_distributions(space, ()))
        several = objectives is not None and len(objectives) > 1
        if given.get("scheduler") is None and max_epochs == 1:
            # No epoch below max_epochs to stop a trial at: no early stopping.
            default_scheduler = "none"
        else:
            default_scheduler = "pareto-asha" if several else "asha"
        scheduler = self.kind_section(
            "scheduler", given.get("scheduler"), SCHEDULER_MODELS, default_scheduler
        )
        pbt = isinstance(scheduler, PbtConfig) or _kind_of(given.get("scheduler")) == "pbt"
        has_grid = any(isinstance(d, Grid) for d in dists.values())
        searcher = self.kind_section(
            "searcher",
            given.get("searcher"),
            SEARCHER_MODELS,
            "random" if several or pbt or has_grid else "hyperopt",
        )
        if (
            isinstance(searcher, GridSearchConfig)
            and budget is not None
            and "samples" not in budget.model_fields_set
        ):
            budget = budget.model_copy(update={"samples": GRID_DEFAULT_SAMPLES})
        samples = probe_space(self, space, dists, repeats=self.stored)
        if objectives is not None:
            cross_objectives(self, objectives, scheduler, searcher, samples)
        if budget is not None and not one_run:
            # The scheduler's epochs against budget.max_epochs: a rule of the
            # sweep alone (one training run uses no scheduler). A stored spec
            # ran with its scheduler, whether or not it could stop a trial.
            cross_budget(self, budget, scheduler, stored=self.stored)
            if objectives is not None:
                # A scheduler ranking on a carried-forward robust_acc: new input only.
                cross_robust_rungs(
                    self, objectives, scheduler, budget, space, samples, stored=self.stored
                )
        if resources is not None:
            if not one_run:
                # One training run holds no trial resources (regtune train checks that
                # torch sees the device it asks for). A GPU no trial uses is wasted; a
                # stored spec ran so all the same.
                cross_resources(self, resources, samples, sweep=not self.stored)
            if (fuse := fuse_problem(resources, scheduler)) is not None:
                self.add(("resources", "fuse"), fuse)
        if not one_run:
            cross_searcher(self, searcher, scheduler, dists)
        if isinstance(scheduler, PbtConfig) and not one_run:
            cross_pbt(self, scheduler, space, dists, checkpoint)
        if samples:
            # The data file depends on the dataset section alone (which the
            # samples show is valid): checked whatever else is wrong, so every
            # problem is reported at once.
            for problem in data_file_problems(samples[0].dataset, check_data=check_data):
                self.add(problem.path, problem.message)
        # The rules over the whole config run whatever was found so far, so
        # every problem is reported at once; what they find at (or around) a
        # key already named, or in a section with an unknown key, is a
        # knock-on of that problem and is left out (see _later).
        suspect = self._suspect_paths(epochs_given=budget is not None)
        self._later(lambda log: check_base_config(log, space), suspect)
        if not one_run and not self.stored:
            # One run of a spec is one trial, which may hold keys its sampled
            # values leave idle (method none, eps sampled): only a sweep's
            # space must use every key it sets. A stored spec ran as it is:
            # an idle-key rule added since must not change what it reads back.
            suspect = self._suspect_paths(epochs_given=budget is not None)
            self._later(lambda log: cross_idle(log, space), suspect)
        if (
            self.problems
            or header is None
            or objectives is None
            or scheduler is None
            or searcher is None
            or budget is None
            or resources is None
            or failure is None
            or checkpoint is None
        ):
            return None
        return SpecFields(
            name=header.name,
            description=header.description,
            space=space,
            objectives=objectives,
            scheduler=scheduler,  # type: ignore[typeddict-item]
            searcher=searcher,  # type: ignore[typeddict-item]
            budget=budget,
            resources=resources,
            failure=failure,
            checkpoint=checkpoint,
        )

    def _suspect_paths(self, *, epochs_given: bool) -> set[str]:
        """Key paths whose value, as the later checks see it, may not be the
        user's: each problem's path, each section holding an unknown key (but
        the top level), and ``training.epochs`` when budget.max_epochs was
        refused (a default stands in)."""
        suspect = {problem.path for problem in self.problems} | self.unknown_in
        if not epochs_given:
            suspect.add("training.epochs")
        return suspect

    def _later(self, check: Callable[[ProblemLog], None], suspect: set[str]) -> None:
        """Run ``check`` on a log of its own and keep what it finds but knock-ons
        of the problems already logged: a problem at, above or under a
        ``suspect`` path, or whose message an earlier problem already holds
        (a value a probe reported, reported again in other words)."""
        later = ProblemLog()
        check(later)
        said = [problem.message for problem in self.problems]
        for problem in later.problems:
            if any(_related(path, other) for path in _paths_read(problem) for other in suspect):
                continue
            reason = problem.message.removeprefix(_BASE_PREFIX)
            if any(reason in message for message in said):
                continue
            self.add(problem.path, problem.message, because=problem.because)

    # -- sections -------------------------------------------------------------

    def unknown_key(
        self, path: KeyPath, key: Any, allowed: Iterable[str], *, because: str = ""
    ) -> None:
        """``because``: the dotted key path whose value makes ``key`` unknown (a
        section's ``kind``), named when a ``--set`` gave it."""
        if path:
            self.unknown_in.add(dotted(path))
        if not isinstance(key, str):
            self.add(path, NOT_A_STRING_KEY.format(key=shown(key)))
            return
        allowed = list(allowed)
        message = UNKNOWN_KEY.format(key=shown(key), allowed=", ".join(allowed))
        kind = suggest_kind(key)
        if kind is not None:
            kinds = ", ".join(DISTRIBUTION_KINDS)
            message += DID_YOU_MEAN_DISTRIBUTION.format(suggestion=kind, kinds=kinds)
        else:
            message += did_you_mean(key, allowed)
        self.add((*path, key), message, because=because)

    def not_a_distribution(self, path: KeyPath, value: Mapping[Any, Any]) -> None:
        kinds = ", ".join(DISTRIBUTION_KINDS)
        misspelt = [(key, suggest_kind(key)) for key in value if suggest_kind(key)]
        for key, kind in misspelt:
            self.add(
                (*path, str(key)), MISSPELT_DISTRIBUTION.format(key=key, kind=kind, kinds=kinds)
            )
        keys = sorted(map(str, value))
        if not misspelt and all(key in DISTRIBUTION_KINDS for key in value):
            self.add(path, DISTRIBUTION_ONE_KEY.format(keys=keys))
        elif not misspelt:
            self.add(path, SCALAR_GOT_MAPPING.format(kinds=kinds, keys=keys))

    def section(self, cls: type[_M], raw: Any, path: KeyPath, *, because: str = "") -> _M | None:
        """Validate a mapping with a pydantic model, naming unknown keys
        (``because``: as :meth:`unknown_key`'s)."""
        if not isinstance(raw, Mapping):
            self.add(path, NOT_A_MAPPING.format(got=describe(raw)))
            return None
        known = {}
        for key, value in raw.items():
            if key in cls.model_fields:
                known[key] = value
            else:
                self.unknown_key(path, key, cls.model_fields, because=because)
        try:
            context = {STORED: True} if self.stored else None
            return cls.model_validate(known, context=context)
        except ValidationError as exc:
            for problem in validation_problems(exc, path):
                self.add(problem.path, problem.message)
            return None

    def kind_section(
        self, section: str, raw: Any, kinds: Mapping[str, type[BaseModel]], default: str
    ) -> BaseModel | None:
        if raw is None:
            raw = {"kind": default}
        elif isinstance(raw, str):
            raw = {"kind": raw}
        if not isinstance(raw, Mapping):
            self.add((section,), NOT_A_MAPPING.format(got=describe(raw)))
            return None
        kind = raw.get("kind", default)
        if not isinstance(kind, str) or kind not in kinds:
            allowed = ", ".join(kinds)
            if isinstance(kind, str):
                allowed += did_you_mean(kind, kinds)
            message = UNKNOWN_KIND.format(section=section, kind=shown(kind), allowed=allowed)
            self.add((section, "kind"), message)
            return None
        # A key the kind does not take is unknown because of the kind: a kind
        # given with --set names that option (scheduler.kind=hyperband refusing
        # the file's grace_period).
        return self.section(
            kinds[kind], {**raw, "kind": kind}, (section,), because=f"{section}.kind"
        )

    def objectives(self, raw: Any) -> tuple[Objective, ...] | None:
        if raw is None:
            raw = [{"metric": "val_acc"}]
        entries = raw if isinstance(raw, list) else [raw]
        path: KeyPath = ("objectives",)
        if not entries:
            self.add(path, NO_OBJECTIVES)
            return None
        found: list[Objective] = []
        before = len(self.problems)
        for index, entry in enumerate(entries):
            where = (*path, str(index)) if isinstance(raw, list) else path
            item = {"metric": entry} if isinstance(entry, str) else entry
            if not isinstance(item, Mapping):
                self.add(where, OBJECTIVE_SHAPE.format(got=describe(entry)))
                continue
            unknown = [key for key in item if key not in Objective.model_fields]
            for key in unknown:
                self.unknown_key(where, key, Objective.model_fields)
            metric = item.get("metric")
            if "metric" not in item:
                if unknown:
                    # The unknown key is named (a misspelt metric: "did you mean 'metric'?").
                    continue
                self.add((*where, "metric"), MISSING_METRIC.format(allowed=", ".join(METRIC_MODES)))
                continue
            if not isinstance(metric, str) or metric not in METRIC_MODES:
                allowed = ", ".join(METRIC_MODES)
                if isinstance(metric, str):
                    allowed += did_you_mean(metric, METRIC_MODES)
                self.add(
                    (*where, "metric"), UNKNOWN_METRIC.format(metric=shown(metric), allowed=allowed)
                )
                continue
            if unknown:
                continue
            expected = METRIC_MODES[metric]
            objective = self.section(Objective, {"mode": expected, **item}, where)
            if objective is None:
                continue
            if objective.mode != expected:
                message = MODE_MISMATCH.format(
                    mode=objective.mode, metric=metric, expected=expected
                )
                self.add((*where, "mode"), message, because=dotted((*where, "metric")))
            elif any(o.metric == metric for o in found):
                self.add((*where, "metric"), DUPLICATE_OBJECTIVE.format(metric=metric))
            else:
                found.append(objective)
        return tuple(found) if len(self.problems) == before else None

    # -- the config tree ------------------------------------------------------

    def space(self, raw: dict[str, Any], max_epochs: int) -> dict[str, Any]:
        if isinstance(raw.get("dataset"), str):
            raw = {**raw, "dataset": {"name": raw["dataset"]}}
        space = self.walk(raw, TrainConfig, ())
        for path, dist in list(iter_distributions(space.get("dataset"), ("dataset",))):
            self.add(path, DATASET_FIXED)
            # The representative stands in, so no second error says it is missing.
            set_path(space, path, dist.representative())
        training = space.setdefault("training", {})
        if isinstance(training, dict):
            if "epochs" in training:
                self.add(("training", "epochs"), EPOCHS_FROM_BUDGET)
            training["epochs"] = max_epochs
        return space

    def walk(self, node: Mapping[str, Any], cls: type[BaseModel], path: KeyPath) -> dict[str, Any]:
        """Copy ``node`` with distributions parsed, checking keys against ``cls``."""
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key not in cls.model_fields:
                self.unknown_key(path, key, cls.model_fields)
                continue
            where = (*path, key)
            sub = _submodel(cls, key)
            if is_distribution(value) and (
                sub is None or next(iter(value)) not in sub.model_fields
            ):
                try:
                    out[key] = parse_distribution(value, dotted(where), stored=self.stored)
                except SpecError as exc:
                    for problem in exc.problems:
                        self.add(problem.path, problem.message)
            elif sub is not None and isinstance(value, Mapping):
                out[key] = self.walk(value, sub, where)
            elif isinstance(value, Mapping):
                self.not_a_distribution(where, value)
            elif isinstance(value, float) and not math.isfinite(value):
                self.add(where, NOT_FINITE.format(value=value))
            elif find_distribution(value) is not None:
                self.add(where, DISTRIBUTION_IN_LIST.format(inner=find_distribution(value)))
            else:
                out[key] = value
        return out


# -- helpers ------------------------------------------------------------------


_BASE_PREFIX = BASE_REJECTED.partition("{reason}")[0]


def _paths_read(problem: Problem) -> set[str]:
    """The key paths a later problem depends on: its own, the key whose value
    makes it, and for a key idle in every trial the keys that would make it
    matter anyway (:attr:`~regtune.trainables.config.Dependency.active_if`)."""
    paths = {problem.path, problem.because} - {""}
    for dep in DEPENDENCIES:
        if dep.key == problem.path and dep.on == problem.because:
            paths.update(path for path, _ in dep.active_if)
    return paths


def _related(path: str, other: str) -> bool:
    """Whether two dotted key paths are the same key, or one holds the other
    (the root holds every key)."""
    return (
        ROOT in (path, other)
        or path == other
        or path.startswith(f"{other}.")
        or other.startswith(f"{path}.")
    )


def _kind_of(raw: Any) -> Any:
    return raw if isinstance(raw, str) else raw.get("kind") if isinstance(raw, Mapping) else None


def _submodel(cls: type[BaseModel], key: str) -> type[BaseModel] | None:
    annotation = cls.model_fields[key].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None

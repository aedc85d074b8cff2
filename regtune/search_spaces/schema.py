"""SweepSpec: one sweep, described in YAML and validated before Ray starts.

A spec is the training config a trial receives (the shape of
:class:`regtune.trainables.config.TrainConfig`) with distributions in place of
some values, plus how to search it::

    name: l2-path                   # experiment name: a-z, 0-9, '_' and '-'
    description: ...                # optional, one line
    dataset: digits                 # or a mapping (DatasetConfig); never sampled
    model: {arch: mlp, width: 128, depth: 2, dropout: {uniform: [0.0, 0.5]}}
    training: {lr: {loguniform: [1.0e-4, 1.0e-2]}}   # epochs come from budget.max_epochs
    penalties: {l2: {loguniform: [1.0e-6, 1.0e-1]}}
    objectives: [{metric: val_acc, mode: max}]       # or one mapping / name; mode defaults
                                                     # to METRIC_MODES[metric]
    scheduler: {kind: asha, grace_period: 1, reduction_factor: 3}
    searcher: {kind: hyperopt, max_concurrent: 2, seed: 0}
    budget: {samples: 20, max_epochs: 30, time_limit_s: null}
    resources: {cpu: 1, gpu: 0}     # per trial; gpu may be a fraction below 1
    failure: {max_retries: 1}
    checkpoint: {every: 5}          # epochs between checkpoints; 0 = only at the end

Distributions (see :mod:`regtune.search_spaces.distributions`) may stand for
any value under model, training or penalties, including a whole sub-mapping
(``adversarial: {choice: [{method: pgd}, {method: trades}]}``).

Defaults: scheduler asha for one objective, pareto-asha for several; searcher
hyperopt, or random where hyperopt cannot work (several objectives, pbt, a
grid in the space). A ``null`` section means its defaults.

Everything is checked here, and every problem is reported at once, one line
each, naming the key path (and the YAML line) and what is allowed. Each value a
distribution can produce (both ends, an interior point, every listed value),
and each pair of such values of two distributions, is substituted into the
config and validated with :func:`~regtune.trainables.config.parse_train_config`,
so no trial receives a config the trainable rejects (rules over three or more
keys at once are checked only at the representative values).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from regtune.errors import SpecError
from regtune.search_spaces.distributions import (
    DISTRIBUTION_KINDS,
    Choice,
    Distribution,
    Grid,
    KeyPath,
    LogUniform,
    QUniform,
    RandInt,
    Uniform,
    find_distribution,
    is_distribution,
    iter_distributions,
    iter_fixed,
    parse_distribution,
    set_path,
    substitute,
    suggest_kind,
    to_yaml_tree,
    without_distributions,
)
from regtune.trainables.config import METRIC_MODES, TrainConfig, parse_train_config

__all__ = [
    "SCHEDULER_KINDS",
    "SEARCHER_KINDS",
    "SPEC_KEYS",
    "AshaConfig",
    "BudgetConfig",
    "CheckpointConfig",
    "FailureConfig",
    "GridSearchConfig",
    "HyperbandConfig",
    "HyperoptConfig",
    "MedianConfig",
    "NoSchedulerConfig",
    "Objective",
    "ParetoAshaConfig",
    "PbtConfig",
    "RandomSearchConfig",
    "ResourcesConfig",
    "SchedulerConfig",
    "SearcherConfig",
    "SweepSpec",
    "apply_overrides",
    "build_spec",
    "list_presets",
    "load_spec",
    "load_train_config",
    "parse_override",
    "preset_path",
    "train_config_from_spec",
]

#: Keys of the training config tree that a spec carries (TrainConfig's fields).
TRAIN_KEYS: tuple[str, ...] = tuple(TrainConfig.model_fields)

#: Every top-level key a spec may have.
SPEC_KEYS: tuple[str, ...] = (
    "name",
    "description",
    *TRAIN_KEYS,
    "objectives",
    "scheduler",
    "searcher",
    "budget",
    "resources",
    "failure",
    "checkpoint",
)

# Built-in datasets that carry a sensitive attribute (fairness metrics and
# penalties need one), and those made of images (the CNN needs one).
FAIRNESS_DATASETS: tuple[str, ...] = ("adult", "german", "compas")
FAIRNESS_METRICS: tuple[str, ...] = ("dp_diff", "eo_diff")
IMAGE_DATASETS: tuple[str, ...] = ("digits",)

# Keys PBT may perturb mid-training: the optimiser and the penalties. Model and
# dataset keys change the weights' shapes, so a copied checkpoint cannot load.
PBT_MUTABLE_PREFIXES: tuple[str, ...] = ("penalties", "training")
# Turning spectral norm on or off changes the weights' parametrisation (their
# state-dict keys), so a checkpoint cannot be restored under the other value.
PBT_FROZEN_KEYS: tuple[str, ...] = ("penalties.spectral_norm",)
# PBT multiplies a continuous value by one of its factors at every
# perturbation; a value must stay valid after this many moves the same way.
PBT_DRIFT_STEPS = 10

# A grid searcher enumerates every combination; by default each runs once.
GRID_DEFAULT_SAMPLES = 1

#: Where the presets shipped with the package live.
PRESETS_DIR = Path(__file__).with_name("presets")
PRESET_SUFFIX = ".yaml"

# How close an unknown key must be to a known one to be suggested.
KEY_SUGGEST_CUTOFF = 0.6
# Longest value repr shown in a message.
MAX_SHOWN = 80

# An experiment name becomes a directory and a Ray Tune experiment name.
NAME_PATTERN = r"[a-z0-9_-]+"

INVALID_SPEC = "invalid sweep spec {origin}:"
BAD_NAME = "a name may hold only lowercase letters, digits, '_' and '-'"
UNKNOWN_KEY = "unknown key {key!r}; allowed: {allowed}"
DID_YOU_MEAN = " (did you mean {suggestion!r}?)"
DID_YOU_MEAN_DISTRIBUTION = (
    " (did you mean the distribution {suggestion!r}? distributions: {kinds})"
)
NOT_A_MAPPING = "must be a mapping; got {got}"
NOT_A_STRING_KEY = "keys must be strings; got {key!r}"
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
SAMPLE_REJECTED = "{kind} can produce {value!r}, which the trainable rejects: {reason}"
UNKNOWN_METRIC = "unknown metric {metric!r}; allowed: {allowed}"
MODE_MISMATCH = (
    "mode {mode!r} contradicts metric {metric!r}, for which {expected!r} is better; "
    "omit mode to use {expected!r}"
)
OBJECTIVE_SHAPE = "an objective is a metric name or {{metric: NAME, mode: min|max}}; got {got}"
NO_OBJECTIVES = "needs at least one objective, e.g. [{metric: val_acc, mode: max}]"
DUPLICATE_OBJECTIVE = "metric {metric!r} is listed more than once"
UNKNOWN_KIND = "unknown {section} {kind!r}; allowed: {allowed}"
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
NOTHING_TO_SEARCH = (
    "the spec samples nothing: put a distribution ({kinds}) under model, training or "
    "penalties (e.g. training.seed: {{grid: [0, 1, 2]}} to repeat one config)"
)
GRACE_TOO_LONG = "grace_period must be <= budget.max_epochs ({max_epochs}); got {grace}"
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
PBT_FROZEN = (
    "{key!r} changes how the weights are parametrised, so a checkpoint cannot be "
    "restored under another value; do not perturb it"
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
NEEDS_SENSITIVE = (
    "{what} needs a dataset with a sensitive attribute: one of {datasets}, or csv/parquet "
    "with dataset.sensitive; got dataset {name!r}"
)
CNN_NEEDS_IMAGES = "arch 'cnn' needs an image dataset ({datasets}); got dataset {name!r}"
CUDA_NEEDS_GPU = "device 'cuda' needs resources.gpu > 0"
GPU_FRACTION = "a GPU fraction must be below 1; above 1, use a whole number of GPUs"
PAIR_REJECTED = (
    "{kind} value {value!r} together with {other} = {other_value!r} is rejected by the "
    "trainable: {reason}"
)
BASE_REJECTED = "with every distribution at its representative value: {reason}"
YAML_SYNTAX = "{file}:{line}:{column}: invalid YAML: {problem}"
YAML_DUPLICATE_KEY = (
    "{file}:{line}: key {key!r} is given twice in one mapping (first on line {first})"
)
YAML_EMPTY = "{file}: the file is empty; a sweep spec is a mapping of {keys}"
UNREADABLE = "{file}: cannot read the file: {reason}"
NO_SUCH_SOURCE = "{source!r} is neither a spec file nor a preset; presets: {presets}"
UNKNOWN_PRESET = "unknown preset {name!r}; presets: {presets}"
OVERRIDE_SYNTAX = "--set {text!r}: expected KEY.PATH=VALUE, e.g. penalties.l2=0.01"
OVERRIDE_VALUE = "--set {text!r}: the value is not valid YAML: {problem}"
OVERRIDE_INTO_SCALAR = "--set {text!r}: {path} holds {got}, so it has no key {key!r}"
OVERRIDE_INTO_DISTRIBUTION = (
    "--set {text!r}: {path} is a distribution; set {path} itself, e.g. {path}=0.01"
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objective(_Section):
    """One metric to optimise and its direction."""

    metric: str
    mode: Literal["min", "max"]


class AshaConfig(_Section):
    """Asynchronous successive halving; its max_t is budget.max_epochs."""

    kind: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1.0)
    brackets: int = Field(1, ge=1)


class HyperbandConfig(_Section):
    """Synchronous HyperBand; its max_t is budget.max_epochs."""

    kind: Literal["hyperband"] = "hyperband"
    reduction_factor: float = Field(3.0, gt=1.0)


class MedianConfig(_Section):
    """Stop a trial below the median of the others at the same epoch."""

    kind: Literal["median"] = "median"
    grace_period: int = Field(1, ge=1)
    min_samples_required: int = Field(3, ge=1)


class PbtConfig(_Section):
    """Population-based training over the listed distributions.

    ``hyperparam_mutations`` lists dotted key paths of distributions to
    perturb (e.g. ``[penalties.l2, training.lr]``); ``None`` means every
    distribution under penalties.
    """

    kind: Literal["pbt"] = "pbt"
    perturbation_interval: int = Field(2, ge=1)
    hyperparam_mutations: tuple[str, ...] | None = None
    quantile_fraction: float = Field(0.25, ge=0.0, le=0.5)
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    perturbation_factors: tuple[float, float] = (1.2, 0.8)

    @field_validator("perturbation_factors")
    @classmethod
    def _positive_factors(cls, value: tuple[float, float]) -> tuple[float, float]:
        if min(value) <= 0:
            raise ValueError(f"factors must be > 0 (got {list(value)!r})")
        return value


class ParetoAshaConfig(_Section):
    """Successive halving that keeps trials on the Pareto front of the objectives."""

    kind: Literal["pareto-asha"] = "pareto-asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)


class NoSchedulerConfig(_Section):
    """Every trial runs budget.max_epochs (FIFO)."""

    kind: Literal["none"] = "none"


class HyperoptConfig(_Section):
    """Tree-structured Parzen estimator (hyperopt); single objective, no grids."""

    kind: Literal["hyperopt"] = "hyperopt"
    max_concurrent: int | None = Field(None, ge=1)
    seed: int | None = None
    n_initial_points: int = Field(10, ge=1)


class RandomSearchConfig(_Section):
    """Independent random samples (grids are enumerated, each ``samples`` times)."""

    kind: Literal["random"] = "random"
    max_concurrent: int | None = Field(None, ge=1)
    seed: int | None = None


class GridSearchConfig(_Section):
    """Every combination of the grid values, each ``budget.samples`` times."""

    kind: Literal["grid"] = "grid"
    max_concurrent: int | None = Field(None, ge=1)


class BudgetConfig(_Section):
    """How much to run: ``samples`` trials (times the number of grid
    combinations for grid and random searchers, as Ray Tune's num_samples),
    each for at most ``max_epochs``, the whole sweep for at most
    ``time_limit_s`` seconds. Left out, ``samples`` is 10, or 1 with searcher
    grid (each combination once)."""

    samples: int = Field(10, ge=1)
    max_epochs: int = Field(20, ge=1)
    time_limit_s: float | None = Field(None, gt=0.0)


class ResourcesConfig(_Section):
    """Resources of one trial; a GPU may be shared (gpu below 1)."""

    cpu: float = Field(1.0, gt=0.0)
    gpu: float = Field(0.0, ge=0.0)

    @field_validator("gpu")
    @classmethod
    def _whole_gpus_above_one(cls, value: float) -> float:
        if value > 1 and not float(value).is_integer():
            raise ValueError(GPU_FRACTION)
        return value


class FailureConfig(_Section):
    """How often a failed trial is retried (from its last checkpoint)."""

    max_retries: int = Field(1, ge=0)


class CheckpointConfig(_Section):
    """Epochs between checkpoints; 0 saves only at the end."""

    every: int = Field(0, ge=0)


class _Header(_Section):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name_chars(cls, value: str) -> str:
        if not re.fullmatch(NAME_PATTERN, value):
            raise ValueError(BAD_NAME)
        return value


SchedulerConfig: TypeAlias = (
    AshaConfig | HyperbandConfig | MedianConfig | PbtConfig | ParetoAshaConfig | NoSchedulerConfig
)
SearcherConfig: TypeAlias = HyperoptConfig | RandomSearchConfig | GridSearchConfig

_SCHEDULERS: dict[str, type[BaseModel]] = {
    "asha": AshaConfig,
    "hyperband": HyperbandConfig,
    "pbt": PbtConfig,
    "median": MedianConfig,
    "pareto-asha": ParetoAshaConfig,
    "none": NoSchedulerConfig,
}
_SEARCHERS: dict[str, type[BaseModel]] = {
    "hyperopt": HyperoptConfig,
    "random": RandomSearchConfig,
    "grid": GridSearchConfig,
}
#: Scheduler kinds a spec may name.
SCHEDULER_KINDS: tuple[str, ...] = tuple(_SCHEDULERS)
#: Searcher kinds a spec may name.
SEARCHER_KINDS: tuple[str, ...] = tuple(_SEARCHERS)
_SINGLE_OBJECTIVE_SCHEDULERS = ("asha", "hyperband", "median", "pbt")


_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep. Build it with :func:`regtune.search_spaces.load_spec`.

    ``space`` is the config tree every trial receives (dataset, model,
    training, penalties), with :class:`Distribution` objects where values are
    sampled and ``training.epochs`` set from ``budget.max_epochs``. Fixed
    values are normalised by TrainConfig (``"1e-4"`` becomes ``0.0001``).
    Treat it as read-only; the methods return copies.
    """

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
    # The mapping this spec was validated from: overrides apply to it, so that
    # defaults (scheduler, searcher) are derived again rather than frozen.
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def iter_distributions(self) -> Iterator[tuple[KeyPath, Distribution]]:
        """``(key path, distribution)`` pairs in the order the spec lists them."""
        yield from iter_distributions(self.space, ())

    def base_config(self) -> dict[str, Any]:
        """One concrete, validated training config: each distribution at its
        representative value (grid and choice: first value; uniform: midpoint;
        loguniform: geometric midpoint; quniform: midpoint snapped to q;
        randint: middle integer). Keys absent from the spec stay absent."""
        values = {path: dist.representative() for path, dist in self.iter_distributions()}
        return substitute(self.space, values)

    def with_overrides(self, overrides: Iterable[str]) -> SweepSpec:
        """A new spec with ``KEY.PATH=VALUE`` overrides applied (values are
        YAML, e.g. ``penalties.l2={loguniform: [1e-6, 1e-2]}``), validated again.

        Raises:
            SpecError: a malformed override, or the spec it yields is invalid.
        """
        overrides = list(overrides)
        raw = apply_overrides(self.source or self.to_dict(), overrides)
        return build_spec(raw, origin=f"{self.name} with --set", overridden=overrides)

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as plain YAML-able data; ``load_spec`` of it gives
        an equal spec."""
        space = to_yaml_tree(self.space)
        training = space.get("training", {})
        training.pop("epochs", None)
        if not training:
            space.pop("training", None)
        sections = {
            "scheduler": self.scheduler,
            "searcher": self.searcher,
            "budget": self.budget,
            "resources": self.resources,
            "failure": self.failure,
            "checkpoint": self.checkpoint,
        }
        return {
            "name": self.name,
            "description": self.description,
            **space,
            "objectives": [o.model_dump(mode="json") for o in self.objectives],
            **{key: section.model_dump(mode="json") for key, section in sections.items()},
        }

    def to_yaml(self) -> str:
        """:meth:`to_dict` as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def n_trials(self) -> int:
        """How many trials Ray Tune will start (before early stopping)."""
        grid = math.prod(len(d.values) for _, d in self.iter_distributions() if isinstance(d, Grid))
        return self.budget.samples * grid

    def pbt_mutation_paths(self) -> tuple[KeyPath, ...]:
        """Key paths PBT perturbs: those listed in the scheduler, or every
        distribution under penalties; empty unless the scheduler is pbt."""
        if not isinstance(self.scheduler, PbtConfig):
            return ()
        return _pbt_paths(self.scheduler, dict(self.iter_distributions()))


def parse_override(text: str) -> tuple[KeyPath, Any]:
    """Split ``KEY.PATH=VALUE`` into a key path and a YAML-parsed value.

    Raises:
        SpecError: no ``=``, an empty key part, or a value that is not YAML.
    """
    key, sep, value_text = text.partition("=")
    parts = tuple(part.strip() for part in key.split("."))
    if not sep or not all(parts):
        raise SpecError(OVERRIDE_SYNTAX.format(text=text))
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(OVERRIDE_VALUE.format(text=text, problem=problem)) from exc
    return parts, value


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``raw`` with each ``KEY.PATH=VALUE`` set (missing
    mappings are created; list items are addressed by index)."""
    out: dict[str, Any] = copy.deepcopy(dict(raw))
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = out
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth]) or "<root>"
            last = depth == len(parts) - 1
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                got = _describe(node)
                raise SpecError(
                    OVERRIDE_INTO_SCALAR.format(text=text, path=where, got=got, key=part)
                )
            if is_distribution(node) and depth > 0:
                raise SpecError(OVERRIDE_INTO_DISTRIBUTION.format(text=text, path=where))
            if last:
                node[part] = value
                continue
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif depth == 0 and part == "dataset" and isinstance(child, str):
                # ``dataset: digits`` is shorthand for ``dataset: {name: digits}``.
                child = node[part] = {"name": child}
            node = child
    return out


def build_spec(
    raw: Any,
    origin: str = "<mapping>",
    lines: Mapping[str, int] | None = None,
    overridden: Iterable[str] = (),
) -> SweepSpec:
    """Validate a raw mapping (parsed YAML) into a :class:`SweepSpec`.

    Args:
        raw: the parsed spec.
        origin: where it came from, for the message header (a file name).
        lines: dotted key path -> YAML line, to point at lines in messages.
        overridden: ``--set`` texts applied to ``raw``; their keys get no line.

    Raises:
        SpecError: every problem found, one line each.
    """
    if not isinstance(raw, Mapping):
        raise SpecError(
            f"{INVALID_SPEC.format(origin=origin)}\n<root>: "
            f"a sweep spec must be a mapping of {', '.join(SPEC_KEYS)}; got {_describe(raw)}"
        )
    checker = _Checker()
    spec = checker.build(raw)
    if checker.problems or spec is None:
        override_keys = [text.partition("=")[0].strip() for text in overridden]
        raise SpecError(_format(checker.problems, origin, lines or {}, override_keys))
    return replace(spec, source=copy.deepcopy(dict(raw)))


def list_presets() -> list[str]:
    """Names of the presets shipped with the package, sorted."""
    return sorted(p.stem for p in PRESETS_DIR.glob(f"*{PRESET_SUFFIX}"))


def preset_path(name: str) -> Path:
    """The YAML file of preset ``name`` (e.g. ``"quickstart"``).

    Raises:
        SpecError: no such preset; the message lists them.
    """
    path = PRESETS_DIR / f"{name}{PRESET_SUFFIX}"
    if name not in list_presets():
        raise SpecError(UNKNOWN_PRESET.format(name=name, presets=", ".join(list_presets())))
    return path


def load_spec(source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()) -> SweepSpec:
    """Load and validate a sweep spec.

    Args:
        source: a YAML file path, a preset name (see :func:`list_presets`;
            an existing file of that name wins), or an already parsed mapping.
        overrides: ``KEY.PATH=VALUE`` texts applied before validation (the
            CLI's ``--set``).

    Raises:
        SpecError: the file is missing or not YAML, or the spec is invalid;
            every problem is named with its key path (and line in the file).
    """
    raw, origin, lines = _read_source(source)
    overrides = list(overrides)
    if overrides:
        if not isinstance(raw, Mapping):
            return build_spec(raw, origin, lines)
        raw = apply_overrides(raw, overrides)
    return build_spec(raw, origin, lines, overridden=overrides)


def train_config_from_spec(spec: SweepSpec) -> dict[str, Any]:
    """One concrete training config from a spec: :meth:`SweepSpec.base_config`
    (each distribution at its representative value), for ``regtune train``."""
    return spec.base_config()


def load_train_config(
    source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """One concrete training config from a sweep spec or a TrainConfig YAML.

    A mapping whose keys are all TrainConfig keys (dataset, model, training,
    penalties) is a training config; anything else is read as a sweep spec
    and reduced with :func:`train_config_from_spec`. Overrides apply first.

    Returns:
        The validated config as a plain dict, holding only the keys given
        (TrainConfig fills in the rest).

    Raises:
        SpecError: naming every bad key path.
    """
    raw, origin, lines = _read_source(source)
    overrides = list(overrides)
    if isinstance(raw, Mapping) and set(raw) <= set(TRAIN_KEYS):
        config = parse_train_config(apply_overrides(raw, overrides))
        return config.model_dump(exclude_unset=True)
    if overrides and isinstance(raw, Mapping):
        raw = apply_overrides(raw, overrides)
    return train_config_from_spec(build_spec(raw, origin, lines, overridden=overrides))


def _read_source(source: str | Path | Mapping[str, Any]) -> tuple[Any, str, dict[str, int]]:
    """(parsed data, origin for messages, key path -> line)."""
    if not isinstance(source, str | Path):
        return source, "<mapping>", {}
    path = Path(source)
    if not path.is_file():
        if isinstance(source, str) and source in list_presets():
            path = preset_path(source)
        else:
            presets = ", ".join(list_presets())
            raise SpecError(NO_SUCH_SOURCE.format(source=str(source), presets=presets))
    data, lines = _read_yaml(path)
    return data, str(path), lines


def _read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse a YAML file with ``yaml.safe_load``; map its key paths to lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(UNREADABLE.format(file=path, reason=exc)) from exc
    try:
        data = yaml.safe_load(text)
        # compose() builds only the node tree (no objects): it gives the line of
        # each key and catches duplicate keys, which safe_load silently drops.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        message = YAML_SYNTAX.format(file=path, line=line, column=column, problem=problem)
        raise SpecError(message) from exc
    if data is None:
        raise SpecError(YAML_EMPTY.format(file=path, keys=", ".join(SPEC_KEYS)))
    lines: dict[str, int] = {}
    _index_lines(root, (), lines, path, set())
    return data, lines


def _index_lines(
    node: yaml.Node | None, path: KeyPath, lines: dict[str, int], file: Path, seen: set[int]
) -> None:
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first and key != "<<":
                raise SpecError(
                    YAML_DUPLICATE_KEY.format(file=file, line=line, key=key, first=first[key])
                )
            first[key] = line
            lines[_dotted((*path, key))] = line
            _index_lines(value_node, (*path, key), lines, file, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[_dotted((*path, str(index)))] = item.start_mark.line + 1
            _index_lines(item, (*path, str(index)), lines, file, seen)


@dataclass(frozen=True)
class _Problem:
    path: str
    message: str


class _Checker:
    """Collects every problem of one spec while building it."""

    def __init__(self) -> None:
        self.problems: list[_Problem] = []

    def add(self, path: KeyPath | str, message: str) -> None:
        where = path if isinstance(path, str) else _dotted(path)
        problem = _Problem(where or "<root>", message)
        if problem not in self.problems:
            self.problems.append(problem)

    # -- the whole spec -------------------------------------------------------

    def build(self, raw: Mapping[str, Any]) -> SweepSpec | None:
        for key in raw:
            if key not in SPEC_KEYS:
                self.unknown_key((), key, SPEC_KEYS)
        given = {k: v for k, v in raw.items() if k in SPEC_KEYS and v is not None}
        header = self.section(
            _Header, {k: given[k] for k in ("name", "description") if k in given}, ()
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
        scheduler = self.kind_section(
            "scheduler",
            given.get("scheduler"),
            _SCHEDULERS,
            "pareto-asha" if several else "asha",
        )
        pbt = isinstance(scheduler, PbtConfig) or _kind_of(given.get("scheduler")) == "pbt"
        has_grid = any(isinstance(d, Grid) for d in dists.values())
        searcher = self.kind_section(
            "searcher",
            given.get("searcher"),
            _SEARCHERS,
            "random" if several or pbt or has_grid else "hyperopt",
        )
        if (
            isinstance(searcher, GridSearchConfig)
            and budget is not None
            and "samples" not in budget.model_fields_set
        ):
            budget = budget.model_copy(update={"samples": GRID_DEFAULT_SAMPLES})
        samples = self.probe_space(space, dists)
        if objectives is not None:
            self.cross_objectives(objectives, scheduler, searcher, samples)
        if budget is not None:
            self.cross_budget(budget, scheduler)
        if resources is not None:
            self.cross_resources(resources, samples)
        self.cross_searcher(searcher, scheduler, dists)
        if isinstance(scheduler, PbtConfig):
            self.cross_pbt(scheduler, space, dists, checkpoint)
        if self.problems:
            return None
        self.base_config(space)
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
        return SweepSpec(
            name=header.name,
            description=header.description,
            space=space,
            objectives=objectives,
            scheduler=scheduler,  # type: ignore[arg-type]
            searcher=searcher,  # type: ignore[arg-type]
            budget=budget,
            resources=resources,
            failure=failure,
            checkpoint=checkpoint,
        )

    # -- sections -------------------------------------------------------------

    def unknown_key(self, path: KeyPath, key: Any, allowed: Iterable[str]) -> None:
        if not isinstance(key, str):
            self.add(path, NOT_A_STRING_KEY.format(key=key))
            return
        allowed = list(allowed)
        message = UNKNOWN_KEY.format(key=key, allowed=", ".join(allowed))
        kind = suggest_kind(key)
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=KEY_SUGGEST_CUTOFF)
        if kind is not None:
            kinds = ", ".join(DISTRIBUTION_KINDS)
            message += DID_YOU_MEAN_DISTRIBUTION.format(suggestion=kind, kinds=kinds)
        elif close:
            message += DID_YOU_MEAN.format(suggestion=close[0])
        self.add((*path, key), message)

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

    def section(self, cls: type[_M], raw: Any, path: KeyPath) -> _M | None:
        """Validate a mapping with a pydantic model, naming unknown keys."""
        if not isinstance(raw, Mapping):
            self.add(path, NOT_A_MAPPING.format(got=_describe(raw)))
            return None
        known = {}
        for key, value in raw.items():
            if key in cls.model_fields:
                known[key] = value
            else:
                self.unknown_key(path, key, cls.model_fields)
        try:
            return cls.model_validate(known)
        except ValidationError as exc:
            for loc, message in _pydantic_errors(exc):
                self.add((*path, *loc), message)
            return None

    def kind_section(
        self, section: str, raw: Any, kinds: Mapping[str, type[BaseModel]], default: str
    ) -> BaseModel | None:
        if raw is None:
            raw = {"kind": default}
        elif isinstance(raw, str):
            raw = {"kind": raw}
        if not isinstance(raw, Mapping):
            self.add((section,), NOT_A_MAPPING.format(got=_describe(raw)))
            return None
        kind = raw.get("kind", default)
        if not isinstance(kind, str) or kind not in kinds:
            message = UNKNOWN_KIND.format(section=section, kind=kind, allowed=", ".join(kinds))
            self.add((section, "kind"), message)
            return None
        return self.section(kinds[kind], {**raw, "kind": kind}, (section,))

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
                self.add(where, OBJECTIVE_SHAPE.format(got=_describe(entry)))
                continue
            metric = item.get("metric")
            if not isinstance(metric, str) or metric not in METRIC_MODES:
                allowed = ", ".join(METRIC_MODES)
                self.add((*where, "metric"), UNKNOWN_METRIC.format(metric=metric, allowed=allowed))
                continue
            expected = METRIC_MODES[metric]
            objective = self.section(Objective, {"mode": expected, **item}, where)
            if objective is None:
                continue
            if objective.mode != expected:
                message = MODE_MISMATCH.format(
                    mode=objective.mode, metric=metric, expected=expected
                )
                self.add((*where, "mode"), message)
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
                    out[key] = parse_distribution(value, _dotted(where))
                except SpecError as exc:
                    for line in str(exc).splitlines():
                        at, _, message = line.partition(": ")
                        self.add(at, message)
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

    def probe_space(
        self, space: dict[str, Any], dists: dict[KeyPath, Distribution]
    ) -> list[TrainConfig]:
        """Validate the fixed values, then every value each distribution can
        produce; normalise both in place. Returns the valid configs seen."""
        fixed = without_distributions(space)
        fixed_problems, fixed_config = _train_problems(fixed)
        for problem in fixed_problems:
            self.add(problem.path, problem.message)
        seen = [fixed_config] if fixed_config is not None else []
        if fixed_config is not None:
            for path, _ in iter_fixed(space, ()):
                set_path(space, path, _read_back(fixed_config, path))
        valid: list[KeyPath] = []
        for path, dist in dists.items():
            normalised = []
            for value in dist.probe_values():
                config = self.probe(fixed, fixed_problems, path, dist, value, SAMPLE_REJECTED)
                if config is not None:
                    seen.append(config)
                    normalised.append(_read_back(config, path))
            if len(normalised) == len(dist.probe_values()):
                valid.append(path)
                if isinstance(dist, Choice):
                    set_path(space, path, Choice(tuple(normalised)))
                elif isinstance(dist, Grid):
                    set_path(space, path, Grid(tuple(normalised)))
        self.probe_pairs(fixed, fixed_problems, valid, dists)
        return seen

    def probe_pairs(
        self,
        fixed: dict[str, Any],
        fixed_problems: list[_Problem],
        paths: list[KeyPath],
        dists: Mapping[KeyPath, Distribution],
    ) -> None:
        """Rules that relate two keys (e.g. attack steps) can reject a pair of
        values each valid alone: try every pair of probe values, and report the
        first rejected pair of each two distributions."""
        for i, first in enumerate(paths):
            for second in paths[i + 1 :]:
                pairs = itertools.product(dists[first].probe_values(), dists[second].probe_values())
                for a, b in pairs:
                    problems, _ = _train_problems(substitute(fixed, {first: a, second: b}))
                    new = [p for p in problems if p not in fixed_problems]
                    if new:
                        reason = "; ".join(_reason(p, "<root>") for p in new)
                        message = PAIR_REJECTED.format(
                            kind=dists[first].kind,
                            value=a,
                            other=_dotted(second),
                            other_value=b,
                            reason=reason,
                        )
                        self.add(first, message)
                        break

    def probe(
        self,
        fixed: dict[str, Any],
        fixed_problems: list[_Problem],
        path: KeyPath,
        dist: Distribution,
        value: Any,
        template: str,
        **extra: Any,
    ) -> TrainConfig | None:
        problems, config = _train_problems(substitute(fixed, {path: value}))
        new = [p for p in problems if p not in fixed_problems]
        for problem in new:
            reason = _reason(problem, _dotted(path))
            self.add(path, template.format(kind=dist.kind, value=value, reason=reason, **extra))
        return config if not new else None

    def base_config(self, space: dict[str, Any]) -> None:
        values = {path: dist.representative() for path, dist in iter_distributions(space, ())}
        problems, _ = _train_problems(substitute(space, values))
        for problem in problems:
            self.add(problem.path, BASE_REJECTED.format(reason=problem.message))

    # -- rules across sections ------------------------------------------------

    def cross_objectives(
        self,
        objectives: tuple[Objective, ...],
        scheduler: BaseModel | None,
        searcher: BaseModel | None,
        samples: list[TrainConfig],
    ) -> None:
        n = len(objectives)
        metrics = ", ".join(o.metric for o in objectives)
        kind = getattr(scheduler, "kind", None)
        if kind in _SINGLE_OBJECTIVE_SCHEDULERS and n > 1:
            message = SINGLE_OBJECTIVE_SCHEDULER.format(kind=kind, n=n, metrics=metrics)
            self.add(("scheduler", "kind"), message)
        if kind == "pareto-asha" and n < 2:
            self.add(("scheduler", "kind"), PARETO_NEEDS_SEVERAL.format(n=n))
        if isinstance(searcher, HyperoptConfig) and n > 1:
            self.add(("searcher", "kind"), HYPEROPT_ONE_OBJECTIVE.format(n=n))
        for index, objective in enumerate(objectives):
            where = ("objectives", str(index), "metric")
            if objective.metric == "robust_acc" and any(
                c.training.robust_every == 0 for c in samples
            ):
                self.add(("training", "robust_every"), ROBUST_NEEDS_EVAL)
            if objective.metric in FAIRNESS_METRICS:
                for config in samples:
                    if not _has_sensitive(config):
                        self.add(where, _needs_sensitive(f"metric {objective.metric}", config))
        for config in samples:
            if config.penalties.fairness.kind != "none" and not _has_sensitive(config):
                what = f"fairness penalty {config.penalties.fairness.kind!r}"
                self.add(("penalties", "fairness", "kind"), _needs_sensitive(what, config))
            if config.model.arch == "cnn" and config.dataset.name not in IMAGE_DATASETS:
                message = CNN_NEEDS_IMAGES.format(
                    datasets=", ".join(IMAGE_DATASETS), name=config.dataset.name
                )
                self.add(("model", "arch"), message)

    def cross_budget(self, budget: BudgetConfig, scheduler: BaseModel | None) -> None:
        grace = getattr(scheduler, "grace_period", None)
        if grace is not None and grace > budget.max_epochs:
            message = GRACE_TOO_LONG.format(max_epochs=budget.max_epochs, grace=grace)
            self.add(("scheduler", "grace_period"), message)
        if (
            isinstance(scheduler, PbtConfig)
            and scheduler.perturbation_interval >= budget.max_epochs
        ):
            message = PBT_INTERVAL.format(
                max_epochs=budget.max_epochs, interval=scheduler.perturbation_interval
            )
            self.add(("scheduler", "perturbation_interval"), message)

    def cross_resources(self, resources: ResourcesConfig, samples: list[TrainConfig]) -> None:
        if resources.gpu == 0 and any(c.training.device == "cuda" for c in samples):
            self.add(("training", "device"), CUDA_NEEDS_GPU)

    def cross_searcher(
        self,
        searcher: BaseModel | None,
        scheduler: BaseModel | None,
        dists: Mapping[KeyPath, Distribution],
    ) -> None:
        if not dists and not any(p for p in self.problems if p.path.startswith(TRAIN_KEYS)):
            self.add(("searcher",), NOTHING_TO_SEARCH.format(kinds=", ".join(DISTRIBUTION_KINDS)))
        for path, dist in dists.items():
            if isinstance(searcher, HyperoptConfig) and isinstance(dist, Grid):
                self.add((*path, "grid"), HYPEROPT_NO_GRID)
            if isinstance(searcher, GridSearchConfig) and not isinstance(dist, Grid):
                self.add((*path, dist.kind), GRID_ONLY_GRIDS.format(kind=dist.kind))
        if isinstance(scheduler, PbtConfig) and isinstance(searcher, HyperoptConfig):
            self.add(("searcher", "kind"), PBT_SEARCHER)

    def cross_pbt(
        self,
        scheduler: PbtConfig,
        space: dict[str, Any],
        dists: dict[KeyPath, Distribution],
        checkpoint: CheckpointConfig | None,
    ) -> None:
        if checkpoint is not None and checkpoint.every == 0:
            self.add(("checkpoint", "every"), PBT_CHECKPOINTS)
        where: KeyPath = ("scheduler", "hyperparam_mutations")
        named = {_dotted(p): p for p in dists}
        listed = scheduler.hyperparam_mutations
        paths = _pbt_paths(scheduler, dists)
        for index, key in enumerate(listed or ()):
            at = (*where, str(index))
            if key not in named:
                allowed = ", ".join(named) or "(none)"
                self.add(at, PBT_NOT_A_DISTRIBUTION.format(key=key, allowed=allowed))
            elif not key.startswith(tuple(f"{p}." for p in PBT_MUTABLE_PREFIXES)):
                prefixes = ", ".join(PBT_MUTABLE_PREFIXES)
                self.add(at, PBT_IMMUTABLE.format(key=key, prefixes=prefixes))
            elif key in PBT_FROZEN_KEYS:
                self.add(at, PBT_FROZEN.format(key=key))
            else:
                continue
            paths = tuple(p for p in paths if p != named.get(key))
        if not listed and not paths:
            self.add(where, PBT_NOTHING)
        fixed = without_distributions(space)
        fixed_problems, _ = _train_problems(fixed)
        up, down = max(scheduler.perturbation_factors), min(scheduler.perturbation_factors)
        for path in paths:
            dist = dists[path]
            if isinstance(dist, Grid):
                self.add((*path, "grid"), PBT_GRID)
            if not isinstance(dist, Uniform | LogUniform | QUniform | RandInt):
                continue
            high = dist.high - 1 if isinstance(dist, RandInt) else dist.high
            for value in (high * up**PBT_DRIFT_STEPS, dist.low * down**PBT_DRIFT_STEPS):
                drifted = round(value) if isinstance(dist, RandInt) else value
                factors = list(scheduler.perturbation_factors)
                self.probe(
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


# -- helpers ------------------------------------------------------------------


def _kind_of(raw: Any) -> Any:
    return raw if isinstance(raw, str) else raw.get("kind") if isinstance(raw, Mapping) else None


def _pbt_paths(scheduler: PbtConfig, dists: Mapping[KeyPath, Distribution]) -> tuple[KeyPath, ...]:
    if scheduler.hyperparam_mutations is None:
        return tuple(p for p in dists if p[0] == "penalties" and _dotted(p) not in PBT_FROZEN_KEYS)
    named = {_dotted(p): p for p in dists}
    return tuple(named[k] for k in scheduler.hyperparam_mutations if k in named)


def _reason(problem: _Problem, where: str) -> str:
    # Whole-config rules (two keys at once) report no path of their own.
    own = problem.path in (where, "<root>")
    return problem.message if own else f"{problem.path}: {problem.message}"


def _has_sensitive(config: TrainConfig) -> bool:
    return config.dataset.name in FAIRNESS_DATASETS or config.dataset.sensitive is not None


def _needs_sensitive(what: str, config: TrainConfig) -> str:
    datasets = ", ".join(FAIRNESS_DATASETS)
    return NEEDS_SENSITIVE.format(what=what, datasets=datasets, name=config.dataset.name)


def _submodel(cls: type[BaseModel], key: str) -> type[BaseModel] | None:
    annotation = cls.model_fields[key].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _dotted(path: Iterable[str]) -> str:
    return ".".join(path)


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > MAX_SHOWN:
        shown = shown[: MAX_SHOWN - 3] + "..."
    return f"{type(value).__name__} {shown}"


def _pydantic_errors(exc: ValidationError) -> list[tuple[KeyPath, str]]:
    found = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        got = err.get("input")
        shown = "" if isinstance(got, Mapping) else f" (got {got!r})"
        message = err["msg"].removeprefix("Value error, ")
        found.append((loc, f"{message}{shown}"))
    return found


def _train_problems(tree: Mapping[str, Any]) -> tuple[list[_Problem], TrainConfig | None]:
    """Validate a config tree with the trainable's own parser."""
    try:
        return [], parse_train_config(tree)
    except SpecError as exc:
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            return [
                _Problem(_dotted(loc) or "<root>", m) for loc, m in _pydantic_errors(cause)
            ], None
        return [_Problem("<root>", str(exc))], None


def _read_back(config: BaseModel, path: KeyPath) -> Any:
    """The value at ``path`` as the trainable parsed it (``"1e-4"`` -> 0.0001)."""
    node: Any = config
    for key in path:
        node = getattr(node, key)
    return node.model_dump(exclude_unset=True) if isinstance(node, BaseModel) else node


def _format(
    problems: list[_Problem], origin: str, lines: Mapping[str, int], overridden: list[str]
) -> str:
    out = [INVALID_SPEC.format(origin=origin)]
    for problem in problems:
        line = None
        if not any(problem.path == k or problem.path.startswith(f"{k}.") for k in overridden):
            parts = problem.path.split(".")
            while parts and line is None:
                line = lines.get(".".join(parts))
                parts.pop()
        prefix = f"line {line}: " if line is not None else ""
        out.append(f"{prefix}{problem.path}: {problem.message}")
    return "\n".join(out)

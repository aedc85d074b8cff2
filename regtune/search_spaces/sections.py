"""The sections of a sweep spec besides the config tree, as pydantic models.

Each section (objectives, scheduler, searcher, budget, resources, failure,
checkpoint) is a frozen model that forbids unknown keys; a scheduler or
searcher is picked by its ``kind``. Which keys a spec may hold, and which key
paths PBT perturbs, are answered here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from regtune.search_spaces.distributions import Distribution, KeyPath
from regtune.search_spaces.problems import dotted
from regtune.trainables.config import StrictModel, TrainConfig, is_stored

__all__ = [
    "ASHA_BRACKETS",
    "BAD_NAME",
    "FUSE_AUTO",
    "FUSE_VALUE",
    "FUSE_WITH_PBT",
    "GPU_FRACTION",
    "HYPEROPT_SEED",
    "NAME_PATTERN",
    "PBT_FROZEN_KEYS",
    "RANDOM_SEED",
    "SCHEDULER_KINDS",
    "SCHEDULER_MODELS",
    "SEARCHER_KINDS",
    "SEARCHER_MODELS",
    "SPEC_KEYS",
    "TRAIN_KEYS",
    "AshaConfig",
    "BudgetConfig",
    "CheckpointConfig",
    "FailureConfig",
    "GridSearchConfig",
    "Header",
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
    "asha_brackets_problem",
    "asha_rung_levels",
    "fuse_problem",
    "pbt_paths",
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


#: Keys PBT must not perturb although they sit under penalties or training,
#: each with why: a restored checkpoint would ignore the new value or could
#: not be restored under it.
PBT_FROZEN_KEYS: dict[str, str] = {
    "penalties.spectral_norm": (
        "it changes how the weights are parametrised (their state-dict keys), so a "
        "checkpoint cannot be restored under another value"
    ),
    "training.optimizer": "a restored optimizer state belongs to the optimizer that wrote it",
    "training.lr_schedule": "a restored schedule continues the kind that wrote it",
    "training.seed": (
        "it only seeds the first draw; a restored run continues the checkpoint's random state"
    ),
    "training.device": "every trial trains on the device its resources give it",
}

# An experiment name becomes a directory and a Ray Tune experiment name.
NAME_PATTERN = r"[a-z0-9_-]+"

BAD_NAME = "a name may hold only lowercase letters, digits, '_' and '-'"
GPU_FRACTION = "a GPU fraction must be below 1; above 1, use a whole number of GPUs"
#: ``resources.fuse: auto``: members per cohort picked from the model size and device.
FUSE_AUTO = "auto"
FUSE_VALUE = (
    "fuse must be a whole number >= 1 (trials trained together as one batched model; "
    "1 = off) or 'auto'"
)
FUSE_WITH_PBT = (
    "scheduler pbt copies weights between trials through checkpoints, so its trials "
    "train unfused; remove resources.fuse (or set it to 1), or use asha, hyperband, "
    "median or pareto-asha"
)


ASHA_BRACKETS = (
    "{brackets} is not allowed with budget.max_epochs {max_epochs}; allowed: an integer "
    "from 1 to {maximum} (one per rung level {levels} below max_epochs, plus one without "
    "early stopping): Tune puts a share of the trials in each bracket, and a bracket "
    "without a rung below max_epochs stops none of them early"
)


#: The largest hyperopt seed: Ray's ``HyperOptSearch`` seeds numpy's legacy
#: ``RandomState``, which takes 0 to 2**32 - 1. The random searcher seeds
#: numpy's ``default_rng``, which takes any whole number >= 0.
SEARCHER_SEED_MAX = 2**32 - 1
HYPEROPT_SEED = (
    "must be a whole number from 0 to {maximum} (2**32 - 1: searcher hyperopt seeds "
    "numpy's legacy random state, which takes no other)"
)
RANDOM_SEED = (
    "must be a whole number >= 0 (searcher random seeds numpy's default_rng, which "
    "takes no negative seed)"
)
PBT_FACTORS_IDLE = (
    "perturbation factors {factors} are all 1.0, so pbt would never change a value "
    "(only resample it); use factors above and below 1, e.g. [1.2, 0.8]"
)


class _Section(StrictModel):
    # As the training config's models: unknown keys refused, finite numbers
    # only (an .inf resource or budget is refused), and a boolean is not taken
    # as a number (``samples: yes`` is refused, not run as 1).
    pass


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
    #: Share of trials exploited (the bottom) and exploiting (the top); above 0
    #: (0 would exploit no trial: PBT without perturbation), at most Ray's 0.5.
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5)
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    perturbation_factors: tuple[float, float] = (1.2, 0.8)

    @field_validator("perturbation_factors")
    @classmethod
    def _positive_factors(
        cls, value: tuple[float, float], info: ValidationInfo
    ) -> tuple[float, float]:
        if min(value) <= 0:
            raise ValueError(f"factors must be > 0 (got {list(value)!r})")
        if all(factor == 1 for factor in value) and not is_stored(info):
            raise ValueError(PBT_FACTORS_IDLE.format(factors=list(value)))
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

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not 0 <= value <= SEARCHER_SEED_MAX and not is_stored(info):
            raise ValueError(HYPEROPT_SEED.format(maximum=SEARCHER_SEED_MAX))
        return value


class RandomSearchConfig(_Section):
    """Independent random samples (grids are enumerated, each ``samples`` times)."""

    kind: Literal["random"] = "random"
    max_concurrent: int | None = Field(None, ge=1)
    seed: int | None = None

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value < 0 and not is_stored(info):
            raise ValueError(RANDOM_SEED)
        return value


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
    """Resources of one trial; a GPU may be shared (gpu below 1).

    ``fuse: K`` (or ``auto``) trains up to K trials together as one batched
    model in one worker (a cohort); ``cpu``/``gpu`` are then what each
    cohort's worker holds (see ``docs/fused.md``). 1, the default, is off.
    """

    cpu: float = Field(1.0, gt=0.0)
    gpu: float = Field(0.0, ge=0.0)
    fuse: int | Literal["auto"] = 1

    @field_validator("fuse", mode="before")
    @classmethod
    def _fuse_count(cls, value: Any) -> int | str:
        # Checked by hand: pydantic would take True as 1 and 2.0 as 2.
        if value == FUSE_AUTO or (type(value) is int and value >= 1):
            return value
        raise ValueError(FUSE_VALUE)

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


class Header(_Section):
    """The name and description of a spec."""

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

SCHEDULER_MODELS: dict[str, type[BaseModel]] = {
    "asha": AshaConfig,
    "hyperband": HyperbandConfig,
    "pbt": PbtConfig,
    "median": MedianConfig,
    "pareto-asha": ParetoAshaConfig,
    "none": NoSchedulerConfig,
}
SEARCHER_MODELS: dict[str, type[BaseModel]] = {
    "hyperopt": HyperoptConfig,
    "random": RandomSearchConfig,
    "grid": GridSearchConfig,
}
#: Scheduler kinds a spec may name.
SCHEDULER_KINDS: tuple[str, ...] = tuple(SCHEDULER_MODELS)
#: Searcher kinds a spec may name.
SEARCHER_KINDS: tuple[str, ...] = tuple(SEARCHER_MODELS)


def fuse_problem(resources: ResourcesConfig, scheduler: BaseModel | None) -> str | None:
    """Why ``resources.fuse`` cannot apply with this scheduler, or ``None``."""
    if resources.fuse != 1 and isinstance(scheduler, PbtConfig):
        return FUSE_WITH_PBT
    return None


def asha_rung_levels(grace_period: int, reduction_factor: float, max_t: int) -> list[float]:
    """The epochs below ``max_t`` where Tune's ASHA can stop a trial:
    ``grace_period * reduction_factor**s`` for ``s = 0, 1, ...`` while below
    ``max_t``. Bracket ``s`` of ``AsyncHyperBandScheduler`` has its lowest rung
    at level ``s``, so bracket ``s`` can stop a trial early only if level ``s``
    exists (a rung at ``max_t`` itself decides nothing: the trial ends there)."""
    levels: list[float] = []
    level = float(grace_period)
    while level < max_t:
        levels.append(level)
        level *= reduction_factor
    return levels


def asha_brackets_problem(scheduler: BaseModel | None, max_epochs: int) -> str | None:
    """Why ``scheduler.brackets`` of an ASHA scheduler is too many for
    ``budget.max_epochs``, or ``None`` (the rule pareto-asha applies in code:
    one bracket per rung level, plus one without early stopping)."""
    if not isinstance(scheduler, AshaConfig):
        return None
    levels = asha_rung_levels(scheduler.grace_period, scheduler.reduction_factor, max_epochs)
    maximum = len(levels) + 1
    if scheduler.brackets <= maximum:
        return None
    shown_levels = [int(v) if float(v).is_integer() else round(v, 3) for v in levels]
    return ASHA_BRACKETS.format(
        brackets=scheduler.brackets, max_epochs=max_epochs, maximum=maximum, levels=shown_levels
    )


def pbt_paths(scheduler: PbtConfig, dists: Mapping[KeyPath, Distribution]) -> tuple[KeyPath, ...]:
    """Key paths of ``dists`` that PBT perturbs: those the scheduler lists,
    or every distribution under penalties (but the frozen keys)."""
    if scheduler.hyperparam_mutations is None:
        return tuple(p for p in dists if p[0] == "penalties" and dotted(p) not in PBT_FROZEN_KEYS)
    named = {dotted(p): p for p in dists}
    return tuple(named[k] for k in scheduler.hyperparam_mutations if k in named)

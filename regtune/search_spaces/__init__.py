"""Sweep search spaces: the SweepSpec YAML schema, its distributions, presets.

Load a spec from a file, a preset name or a mapping; every problem is
reported at once, before Ray starts, as :class:`regtune.errors.SpecError`::

    from regtune.search_spaces import load_spec, list_presets

    spec = load_spec("quickstart", overrides=["budget.samples=4"])
    spec.base_config()          # one concrete training config
    spec.iter_distributions()   # (key path tuple, Distribution) pairs

:mod:`regtune.platform.tune.space` turns a spec into a Ray Tune ``param_space``.
"""

from __future__ import annotations

from regtune.search_spaces.distributions import (
    DISTRIBUTION_KINDS,
    Choice,
    Distribution,
    Grid,
    LogUniform,
    QUniform,
    RandInt,
    Uniform,
)
from regtune.search_spaces.load import (
    data_path_as_written,
    list_presets,
    load_spec,
    load_train_config,
    preset_descriptions,
    preset_path,
    train_config_from_spec,
)
from regtune.search_spaces.sections import (
    SCHEDULER_KINDS,
    SEARCHER_KINDS,
    SPEC_KEYS,
    AshaConfig,
    BudgetConfig,
    CheckpointConfig,
    FailureConfig,
    GridSearchConfig,
    HyperbandConfig,
    HyperoptConfig,
    MedianConfig,
    NoSchedulerConfig,
    Objective,
    ParetoAshaConfig,
    PbtConfig,
    RandomSearchConfig,
    ResourcesConfig,
    SchedulerConfig,
    SearcherConfig,
)
from regtune.search_spaces.spec import SweepSpec

__all__ = [
    "DISTRIBUTION_KINDS",
    "SCHEDULER_KINDS",
    "SEARCHER_KINDS",
    "SPEC_KEYS",
    "AshaConfig",
    "BudgetConfig",
    "CheckpointConfig",
    "Choice",
    "Distribution",
    "FailureConfig",
    "Grid",
    "GridSearchConfig",
    "HyperbandConfig",
    "HyperoptConfig",
    "LogUniform",
    "MedianConfig",
    "NoSchedulerConfig",
    "Objective",
    "ParetoAshaConfig",
    "PbtConfig",
    "QUniform",
    "RandInt",
    "RandomSearchConfig",
    "ResourcesConfig",
    "SchedulerConfig",
    "SearcherConfig",
    "SweepSpec",
    "Uniform",
    "data_path_as_written",
    "list_presets",
    "load_spec",
    "load_train_config",
    "preset_descriptions",
    "preset_path",
    "train_config_from_spec",
]

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

Defaults: scheduler asha for one objective, pareto-asha for several (none
when budget.max_epochs is 1: no epoch below it to stop a trial at); searcher
hyperopt, or random where hyperopt cannot work (several objectives, pbt, a
grid in the space). A ``null`` section means its defaults.

:func:`build_spec` validates a raw mapping into a :class:`SweepSpec`
(see :mod:`~regtune.search_spaces.validate`); :func:`regtune.search_spaces.load_spec`
reads one from a file or a preset.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from regtune.search_spaces.distributions import (
    Distribution,
    KeyPath,
    grid_combinations,
    iter_distributions,
    substitute,
    to_yaml_tree,
)
from regtune.search_spaces.overrides import apply_overrides
from regtune.search_spaces.sections import (
    BudgetConfig,
    CheckpointConfig,
    FailureConfig,
    Objective,
    PbtConfig,
    ResourcesConfig,
    SchedulerConfig,
    SearcherConfig,
    pbt_paths,
)
from regtune.search_spaces.validate import check_spec

__all__ = ["SweepSpec", "build_spec"]


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
        return self.budget.samples * grid_combinations(d for _, d in self.iter_distributions())

    def pbt_mutation_paths(self) -> tuple[KeyPath, ...]:
        """Key paths PBT perturbs: those listed in the scheduler, or every
        distribution under penalties; empty unless the scheduler is pbt."""
        if not isinstance(self.scheduler, PbtConfig):
            return ()
        return pbt_paths(self.scheduler, dict(self.iter_distributions()))


def build_spec(
    raw: Any,
    origin: str = "<mapping>",
    lines: Mapping[str, int] | None = None,
    overridden: Iterable[str] = (),
    *,
    check_data: bool = True,
    one_run: bool = False,
    stored: bool = False,
) -> SweepSpec:
    """Validate a raw mapping (parsed YAML) into a :class:`SweepSpec`.

    Arguments and errors as :func:`~regtune.search_spaces.validate.check_spec`
    (``stored``: a spec a sweep ran, read back as it ran).
    """
    fields = check_spec(
        raw, origin, lines, overridden, check_data=check_data, one_run=one_run, stored=stored
    )
    return SweepSpec(**fields, source=copy.deepcopy(dict(raw)))

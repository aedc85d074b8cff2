"""A SweepSpec's search space in Ray Tune's terms.

The only place a spec's distributions meet Ray: each becomes the Tune
sample object of the same meaning (checked against Ray 2.60's
``ray.tune.search.sample``)::

    uniform [lo, hi]       tune.uniform(lo, hi)           float in [lo, hi)
    loguniform [lo, hi]    tune.loguniform(lo, hi)
    quniform [lo, hi, q]   tune.quniform(lo, hi, q)       multiples of q, hi included
    randint [lo, hi]       tune.randint(lo, hi)           hi excluded
    choice [...]           tune.choice([...])
    grid [...]             tune.grid_search([...])        {"grid_search": [...]}

Fixed values pass through unchanged, so a trial's ``config`` is exactly a
TrainConfig-shaped dict (``training.epochs`` is ``budget.max_epochs``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ray import tune

from regtune.errors import SpecError
from regtune.search_spaces import (
    Choice,
    Distribution,
    Grid,
    LogUniform,
    PbtConfig,
    QUniform,
    RandInt,
    SweepSpec,
    Uniform,
)

__all__ = ["pbt_mutations", "to_param_space", "tune_domain"]

NOT_PBT = "pbt_mutations needs a spec whose scheduler is pbt; got scheduler {kind!r}"
PBT_CANNOT_PERTURB = "{path}: pbt cannot perturb a {kind}; use choice"


def tune_domain(dist: Distribution) -> Any:
    """The Ray Tune sample object (or grid) for one distribution."""
    if isinstance(dist, Uniform):
        return tune.uniform(dist.low, dist.high)
    if isinstance(dist, LogUniform):
        return tune.loguniform(dist.low, dist.high)
    if isinstance(dist, QUniform):
        return tune.quniform(dist.low, dist.high, dist.q)
    if isinstance(dist, RandInt):
        return tune.randint(dist.low, dist.high)
    if isinstance(dist, Choice):
        return tune.choice(copy.deepcopy(list(dist.options)))
    if isinstance(dist, Grid):
        return tune.grid_search(copy.deepcopy(list(dist.values)))
    raise TypeError(f"not a distribution: {dist!r}")


def to_param_space(spec: SweepSpec) -> dict[str, Any]:
    """The ``param_space`` for ``tune.Tuner``: the spec's config tree with
    Tune sample objects in place of distributions."""
    return _convert(spec.space)


def pbt_mutations(spec: SweepSpec) -> dict[str, Any]:
    """``hyperparam_mutations`` for ``PopulationBasedTraining``, nested like
    the config. Choices become plain lists: PBT then moves to a neighbouring
    value, where for a Tune domain it would multiply the current value (and
    fail on strings).

    Raises:
        SpecError: the scheduler is not pbt, or a key to perturb is a grid.
    """
    if not isinstance(spec.scheduler, PbtConfig):
        raise SpecError(NOT_PBT.format(kind=spec.scheduler.kind))
    dists = dict(spec.iter_distributions())
    mutations: dict[str, Any] = {}
    for path in spec.pbt_mutation_paths():
        dist = dists[path]
        if isinstance(dist, Grid):
            raise SpecError(PBT_CANNOT_PERTURB.format(path=".".join(path), kind=dist.kind))
        value = copy.deepcopy(list(dist.options)) if isinstance(dist, Choice) else tune_domain(dist)
        node = mutations
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return mutations


def _convert(node: Any) -> Any:
    if isinstance(node, Distribution):
        return tune_domain(node)
    if isinstance(node, Mapping):
        return {key: _convert(value) for key, value in node.items()}
    return copy.deepcopy(node)

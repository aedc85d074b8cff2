"""A SweepSpec's distributions as Ray Tune domains, sampled by Ray itself."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hyperopt.pyll.base import Apply
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.search.hyperopt import HyperOptSearch
from ray.tune.search.sample import Categorical, Domain, Float, Integer, Quantized
from ray.tune.search.variant_generator import generate_variants

from regtune.errors import SpecError
from regtune.platform.tune.space import pbt_mutations, to_param_space, tune_domain
from regtune.search_spaces import (
    Choice,
    Distribution,
    Grid,
    LogUniform,
    QUniform,
    RandInt,
    Uniform,
    list_presets,
    load_spec,
)
from regtune.trainables.config import parse_train_config

SAMPLES_PER_PRESET = 20

EVERY_KIND: dict[str, Any] = {
    "name": "every-kind",
    "dataset": "digits",
    "model": {"width": {"randint": [16, 65]}, "dropout": {"uniform": [0.0, 0.5]}},
    "training": {"lr": {"loguniform": [1e-4, 1e-2]}, "batch_size": 64},
    "penalties": {
        "l1": {"quniform": [0.0, 0.01, 0.001]},
        "adversarial": {"method": {"choice": ["none", "pgd"]}},
        "l2": {"grid": [0.0, 0.01]},
    },
    "searcher": "random",
    "budget": {"samples": 2, "max_epochs": 4},
}


def test_each_distribution_becomes_its_tune_domain() -> None:
    uniform = tune_domain(Uniform(0.1, 0.5))
    assert isinstance(uniform, Float) and isinstance(uniform.get_sampler(), Float._Uniform)
    assert (uniform.lower, uniform.upper) == (0.1, 0.5)
    log = tune_domain(LogUniform(1e-4, 1e-2))
    assert isinstance(log, Float) and isinstance(log.get_sampler(), Float._LogUniform)
    assert (log.lower, log.upper) == (1e-4, 1e-2)
    quantized = tune_domain(QUniform(0.0, 1.0, 0.25))
    assert isinstance(quantized, Float) and isinstance(quantized.get_sampler(), Quantized)
    assert quantized.get_sampler().q == 0.25
    integer = tune_domain(RandInt(2, 6))
    assert isinstance(integer, Integer) and (integer.lower, integer.upper) == (2, 6)
    choice = tune_domain(Choice(("a", {"b": 1})))
    assert isinstance(choice, Categorical) and choice.categories == ["a", {"b": 1}]
    assert tune_domain(Grid((1, 2))) == {"grid_search": [1, 2]}


def test_param_space_mirrors_the_config_tree() -> None:
    space = to_param_space(load_spec(EVERY_KIND))
    assert space["dataset"] == {"name": "digits"}
    assert space["training"]["epochs"] == 4
    assert space["training"]["batch_size"] == 64
    assert isinstance(space["model"]["width"], Integer)
    assert isinstance(space["penalties"]["adversarial"]["method"], Categorical)
    assert space["penalties"]["l2"] == {"grid_search": [0.0, 0.01]}


def test_domains_sample_within_their_bounds() -> None:
    space = to_param_space(load_spec(EVERY_KIND))
    rng = np.random.default_rng(0)
    widths = [space["model"]["width"].sample(random_state=rng) for _ in range(200)]
    assert min(widths) >= 16 and max(widths) <= 64
    l1 = [space["penalties"]["l1"].sample(random_state=rng) for _ in range(200)]
    assert all(0.0 <= v <= 0.01 for v in l1)
    assert all(abs(v / 0.001 - round(v / 0.001)) < 1e-6 for v in l1)
    lrs = [space["training"]["lr"].sample(random_state=rng) for _ in range(200)]
    assert min(lrs) >= 1e-4 and max(lrs) <= 1e-2


def resolved_configs(space: dict[str, Any], seed: int) -> Iterator[dict[str, Any]]:
    """Configs as Ray's BasicVariantGenerator would resolve them (grids expanded)."""
    for _, config in generate_variants(copy.deepcopy(space), random_state=seed):
        yield config


def domains(node: Any) -> Iterator[Domain]:
    if isinstance(node, Domain):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from domains(value)


def in_support(dist: Distribution, value: Any) -> bool:
    """Whether ``value`` is one the distribution can produce."""
    if isinstance(dist, Uniform | LogUniform):
        return isinstance(value, float) and dist.low <= value <= dist.high
    if isinstance(dist, QUniform):
        steps = value / dist.q
        return dist.low <= value <= dist.high and abs(steps - round(steps)) < 1e-6
    if isinstance(dist, RandInt):
        return isinstance(value, int) and dist.low <= value < dist.high
    if isinstance(dist, Choice):
        return value in dist.options
    if isinstance(dist, Grid):
        return value in dist.values
    raise TypeError(dist)


def value_at(config: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = config
    for key in path:
        node = node[key]
    return node


@pytest.mark.parametrize("name", list_presets())
def test_sampled_configs_of_each_preset_are_valid(name: str) -> None:
    spec = load_spec(name)
    space = to_param_space(spec)
    dists = list(spec.iter_distributions())
    seen = 0
    values: dict[tuple[str, ...], set[Any]] = {path: set() for path, _ in dists}
    for seed in range(SAMPLES_PER_PRESET):
        for config in resolved_configs(space, seed):
            parsed = parse_train_config(config)
            assert parsed.training.epochs == spec.budget.max_epochs
            for path, dist in dists:
                value = value_at(config, path)
                assert in_support(dist, value), (".".join(path), value, dist)
                values[path].add(repr(value))
            seen += 1
    assert seen == SAMPLES_PER_PRESET * spec.n_trials // spec.budget.samples
    # Every distributed key varies across samples (none stuck at one value).
    for path, dist in dists:
        options = dist.options if isinstance(dist, Choice) else getattr(dist, "values", None)
        if options is None or len(set(map(repr, options))) > 1:
            assert len(values[path]) > 1, ".".join(path)


def test_hyperopt_accepts_the_param_space() -> None:
    space = to_param_space(load_spec("dropout-l2"))
    converted = HyperOptSearch.convert_search_space(space)
    sampled = [converted["model"]["dropout"], converted["training"]["lr"]]
    sampled.append(converted["penalties"]["l2"])
    assert all(isinstance(node, Apply) for node in sampled)
    assert converted["training"]["epochs"] == 30


PBT_SPEC: dict[str, Any] = {
    "name": "pbt",
    "dataset": "adult",
    "training": {"lr": {"loguniform": [1e-4, 1e-2]}},
    "penalties": {
        "l2": {"loguniform": [1e-6, 1e-2]},
        "fairness": {"kind": {"choice": ["dp", "eo"]}, "strength": {"uniform": [0.0, 1.0]}},
    },
    "scheduler": {"kind": "pbt", "perturbation_interval": 2},
    "searcher": "random",
    "budget": {"samples": 4, "max_epochs": 6},
    "checkpoint": {"every": 2},
}


def test_pbt_mutations_cover_the_penalty_distributions() -> None:
    mutations = pbt_mutations(load_spec(PBT_SPEC))
    assert set(mutations) == {"penalties"}
    penalties = mutations["penalties"]
    assert isinstance(penalties["l2"], Float)
    # PBT moves between list values; a Tune domain would be multiplied.
    assert penalties["fairness"]["kind"] == ["dp", "eo"]
    assert isinstance(penalties["fairness"]["strength"], Float)
    PopulationBasedTraining(
        time_attr="training_iteration",
        metric="val_acc",
        mode="max",
        perturbation_interval=2,
        hyperparam_mutations=mutations,
    )


def test_pbt_mutations_of_listed_keys() -> None:
    spec = load_spec(PBT_SPEC, overrides=["scheduler.hyperparam_mutations=[training.lr]"])
    mutations = pbt_mutations(spec)
    assert set(mutations) == {"training"} and isinstance(mutations["training"]["lr"], Float)


def test_pbt_mutations_need_a_pbt_spec() -> None:
    with pytest.raises(SpecError, match="scheduler is pbt; got scheduler 'asha'"):
        pbt_mutations(load_spec("quickstart"))


@pytest.mark.ray
def test_tune_runs_trials_with_the_param_space(ray_local: None, tmp_path: Path) -> None:
    def check_config(config: dict[str, Any]) -> None:
        """A trial that only parses its config, as the real trainable does first.

        Defined here, it goes to the trial's worker by value: the worker does
        not import this test module (pytest, hyperopt, numpy: ~1 CPU-s).
        """
        parsed = parse_train_config(config)
        tune.report({"val_acc": parsed.penalties.l2 + parsed.model.dropout})

    spec = load_spec("quickstart", overrides=["budget.samples=3"])
    tuner = tune.Tuner(
        check_config,
        param_space=to_param_space(spec),
        tune_config=tune.TuneConfig(
            metric="val_acc",
            mode="max",
            num_samples=spec.budget.samples,
            search_alg=HyperOptSearch(random_state_seed=0),
            # One worker process runs the three trials in turn.
            max_concurrent_trials=1,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert [r.error for r in results] == [None] * 3
    for result in results:
        assert result.config["training"]["epochs"] == spec.budget.max_epochs
        assert 1e-6 <= result.config["penalties"]["l2"] <= 1e-2

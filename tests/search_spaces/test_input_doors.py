"""Specs and training configs refused at load that used to be accepted, or
refused with a poor message: seeds beyond what numpy/torch take, schedulers
that could stop nothing early, misspelt fixed-list values, a distribution in a
training config, repeated choice/grid values, PBT factors that change
nothing, a GPU no trial uses, a URI ``dataset.path``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ray.tune.schedulers import HyperBandScheduler

from regtune.errors import SpecError
from regtune.search_spaces import load_spec, load_train_config
from regtune.search_spaces.distributions import repeated_value
from regtune.search_spaces.sections import SEARCHER_SEED_MAX
from regtune.trainables.config import SEED_RANGE, parse_train_config


def _spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "doors",
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 16, "depth": 1},
        "penalties": {"l2": {"loguniform": [1e-5, 1e-2]}},
        "budget": {"samples": 4, "max_epochs": 4},
    }
    return base | over


def _problems(source: Any, overrides: tuple[str, ...] = ()) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        load_spec(source, overrides)
    return {p.path: p.message for p in info.value.problems}


def _message(source: Any, overrides: tuple[str, ...] = (), *, train: bool = False) -> str:
    with pytest.raises(SpecError) as info:
        (load_train_config if train else load_spec)(source, overrides)
    return str(info.value)


# -- seeds --------------------------------------------------------------------


def test_a_hyperopt_seed_numpy_cannot_take_is_refused_at_load_with_the_range() -> None:
    for seed in (2**32, -1):
        problems = _problems(_spec(searcher={"kind": "hyperopt", "seed": seed}))
        assert problems == {
            "searcher.seed": (
                "must be a whole number from 0 to 4294967295 (2**32 - 1: searcher hyperopt "
                f"seeds numpy's legacy random state, which takes no other) (got {seed})"
            )
        }
    spec = load_spec(_spec(searcher={"kind": "hyperopt", "seed": SEARCHER_SEED_MAX}))
    assert spec.searcher.seed == SEARCHER_SEED_MAX
    # What hyperopt's searcher does with it (Ray's HyperOptSearch seeds this).
    np.random.RandomState(SEARCHER_SEED_MAX)
    with pytest.raises(ValueError, match="Seed must be between 0 and 2\\*\\*32 - 1"):
        np.random.RandomState(SEARCHER_SEED_MAX + 1)


def test_a_random_searcher_seed_needs_only_to_be_non_negative() -> None:
    """Ray's random searcher seeds numpy's default_rng, which takes any size (a seed
    above 2**32 - 1 ran before that cap, and runs): only a negative seed is refused."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    problems = _problems(_spec(searcher={"kind": "random", "seed": -1}))
    assert problems == {
        "searcher.seed": (
            "must be a whole number >= 0 (searcher random seeds numpy's default_rng, which "
            "takes no negative seed) (got -1)"
        )
    }
    with pytest.raises(ValueError, match="negative"):
        np.random.default_rng(-1)
    for seed in (0, SEARCHER_SEED_MAX + 1, 2**40, 2**64 + 5):
        spec = load_spec(_spec(searcher={"kind": "random", "seed": seed}))
        assert spec.searcher.seed == seed
        search = BasicVariantGenerator(random_state=seed)
        search.set_search_properties(None, None, {"l2": tune.loguniform(1e-5, 1e-2)})
        np.random.default_rng(seed).random()


def test_a_training_seed_beyond_64_bits_is_refused_at_load_with_the_range() -> None:
    message = _message("quickstart", ("training.seed=18446744073709551616",))
    assert (
        "--set training.seed=18446744073709551616: training.seed: must be a whole number "
        "from -2**63 to 2**63 - 1" in message
    )
    message = _message({"dataset": {"name": "digits", "split_seed": 2**63}}, train=True)
    assert "dataset.split_seed: must be a whole number from -2**63 to 2**63 - 1" in message
    # Both ends are taken, by the config and by torch (negative seeds too).
    for seed in SEED_RANGE:
        assert parse_train_config({"dataset": "digits", "training": {"seed": seed}})
        torch.Generator().manual_seed(seed)


# -- schedulers that stop nothing early ----------------------------------------


@pytest.mark.parametrize(
    ("scheduler", "objectives"),
    [
        ({"kind": "asha", "grace_period": 4}, None),
        ({"kind": "median", "grace_period": 4}, None),
        ({"kind": "pareto-asha", "grace_period": 6}, ["val_acc", "val_loss"]),
    ],
)
def test_a_grace_period_not_below_max_epochs_is_refused(
    scheduler: dict[str, Any], objectives: list[str] | None
) -> None:
    extra = {"objectives": objectives} if objectives else {}
    problems = _problems(_spec(scheduler=scheduler, **extra))
    grace = scheduler["grace_period"]
    assert problems == {
        "scheduler.grace_period": (
            f"scheduler {scheduler['kind']} would stop no trial early: grace_period {grace} "
            "is not below budget.max_epochs 4, and every trial ends at max_epochs anyway; "
            f"set grace_period to at most 3, raise budget.max_epochs above {grace}, "
            "or use scheduler.kind none"
        )
    }
    load_spec(_spec(scheduler=scheduler | {"grace_period": 3}, **extra))


def test_the_quickstart_at_its_grace_period_names_the_set_and_what_works() -> None:
    message = _message("quickstart", ("budget.max_epochs=2",))
    assert message.endswith(
        "scheduler.grace_period: scheduler asha would stop no trial early: grace_period 2 "
        "is not below budget.max_epochs 2, and every trial ends at max_epochs anyway; set "
        "grace_period to at most 1, raise budget.max_epochs above 2, or use scheduler.kind "
        "none (budget.max_epochs is set by --set budget.max_epochs=2)"
    )
    assert load_spec("quickstart", ["budget.max_epochs=2", "scheduler.grace_period=1"])
    assert load_spec("quickstart", ["budget.max_epochs=3"])
    # One training run uses no scheduler.
    assert load_train_config("quickstart", ["budget.max_epochs=2"])["training"]["epochs"] == 2


def test_one_epoch_takes_no_early_stopping_scheduler_and_defaults_to_none() -> None:
    message = _message(_spec(scheduler={"kind": "asha"}, budget={"max_epochs": 1}))
    assert "with budget.max_epochs 1 no scheduler can stop a trial earlier" in message
    assert load_spec(_spec(budget={"samples": 2, "max_epochs": 1})).scheduler.kind == "none"
    several = _spec(objectives=["val_acc", "val_loss"], budget={"max_epochs": 1})
    assert load_spec(several).scheduler.kind == "none"
    assert load_spec(_spec(budget={"max_epochs": 2})).scheduler.kind == "asha"


def test_hyperband_without_a_bracket_that_stops_early_is_refused() -> None:
    problems = _problems(_spec(scheduler={"kind": "hyperband", "reduction_factor": 100}))
    assert problems == {
        "scheduler.reduction_factor": (
            "scheduler hyperband would stop no trial early: reduction_factor 100 is above "
            "budget.max_epochs 4, so no bracket has a milestone below max_epochs; set "
            "reduction_factor to at most 4, raise budget.max_epochs to at least 100, or use "
            "scheduler.kind none"
        )
    }
    one = _problems(_spec(scheduler={"kind": "hyperband"}, budget={"max_epochs": 1}))
    assert list(one) == ["scheduler.reduction_factor"]
    assert load_spec(_spec(scheduler={"kind": "hyperband", "reduction_factor": 4}))


@pytest.mark.parametrize("max_t", [1, 2, 3, 4, 5, 8, 9, 27])
@pytest.mark.parametrize("factor", [1.5, 2.0, 3.0, 4.0, 5.0, 9.0, 100.0])
def test_the_hyperband_rule_is_rays_own(max_t: int, factor: float) -> None:
    """Accepted exactly when Ray's HyperBand has a bracket whose first
    milestone (``int(max_t / factor**s)``, skipped at 0) is below max_t."""
    tune = HyperBandScheduler(max_t=max_t, reduction_factor=factor)
    r0 = [tune._get_r0(s) for s in range(tune._s_max_1)]  # type: ignore[attr-defined]
    stops = any(0 < r < max_t for r in r0)
    spec = _spec(scheduler={"kind": "hyperband", "reduction_factor": factor})
    spec["budget"] = {"samples": 4, "max_epochs": max_t}
    if stops:
        load_spec(spec)
    else:
        assert "scheduler.reduction_factor" in _problems(spec)


# -- did you mean ---------------------------------------------------------------


def test_an_unknown_key_in_an_objective_is_named_with_a_suggestion() -> None:
    problems = _problems(_spec(objectives=[{"metrc": "val_acc"}]))
    assert problems == {
        "objectives.0.metrc": "unknown key 'metrc'; allowed: metric, mode (did you mean 'metric'?)"
    }
    assert "objectives.0.metric: an objective needs a metric; allowed: train_loss" in (
        _message(_spec(objectives=[{"mode": "max"}]))
    )


@pytest.mark.parametrize(
    ("overrides", "path", "suggestion"),
    [
        (("objectives=[val_ac]",), "objectives.0.metric", "val_acc"),
        (("scheduler.kind=hyperbnad",), "scheduler.kind", "hyperband"),
        (("searcher=hyperop",), "searcher.kind", "hyperopt"),
        (("dataset=digitz",), "dataset.name", "digits"),
        (("model.arch=mpl",), "model.arch", "mlp"),
        (("training.optimizer=sdg",), "training.optimizer", "sgd"),
        (("training.lr_schedule=cosin",), "training.lr_schedule", "cosine"),
        (
            ("training.early_stopping.patience=2", "training.early_stopping.metric=val_los"),
            "training.early_stopping",
            "val_loss",
        ),
    ],
)
def test_a_misspelt_fixed_list_value_gets_a_suggestion(
    overrides: tuple[str, ...], path: str, suggestion: str
) -> None:
    problems = _problems("quickstart", overrides)
    assert f"(did you mean {suggestion!r}?)" in problems[path]


def test_a_mode_contradicting_a_metric_names_the_set_that_gave_the_metric() -> None:
    message = _message("quickstart", ("objectives.0.metric=val_loss",))
    assert message.splitlines()[1] == (
        "line 22: objectives.0.mode: mode 'max' contradicts metric 'val_loss', for which "
        "'min' is better; omit mode to use 'min' (objectives.0.metric is set by --set "
        "objectives.0.metric=val_loss)"
    )


# -- a distribution in a training config -----------------------------------------


def test_a_distribution_in_a_training_config_says_where_distributions_belong(
    tmp_path: Path,
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(
        "dataset: digits\npenalties: {l2: {loguniform: [1.0e-5, 1.0e-2]}}\n"
        "model: {arch: {choice: [mlp, logreg]}}\n",
        encoding="utf-8",
    )
    message = _message(config, train=True)
    assert message.splitlines()[1:] == [
        "line 2: penalties.l2: a training config takes one value here, not a distribution "
        "(loguniform): write one value, e.g. 0.0003162 (what regtune train takes for it from "
        "a sweep spec), or make the file a sweep spec (add a name, and budget.max_epochs in "
        "place of training.epochs) to search it with regtune sweep",
        "line 3: model.arch: a training config takes one value here, not a distribution "
        "(choice): write one value, e.g. 'mlp' (what regtune train takes for it from a sweep "
        "spec), or make the file a sweep spec (add a name, and budget.max_epochs in place "
        "of training.epochs) to search it with regtune sweep",
    ]


# -- repeated values, idle PBT factors, an idle GPU ------------------------------


def test_a_value_listed_twice_in_a_choice_or_grid_is_refused() -> None:
    problems = _problems(_spec(training={"lr": {"choice": [0.1, 0.01, 0.1]}}))
    assert problems == {
        "training.lr.choice": (
            "0.1 is listed twice (values 0 and 2): a choice would draw it more often than the "
            "others; list each value once"
        )
    }
    grid = _spec(penalties={"l2": {"grid": [0.0, 1e-3, 0.0]}}, searcher={"kind": "grid"})
    assert _problems(grid)["penalties.l2.grid"].startswith(
        "0.0 is listed twice (values 0 and 2): the grid would run every combination"
    )
    # Written apart, equal once read: "1e-3" (a YAML string) is 0.001.
    spelt = _spec(training={"lr": {"choice": [1e-3, "1e-3"]}})
    assert _problems(spelt)["training.lr.choice"].startswith("0.001 is listed twice")
    assert repeated_value("choice", [True, 1]) is None
    assert repeated_value("choice", [1, 1.0]) is not None
    assert repeated_value("grid", [{"method": "pgd"}, {"method": "pgd"}]) is not None


def test_pbt_factors_that_never_change_a_value_are_refused() -> None:
    pbt = {"kind": "pbt", "perturbation_factors": [1.0, 1.0]}
    problems = _problems(_spec(scheduler=pbt, checkpoint={"every": 1}))
    assert problems == {
        "scheduler.perturbation_factors": (
            "perturbation factors [1.0, 1.0] are all 1.0, so pbt would never change a value "
            "(only resample it); use factors above and below 1, e.g. [1.2, 0.8] "
            "(got [1.0, 1.0])"
        )
    }
    assert load_spec(
        _spec(scheduler=pbt | {"perturbation_factors": [1.0, 0.8]}, checkpoint={"every": 1})
    )


def test_a_gpu_no_trial_trains_on_is_refused_for_a_sweep_only() -> None:
    message = _message("quickstart", ("resources.gpu=0.5", "training.device=cpu"))
    assert (
        "--set resources.gpu=0.5: resources.gpu: resources.gpu 0.5 holds a GPU for each "
        "trial, but training.device is 'cpu' in every trial" in message
    )
    assert load_train_config("quickstart", ["resources.gpu=0.5", "training.device=cpu"])
    assert load_spec("quickstart", ["resources.gpu=0.5", "training.device={choice: [cpu, cuda]}"])


# -- a URI dataset.path -------------------------------------------------------------


URI_PROBLEM = (
    "dataset.path: must be a local file path; got the URI 's3://bucket/data.csv': the file is "
    "read from this machine's disk"
)


def test_a_uri_dataset_path_is_refused_plainly_at_every_door() -> None:
    dataset = {"name": "csv", "path": "s3://bucket/data.csv", "label": "y"}
    for check_data in (True, False):
        with pytest.raises(SpecError) as info:
            load_spec(_spec(dataset=dataset), check_data=check_data)
        assert URI_PROBLEM in str(info.value)
    assert URI_PROBLEM in _message({"dataset": dataset}, train=True)


@pytest.mark.parametrize("kind", ["train", "sweep"])
def test_a_data_path_under_an_unknown_user_is_a_plain_problem(kind: str, tmp_path: Path) -> None:
    """``~user/...`` naming no user: the data-path problem, not pathlib's RuntimeError."""
    sweep = "name: s\nbudget: {max_epochs: 2}\nscheduler: {kind: none}\n" if kind == "sweep" else ""
    training = "" if kind == "sweep" else "training: {epochs: 1}\n"
    file = tmp_path / "spec.yaml"
    file.write_text(
        sweep + 'dataset: {name: csv, path: "~nosuchuser-rt/x.csv", label: y}\n' + training
    )
    load = load_spec if kind == "sweep" else load_train_config
    with pytest.raises(SpecError, match="cannot expand '~nosuchuser-rt'"):
        load(file)


def test_cuda_without_a_trial_gpu_is_refused_for_a_sweep_only() -> None:
    """regtune train holds no trial resources: it was refused with "device 'cuda'
    needs resources.gpu > 0", which it cannot use; the trainer checks that torch
    sees a CUDA device instead."""
    assert "device 'cuda' needs resources.gpu > 0" in _message(
        "quickstart", ("training.device=cuda",)
    )
    config = load_train_config("quickstart", ["training.device=cuda"])
    assert config["training"]["device"] == "cuda"

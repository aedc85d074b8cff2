"""SweepSpec validation, loading, overrides and the distributions it parses."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import regtune.search_spaces as search_spaces
from regtune.errors import SpecError
from regtune.search_spaces import (
    SPEC_KEYS,
    Choice,
    FailureConfig,
    Grid,
    LogUniform,
    MedianConfig,
    Objective,
    QUniform,
    RandInt,
    Uniform,
    load_spec,
    load_train_config,
    train_config_from_spec,
)
from regtune.search_spaces import distributions as dist_mod
from regtune.search_spaces.distributions import parse_distribution
from regtune.search_spaces.load import YAML_DUPLICATE_KEY
from regtune.search_spaces.overrides import parse_override
from regtune.search_spaces.probe import PAIR_VALUES, pair_values
from regtune.trainables.config import parse_train_config

BASE: dict[str, Any] = {
    "name": "unit",
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 32, "dropout": {"uniform": [0.0, 0.5]}},
    "training": {"lr": 0.001},
    "penalties": {"l2": {"loguniform": [1.0e-6, 1.0e-1]}},
    "objectives": [{"metric": "val_acc", "mode": "max"}],
    "scheduler": {"kind": "asha"},
    "searcher": {"kind": "hyperopt", "max_concurrent": 2},
    "budget": {"samples": 4, "max_epochs": 5},
    "resources": {"cpu": 1, "gpu": 0},
    "failure": {"max_retries": 1},
    "checkpoint": {"every": 0},
}


def merged(patch: Mapping[str, Any], base: Mapping[str, Any] = BASE) -> dict[str, Any]:
    """``base`` with ``patch`` merged in; a value of DROP removes the key."""
    out = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if value is DROP:
            out.pop(key, None)
        elif (
            isinstance(value, Mapping)
            and isinstance(out.get(key), Mapping)
            and not dist_mod.is_distribution(value)
            and not dist_mod.is_distribution(out[key])
        ):
            out[key] = merged(value, out[key])
        else:
            out[key] = copy.deepcopy(value)
    return out


DROP = object()


def problem_lines(exc: SpecError) -> list[str]:
    """The problem lines of a spec error (the first line is the header)."""
    return str(exc).splitlines()[1:]


def test_base_spec_is_valid() -> None:
    spec = load_spec(BASE)
    assert spec.name == "unit"
    assert spec.space["training"]["epochs"] == 5
    assert dict(spec.iter_distributions()) == {
        ("model", "dropout"): Uniform(0.0, 0.5),
        ("penalties", "l2"): LogUniform(1e-6, 1e-1),
    }


# (id, patch, key path the message must name, fragment the message must hold)
BAD_SPECS: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown-top-key", {"bogus": 1}, "bogus", "allowed: name, description"),
    ("misspelt-top-key", {"penalty": {}}, "penalty", "did you mean 'penalties'?"),
    ("unknown-penalty", {"penalties": {"l3": 0.1}}, "penalties.l3", "allowed: l1, l2"),
    ("unknown-model-key", {"model": {"widht": 3}}, "model.widht", "did you mean 'width'?"),
    (
        "misspelt-distribution",
        {"penalties": {"l2": {"loguniforn": [1e-6, 1e-1]}}},
        "penalties.l2.loguniforn",
        "did you mean 'loguniform'?",
    ),
    (
        "misspelt-distribution-on-submodel",
        {"penalties": {"adversarial": {"choise": [{"method": "pgd"}]}}},
        "penalties.adversarial.choise",
        "did you mean the distribution 'choice'?",
    ),
    (
        "two-distributions-in-one",
        {"penalties": {"l2": {"uniform": [0, 1], "grid": [0.1]}}},
        "penalties.l2",
        "exactly one key",
    ),
    (
        "mapping-for-a-scalar",
        {"penalties": {"l2": {"low": 1, "high": 2}}},
        "penalties.l2",
        "one-key distribution mapping",
    ),
    ("wrong-type", {"model": {"width": "wide"}}, "model.width", "valid integer"),
    ("section-not-mapping", {"budget": 5}, "budget", "must be a mapping"),
    ("unknown-dataset", {"dataset": "mnist"}, "dataset.name", "allowed: digits"),
    ("unknown-arch", {"model": {"arch": "resnet"}}, "model.arch", "'mlp'"),
    (
        "dataset-sampled",
        {"dataset": {"name": {"choice": ["digits", "adult"]}}},
        "dataset.name",
        "distributions are not allowed under dataset",
    ),
    (
        "distribution-in-list",
        {"dataset": {"name": "digits", "features": [{"choice": ["a", "b"]}]}},
        "dataset.features",
        "inside a list",
    ),
    ("non-finite", {"penalties": {"l1": math.inf}}, "penalties.l1", "finite"),
    (
        "loguniform-low-not-positive",
        {"penalties": {"l2": {"loguniform": [-1.0, 1.0]}}},
        "penalties.l2.loguniform",
        "low must be > 0 (got -1.0)",
    ),
    (
        "uniform-empty-range",
        {"model": {"dropout": {"uniform": [0.5, 0.5]}}},
        "model.dropout.uniform",
        "low must be < high",
    ),
    (
        "uniform-reversed",
        {"model": {"dropout": {"uniform": [0.4, 0.1]}}},
        "model.dropout.uniform",
        "low must be < high",
    ),
    (
        "uniform-arity",
        {"model": {"dropout": {"uniform": [0.1]}}},
        "model.dropout.uniform",
        "takes [low, high]",
    ),
    (
        "uniform-not-a-list",
        {"model": {"dropout": {"uniform": 0.1}}},
        "model.dropout.uniform",
        "takes a list",
    ),
    (
        "uniform-not-a-number",
        {"model": {"dropout": {"uniform": [0.0, "half"]}}},
        "model.dropout.uniform",
        "high must be a number",
    ),
    (
        "uniform-infinite",
        {"penalties": {"l1": {"uniform": [0.0, math.inf]}}},
        "penalties.l1.uniform",
        "high must be finite",
    ),
    (
        "quniform-q-not-positive",
        {"penalties": {"l1": {"quniform": [0.0, 1.0, 0.0]}}},
        "penalties.l1.quniform",
        "q must be > 0",
    ),
    (
        "quniform-off-grid",
        {"penalties": {"l1": {"quniform": [0.0, 0.25, 0.1]}}},
        "penalties.l1.quniform",
        "multiples of q",
    ),
    (
        "randint-not-integer",
        {"model": {"width": {"randint": [8, 64.5]}}},
        "model.width.randint",
        "high must be an integer",
    ),
    (
        "randint-empty",
        {"model": {"width": {"randint": [64, 8]}}},
        "model.width.randint",
        "low must be < high",
    ),
    (
        "randint-one-value",
        {"model": {"width": {"randint": [8, 9]}}},
        "model.width.randint",
        "single value",
    ),
    (
        "choice-empty",
        {"model": {"arch": {"choice": []}}},
        "model.arch.choice",
        "at least one value",
    ),
    (
        "grid-empty",
        {"model": {"arch": {"grid": []}}, "searcher": {"kind": "random"}},
        "model.arch.grid",
        "at least one value",
    ),
    (
        "choice-nested",
        {"model": {"arch": {"choice": [{"uniform": [0, 1]}]}}},
        "model.arch.choice",
        "cannot contain distributions",
    ),
    (
        "sample-out-of-range",
        {"model": {"dropout": {"uniform": [0.0, 1.5]}}},
        "model.dropout",
        "uniform can produce 1.5, which the trainable rejects",
    ),
    (
        "continuous-on-integer-key",
        {"model": {"width": {"uniform": [32, 256]}}},
        "model.width",
        "valid integer",
    ),
    (
        "choice-option-invalid",
        {"penalties": {"adversarial": {"method": {"choice": ["pgd", "cw"]}}}},
        "penalties.adversarial.method",
        "choice can produce 'cw'",
    ),
    (
        "sub-mapping-option-invalid",
        {"penalties": {"adversarial": {"choice": [{"method": "pgd"}, {"eps": -1}]}}},
        "penalties.adversarial",
        "penalties.adversarial.eps",
    ),
    (
        "sample-breaks-a-whole-config-rule",
        {
            "dataset": "adult",
            "penalties": {"mixup": {"uniform": [0.0, 0.4]}, "fairness": {"kind": "dp"}},
        },
        "penalties.mixup",
        "uniform can produce 0.4, which the trainable rejects: penalties.mixup cannot be",
    ),
    (
        "option-breaks-a-whole-config-rule",
        {"penalties": {"adversarial": {"method": {"choice": ["none", "pgd"]}, "steps": 30}}},
        "penalties.adversarial.method",
        "choice can produce 'pgd', which the trainable rejects: training.robust_steps: must exceed",
    ),
    (
        "pair-breaks-a-whole-config-rule",
        {
            "penalties": {
                "adversarial": {
                    "method": {"choice": ["none", "pgd"]},
                    "steps": {"randint": [3, 40]},
                }
            },
        },
        "penalties.adversarial.method",
        "choice value 'pgd' together with penalties.adversarial.steps = 39 is rejected",
    ),
    (
        "pair-of-long-grids-breaks-a-whole-config-rule",
        {
            "searcher": "grid",
            "model": {"dropout": 0.1},
            "penalties": {
                "l2": 0.0,
                "adversarial": {"method": "pgd", "steps": {"grid": list(range(1, 20))}},
            },
            "training": {"robust_steps": {"grid": list(range(8, 48))}},
        },
        "training.robust_steps",
        "grid value 8 together with penalties.adversarial.steps = 8 is rejected",
    ),
    (
        "early-stopping-metric",
        {"training": {"early_stopping": {"metric": "accuracy"}}},
        "training.early_stopping",
        "unknown metric 'accuracy'",
    ),
    (
        "epochs-in-training",
        {"training": {"epochs": 5}},
        "training.epochs",
        "budget.max_epochs",
    ),
    ("unknown-metric", {"objectives": ["accuracy"]}, "objectives.0.metric", "allowed: train_loss"),
    ("no-objectives", {"objectives": []}, "objectives", "at least one objective"),
    (
        "mode-contradicts-metric",
        {"objectives": {"metric": "val_loss", "mode": "max"}},
        "objectives.mode",
        "'min' is better",
    ),
    ("bad-mode", {"objectives": [{"metric": "val_acc", "mode": "up"}]}, "objectives.0.mode", ""),
    (
        "duplicate-objective",
        {"objectives": ["val_acc", "val_acc"], "searcher": "random", "scheduler": "none"},
        "objectives.1.metric",
        "more than once",
    ),
    (
        "objective-metric-not-a-name",
        {"objectives": [{"metric": ["val_acc"]}]},
        "objectives.0.metric",
        "unknown metric ['val_acc']",
    ),
    (
        "objective-shape",
        {"objectives": [3]},
        "objectives.0",
        "metric name or",
    ),
    ("unknown-scheduler", {"scheduler": "asha2"}, "scheduler.kind", "allowed: asha, hyperband"),
    ("unknown-searcher", {"searcher": {"kind": "bohb"}}, "searcher.kind", "allowed: hyperopt"),
    (
        "key-of-other-scheduler",
        {"scheduler": {"kind": "asha", "perturbation_interval": 2}},
        "scheduler.perturbation_interval",
        "allowed: kind, grace_period",
    ),
    (
        "key-of-other-searcher",
        {"searcher": {"kind": "grid", "seed": 1}, "penalties": {"l2": {"grid": [0.0]}}},
        "searcher.seed",
        "allowed: kind, max_concurrent",
    ),
    (
        "reduction-factor",
        {"scheduler": {"reduction_factor": 1}},
        "scheduler.reduction_factor",
        "greater than 1",
    ),
    (
        "grace-beyond-budget",
        {"scheduler": {"grace_period": 9}},
        "scheduler.grace_period",
        "is not below budget.max_epochs 5",
    ),
    (
        "several-objectives-single-scheduler",
        {"objectives": ["val_acc", "gap"], "searcher": "random"},
        "scheduler.kind",
        "use scheduler pareto-asha",
    ),
    (
        "pareto-one-objective",
        {"scheduler": {"kind": "pareto-asha"}},
        "scheduler.kind",
        "at least 2 objectives",
    ),
    (
        "hyperopt-several-objectives",
        {"objectives": ["val_acc", "gap"], "scheduler": "pareto-asha"},
        "searcher.kind",
        "use searcher random or grid",
    ),
    (
        "hyperopt-grid",
        {"penalties": {"l2": {"grid": [0.0, 0.1]}}},
        "penalties.l2.grid",
        "use searcher grid or random",
    ),
    (
        "grid-too-large",
        {
            "searcher": "random",
            "penalties": {
                "l2": {"grid": [i / 1000 for i in range(1000)]},
                "l1": {"grid": [i / 1001 for i in range(1001)]},
            },
        },
        "penalties.l1.grid",
        "the grids make 1,001,000 combinations (one trial each); at most 1,000,000",
    ),
    (
        "grid-searcher-non-grid",
        {"searcher": "grid"},
        "penalties.l2.loguniform",
        "searcher grid enumerates only grid values",
    ),
    (
        "nothing-to-search",
        {"model": {"dropout": 0.1}, "penalties": {"l2": 0.1}},
        "searcher",
        "samples nothing",
    ),
    ("samples", {"budget": {"samples": 0}}, "budget.samples", "greater than or equal to 1"),
    ("max-epochs", {"budget": {"max_epochs": 0}}, "budget.max_epochs", "greater than or equal"),
    ("time-limit", {"budget": {"time_limit_s": -5}}, "budget.time_limit_s", "greater than 0"),
    ("cpu", {"resources": {"cpu": 0}}, "resources.cpu", "greater than 0"),
    ("cpu-infinite", {"resources": {"cpu": float("inf")}}, "resources.cpu", "finite number"),
    (
        "time-limit-infinite",
        {"budget": {"time_limit_s": float("inf")}},
        "budget.time_limit_s",
        "finite number",
    ),
    ("gpu-negative", {"resources": {"gpu": -1}}, "resources.gpu", "greater than or equal to 0"),
    ("gpu-fraction-above-one", {"resources": {"gpu": 1.5}}, "resources.gpu", "whole number"),
    ("retries", {"failure": {"max_retries": -1}}, "failure.max_retries", "greater than or"),
    ("checkpoint", {"checkpoint": {"every": -1}}, "checkpoint.every", "greater than or equal"),
    ("name-chars", {"name": "L2 Path"}, "name", "lowercase letters"),
    ("name-missing", {"name": DROP}, "name", "Field required"),
    ("dataset-missing", {"dataset": DROP}, "dataset", "Field required"),
    (
        "robust-objective-without-eval",
        {"objectives": ["robust_acc"], "training": {"robust_every": 0}},
        "training.robust_every",
        "robust_acc is measured only",
    ),
    (
        "fairness-metric-without-sensitive",
        {"objectives": ["val_acc", "dp_diff"], "scheduler": "none", "searcher": "random"},
        "objectives.1.metric",
        "sensitive attribute",
    ),
    (
        "fairness-penalty-without-sensitive",
        {"penalties": {"fairness": {"kind": {"choice": ["none", "eo"]}}}},
        "penalties.fairness.kind",
        "sensitive attribute",
    ),
    (
        "cnn-on-tabular",
        {"dataset": "adult", "model": {"arch": "cnn"}},
        "model.arch",
        "image dataset",
    ),
    ("cuda-without-gpu", {"training": {"device": "cuda"}}, "training.device", "resources.gpu"),
    (
        "pbt-with-hyperopt",
        {"scheduler": {"kind": "pbt"}, "searcher": "hyperopt", "checkpoint": {"every": 1}},
        "searcher.kind",
        "use searcher random",
    ),
    (
        "pbt-without-checkpoints",
        {"scheduler": {"kind": "pbt"}, "searcher": "random"},
        "checkpoint.every",
        "at least 1",
    ),
    (
        "pbt-interval-beyond-budget",
        {
            "scheduler": {"kind": "pbt", "perturbation_interval": 5},
            "searcher": "random",
            "checkpoint": {"every": 1},
        },
        "scheduler.perturbation_interval",
        "< budget.max_epochs (5)",
    ),
    (
        "pbt-grid",
        {
            "scheduler": {"kind": "pbt"},
            "searcher": "random",
            "checkpoint": {"every": 1},
            "penalties": {"l2": {"grid": [0.0, 0.1]}},
        },
        "penalties.l2.grid",
        "cannot perturb a grid",
    ),
    (
        "pbt-drift-out-of-range",
        {
            "scheduler": {"kind": "pbt"},
            "searcher": "random",
            "checkpoint": {"every": 1},
            "penalties": {"label_smoothing": {"uniform": [0.0, 0.2]}},
        },
        "penalties.label_smoothing",
        "can drift from [0.0, 0.2]",
    ),
    (
        "pbt-unknown-mutation",
        {
            "scheduler": {"kind": "pbt", "hyperparam_mutations": ["penalties.l1"]},
            "searcher": "random",
            "checkpoint": {"every": 1},
        },
        "scheduler.hyperparam_mutations.0",
        "not a distribution of this spec",
    ),
    (
        "pbt-model-mutation",
        {
            "scheduler": {"kind": "pbt", "hyperparam_mutations": ["model.dropout"]},
            "searcher": "random",
            "checkpoint": {"every": 1},
        },
        "scheduler.hyperparam_mutations.0",
        "cannot change mid-training",
    ),
    (
        "pbt-nothing-to-perturb",
        {
            "scheduler": {"kind": "pbt"},
            "searcher": "random",
            "checkpoint": {"every": 1},
            "penalties": {"l2": 0.1},
        },
        "scheduler.hyperparam_mutations",
        "needs a distribution to perturb",
    ),
    (
        "pbt-factors",
        {
            "scheduler": {"kind": "pbt", "perturbation_factors": [1.2, 0.0]},
            "searcher": "random",
            "checkpoint": {"every": 1},
        },
        "scheduler.perturbation_factors",
        "factors must be > 0",
    ),
    ("fuse-zero", {"resources": {"fuse": 0}}, "resources.fuse", "whole number >= 1"),
    ("fuse-negative", {"resources": {"fuse": -2}}, "resources.fuse", "whole number >= 1"),
    ("fuse-fraction", {"resources": {"fuse": 2.5}}, "resources.fuse", "or 'auto'"),
    ("fuse-whole-float", {"resources": {"fuse": 4.0}}, "resources.fuse", "whole number"),
    ("fuse-bool", {"resources": {"fuse": True}}, "resources.fuse", "whole number"),
    ("fuse-word", {"resources": {"fuse": "many"}}, "resources.fuse", "or 'auto'"),
    (
        "fuse-with-pbt",
        {
            "resources": {"fuse": 4},
            "scheduler": {"kind": "pbt"},
            "searcher": "random",
            "checkpoint": {"every": 1},
        },
        "resources.fuse",
        "scheduler pbt",
    ),
    (
        "fuse-auto-with-pbt",
        {
            "resources": {"fuse": "auto"},
            "scheduler": {"kind": "pbt"},
            "searcher": "random",
            "checkpoint": {"every": 1},
        },
        "resources.fuse",
        "train unfused",
    ),
]


@pytest.mark.parametrize(
    ("patch", "path", "fragment"),
    [case[1:] for case in BAD_SPECS],
    ids=[case[0] for case in BAD_SPECS],
)
def test_bad_spec_is_rejected_naming_the_key_path(
    patch: dict[str, Any], path: str, fragment: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(merged(patch))
    lines = problem_lines(info.value)
    named = [line for line in lines if line.startswith(f"{path}: ")]
    assert named, f"no problem at {path!r} in:\n{info.value}"
    assert any(fragment in line for line in named), f"{fragment!r} not in:\n{info.value}"


def test_pairs_of_long_numeric_lists_are_tried_at_spread_values() -> None:
    # Every pair of two 1,000-value grids would be a million validations.
    grid = Grid(tuple([0.5, 0.0, *[i / 1000 for i in range(1, 1000)]]))
    values = pair_values(grid)
    assert len(values) <= PAIR_VALUES + 2
    assert {0.0, 0.001, 0.999} <= set(values)
    assert values == tuple(sorted(values))
    assert pair_values(Grid((3, 1, 2))) == (3, 1, 2)
    words = Choice(tuple(f"w{i}" for i in range(40)))
    assert pair_values(words) == words.options


def test_bad_spec_table_has_unique_ids() -> None:
    ids = [case[0] for case in BAD_SPECS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("key", SPEC_KEYS)
def test_every_top_level_section_rejects_a_bad_value(key: str) -> None:
    # A nested list is the wrong type for every section of a spec.
    with pytest.raises(SpecError) as info:
        load_spec(merged({key: [["not", "valid"]]}))
    lines = problem_lines(info.value)
    assert any(line.startswith((f"{key}: ", f"{key}.")) for line in lines), str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    patch = {
        "bogus": 1,
        "penalties": {"l2": {"loguniform": [-1, 1]}},
        "budget": {"samples": 0},
        "resources": {"cpu": 0},
    }
    with pytest.raises(SpecError) as info:
        load_spec(merged(patch))
    paths = [line.split(": ")[0] for line in problem_lines(info.value)]
    assert paths == ["bogus", "budget.samples", "resources.cpu", "penalties.l2.loguniform"]


def test_spec_must_be_a_mapping() -> None:
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec([1, 2])  # type: ignore[arg-type]


def test_null_sections_mean_defaults() -> None:
    spec = load_spec(merged({"scheduler": None, "failure": None, "checkpoint": None}))
    assert spec.scheduler.kind == "asha"
    assert spec.failure == FailureConfig()
    assert spec.checkpoint.every == 0


def test_default_scheduler_and_searcher_follow_the_objectives() -> None:
    one = load_spec(merged({"scheduler": DROP, "searcher": DROP, "objectives": DROP}))
    assert (one.scheduler.kind, one.searcher.kind) == ("asha", "hyperopt")
    assert one.objectives == (Objective(metric="val_acc", mode="max"),)
    several = load_spec(
        merged({"scheduler": DROP, "searcher": DROP, "objectives": ["val_acc", "gap"]})
    )
    assert (several.scheduler.kind, several.searcher.kind) == ("pareto-asha", "random")
    grid = load_spec(merged({"searcher": DROP, "penalties": {"l2": {"grid": [0.0, 0.1]}}}))
    assert grid.searcher.kind == "random"


def test_objective_shorthands_and_default_mode() -> None:
    spec = load_spec(merged({"objectives": "val_loss"}))
    assert spec.objectives == (Objective(metric="val_loss", mode="min"),)
    spec = load_spec(
        merged(
            {
                "dataset": "adult",
                "objectives": ["val_acc", {"metric": "dp_diff"}],
                "scheduler": "pareto-asha",
                "searcher": "random",
            }
        )
    )
    assert [(o.metric, o.mode) for o in spec.objectives] == [("val_acc", "max"), ("dp_diff", "min")]


def test_kind_shorthand_and_fractional_gpu() -> None:
    spec = load_spec(merged({"scheduler": "median", "resources": {"cpu": 0.5, "gpu": 0.25}}))
    assert isinstance(spec.scheduler, MedianConfig)
    assert (spec.resources.cpu, spec.resources.gpu) == (0.5, 0.25)
    assert load_spec(merged({"resources": {"gpu": 2}})).resources.gpu == 2


def test_fuse_takes_a_count_or_auto_and_defaults_to_off() -> None:
    assert load_spec(BASE).resources.fuse == 1
    assert load_spec(merged({"resources": {"fuse": 8}})).resources.fuse == 8
    assert load_spec(merged({"resources": {"fuse": "auto"}})).resources.fuse == "auto"
    # pbt without fusing stays valid; fusing with every other scheduler is allowed.
    # (No max_concurrent here: HyperBand refuses it, whatever fuse is.)
    for kind in ("asha", "hyperband", "median", "none"):
        patch = {"scheduler": kind, "searcher": "hyperopt", "resources": {"fuse": 2}}
        assert load_spec(merged(patch)).resources.fuse == 2


def test_fuse_survives_to_dict_and_overrides() -> None:
    spec = load_spec(merged({"resources": {"fuse": 4}}))
    assert load_spec(spec.to_dict()).resources.fuse == 4
    assert load_spec(BASE, overrides=["resources.fuse=auto"]).resources.fuse == "auto"
    assert load_spec(BASE, overrides=["resources.fuse=16"]).resources.fuse == 16


def test_yaml_style_exponent_strings_become_numbers() -> None:
    # YAML 1.1 reads 1e-4 (no dot) as a string.
    patch = {
        "training": {"lr": "1e-3"},
        "penalties": {"l2": {"loguniform": ["1e-6", "1e-2"]}, "l1": {"grid": ["1e-5", 0]}},
        "searcher": "random",
    }
    spec = load_spec(merged(patch))
    dists = dict(spec.iter_distributions())
    assert dists[("penalties", "l2")] == LogUniform(1e-6, 1e-2)
    assert dists[("penalties", "l1")] == Grid((1e-5, 0.0))
    assert spec.space["training"]["lr"] == 1e-3
    assert isinstance(spec.base_config()["penalties"]["l1"], float)


def test_choice_of_sub_mappings() -> None:
    options = [{"method": "pgd", "eps": 0.1}, {"method": "fgsm_rs", "eps": "5e-2"}]
    spec = load_spec(merged({"penalties": {"adversarial": {"choice": options}}}))
    dist = dict(spec.iter_distributions())[("penalties", "adversarial")]
    assert dist == Choice(({"method": "pgd", "eps": 0.1}, {"method": "fgsm_rs", "eps": 0.05}))
    base = spec.base_config()
    assert base["penalties"]["adversarial"] == {"method": "pgd", "eps": 0.1}


def test_base_config_uses_representative_values() -> None:
    patch = {
        "model": {"width": {"randint": [8, 13]}},
        "training": {"batch_size": {"quniform": [32, 128, 32]}, "seed": {"choice": [3, 4]}},
    }
    base = load_spec(merged(patch)).base_config()
    assert base["model"] == {"arch": "mlp", "width": 10, "dropout": 0.25}
    assert base["training"] == {"lr": 0.001, "batch_size": 64.0, "seed": 3, "epochs": 5}
    assert base["penalties"]["l2"] == pytest.approx(math.sqrt(1e-6 * 1e-1))
    parse_train_config(base)
    assert train_config_from_spec(load_spec(BASE)) == load_spec(BASE).base_config()


def test_n_trials_counts_grid_combinations() -> None:
    patch = {
        "searcher": "random",
        "penalties": {"l1": {"grid": [0.0, 0.1, 0.2]}},
        "training": {"seed": {"grid": [0, 1]}},
        "budget": {"samples": 2},
    }
    assert load_spec(merged(patch)).n_trials == 12
    assert load_spec(BASE).n_trials == 4


def test_grid_searcher_runs_each_combination_once_by_default() -> None:
    patch = {"searcher": "grid", "penalties": {"l2": {"grid": [0.0, 0.1, 0.2]}}}
    spec = load_spec(merged({**patch, "model": {"dropout": 0.1}, "budget": {"samples": DROP}}))
    assert (spec.budget.samples, spec.n_trials) == (1, 3)
    spec = load_spec(merged({**patch, "model": {"dropout": 0.1}, "budget": {"samples": 2}}))
    assert (spec.budget.samples, spec.n_trials) == (2, 6)
    assert load_spec(spec.to_dict()) == spec


def test_pbt_mutation_paths() -> None:
    patch = {
        "scheduler": {"kind": "pbt", "perturbation_interval": 2},
        "checkpoint": {"every": 2},
        "penalties": {"spectral_norm": {"choice": [False, True]}},
    }
    plain = merged({"scheduler": DROP, "searcher": DROP})
    spec = load_spec(merged(patch, plain))
    assert spec.searcher.kind == "random"
    assert spec.pbt_mutation_paths() == (("penalties", "l2"),)
    listed = merged(
        {"scheduler": {"hyperparam_mutations": ["training.lr", "penalties.l2"]}},
        merged({**patch, "training": {"lr": {"loguniform": [1e-4, 1e-2]}}}, plain),
    )
    assert load_spec(listed).pbt_mutation_paths() == (("training", "lr"), ("penalties", "l2"))
    assert load_spec(BASE).pbt_mutation_paths() == ()


def test_to_dict_round_trips() -> None:
    spec = load_spec(
        merged({"penalties": {"adversarial": {"method": {"choice": ["pgd", "trades"]}}}})
    )
    again = load_spec(spec.to_dict())
    assert again == spec
    assert "epochs" not in spec.to_dict().get("training", {})
    assert load_spec(merged({"training": DROP})).to_dict().get("training") is None


# -- overrides ------------------------------------------------------------------


def test_parse_override() -> None:
    assert parse_override("penalties.l2=0.01") == (("penalties", "l2"), 0.01)
    assert parse_override("penalties.l2={loguniform: [1.0e-5, 1.0e-2]}") == (
        ("penalties", "l2"),
        {"loguniform": [1e-5, 1e-2]},
    )
    assert parse_override("name=x=y") == (("name",), "x=y")
    assert parse_override("budget.time_limit_s=") == (("budget", "time_limit_s"), None)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("penalties.l2", "expected KEY.PATH=VALUE"),
        ("=3", "expected KEY.PATH=VALUE"),
        ("penalties..l2=3", "expected KEY.PATH=VALUE"),
        ("penalties.l2=[1, 2", "not valid YAML"),
    ],
)
def test_malformed_override_is_rejected(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match="--set") as info:
        parse_override(text)
    assert fragment in str(info.value)


def test_with_overrides() -> None:
    spec = load_spec(BASE).with_overrides(
        [
            "penalties.l2=1e-3",
            "penalties.adversarial.eps={uniform: [0.01, 0.1]}",
            "penalties.adversarial.method=fgsm_rs",
            "budget.max_epochs=3",
            "dataset.name=breast_cancer",
            "objectives.0.metric=val_loss",
            "objectives.0.mode=min",
        ]
    )
    assert spec.space["penalties"]["l2"] == 1e-3
    assert dict(spec.iter_distributions())[("penalties", "adversarial", "eps")] == Uniform(
        0.01, 0.1
    )
    assert spec.space["training"]["epochs"] == 3
    assert spec.space["dataset"] == {"name": "breast_cancer"}
    assert spec.objectives[0].metric == "val_loss"


def test_override_switching_scheduler_kind_keeps_defaults_fresh() -> None:
    # The overrides apply to the spec as written, so the asha defaults of the
    # resolved spec do not leak into the new scheduler.
    spec = load_spec(merged({"scheduler": DROP})).with_overrides(["scheduler.kind=median"])
    assert isinstance(spec.scheduler, MedianConfig)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("penalties.l22=0.1", "penalties.l22: unknown key 'l22'"),
        ("scheduler.kind=fifo", "scheduler.kind: unknown scheduler 'fifo'"),
        ("budget.samples=0", "budget.samples: Input should be greater than or equal to 1"),
        ("model.width.x=3", "model.width holds int 32, so it has no key 'x'"),
        ("penalties.l2.loguniform=3", "penalties.l2 is a distribution"),
    ],
)
def test_bad_override_is_rejected(override: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(BASE).with_overrides([override])
    assert fragment in str(info.value)


def test_load_spec_applies_overrides_before_validation() -> None:
    spec = load_spec(merged({"name": DROP}), overrides=["name=fixed-by-set"])
    assert spec.name == "fixed-by-set"


# -- files ----------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD_YAML = """\
name: from-file
dataset: digits
penalties:
  l2: {loguniform: [1e-6, 1e-1]}
budget: {samples: 2, max_epochs: 3}
"""


def test_load_spec_from_file(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD_YAML))
    assert spec.name == "from-file"
    assert str(write(tmp_path, GOOD_YAML)) and load_spec(str(tmp_path / "spec.yaml")) == spec


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ndataset: digits\npenalties: {l2: [1, 2}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}:3:")
    assert "invalid YAML" in str(info.value)


def test_duplicate_yaml_key_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_YAML + "penalties:\n  l1: 0.1\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == YAML_DUPLICATE_KEY.format(file=path, line=6, key="penalties", first=3)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="the file is empty"):
        load_spec(write(tmp_path, "# nothing\n"))


def test_problems_in_a_file_point_at_their_line(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("1e-6", "-1") + "resources: {cpu: 0}\n"
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    # in line order, whatever order they were found in
    assert problem_lines(info.value) == [
        "line 4: penalties.l2.loguniform: " + dist_mod.LOG_LOW.format(low=-1.0),
        "line 6: resources.cpu: Input should be greater than 0 (got 0)",
    ]


def test_a_bad_override_is_blamed_on_the_set_option_not_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_YAML)
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides=["budget.samples=0", "penalties.l2=abc"])
    assert problem_lines(info.value) == [
        "--set budget.samples=0: budget.samples: Input should be greater than or equal to 1 "
        "(got 0)",
        "--set penalties.l2=abc: penalties.l2: Input should be a valid number, unable to parse "
        "string as a number (got 'abc')",
    ]
    assert [p.path for p in info.value.problems] == ["budget.samples", "penalties.l2"]


def test_missing_source_lists_presets(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec("quickstar")
    assert "is neither a spec file nor a preset" in str(info.value)
    assert "quickstart" in str(info.value)


@pytest.mark.parametrize("name", ["nosuch.yaml", "nosuch.YML", "sub/nosuch"])
def test_a_missing_spec_file_is_named_with_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(name)
    message = str(info.value)
    assert f"spec file {tmp_path / name} does not exist" in message
    assert "neither" not in message and "quickstart" in message


def test_a_folder_is_not_a_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=f"spec {tmp_path} is not a file"):
        load_spec(str(tmp_path))


def test_load_train_config_from_a_train_config_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "dataset: digits\ntraining: {epochs: 3}\npenalties: {l2: 1e-4}\n")
    config = load_train_config(path, overrides=["penalties.l1=0.001"])
    assert config == {
        "dataset": {"name": "digits"},
        "training": {"epochs": 3},
        "penalties": {"l2": 1e-4, "l1": 0.001},
    }
    with pytest.raises(SpecError, match=r"penalties\.l3"):
        load_train_config(path, overrides=["penalties.l3=1"])


def test_load_train_config_from_a_spec(tmp_path: Path) -> None:
    config = load_train_config(write(tmp_path, GOOD_YAML), overrides=["budget.max_epochs=2"])
    assert config["training"] == {"epochs": 2}
    assert config["penalties"]["l2"] == pytest.approx(math.sqrt(1e-7))
    parse_train_config(config)


# -- distributions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected", "representative", "probes"),
    [
        ({"uniform": [0, 1]}, Uniform(0.0, 1.0), 0.5, (0.0, 0.381966, 1.0)),
        ({"loguniform": [1e-4, 1]}, LogUniform(1e-4, 1.0), 1e-2, (1e-4, 10**-2.472136, 1.0)),
        ({"quniform": [0, 1, 0.25]}, QUniform(0.0, 1.0, 0.25), 0.5, (0.0, 0.25, 1.0)),
        ({"quniform": [0.0, 0.1, 0.1]}, QUniform(0.0, 0.1, 0.1), 0.0, (0.0, 0.1)),
        ({"randint": [2, 6]}, RandInt(2, 6), 3, (2, 5)),
        ({"choice": ["a", "b"]}, Choice(("a", "b")), "a", ("a", "b")),
        ({"grid": [3, 1]}, Grid((3, 1)), 3, (3, 1)),
    ],
)
def test_distribution_parsing(
    raw: dict[str, Any], expected: Any, representative: Any, probes: tuple[Any, ...]
) -> None:
    dist = parse_distribution(raw, "x")
    assert dist == expected
    assert dist.representative() == pytest.approx(representative)
    assert dist.probe_values() == pytest.approx(probes)
    assert dist.to_yaml() == {dist.kind: dist.args()}
    assert parse_distribution(dist.to_yaml()) == dist


def test_parse_distribution_message_names_path_and_kind() -> None:
    with pytest.raises(SpecError) as info:
        parse_distribution({"loguniform": [-1, 1]}, "penalties.l2")
    assert str(info.value) == "penalties.l2.loguniform: " + dist_mod.LOG_LOW.format(low=-1.0)
    with pytest.raises(SpecError, match="not a distribution"):
        parse_distribution({"uniform": [0, 1], "grid": [1]}, "x")


def test_randint_rejects_booleans() -> None:
    with pytest.raises(SpecError, match="low must be an integer"):
        parse_distribution({"randint": [True, 4]})


def test_suggest_kind() -> None:
    assert dist_mod.suggest_kind("loguniforn") == "loguniform"
    assert dist_mod.suggest_kind("choise") == "choice"
    assert dist_mod.suggest_kind("strength") is None
    assert dist_mod.suggest_kind("grid") is None


def test_public_api_is_exactly_what_is_exported() -> None:
    exported = set(search_spaces.__all__)
    public = {n for n in vars(search_spaces) if not n.startswith("_")}
    # Submodules become attributes of the package once imported.
    modules = {
        "annotations",
        "cross_checks",
        "distributions",
        "load",
        "overrides",
        "probe",
        "problems",
        "sections",
        "spec",
        "validate",
        "yaml_limits",
    }
    assert public - modules == exported
    assert {"load_spec", "list_presets", "preset_path", "SweepSpec"} <= exported


def test_probed_values_never_leak_into_the_tree_they_are_tried_in() -> None:
    from regtune.search_spaces.probe import _with_values

    tree = {"penalties": {"adversarial": {"method": "none", "eps": 0.1}}, "model": {"width": 8}}
    before = copy.deepcopy(tree)
    out = _with_values(
        tree,
        {("penalties", "adversarial", "method"): "pgd", ("penalties", "adversarial", "steps"): 3},
    )
    assert out["penalties"]["adversarial"] == {"method": "pgd", "eps": 0.1, "steps": 3}
    assert tree == before
    assert out["model"] is tree["model"]  # untouched parts are shared, not copied


# -- booleans are not numbers; PBT's quantile_fraction above 0 -----------------------


@pytest.mark.parametrize(
    ("patch", "path", "kind"),
    [
        ({"budget": {"samples": True}}, "budget.samples", "a whole number"),
        ({"budget": {"time_limit_s": True}}, "budget.time_limit_s", "a number"),
        ({"searcher": {"kind": "random", "seed": True}}, "searcher.seed", "a whole number"),
        (
            {"scheduler": {"kind": "asha", "grace_period": True}},
            "scheduler.grace_period",
            "a whole number",
        ),
        ({"resources": {"cpu": True}}, "resources.cpu", "a number"),
        ({"failure": {"max_retries": True}}, "failure.max_retries", "a whole number"),
        ({"checkpoint": {"every": True}}, "checkpoint.every", "a whole number"),
        ({"penalties": {"l2": True}}, "penalties.l2", "a number"),
    ],
)
def test_a_boolean_is_refused_for_a_number_key_of_every_section(
    patch: dict[str, Any], path: str, kind: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(merged(patch))
    assert f"{path}: Input should be {kind}, not a boolean" in str(info.value)
    assert "(got True)" in str(info.value)


def test_a_boolean_in_a_list_of_numbers_is_refused() -> None:
    patch = {
        "scheduler": {"kind": "pbt", "perturbation_factors": [True, 0.8]},
        "searcher": {"kind": "random"},
        "checkpoint": {"every": 1},
    }
    with pytest.raises(SpecError, match=r"scheduler\.perturbation_factors: Input should be a list"):
        load_spec(merged(patch))


def test_a_distribution_of_booleans_for_a_number_key_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(merged({"penalties": {"l2": {"choice": [True, False]}}}))
    text = str(info.value)
    assert (
        "penalties.l2: choice can produce True, which the trainable rejects: "
        "Input should be a number, not a boolean" in text
    )
    assert "choice can produce False" in text


@pytest.mark.parametrize(
    ("fraction", "ok"), [(0.0, False), (1e-3, True), (0.5, True), (0.51, False)]
)
def test_pbt_quantile_fraction_is_above_zero_and_at_most_a_half(fraction: float, ok: bool) -> None:
    patch = {
        "scheduler": {"kind": "pbt", "quantile_fraction": fraction},
        "searcher": {"kind": "random"},
        "checkpoint": {"every": 1},
    }
    if ok:
        assert load_spec(merged(patch)).scheduler.quantile_fraction == fraction
        return
    with pytest.raises(SpecError, match=r"scheduler\.quantile_fraction: Input should be"):
        load_spec(merged(patch))


# -- ASHA brackets against budget.max_epochs (the helper cross_budget calls) --------


@pytest.mark.parametrize(
    ("grace", "factor", "max_epochs", "maximum"),
    [(1, 2.0, 4, 3), (1, 3.0, 9, 3), (1, 3.0, 10, 4), (2, 2.0, 20, 5), (4, 2.0, 4, 1)],
)
def test_asha_brackets_beyond_the_rung_levels_are_a_problem(
    grace: int, factor: float, max_epochs: int, maximum: int
) -> None:
    from ray.tune.schedulers import AsyncHyperBandScheduler

    from regtune.search_spaces.sections import AshaConfig, asha_brackets_problem

    def asha(brackets: int) -> AshaConfig:
        return AshaConfig(grace_period=grace, reduction_factor=factor, brackets=brackets)

    assert asha_brackets_problem(asha(maximum), max_epochs) is None
    problem = asha_brackets_problem(asha(maximum + 1), max_epochs)
    assert problem is not None
    assert f"allowed: an integer from 1 to {maximum} (one per rung level" in problem
    # Tune's own brackets: exactly maximum - 1 of them have a rung below max_t.
    tune = AsyncHyperBandScheduler(
        metric="m",
        mode="max",
        max_t=max_epochs,
        grace_period=grace,
        reduction_factor=factor,
        brackets=maximum + 2,
    )
    useful = [b for b in tune._brackets if any(level < max_epochs for level, _ in b._rungs)]
    assert len(useful) == maximum - 1


def test_asha_brackets_problem_ignores_other_schedulers() -> None:
    from regtune.search_spaces.sections import MedianConfig, asha_brackets_problem

    assert asha_brackets_problem(MedianConfig(), 4) is None
    assert asha_brackets_problem(None, 4) is None

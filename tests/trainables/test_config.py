"""TrainConfig: combinations the loop cannot honour are refused, idle keys are
named, every problem has one shape, and the built-in datasets come from one list."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from typing import Any

import pytest

import regtune.trainables as trainables
from regtune.errors import Problem, SpecError
from regtune.trainables import catalog, config, data, fetch
from regtune.trainables.config import (
    DEPENDENCIES,
    DatasetConfig,
    default_value,
    idle_keys,
    parse_train_config,
)
from regtune.trainables.fairness import sharpen


def _refused(raw: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_train_config(raw)
    return info.value


@pytest.mark.parametrize(
    ("dataset", "path", "fragment"),
    [
        ({"name": "adult", "test_fraction": 0.2}, "dataset.test_fraction", "official test split"),
        ({"name": "adult", "label": "income"}, "dataset.label", "'label' cannot be set"),
        (
            {"name": "digits", "features": ["pixel_0_0"]},
            "dataset.features",
            "'features' cannot be set",
        ),
        (
            {"name": "digits", "sensitive": "pixel_0_0"},
            "dataset.sensitive",
            "'sensitive' cannot be set",
        ),
        ({"name": "german", "path": "/data/german.csv"}, "dataset.path", "'path' cannot be set"),
        ({"name": "csv", "label": "y"}, "dataset", "needs 'path' and 'label'"),
        ({"name": "mnist"}, "dataset.name", "allowed: digits, breast_cancer"),
    ],
)
def test_dataset_keys_that_cannot_apply_are_refused(
    dataset: dict[str, Any], path: str, fragment: str
) -> None:
    error = _refused({"dataset": dataset})
    (problem,) = error.problems
    assert problem.path == path and fragment in problem.message
    assert str(error).splitlines()[1] == str(problem)


def test_test_fraction_still_applies_where_there_is_no_official_test_split() -> None:
    cfg = DatasetConfig(name="german", test_fraction=0.2)
    assert cfg.test_share == 0.2
    assert DatasetConfig(name="adult").test_share == config.DEFAULT_TEST_FRACTION


def test_trades_with_mixup_is_refused_and_pgd_with_mixup_is_not() -> None:
    trades = {"method": "trades", "eps": 0.1, "steps": 3}
    error = _refused({"dataset": "digits", "penalties": {"mixup": 0.2, "adversarial": trades}})
    assert "trades" in str(error) and "mixup" in str(error)
    pgd = {**trades, "method": "pgd"}
    parse_train_config({"dataset": "digits", "penalties": {"mixup": 0.2, "adversarial": pgd}})


@pytest.mark.parametrize(
    ("raw", "idle"),
    [
        ({"training": {"momentum": 0.5}}, ["training.momentum"]),
        ({"training": {"momentum": 0.5, "optimizer": "sgd"}}, []),
        ({"training": {"robust_every": 0, "robust_eps": 0.3}}, ["training.robust_eps"]),
        ({"model": {"arch": "logreg", "width": 64}}, ["model.width"]),
        ({"model": {"arch": "cnn", "depth": 3}}, ["model.depth"]),
        ({"penalties": {"adversarial": {"eps": 0.2}}}, ["penalties.adversarial.eps"]),
        ({"penalties": {"adversarial": {"method": "fgsm_rs", "steps": 3}}},
         ["penalties.adversarial.steps"]),
        ({"penalties": {"adversarial": {"method": "pgd", "beta": 3.0}}},
         ["penalties.adversarial.beta"]),
        ({"penalties": {"fairness": {"kind": "dp", "strength": 1.0, "dual_lr": 0.5}}},
         ["penalties.fairness.dual_lr"]),
        ({"penalties": {"elastic_net": {"l1_ratio": 0.2}}}, ["penalties.elastic_net.l1_ratio"]),
        ({"penalties": {"fairness": {"kind": "dp"}}}, ["penalties.fairness.kind"]),
        ({"penalties": {"adversarial": {"method": "pgd", "eps": 0.0}}},
         ["penalties.adversarial.method"]),
        ({"penalties": {"fairness": {"kind": "eo", "strength": 1.0,
                                     "threshold_rows": "train+val"}}},
         ["penalties.fairness.threshold_rows"]),
        ({"penalties": {"fairness": {"kind": "eo", "method": "postprocess",
                                     "threshold_rows": "train+val"}}}, []),
        ({"training": {"early_stopping": {"metric": "val_acc", "patience": 3}}}, []),
        ({"training": {"early_stopping": {"metric": "val_acc"}}},
         ["training.early_stopping.metric"]),
    ],
)  # fmt: skip
def test_idle_keys_are_named(raw: dict[str, Any], idle: list[str]) -> None:
    found = idle_keys(parse_train_config({"dataset": "digits", **raw}))
    assert [p.path for p in found] == idle
    for problem in found:
        assert any(
            d.key == problem.path and d.on in problem.message and d.reason in problem.message
            for d in DEPENDENCIES
        )


def test_every_dependency_names_real_keys_whose_default_is_idle_or_not() -> None:
    for dep in DEPENDENCIES:
        default_value(dep.key)  # raises KeyError for a key TrainConfig lacks
        dep.idle(default_value(dep.on))  # the predicate accepts the key's values


def test_validation_problems_have_one_shape() -> None:
    error = _refused({"dataset": "digits", "penalties": {"l1": -1.0, "mixup": "x"}})
    assert error.problems == (
        Problem("penalties.l1", "Input should be greater than or equal to 0 (got -1.0)"),
        Problem(
            "penalties.mixup",
            "Input should be a valid number, unable to parse string as a number (got 'x')",
        ),
    )
    assert str(error) == "\n".join(["invalid training config:", *map(str, error.problems)])


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf")])
def test_a_bad_temperature_is_a_spec_error_at_its_key(value: float) -> None:
    import torch

    with pytest.raises(SpecError) as info:
        sharpen(torch.tensor([0.3]), value)
    assert [p.path for p in info.value.problems] == ["penalties.fairness.temperature"]


def test_an_unknown_threshold_rows_is_refused_at_its_key_with_the_allowed_values() -> None:
    raw = {"kind": "eo", "method": "postprocess", "threshold_rows": "test"}
    with pytest.raises(SpecError) as info:
        parse_train_config({"dataset": "adult", "penalties": {"fairness": raw}})
    (problem,) = info.value.problems
    assert problem.path == "penalties.fairness.threshold_rows"
    assert "'val' or 'train+val'" in problem.message and "'test'" in problem.message


def test_built_in_datasets_come_from_the_catalog() -> None:
    names = list(catalog.BUILTINS)
    assert list(catalog.BUILTIN_DATASETS) == names == list(config.BUILTIN_DATASETS)
    assert list(data.BUILTINS) == names
    assert list(fetch.FETCHABLE) == names
    assert sorted(fetch.FROM_SKLEARN + fetch.FROM_WHEEL) == sorted(names)
    assert set(catalog.FAIRNESS_DATASETS) == {"adult", "german", "compas"}
    assert catalog.IMAGE_DATASETS == ("digits",)
    for name in names:  # each name a config accepts
        assert DatasetConfig(name=name).name == name


def test_public_api_is_exactly_what_is_exported() -> None:
    for name in trainables.__all__:
        assert getattr(trainables, name) is not None
    # Submodules become attributes once imported; they are not exports.
    modules = {m.name for m in pkgutil.iter_modules(trainables.__path__)} | {"annotations"}
    public = {n for n in dir(trainables) if not n.startswith("_")}
    assert public - modules == set(trainables.__all__)
    with pytest.raises(AttributeError):
        _ = trainables.no_such_name  # type: ignore[attr-defined]


def test_the_config_module_imports_without_torch() -> None:
    # The spec validator (and the CLI before a run) imports config and sources.
    code = (
        "import sys, regtune.trainables.config, regtune.trainables.sources; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "raw",
    [
        {"training": {"lr": float("inf")}},
        {"penalties": {"l2": float("inf")}},
        {"penalties": {"input_noise": float("inf")}},
        {"penalties": {"max_norm": float("inf")}},
        {"training": {"early_stopping": {"min_delta": float("inf")}}},
        {"penalties": {"adversarial": {"method": "fgsm_rs", "eps": float("inf")}}},
    ],
    ids=["lr", "l2", "input_noise", "max_norm", "min_delta", "eps"],
)
def test_infinite_settings_are_refused_not_trained_into_nan(raw: dict[str, Any]) -> None:
    error = _refused({"dataset": "digits", **raw})
    assert "finite number" in str(error), str(error)

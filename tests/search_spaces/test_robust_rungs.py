"""A scheduler ranking trials on robust_acc where the trainer only carries an
earlier measurement forward (it measures at epoch 1, every
``training.robust_every`` epochs and at the last) is refused for new input:
with the default robust_every 5, ASHA's rungs 3 and 9 would judge trials on
epoch 1's and epoch 5's robust accuracy. A stored spec reads back as it ran."""

from __future__ import annotations

from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.search_spaces import list_presets, load_spec, load_train_config
from regtune.search_spaces.cross_checks import decision_epochs
from regtune.search_spaces.sections import AshaConfig, ParetoAshaConfig, PbtConfig


def _spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "robust",
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 16},
        "training": {"lr": {"loguniform": [1e-4, 1e-1]}},
        "objectives": [{"metric": "robust_acc", "mode": "max"}],
        "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 3},
        "searcher": {"kind": "random", "seed": 0},
        "budget": {"samples": 4, "max_epochs": 10},
    }
    return spec | over


def _problems(spec: dict[str, Any], overrides: tuple[str, ...] = ()) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        load_spec(spec, list(overrides))
    return {p.path: p.message for p in info.value.problems}


def test_asha_on_robust_acc_with_the_default_robust_every_is_refused() -> None:
    problems = _problems(_spec())
    assert list(problems) == ["training.robust_every"]
    message = problems["training.robust_every"]
    assert "training.robust_every 5" in message
    assert "scheduler asha would judge trials at rung epochs 3, 9" in message
    assert "epoch 3 sees epoch 1's, epoch 9 sees epoch 5's" in message
    # The largest robust_every measuring afresh at every rung, and the other way out.
    assert "set training.robust_every to 3 (then it is measured afresh at every rung: 1, 3, 9)" in (
        message
    )
    assert "set scheduler.grace_period to a multiple of 5" in message


def test_pareto_asha_and_pbt_are_checked_too() -> None:
    several = [
        {"metric": "val_acc", "mode": "max"},
        {"metric": "robust_acc", "mode": "max"},
    ]
    pareto = _spec(
        objectives=several,
        scheduler={"kind": "pareto-asha", "grace_period": 2},
        budget={
            "samples": 4,
            "max_epochs": 20,
        },
    )
    message = _problems(pareto)["training.robust_every"]
    assert "scheduler pareto-asha would judge trials at rung epochs 2, 6, 18" in message
    assert "set training.robust_every to 2" in message
    pbt = _spec(
        training={"lr": 0.01, "robust_every": 3},
        penalties={"l2": {"loguniform": [1e-6, 1e-2]}},
        scheduler={"kind": "pbt", "perturbation_interval": 2},
        budget={"samples": 4, "max_epochs": 8},
        checkpoint={"every": 2},
    )
    message = _problems(pbt)["training.robust_every"]
    assert "scheduler pbt would judge trials at perturbation epochs 2, 4" in message
    assert "every perturbation epoch: 2, 4, 6" in message
    assert "set scheduler.perturbation_interval to a multiple of 3" in message


@pytest.mark.parametrize(
    ("training", "scheduler"),
    [
        ({"robust_every": 1}, {"kind": "asha", "grace_period": 1, "reduction_factor": 3}),
        ({"robust_every": 3}, {"kind": "asha", "grace_period": 1, "reduction_factor": 3}),
        ({"robust_every": 5}, {"kind": "asha", "grace_period": 5, "reduction_factor": 2}),
        ({}, {"kind": "none"}),
        ({}, {"kind": "median"}),
    ],
)
def test_rungs_that_line_up_are_fine(training: dict[str, Any], scheduler: dict[str, Any]) -> None:
    spec = _spec(training={"lr": {"loguniform": [1e-4, 1e-1]}, **training}, scheduler=scheduler)
    assert load_spec(spec).objectives[0].metric == "robust_acc"


def test_another_objective_is_not_checked() -> None:
    spec = _spec(objectives=[{"metric": "val_acc", "mode": "max"}])
    assert load_spec(spec).objectives[0].metric == "val_acc"


def test_a_sampled_robust_every_names_each_value_that_misses() -> None:
    training = {"lr": 0.01, "robust_every": {"choice": [3, 4]}}
    message = _problems(_spec(training=training))["training.robust_every"]
    assert "training.robust_every 4" in message and "training.robust_every 3" not in message


def test_a_set_on_the_command_line_is_named() -> None:
    spec = _spec(training={"lr": 0.01, "robust_every": 3})
    with pytest.raises(SpecError) as info:
        load_spec(spec, ["scheduler.grace_period=2"])
    assert "judge trials at rung epoch 2 on an earlier epoch's" in str(info.value)
    assert "(scheduler.grace_period is set by --set scheduler.grace_period=2)" in str(info.value)


def test_a_stored_spec_reads_back_as_it_ran() -> None:
    spec = load_spec(_spec(), stored=True)
    assert spec.scheduler.kind == "asha" and spec.objectives[0].metric == "robust_acc"


def test_one_training_run_uses_no_scheduler() -> None:
    config = load_train_config(_spec())
    assert config["training"]["epochs"] == 10


def test_presets_line_up() -> None:
    for name in list_presets():
        load_spec(name)  # adversarial: rungs 3, 9 at robust_every 3; three-objective: 2, 6, 18 at 2


@pytest.mark.parametrize(
    ("scheduler", "max_epochs", "epochs"),
    [
        (AshaConfig(grace_period=1, reduction_factor=3), 10, [1, 3, 9]),
        (AshaConfig(grace_period=1, reduction_factor=2.5), 10, [1, 3, 7]),  # 2.5, 6.25: next epoch
        (ParetoAshaConfig(grace_period=2, reduction_factor=3), 18, [2, 6]),
        (PbtConfig(perturbation_interval=3), 10, [3, 6, 9]),
    ],
)
def test_decision_epochs(scheduler: Any, max_epochs: int, epochs: list[int]) -> None:
    assert decision_epochs(scheduler, max_epochs) == epochs

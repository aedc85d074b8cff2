"""A scheduler ranking trials on robust_acc where the trainer only carries an
earlier measurement forward (it measures at epoch 1, every
``training.robust_every`` epochs and at the last) is refused for new input:
with the default robust_every 5, ASHA's rungs 3 and 9 would judge trials on
epoch 1's and epoch 5's robust accuracy, and so would HyperBand's milestones
(max_epochs 10, reduction_factor 3: 1, 3, 9) and the median rule, which may
stop a trial after any epoch from its grace_period on. A stored spec reads
back as it ran."""

from __future__ import annotations

from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.search_spaces import list_presets, load_spec, load_train_config
from regtune.search_spaces.cross_checks import decision_epochs
from regtune.search_spaces.sections import (
    AshaConfig,
    HyperbandConfig,
    MedianConfig,
    ParetoAshaConfig,
    PbtConfig,
)


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
        ({"robust_every": 3}, {"kind": "hyperband", "reduction_factor": 3}),  # 1, 3, 9
        ({"robust_every": 1}, {"kind": "median"}),
        ({"robust_every": 9}, {"kind": "median", "grace_period": 9}),  # epoch 9 only
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
        # HyperBand: halvings and each bracket's end below max_t, int-truncated
        # (20, 2.5: bracket 1 at 8, then 20; bracket 2 at 3, 7, ends at 17;
        # bracket 3 at 1, 2, 5, ends at 12), as a real Tune run showed.
        (HyperbandConfig(reduction_factor=3), 10, [1, 3, 9]),
        (HyperbandConfig(reduction_factor=2.5), 20, [1, 2, 3, 5, 7, 8, 12, 17]),
        (HyperbandConfig(reduction_factor=3), 4, [1, 3]),
        (HyperbandConfig(reduction_factor=5), 4, []),  # only bracket 0: to max_t
        (MedianConfig(grace_period=3), 7, [3, 4, 5, 6]),
        (MedianConfig(grace_period=7), 7, []),
    ],
)
def test_decision_epochs(scheduler: Any, max_epochs: int, epochs: list[int]) -> None:
    assert decision_epochs(scheduler, max_epochs) == epochs


@pytest.mark.parametrize(
    ("max_t", "factor"), [(10, 3), (20, 2.5), (4, 3), (81, 3), (30, 3), (8, 4), (100, 1.5), (5, 7)]
)
def test_hyperband_milestones_are_ray_s(max_t: int, factor: float) -> None:
    """Walk the brackets of the installed Ray's own HyperBandScheduler: each
    one's milestone (_cumul_r) at every halving and at its end."""
    from ray.tune.schedulers import HyperBandScheduler

    scheduler = HyperBandScheduler(max_t=max_t, reduction_factor=factor)
    milestones: set[int] = set()
    for s in range(scheduler._s_max_1):
        if scheduler._get_r0(s) == 0:
            continue  # Ray skips it ("Bracket too small")
        bracket = scheduler._create_bracket(s)
        while True:
            milestones.add(bracket._cumul_r)
            if bracket._halves == 0:
                break
            bracket.successive_halving("m", 1.0)
    expected = sorted(m for m in milestones if m < max_t)
    assert decision_epochs(HyperbandConfig(reduction_factor=factor), max_t) == expected


def test_hyperband_on_robust_acc_is_refused_where_a_milestone_is_stale() -> None:
    hyperband = {"kind": "hyperband", "reduction_factor": 3}
    message = _problems(_spec(scheduler=hyperband))["training.robust_every"]
    assert "scheduler hyperband would judge trials at milestone epochs 3, 9" in message
    assert "epoch 3 sees epoch 1's, epoch 9 sees epoch 5's" in message
    assert "set training.robust_every to 3 (then it is measured afresh at every milestone:" in (
        message
    )
    assert "rank trials on another objective, or use scheduler asha with grace_period" in message
    # A bracket's end below max_epochs is where its trials stop, and are ranked:
    # max_epochs 4, factor 3 halves at 1 and ends bracket 1 at epoch 3.
    short = _spec(
        training={"lr": 0.01, "robust_every": 2},
        scheduler=hyperband,
        budget={"samples": 4, "max_epochs": 4},
    )
    message = _problems(short)["training.robust_every"]
    assert "judge trials at milestone epoch 3 on an earlier epoch's" in message
    assert "(epoch 3 sees epoch 2's)" in message


def test_median_on_robust_acc_is_refused_unless_measured_every_epoch() -> None:
    message = _problems(_spec(scheduler={"kind": "median"}))["training.robust_every"]
    assert "scheduler median would judge trials at epochs 2-4, 6-9 on an earlier" in message
    assert "(epochs 2-4 see epoch 1's, epochs 6-9 see epoch 5's)" in message
    assert (
        "set training.robust_every to 1 (then it is measured afresh at every epoch from "
        "grace_period 1 on: 1-9)"
    ) in message
    # A long sweep's every epoch is cut short in the message.
    long = _spec(scheduler={"kind": "median", "grace_period": 2}, budget={"max_epochs": 100})
    message = _problems(long)["training.robust_every"]
    assert "at epochs 2-4, 6-9, 11-14, 16-19, 21-24, ..., 96-99 on" in message
    assert "(epochs 2-4 see epoch 1's, epochs 6-9 see epoch 5's, ..., epochs 96-99 see" in message
    assert len(message) < 700


def test_epochs_text() -> None:
    from regtune.search_spaces.cross_checks import epochs_text

    assert epochs_text([3, 9]) == "3, 9"
    assert epochs_text([2, 3, 5, 6, 7]) == "2, 3, 5-7"
    assert epochs_text(list(range(1, 15))) == "1-14"

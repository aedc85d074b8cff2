"""Rules of a sweep, and only of a sweep: HyperBand with searcher.max_concurrent
is refused (its brackets would never fill, so nothing would be stopped), and
the scheduler's epochs against budget.max_epochs do not block one training
run of a spec (``regtune train PRESET --set budget.max_epochs=1``)."""

from __future__ import annotations

from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.search_spaces import load_spec, load_train_config


def _spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "rules",
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 16},
        "training": {"lr": {"loguniform": [1e-4, 1e-1]}},
        "scheduler": {"kind": "hyperband", "reduction_factor": 3},
        "searcher": {"kind": "random", "seed": 0},
        "budget": {"samples": 9, "max_epochs": 9},
    }
    return spec | over


@pytest.mark.parametrize("kind", ["random", "hyperopt"])
def test_hyperband_with_max_concurrent_is_refused_naming_both_keys(kind: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(_spec(searcher={"kind": kind, "max_concurrent": 2}))
    problems = {p.path: p.message for p in info.value.problems}
    assert list(problems) == ["searcher.max_concurrent"]
    message = problems["searcher.max_concurrent"]
    assert "max_concurrent 2 cannot be used with scheduler.kind hyperband" in message
    assert "no trial is stopped early" in message
    assert "remove searcher.max_concurrent" in message
    assert "use scheduler.kind asha" in message


def test_hyperband_set_on_the_command_line_names_that_set() -> None:
    with pytest.raises(SpecError, match=r"\(scheduler.kind is set by --set scheduler="):
        load_spec("quickstart", ["scheduler={kind: hyperband}"])


def test_hyperband_without_max_concurrent_and_asha_with_it_are_fine() -> None:
    assert load_spec(_spec()).searcher.max_concurrent is None
    asha = load_spec(_spec(scheduler={"kind": "asha"}, searcher={"max_concurrent": 2}))
    assert asha.searcher.max_concurrent == 2
    one = load_spec("quickstart", ["scheduler={kind: hyperband}", "searcher.max_concurrent=null"])
    assert one.scheduler.kind == "hyperband"


def test_one_training_run_of_a_preset_is_not_blocked_by_the_schedulers_grace_period() -> None:
    # adversarial.yaml: scheduler grace_period 3; a sweep of 1 epoch is refused ...
    with pytest.raises(
        SpecError,
        match=r"scheduler.grace_period: scheduler asha would stop no trial early: "
        r"grace_period 3 is not below budget.max_epochs 1",
    ):
        load_spec("adversarial", ["budget.max_epochs=1"])
    # ... one training run of it is not: it uses no scheduler.
    config = load_train_config("adversarial", ["budget.max_epochs=1"])
    assert config["training"]["epochs"] == 1


def test_one_training_run_is_not_blocked_by_the_pbt_interval() -> None:
    pbt = _spec(
        training={"lr": 0.01},
        penalties={"l2": {"loguniform": [1e-5, 1e-2]}},
        scheduler={"kind": "pbt", "perturbation_interval": 4},
        checkpoint={"every": 1},
        budget={"samples": 2, "max_epochs": 2},
    )
    with pytest.raises(SpecError, match=r"perturbation_interval must be < budget.max_epochs"):
        load_spec(pbt)
    assert load_train_config(pbt)["training"]["epochs"] == 2


def test_one_training_run_still_reports_every_other_problem() -> None:
    with pytest.raises(SpecError) as info:
        load_train_config("adversarial", ["budget.max_epochs=1", "penalties.l2=-1"])
    assert [p.path for p in info.value.problems] == ["penalties.l2"]
    assert "--set penalties.l2=-1: penalties.l2:" in str(info.value)
    with pytest.raises(SpecError, match=r"scheduler.reduction_factor"):
        load_train_config("adversarial", ["budget.max_epochs=1", "scheduler.reduction_factor=x"])


def test_asha_brackets_beyond_its_rung_levels_are_refused_for_a_sweep_only() -> None:
    asha = _spec(
        scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 2, "brackets": 10},
        budget={"samples": 4, "max_epochs": 4},
    )
    with pytest.raises(SpecError) as info:
        load_spec(asha)
    problems = {p.path: p.message for p in info.value.problems}
    assert list(problems) == ["scheduler.brackets"]
    assert problems["scheduler.brackets"].startswith(
        "10 is not allowed with budget.max_epochs 4; allowed: an integer from 1 to 3"
    )
    # As many as there are rung levels below max_epochs, plus one, are fine.
    load_spec(asha | {"scheduler": asha["scheduler"] | {"brackets": 3}})
    # A --set of budget.max_epochs that made it too many is named.
    fine = asha | {
        "scheduler": asha["scheduler"] | {"brackets": 3},
        "budget": {"samples": 4, "max_epochs": 8},
    }
    load_spec(fine)
    with pytest.raises(
        SpecError, match=r"\(budget.max_epochs is set by --set budget.max_epochs=2\)"
    ):
        load_spec(fine, ["budget.max_epochs=2"])
    # One training run of the spec uses no scheduler.
    assert load_train_config(asha)["training"]["epochs"] == 4

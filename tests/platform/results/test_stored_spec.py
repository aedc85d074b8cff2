"""A spec a sweep ran is read back as it ran: the rules that guard only new input
(added since earlier versions stored their specs) do not apply to results/spec.json."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.platform.results import SweepOutcome, read_spec
from regtune.search_spaces import load_spec
from regtune.search_spaces.distributions import Choice, Grid
from tests.platform.results.test_store import _small_sweep

#: A spec as an earlier regtune stored it (SweepSpec.to_dict: every section written out).
OLD: dict[str, Any] = {
    "name": "old",
    "description": "",
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "training": {"lr": {"loguniform": [0.001, 0.1]}},
    "penalties": {"l2": {"choice": [0.0, 0.001]}},
    "objectives": [{"metric": "val_acc", "mode": "max"}],
    "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 3.0, "brackets": 1},
    "searcher": {"kind": "random", "max_concurrent": None, "seed": None},
    "budget": {"samples": 2, "max_epochs": 1, "time_limit_s": None},
    "resources": {"cpu": 1.0, "gpu": 0.0, "fuse": 1},
    "failure": {"max_retries": 1},
    "checkpoint": {"every": 0},
}
NONE = {"kind": "none"}
PBT_ONES = {
    "kind": "pbt",
    "perturbation_interval": 1,
    "hyperparam_mutations": None,
    "quantile_fraction": 0.25,
    "resample_probability": 0.25,
    "perturbation_factors": [1.0, 1.0],
}


def _old(**sections: Any) -> dict[str, Any]:
    spec = copy.deepcopy(OLD)
    for key, value in sections.items():
        spec[key] = value
    return spec


def _budget(max_epochs: int, samples: int = 2) -> dict[str, Any]:
    return {"samples": samples, "max_epochs": max_epochs, "time_limit_s": None}


#: Specs earlier versions accepted and stored, each refused as new input today,
#: and where the refusal is.
CASES: dict[str, tuple[dict[str, Any], str]] = {
    # The old default for budget.max_epochs 1: asha at grace_period 1.
    "asha grace 1, max_epochs 1": (_old(), "scheduler.grace_period"),
    "asha grace 2, max_epochs 2": (
        _old(
            scheduler={"kind": "asha", "grace_period": 2, "reduction_factor": 2.0, "brackets": 1},
            budget=_budget(2),
        ),
        "scheduler.grace_period",
    ),
    "hyperband, max_epochs 2": (
        _old(scheduler={"kind": "hyperband", "reduction_factor": 3.0}, budget=_budget(2)),
        "scheduler.reduction_factor",
    ),
    "median grace 2, max_epochs 2": (
        _old(
            scheduler={"kind": "median", "grace_period": 2, "min_samples_required": 3},
            budget=_budget(2),
        ),
        "scheduler.grace_period",
    ),
    "a choice listing a value twice": (
        _old(penalties={"l2": {"choice": [0.001, 0.001, 0.01]}}, scheduler=NONE, budget=_budget(3)),
        "penalties.l2.choice",
    ),
    "a grid listing a value twice": (
        _old(
            penalties={"l2": {"grid": [0.001, 0.01, 0.001]}}, scheduler=NONE, budget=_budget(3, 1)
        ),
        "penalties.l2.grid",
    ),
    "a hyperopt seed of 2**32": (
        _old(
            searcher={
                "kind": "hyperopt",
                "max_concurrent": None,
                "seed": 2**32,
                "n_initial_points": 10,
            },
            scheduler=NONE,
            penalties={"l2": {"loguniform": [1e-5, 1e-2]}},
        ),
        "searcher.seed",
    ),
    "a negative random seed": (
        _old(searcher={"kind": "random", "max_concurrent": None, "seed": -1}, scheduler=NONE),
        "searcher.seed",
    ),
    "a GPU with device cpu": (
        _old(
            training={"lr": {"loguniform": [0.001, 0.1]}, "device": "cpu"},
            resources={"cpu": 1.0, "gpu": 1.0, "fuse": 1},
            scheduler=NONE,
        ),
        "resources.gpu",
    ),
    "pbt factors all 1.0": (
        _old(scheduler=PBT_ONES, budget=_budget(3), checkpoint={"every": 1}),
        "scheduler.perturbation_factors",
    ),
}


def _stored(tmp_path: Path, spec: dict[str, Any]) -> str:
    """An experiment whose results/spec.json is ``spec`` (as the sweep wrote it)."""
    exp = tmp_path / "store"
    _small_sweep(str(exp)).close()
    (exp / "results" / "spec.json").write_text(json.dumps(spec, indent=2))
    return str(exp)


@pytest.mark.parametrize("case", list(CASES))
def test_a_stored_spec_is_read_as_it_ran_new_input_is_still_refused(
    tmp_path: Path, case: str
) -> None:
    raw, where = CASES[case]
    with pytest.raises(SpecError) as info:
        load_spec(copy.deepcopy(raw), check_data=False)
    assert where in {p.path for p in info.value.problems}
    # No ResultsWarning (warnings are errors here) and nothing read in another's place.
    spec = read_spec(_stored(tmp_path, raw))
    again = load_spec(copy.deepcopy(raw), check_data=False, stored=True)
    assert spec == again
    assert spec.scheduler.model_dump(mode="json") == raw["scheduler"]
    assert spec.searcher.model_dump(mode="json") == raw["searcher"]
    assert spec.resources.model_dump(mode="json") == raw["resources"]
    assert spec.budget.model_dump(mode="json") == raw["budget"]
    assert spec.to_dict()["penalties"] == raw["penalties"]
    assert [".".join(p) for p, _ in spec.iter_distributions()] == ["training.lr", "penalties.l2"]


def test_the_old_max_epochs_1_default_asha_reads_back_with_its_grace_period(
    tmp_path: Path,
) -> None:
    spec = read_spec(_stored(tmp_path, CASES["asha grace 1, max_epochs 1"][0]))
    assert spec.scheduler.kind == "asha" and spec.budget.max_epochs == 1
    two = read_spec(_stored(tmp_path, CASES["asha grace 2, max_epochs 2"][0]))
    assert two.scheduler.kind == "asha" and two.scheduler.grace_period == 2  # not 1


def test_a_repeated_choice_keeps_its_distribution(tmp_path: Path) -> None:
    spec = read_spec(_stored(tmp_path, CASES["a choice listing a value twice"][0]))
    dists = dict(spec.iter_distributions())
    assert dists[("penalties", "l2")] == Choice((0.001, 0.001, 0.01))
    grid = read_spec(_stored(tmp_path, CASES["a grid listing a value twice"][0]))
    assert dict(grid.iter_distributions())[("penalties", "l2")] == Grid((0.001, 0.01, 0.001))
    assert grid.n_trials == 3  # as the sweep ran: one trial per listed value


def test_sweep_outcome_reads_an_experiment_of_the_old_rules(tmp_path: Path) -> None:
    for raw, _ in CASES.values():
        outcome = SweepOutcome.from_path(_stored(tmp_path, raw))
        assert outcome.objectives == (("val_acc", "max"),)
        assert outcome.best is not None and outcome.best.trial_id == "t1"


def test_a_stated_scheduler_is_kept_the_none_default_is_for_none_given() -> None:
    raw = _old(scheduler=None)
    assert load_spec(raw, check_data=False).scheduler.kind == "none"
    assert load_spec(raw, check_data=False, stored=True).scheduler.kind == "none"
    stated = _old(scheduler={"kind": "asha", "grace_period": 1})
    assert load_spec(stated, check_data=False, stored=True).scheduler.kind == "asha"


def test_stored_mode_keeps_the_rules_every_spec_obeys() -> None:
    """Only the rules for new input are skipped: what no version accepted is still refused."""
    for bad, where in (
        (_old(scheduler={"kind": "asha", "grace_period": 0}), "scheduler.grace_period"),
        (_old(penalties={"l2": {"choice": []}}), "penalties.l2.choice"),
        (_old(searcher={"kind": "random", "seed": "x"}), "searcher.seed"),
        (_old(scheduler={**PBT_ONES, "perturbation_factors": [0.0, 1.0]}), "scheduler"),
    ):
        with pytest.raises(SpecError) as info:
            load_spec(bad, check_data=False, stored=True)
        assert any(p.path.startswith(where) for p in info.value.problems), info.value


def test_an_idle_key_rule_added_since_does_not_change_a_stored_spec() -> None:
    """Keys a newer idle-key rule refuses (a Lagrangian at strength 0) read back as run."""
    fairness = {"kind": "eo", "bound": 0.1, "method": "lagrangian", "dual_lr": 5.0}
    raw = _old(dataset="adult", scheduler=NONE)
    raw["penalties"] = {"l2": {"choice": [0.0, 0.001]}, "fairness": fairness}
    with pytest.raises(SpecError) as info:
        load_spec(copy.deepcopy(raw), check_data=False)
    assert "penalties.fairness.method" in {p.path for p in info.value.problems}
    spec = load_spec(copy.deepcopy(raw), check_data=False, stored=True)
    stored = spec.to_dict()["penalties"]["fairness"]
    assert (stored["method"], stored["dual_lr"]) == ("lagrangian", 5.0)

"""The presets shipped with the package load, validate and say what they answer."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from regtune.errors import SpecError
from regtune.search_spaces import (
    Grid,
    GridSearchConfig,
    list_presets,
    load_spec,
    preset_descriptions,
    preset_path,
    train_config_from_spec,
)
from regtune.trainables.config import parse_train_config

EXPECTED = ["adversarial", "dropout-l2", "fairness", "l2-path", "quickstart", "three-objective"]

# The quickstart must finish in well under a minute of training on 2 cores.
QUICKSTART_MAX_SAMPLES = 8
QUICKSTART_MAX_EPOCHS = 10


def test_the_expected_presets_ship() -> None:
    assert list_presets() == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_preset_loads_and_its_base_config_validates(name: str) -> None:
    spec = load_spec(name)
    assert spec == load_spec(preset_path(name))
    assert spec.name == name
    assert spec.description
    config = parse_train_config(train_config_from_spec(spec))
    assert config.training.epochs == spec.budget.max_epochs
    assert list(spec.iter_distributions()), "a preset must search something"


@pytest.mark.parametrize("name", EXPECTED)
def test_preset_opens_with_a_comment_saying_what_it_answers(name: str) -> None:
    text = preset_path(name).read_text(encoding="utf-8")
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 2
    assert "?" in " ".join(header), "the header should state the question the preset answers"


@pytest.mark.parametrize("name", EXPECTED)
def test_preset_round_trips_through_yaml(name: str) -> None:
    spec = load_spec(name)
    assert load_spec(yaml.safe_load(spec.to_yaml())) == spec


def test_quickstart_is_small() -> None:
    spec = load_spec("quickstart")
    assert spec.space["dataset"] == {"name": "digits"}
    assert spec.n_trials <= QUICKSTART_MAX_SAMPLES
    assert spec.budget.max_epochs <= QUICKSTART_MAX_EPOCHS
    assert spec.resources.gpu == 0
    assert spec.scheduler.kind == "asha"
    assert spec.base_config()["training"]["robust_every"] == 0


def test_l2_path_is_a_grid_over_l2() -> None:
    spec = load_spec("l2-path")
    assert isinstance(spec.searcher, GridSearchConfig)
    dists = dict(spec.iter_distributions())
    l2 = dists[("penalties", "l2")]
    assert isinstance(l2, Grid)
    assert l2.values[0] == 0.0
    assert list(l2.values) == sorted(l2.values)
    assert spec.scheduler.kind == "none"


def test_adversarial_sweeps_eps_and_method() -> None:
    dists = dict(load_spec("adversarial").iter_distributions())
    assert {("penalties", "adversarial", "eps"), ("penalties", "adversarial", "method")} <= set(
        dists
    )


def test_fairness_sweeps_strength_and_kind() -> None:
    spec = load_spec("fairness")
    dists = dict(spec.iter_distributions())
    assert set(dists[("penalties", "fairness", "kind")].probe_values()) == {"dp", "eo"}
    assert ("penalties", "fairness", "strength") in dists
    assert spec.space["dataset"]["name"] == "adult"


def test_three_objective_front() -> None:
    spec = load_spec("three-objective")
    assert [(o.metric, o.mode) for o in spec.objectives] == [
        ("val_acc", "max"),
        ("robust_acc", "max"),
        ("dp_diff", "min"),
    ]
    assert spec.scheduler.kind == "pareto-asha"


@pytest.mark.parametrize("load", [preset_path, load_spec])
def test_a_misspelt_preset_gets_a_suggestion_and_the_list(load: Any) -> None:
    with pytest.raises(SpecError) as info:
        load("quickstrat")
    message = str(info.value)
    assert "'quickstrat'" in message
    assert "did you mean 'quickstart'?" in message
    assert message.endswith("presets: " + ", ".join(EXPECTED))


def test_a_name_like_no_preset_gets_no_suggestion() -> None:
    with pytest.raises(SpecError) as info:
        load_spec("zzzz")
    assert "did you mean" not in str(info.value)


def test_each_preset_has_a_one_line_description() -> None:
    descriptions = preset_descriptions()
    assert list(descriptions) == EXPECTED
    for name, text in descriptions.items():
        assert text == load_spec(name).description
        assert text and "\n" not in text


def test_preset_with_overrides() -> None:
    spec = load_spec("quickstart", overrides=["budget.samples=2", "penalties.l2=0.001"])
    assert spec.budget.samples == 2
    assert spec.space["penalties"]["l2"] == 0.001

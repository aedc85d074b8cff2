"""Every problem of a spec at once: the rules over the whole config (the config
at the representative values, keys idle in every trial) run whatever else was
found, leaving out what only repeats a problem already named; a key that a
section's kind given with --set makes unknown names that option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.search_spaces import load_spec

IDLE_MOMENTUM = "training.momentum: has no effect in any trial"


def _lines(source: Any, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(source, overrides=overrides, check_data=False)
    return str(info.value).splitlines()[1:]


def test_an_idle_key_is_reported_with_a_value_listed_twice(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\n"
        "dataset: digits\n"
        "budget: {samples: 2, max_epochs: 2}\n"
        "penalties:\n"
        "  l2: {choice: [1.0e-3, 1.0e-3]}\n"
        "training: {momentum: 0.9, optimizer: adamw}\n"
    )
    lines = _lines(str(spec))
    assert len(lines) == 2, lines
    assert lines[0].startswith("line 5: penalties.l2.choice: 0.001 is listed twice")
    assert lines[1].startswith(f"line 6: {IDLE_MOMENTUM}: only optimizer 'sgd' uses momentum")


def _spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "s",
        "dataset": "digits",
        "budget": {"samples": 2, "max_epochs": 2},
        "penalties": {"l2": {"loguniform": [1e-5, 1e-2]}},
    }
    return spec | over


def test_the_config_at_its_representative_values_is_checked_with_a_bad_fixed_value() -> None:
    """A bad fixed value stops the probes (every config they build is refused for
    it); the rule over mixup, method and eps is still found at the representative values."""
    penalties = {
        "mixup": {"uniform": [0.1, 0.3]},
        "adversarial": {"method": {"choice": ["trades", "pgd"]}},
    }
    lines = _lines(_spec(training={"lr": -1}, penalties=penalties))
    assert lines == [
        "training.lr: Input should be greater than 0 (got -1)",
        "penalties: with every distribution at its representative value: penalties.mixup "
        "cannot be combined with penalties.adversarial.method 'trades': TRADES compares "
        "predictions on each clean input and its attacked copy, which a mixed input does not "
        "have; set mixup to 0 or use method pgd/fgsm_rs (attacked inputs are then mixed)",
    ]


def test_other_sections_problems_do_not_hide_an_idle_key() -> None:
    lines = _lines(_spec(budget={"samples": 0}, training={"momentum": 0.9}))
    assert lines[0].startswith("budget.samples: ") and len(lines) == 2, lines
    assert lines[1].startswith(f"{IDLE_MOMENTUM}: only optimizer 'sgd'")


@pytest.mark.parametrize(
    "training",
    [
        {"optimzer": "sgd", "momentum": 0.9},  # misspelt: its section is at a default
        {"optimizer": {"choice": []}, "momentum": 0.9},  # no values: dropped
        {"optimizer": "sgdd", "momentum": 0.9},  # refused
        {"momentum": {"uniform": [0.9, 0.1]}, "optimizer": "adamw"},  # the key itself
    ],
)
def test_an_idle_key_is_not_a_knock_on_of_a_problem_around_it(training: dict[str, Any]) -> None:
    lines = _lines(_spec(training=training))
    assert lines and not any("has no effect" in line for line in lines), lines


def test_a_problem_a_probe_named_is_not_named_again_at_the_representative_values() -> None:
    lines = _lines(_spec(penalties={"l2": {"choice": [0.01, -1.0]}}, budget={"samples": 0}))
    assert not any("representative value" in line for line in lines), lines
    assert any(line.startswith("penalties.l2: choice can produce -1.0") for line in lines)


def test_a_key_a_set_kind_makes_unknown_names_that_set() -> None:
    lines = _lines("quickstart", ("scheduler.kind=hyperband",))
    assert lines[0] == (
        "line 23: scheduler.grace_period: unknown key 'grace_period'; allowed: kind, "
        "reduction_factor (scheduler.kind is set by --set scheduler.kind=hyperband)"
    )
    lines = _lines("quickstart", ("searcher.kind=random",))
    assert lines[0].startswith("line 24: searcher.n_initial_points: unknown key ")
    assert lines[0].endswith("(searcher.kind is set by --set searcher.kind=random)")


def test_a_key_the_files_own_kind_does_not_take_names_no_set() -> None:
    spec = _spec(scheduler={"kind": "hyperband", "grace_period": 1})
    lines = _lines(spec, ("budget.max_epochs=8",))
    assert lines == [
        "scheduler.grace_period: unknown key 'grace_period'; allowed: kind, reduction_factor"
    ]

"""Config rules a review found missing or misplaced: a boolean is never a number,
an early-stopping metric must be one the run reports (and its mode must fit
it), and the evaluation attack must be stronger only while robust accuracy is
measured; each refusal names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.search_spaces import load_train_config
from regtune.trainables.config import TrainConfig, parse_train_config


def _problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_train_config(raw)
    return {p.path: p.message for p in info.value.problems}


# -- booleans are not numbers ------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "values", "kind"),
    [
        ("penalties", {"l2": True}, "a number"),
        ("penalties", {"mixup": True, "input_noise": True}, "a number"),
        ("penalties", {"elastic_net": {"strength": True, "l1_ratio": False}}, "a number"),
        ("penalties", {"adversarial": {"method": "pgd", "eps": True}}, "a number"),
        ("training", {"epochs": True}, "a whole number"),
        ("training", {"lr": True}, "a number"),
        ("training", {"seed": False}, "a whole number"),
        ("model", {"dropout": True}, "a number"),
        ("dataset", {"name": "digits", "val_fraction": True}, "a number"),
    ],
)
def test_a_boolean_is_refused_for_every_number_key(
    section: str, values: dict[str, Any], kind: str
) -> None:
    raw: dict[str, Any] = {"dataset": "digits", section: values}
    problems = _problems(raw)
    assert problems, problems
    for path, message in problems.items():
        assert path.startswith(f"{section}."), problems
        assert f"Input should be {kind}, not a boolean" in message, message
        assert "(got True)" in message or "(got False)" in message, message


def test_keys_that_take_booleans_still_do() -> None:
    config = parse_train_config(
        {"dataset": {"name": "digits"}, "penalties": {"spectral_norm": True}}
    )
    assert config.penalties.spectral_norm is True
    raw = {"name": "csv", "path": "x.csv", "label": "y", "positive_label": True}
    assert parse_train_config({"dataset": raw}).dataset.positive_label is True


def test_yaml_yes_and_on_are_refused_for_numbers(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("dataset: digits\npenalties: {l2: yes, max_norm: on}\n")
    with pytest.raises(SpecError) as info:
        parse_train_config(load_train_config(path, []))
    paths = {p.path for p in info.value.problems}
    assert paths == {"penalties.l2", "penalties.max_norm"}, str(info.value)


def test_a_set_true_for_a_number_is_blamed_on_the_option(tmp_path: Path) -> None:
    path = tmp_path / "base.yaml"
    path.write_text("dataset: digits\ntraining: {epochs: 1}\n")
    with pytest.raises(SpecError) as info:
        parse_train_config(load_train_config(path, ["penalties.l2=true"]))
    assert "penalties.l2: Input should be a number, not a boolean" in str(info.value)


# -- robust_steps > adversarial steps only while robust accuracy is measured ------


def test_strong_training_attack_without_robust_evaluation_is_allowed() -> None:
    adv = {"method": "pgd", "eps": 0.1, "steps": 25}
    config = parse_train_config(
        {"dataset": "digits", "training": {"robust_every": 0}, "penalties": {"adversarial": adv}}
    )
    assert config.penalties.adversarial.steps == 25


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_weak_evaluation_attack_is_refused_at_robust_steps(method: str) -> None:
    adv = {"method": method, "eps": 0.1, "steps": 25}
    raw = {"dataset": "digits", "training": {"robust_every": 1}, "penalties": {"adversarial": adv}}
    with pytest.raises(SpecError) as info:
        parse_train_config(raw)
    (problem,) = info.value.problems
    assert problem.path == "training.robust_steps"
    assert problem.because == "penalties.adversarial.steps"
    assert "training.robust_steps: must exceed penalties.adversarial.steps (25) while" in str(
        problem
    )
    raw["training"] = {"robust_every": 1, "robust_steps": 30}
    parse_train_config(raw)


# -- early stopping: a metric the run reports, a mode that fits it -------------------


def test_early_stopping_on_robust_acc_needs_robust_evaluation() -> None:
    es = {"metric": "robust_acc", "mode": "max", "patience": 2}
    problems = _problems(
        {"dataset": "digits", "training": {"robust_every": 0, "early_stopping": es}}
    )
    message = problems["training.early_stopping.metric"]
    assert "robust_every is 0" in message and "allowed here: train_loss, val_loss" in message
    assert "robust_acc," not in message.split("allowed here:")[1]
    parse_train_config({"dataset": "digits", "training": {"robust_every": 2, "early_stopping": es}})


@pytest.mark.parametrize("metric", ["dp_diff", "eo_diff"])
def test_early_stopping_on_a_fairness_gap_needs_a_sensitive_attribute(metric: str) -> None:
    es = {"metric": metric, "patience": 2}
    problems = _problems({"dataset": "digits", "training": {"early_stopping": es}})
    message = problems["training.early_stopping.metric"]
    assert "no sensitive attribute" in message and "allowed here: train_loss" in message
    assert metric not in message.split("allowed here:")[1]
    parse_train_config({"dataset": "adult", "training": {"early_stopping": es}})
    csv = {"name": "csv", "path": "x.csv", "label": "y", "sensitive": "sex"}
    parse_train_config({"dataset": csv, "training": {"early_stopping": es}})


def test_an_unreported_metric_without_patience_is_not_refused_here() -> None:
    # Early stopping is off; the YAML loaders name the metric as an idle key.
    es = {"metric": "robust_acc"}
    parse_train_config({"dataset": "digits", "training": {"robust_every": 0, "early_stopping": es}})


@pytest.mark.parametrize(
    ("metric", "mode", "expected"),
    [("val_loss", "max", "min"), ("val_acc", "min", "max"), ("robust_acc", "min", "max")],
)
def test_early_stopping_mode_contradicting_its_metric_is_refused(
    metric: str, mode: str, expected: str
) -> None:
    es = {"metric": metric, "mode": mode, "patience": 1}
    problems = _problems({"dataset": "digits", "training": {"early_stopping": es}})
    assert problems == {
        "training.early_stopping.mode": (
            f"mode {mode!r} contradicts metric {metric!r}, for which {expected!r} is better; "
            f"omit mode to use {expected!r}"
        )
    }


def test_an_omitted_early_stopping_mode_follows_its_metric() -> None:
    es = {"metric": "val_acc", "patience": 1}
    config = parse_train_config({"dataset": "digits", "training": {"early_stopping": es}})
    assert config.training.early_stopping.mode == "max"
    # Still not an explicit setting: a dump without unset keys leaves it out,
    # and the config parses back to the same.
    dumped = config.model_dump(exclude_unset=True)
    assert "mode" not in dumped["training"]["early_stopping"]
    assert parse_train_config(config.model_dump(mode="json")) == config
    assert TrainConfig.model_validate(dumped) == config

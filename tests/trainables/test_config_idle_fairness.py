"""Fairness keys that need a training term are refused at strength 0, where they
change nothing (``temperature``, ``dual_lr``, the training part of ``method``);
what a bound or post-processing does at strength 0 is kept; stored configs and
specs with such keys still load; and a misspelt key at any depth is named with
the keys allowed where it stands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from regtune.errors import SpecError
from regtune.search_spaces import load_spec, load_train_config
from regtune.trainables.config import idle_keys, parse_train_config
from regtune.trainables.loop import Trainer
from regtune.trainables.threshold_settings import ThresholdSettings

STRENGTH_NEEDED = "remove it, or set penalties.fairness.strength above 0 so that it applies"


def _yaml(tmp_path: Path, fairness: dict[str, Any], name: str = "c.yaml") -> Path:
    path = tmp_path / name
    raw = {"dataset": "german", "training": {"epochs": 3}, "penalties": {"fairness": fairness}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _refused(tmp_path: Path, fairness: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        load_train_config(_yaml(tmp_path, fairness))
    return {p.path.removeprefix("penalties.fairness."): p.message for p in info.value.problems}


# -- idle at strength 0 --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fairness", "idle"),
    [
        # The review's case: the same val_loss and test_eo_diff as bound alone.
        (
            {"kind": "eo", "bound": 0.1, "method": "lagrangian", "dual_lr": 50, "temperature": 0.1},
            ["temperature", "dual_lr", "method"],
        ),
        ({"kind": "eo", "method": "penalty+postprocess"}, ["method"]),
        ({"kind": "dp", "method": "lagrangian+postprocess", "dual_lr": 5}, ["dual_lr", "method"]),
        ({"kind": "eo", "method": "lagrangian+postprocess", "bound": 0.1}, ["method"]),
        ({"kind": "eo", "bound": 0.1, "temperature": 0.5}, ["temperature"]),
        ({"kind": "eo", "bound": 0.1, "strength": 0.0, "method": "lagrangian"}, ["method"]),
    ],
)
def test_training_term_keys_at_strength_zero_are_refused(
    tmp_path: Path, fairness: dict[str, Any], idle: list[str]
) -> None:
    problems = _refused(tmp_path, fairness)
    assert sorted(problems) == sorted(idle), problems
    for key in idle:
        assert problems[key].startswith("has no effect: "), problems[key]
        assert problems[key].endswith(STRENGTH_NEEDED), problems[key]
        assert "strength is 0" in problems[key]
    if "dual_lr" in idle:
        assert "multipliers are bounded by strength" in problems["dual_lr"]


def test_a_lagrangian_method_is_refused_for_what_it_is_at_strength_zero(tmp_path: Path) -> None:
    problems = _refused(tmp_path, {"kind": "eo", "bound": 0.1, "method": "lagrangian"})
    assert "'lagrangian' trains as 'penalty' does" in problems["method"]
    problems = _refused(tmp_path, {"kind": "eo", "method": "penalty+postprocess"})
    assert "for thresholds alone use method 'postprocess'" in problems["method"]


@pytest.mark.parametrize(
    "fairness",
    [
        {"kind": "eo", "bound": 0.1},  # selection alone
        {"kind": "eo", "bound": 0.1, "margin": 0.02, "method": "penalty"},
        # Selection, then thresholds: not what 'postprocess' alone does (its
        # run keeps the last epoch).
        {"kind": "eo", "bound": 0.1, "method": "penalty+postprocess"},
        {"kind": "dp", "method": "postprocess"},
        {"kind": "eo", "method": "postprocess", "bound": 0.1, "threshold_rows": "train+val"},
        {"kind": "eo", "strength": 1.0, "method": "lagrangian", "dual_lr": 5, "temperature": 0.5},
        {"kind": "dp", "strength": 1.0, "method": "penalty+postprocess", "temperature": 0.5},
    ],
)
def test_what_applies_at_strength_zero_or_above_is_accepted(
    tmp_path: Path, fairness: dict[str, Any]
) -> None:
    config = load_train_config(_yaml(tmp_path, fairness))
    assert config["penalties"]["fairness"] == fairness


def test_a_kind_alone_names_every_way_to_turn_it_on(tmp_path: Path) -> None:
    problems = _refused(tmp_path, {"kind": "dp"})
    assert problems == {
        "kind": "has no effect: the fairness penalty is off while its strength is 0, and no "
        "bound or method ending in 'postprocess' uses it; remove it, or set "
        "penalties.fairness.strength above 0, a penalties.fairness.bound, or a "
        "penalties.fairness.method ending in 'postprocess' so that it applies"
    }


# -- the premise: at strength 0 these keys change nothing ------------------------------


def _csv(tmp_path: Path) -> Path:
    rows = ["a,b,s,y"] + [
        f"{(i * 7) % 11},{(i * 5) % 13},{i % 2},{int((i * 7) % 11 + 3 * (i % 2) > 6)}"
        for i in range(240)
    ]
    path = tmp_path / "groups.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _history(path: Path, fairness: dict[str, Any]) -> tuple[list[float], Trainer]:
    cfg = {
        "dataset": {"name": "csv", "path": str(path), "label": "y", "sensitive": "s"},
        "model": {"arch": "mlp", "width": 8, "depth": 1},
        "training": {"epochs": 3, "batch_size": 32, "lr": 0.05, "robust_every": 0},
        "penalties": {"fairness": fairness},
    }
    trainer = Trainer(cfg)
    losses = []
    while not trainer.should_stop:
        losses.append(trainer.run_epoch()["val_loss"])
    return losses, trainer


def test_at_strength_zero_lagrangian_trains_as_penalty_and_a_bound_still_selects(
    tmp_path: Path,
) -> None:
    path = _csv(tmp_path)
    plain, selecting = _history(path, {"kind": "eo", "bound": 0.1})
    lagrangian, _ = _history(
        path,
        {"kind": "eo", "bound": 0.1, "method": "lagrangian", "dual_lr": 50, "temperature": 0.1},
    )
    assert lagrangian == plain
    # A bound keeps an epoch only with a training part in method (kept, not refused).
    assert selecting.kept_selection() is not None
    _, thresholds_only = _history(path, {"kind": "eo", "bound": 0.1, "method": "postprocess"})
    assert thresholds_only.kept_selection() is None


# -- stored configs and specs are read as they ran --------------------------------------

STORED_FAIRNESS = {
    "kind": "eo",
    "strength": 0.0,
    "method": "lagrangian+postprocess",
    "dual_lr": 5.0,
    "temperature": 0.5,
    "bound": 0.1,
}


def test_a_stored_config_with_keys_now_refused_still_loads() -> None:
    # A registry version's or checkpoint's config (parse_train_config(stored=True))
    # and the registry's threshold settings read from it: the new rule is one of
    # the YAML loaders' (idle_keys), not of the config model.
    raw = {"dataset": "german", "penalties": {"fairness": STORED_FAIRNESS}}
    config = parse_train_config(raw, stored=True)
    assert config.penalties.fairness.method == "lagrangian+postprocess"
    assert parse_train_config(raw).penalties.fairness.dual_lr == 5.0  # a trial's config
    assert [p.path for p in idle_keys(config)] == [
        "penalties.fairness.temperature",
        "penalties.fairness.dual_lr",
        "penalties.fairness.method",
    ]
    settings = ThresholdSettings.from_config(raw)
    assert settings is not None and settings.kind == "eo"


def _sweep(fairness: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "s",
        "dataset": "german",
        "model": {"arch": "mlp", "width": 16},
        "penalties": {"l2": {"loguniform": [1e-5, 1e-2]}, "fairness": fairness},
        "budget": {"samples": 2, "max_epochs": 2},
    }


def test_a_sweep_sampling_strength_through_zero_keeps_its_lagrangian_keys() -> None:
    fairness = {
        "kind": "eo",
        "method": "lagrangian",
        "dual_lr": 5.0,
        "temperature": 0.5,
        "strength": {"choice": [0, 1]},
    }
    spec = load_spec(_sweep(fairness), check_data=False)
    assert spec.space["penalties"]["fairness"]["method"] == "lagrangian"


def test_a_sweep_whose_every_trial_has_strength_zero_refuses_them() -> None:
    fairness = {"kind": "eo", "bound": 0.1, "method": "lagrangian", "dual_lr": 5.0}
    with pytest.raises(SpecError) as info:
        load_spec(_sweep(fairness), check_data=False)
    problems = {p.path: p.message for p in info.value.problems}
    assert sorted(problems) == ["penalties.fairness.dual_lr", "penalties.fairness.method"]
    assert all(m.startswith("has no effect in any trial: ") for m in problems.values())


# -- a misspelt key at any depth --------------------------------------------------------


def test_a_misspelt_nested_key_is_named_with_the_keys_allowed_there(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "dataset: german\npenalties: {fairness: {kind: dp, strength: 1, methd: penalty}}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as info:
        load_train_config(path)
    assert str(info.value).splitlines()[1:] == [
        "line 2: penalties.fairness.methd: unknown key 'methd'; allowed: kind, strength, "
        "temperature, method, dual_lr, bound, margin, threshold_rows, robust_quantile, "
        "robust_resamples, randomized (did you mean 'method'?)"
    ]


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        (
            {"dataset": "digits", "penalties": {"l3": 1}},
            "penalties.l3",
            "unknown key 'l3'; allowed: l1, l2, elastic_net, weight_decay, label_smoothing, "
            "input_noise, mixup, max_norm, spectral_norm, adversarial, fairness",
        ),
        (
            {"dataset": "digits", "modle": {"arch": "mlp"}},
            "modle",
            "unknown key 'modle'; allowed: dataset, model, training, penalties "
            "(did you mean 'model'?)",
        ),
        (
            {"dataset": {"name": "csv", "path": "x.csv", "label": "y", "sensitve": "s"}},
            "dataset.sensitve",
            "unknown key 'sensitve'; allowed: name, path, label, features, categorical, "
            "sensitive, positive_label, val_fraction, test_fraction, split_seed, sep, missing "
            "(did you mean 'sensitive'?)",
        ),
        (
            {"dataset": "digits", "training": {"early_stopping": {"patiense": 2}}},
            "training.early_stopping.patiense",
            "unknown key 'patiense'; allowed: metric, mode, patience, min_delta "
            "(did you mean 'patience'?)",
        ),
    ],
)
def test_every_depth_names_an_unknown_key_alike(
    raw: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_train_config(raw)
    assert {p.path: p.message for p in info.value.problems} == {path: message}


def test_an_override_of_an_unknown_key_is_named_too(tmp_path: Path) -> None:
    path = _yaml(tmp_path, {"kind": "dp", "strength": 1})
    with pytest.raises(SpecError) as info:
        load_train_config(path, ["penalties.l3=1"])
    (problem,) = info.value.problems
    assert problem.path == "penalties.l3"
    assert problem.message.startswith("unknown key 'l3'; allowed: l1, l2, elastic_net")

"""Cohorts: a member trained in a cohort is the same run as its solo Trainer.

Real data (a slice of digits), real Trainers as the reference, real
checkpoints (safetensors) for the round trips.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from regtune.errors import SpecError
from regtune.trainables.checkpoint import save_tree
from regtune.trainables.cohort import (
    Cohort,
    SequentialCohort,
    fusable,
    make_cohort,
)
from regtune.trainables.cohort_fused import FusedCohort
from regtune.trainables.config import parse_train_config
from regtune.trainables.data import Dataset, Split, load_dataset
from regtune.trainables.loop import Trainer

#: Relative / absolute tolerance of a fused member's metrics against its solo
#: run (float32; the fused optimizer rounds a few operations differently).
RTOL, ATOL = 1e-4, 1e-6
EPOCHS = 2
#: Metrics that are wall-clock times, not results.
TIMES = ("epoch_time_s", "train_time_s")


def _cut(split: Split, n: int) -> Split:
    return Split(split.x[:n], split.y[:n], None if split.s is None else split.s[:n])


@pytest.fixture(scope="module")
def small(digits: Dataset) -> Dataset:
    """Digits cut to 250 training and 100 validation/test rows (2 batches of 128)."""
    val, test = _cut(digits.val, 100), _cut(digits.test, 100)
    return dataclasses.replace(digits, train=_cut(digits.train, 250), val=val, test=test)


def _cfg(**over: Any) -> dict[str, Any]:
    """A small digits MLP; ``over`` is ``{"section.key": value}``."""
    cfg: dict[str, Any] = {
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 16, "depth": 2},
        "training": {"epochs": EPOCHS, "robust_every": 0, "batch_size": 128},
        "penalties": {},
    }
    for path, value in over.items():
        section, key = path.split(".", 1)
        cfg[section][key] = value
    return cfg


#: One member per regularizer (and per schedule), each with its own seed.
REGULARIZERS: dict[str, dict[str, Any]] = {
    "plain": _cfg(),
    "l1": _cfg(**{"penalties.l1": 1e-3, "training.seed": 1}),
    "l2": _cfg(**{"penalties.l2": 1e-3, "training.seed": 2, "training.lr": 3e-3}),
    "elastic_net": _cfg(**{"penalties.elastic_net": {"strength": 1e-3, "l1_ratio": 0.3}}),
    "weight_decay": _cfg(**{"penalties.weight_decay": 0.05, "training.seed": 3}),
    "dropout": _cfg(**{"model.dropout": 0.3, "training.seed": 4}),
    "label_smoothing": _cfg(**{"penalties.label_smoothing": 0.1}),
    "input_noise": _cfg(**{"penalties.input_noise": 0.1, "training.seed": 5}),
    "mixup": _cfg(**{"penalties.mixup": 0.4, "penalties.label_smoothing": 0.05}),
    "max_norm": _cfg(**{"penalties.max_norm": 0.5, "training.lr": 1e-2}),
    "cosine": _cfg(**{"training.lr_schedule": "cosine", "training.lr": 5e-3}),
    "onecycle": _cfg(**{"training.lr_schedule": "onecycle", "training.lr": 5e-3}),
    "robust_acc": _cfg(
        **{"training.robust_every": 2, "training.robust_samples": 40, "training.robust_steps": 3}
    ),
    "early_stopping_robust": _cfg(
        **{
            "training.robust_every": 1,
            "training.robust_samples": 40,
            "training.robust_steps": 3,
            "training.early_stopping": {"patience": 1, "metric": "robust_acc"},
        }
    ),
    "early_stopping": _cfg(
        **{"training.early_stopping": {"patience": 1, "metric": "val_acc", "mode": "max"}}
    ),
    "calibration": _cfg(**{"training.calibration": "temperature", "model.dropout": 0.1}),
}


def _solo(cfg: dict[str, Any], data: Dataset, epochs: int | None = None) -> Trainer:
    trainer = Trainer(cfg, dataset=data)
    while not trainer.should_stop and (epochs is None or trainer.epoch < epochs):
        trainer.run_epoch()
    return trainer


def _assert_rows_close(got: list[dict[str, float]], want: list[dict[str, float]]) -> None:
    assert len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        assert set(mine) == set(theirs)
        for key, value in theirs.items():
            if key not in TIMES:
                assert mine[key] == pytest.approx(value, rel=RTOL, abs=ATOL), key


def _run(cohort: Cohort) -> list[dict[str, dict[str, float]]]:
    epochs = []
    while rows := cohort.run_epoch():
        epochs.append(rows)
    return epochs


@pytest.fixture(scope="module")
def fused(small: Dataset) -> tuple[FusedCohort, list[dict[str, dict[str, float]]]]:
    cohort = FusedCohort(REGULARIZERS, dataset=small)
    return cohort, _run(cohort)


@pytest.mark.parametrize("member", list(REGULARIZERS))
def test_fused_member_equals_its_solo_run(
    fused: tuple[FusedCohort, list[dict[str, dict[str, float]]]], small: Dataset, member: str
) -> None:
    cohort, epochs = fused
    solo = _solo(REGULARIZERS[member], small)
    mine = [rows[member] for rows in epochs if member in rows]
    _assert_rows_close(mine, solo.history)
    assert cohort.should_stop(member)
    state = cohort.state_dict(member)
    for name, tensor in solo.model.state_dict().items():
        torch.testing.assert_close(state["model"][name], tensor, rtol=RTOL, atol=1e-5)
    test = cohort.finish(member)
    want = solo.finish()
    assert set(test) == set(want)
    for key, value in want.items():
        assert test[key] == pytest.approx(value, rel=RTOL, abs=1e-5, nan_ok=True), key


def test_batched_robust_accuracy_equals_each_members_solo_attack(small: Dataset) -> None:
    robust = {"training.robust_every": 1, "training.robust_samples": 40, "training.robust_steps": 3}
    configs = {
        "eps_small": _cfg(**robust, **{"training.robust_eps": 0.05, "model.dropout": 0.2}),
        "eps_large": _cfg(**robust, **{"training.robust_eps": 0.2, "training.seed": 1}),
        "more_steps": _cfg(**{**robust, "training.robust_steps": 4, "training.seed": 2}),
    }
    epochs = _run(FusedCohort(configs, dataset=small))
    for member, cfg in configs.items():
        solo = _solo(cfg, small)
        _assert_rows_close([rows[member] for rows in epochs], solo.history)
        assert [rows[member]["robust_acc"] for rows in epochs] == [
            r["robust_acc"] for r in solo.history
        ]


def test_sgd_members_with_momentum_and_schedules_equal_solo(small: Dataset) -> None:
    sgd = {"training.optimizer": "sgd", "training.lr": 0.05}
    configs = {
        "momentum": _cfg(**sgd, **{"training.momentum": 0.9, "penalties.weight_decay": 1e-3}),
        "no_momentum": _cfg(**sgd, **{"training.momentum": 0.0, "training.seed": 1}),
        "onecycle": _cfg(**sgd, **{"training.lr_schedule": "onecycle", "model.dropout": 0.2}),
    }
    epochs = _run(FusedCohort(configs, dataset=small))
    for member, cfg in configs.items():
        _assert_rows_close([rows[member] for rows in epochs], _solo(cfg, small).history)


def test_sequential_cohort_is_bitwise_the_solo_run_and_keeps_global_rng(small: Dataset) -> None:
    configs = {
        "a": _cfg(**{"model.dropout": 0.3}),
        "b": _cfg(**{"model.dropout": 0.2, "training.seed": 7}),
    }
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    epochs = _run(SequentialCohort(configs, dataset=small))
    assert torch.equal(torch.get_rng_state(), before)
    for member, cfg in configs.items():
        solo = _solo(cfg, small)
        got = [{k: v for k, v in rows[member].items() if k not in TIMES} for rows in epochs]
        assert got == [{k: v for k, v in r.items() if k not in TIMES} for r in solo.history]


def test_fused_cohort_leaves_the_global_rng_alone(small: Dataset) -> None:
    torch.manual_seed(99)
    before = torch.get_rng_state()
    cohort = FusedCohort(
        {"a": _cfg(**{"model.dropout": 0.5}), "b": _cfg(**{"training.seed": 3})}, dataset=small
    )
    cohort.run_epoch()
    assert torch.equal(torch.get_rng_state(), before)


def test_drop_leaves_the_other_members_unchanged(small: Dataset) -> None:
    configs = {
        "a": _cfg(**{"model.dropout": 0.2}),
        "b": _cfg(**{"training.seed": 1, "penalties.l2": 1e-3}),
        "c": _cfg(**{"training.seed": 2, "penalties.mixup": 0.3}),
    }
    full = _run(FusedCohort(configs, dataset=small))
    cohort = FusedCohort(configs, dataset=small)
    first = cohort.run_epoch()
    cohort.drop("b")
    assert cohort.members == ["a", "c"]
    rest = _run(cohort)
    assert all(set(rows) == {"a", "c"} for rows in rest)
    for member in ("a", "c"):
        got = [first[member]] + [rows[member] for rows in rest]
        _assert_rows_close(got, [rows[member] for rows in full])
    # The dropped member keeps its state after one epoch, and can still finish.
    assert cohort.state_dict("b")["epoch"] == 1
    assert "test_acc" in cohort.finish("b")


def test_state_dict_continues_in_a_solo_trainer(small: Dataset, tmp_path: Path) -> None:
    cfg = _cfg(**{"model.dropout": 0.2, "training.lr_schedule": "cosine", "penalties.l1": 1e-4})
    configs = {"x": cfg, "y": _cfg(**{"training.seed": 5})}
    cohort = FusedCohort(configs, dataset=small)
    cohort.run_epoch()
    state = cohort.state_dict("x")
    reference = _solo(cfg, small, epochs=1).state_dict()
    assert _shape_of(state) == _shape_of(reference)
    save_tree(state, tmp_path / "ckpt")  # the on-disk format (safetensors + JSON)
    resumed = Trainer(cfg, dataset=small)
    resumed.restore(tmp_path / "ckpt")
    resumed.run_epoch()
    _assert_rows_close(resumed.history, _solo(cfg, small).history)
    last = cohort.run_epoch()["x"]
    _assert_rows_close([last], resumed.history[-1:])


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_load_state_dict_continues_a_solo_run_in_the_cohort(small: Dataset, optimizer: str) -> None:
    """A restored member joins members at another step; each stays its solo run."""
    common = {"training.optimizer": optimizer, "training.lr": 0.02 if optimizer == "sgd" else 1e-3}
    cfg = _cfg(
        **common,
        **{"model.dropout": 0.3, "training.lr_schedule": "onecycle", "training.seed": 8},
    )
    configs = {"x": cfg, "y": _cfg(**common, **{"penalties.l2": 1e-3})}
    cohort = FusedCohort(configs, dataset=small)
    cohort.load_state_dict("x", _solo(cfg, small, epochs=1).state_dict())
    epochs = _run(cohort)
    assert [sorted(rows) for rows in epochs] == [["x", "y"]] * (EPOCHS - 1) + [["y"]]
    _assert_rows_close([rows["x"] for rows in epochs if "x" in rows], _solo(cfg, small).history[1:])
    _assert_rows_close([rows["y"] for rows in epochs], _solo(configs["y"], small).history)
    finished = _solo(cfg, small, epochs=EPOCHS).state_dict()
    cohort.load_state_dict("x", finished)
    assert cohort.should_stop("x")
    assert cohort.state_dict("x")["epoch"] == EPOCHS


def _shape_of(tree: Any) -> Any:
    """The tree's structure: keys, list lengths, tensor shapes and dtypes."""
    if isinstance(tree, torch.Tensor):
        return ("tensor", tuple(tree.shape), tree.dtype)
    if isinstance(tree, dict):
        return {k: _shape_of(v) for k, v in tree.items() if k != "history"}
    if isinstance(tree, list):
        return [_shape_of(v) for v in tree]
    return type(tree).__name__


def test_fusable_partitions_by_shape_dataset_and_kind() -> None:
    configs = {
        "a": _cfg(),
        "b": _cfg(**{"penalties.l2": 0.1, "model.dropout": 0.5, "training.lr": 0.1}),
        "wide": _cfg(**{"model.width": 48}),
        "c": _cfg(**{"training.seed": 3, "training.optimizer": "adam"}),
        "sgd": _cfg(**{"training.optimizer": "sgd"}),
        "bs": _cfg(**{"training.batch_size": 64}),
        "other_data": {**_cfg(), "dataset": "breast_cancer"},
        "adv": _cfg(**{"penalties.adversarial": {"method": "fgsm_rs", "eps": 0.1}}),
        "sn": _cfg(**{"penalties.spectral_norm": True}),
        "cnn": _cfg(**{"model.arch": "cnn"}),
        "d": _cfg(**{"training.seed": 4}),
    }
    # Without padding every width is its own group; with it (the default)
    # width 48 joins the width-16 members (test_cohort_pad checks the rule).
    assert fusable(configs, device="cpu", pad=False)[:2] == [["a", "b", "c", "d"], ["wide"]]
    assert fusable(configs, device="cpu") == [
        ["a", "b", "wide", "c", "d"],
        ["sgd"],
        ["bs"],
        ["other_data"],
        ["adv"],
        ["sn"],
        ["cnn"],
    ]


def test_make_cohort_fuses_groups_and_runs_the_rest_alone(small: Dataset) -> None:
    configs = {
        "a": _cfg(**{"training.epochs": 2}),
        "b": _cfg(**{"training.epochs": 2, "training.seed": 1}),
        "adv": _cfg(
            **{
                "training.epochs": 1,
                "penalties.adversarial": {"method": "fgsm_rs", "eps": 0.05},
            }
        ),
    }
    cohort = make_cohort(configs, dataset=small)
    assert isinstance(cohort, Cohort)
    assert cohort.members == ["a", "b", "adv"]
    epochs = _run(cohort)
    assert [sorted(rows) for rows in epochs] == [["a", "adv", "b"], ["a", "b"]]
    _assert_rows_close([epochs[0]["adv"]], _solo(configs["adv"], small).history)
    with pytest.raises(KeyError, match="no member 'nope'"):
        cohort.state_dict("nope")


@pytest.mark.parametrize(
    ("configs", "fragment"),
    [
        ({}, "at least one member"),
        ({"": _cfg()}, "non-empty strings"),
        ({"a": _cfg(), "b": {**_cfg(), "dataset": "breast_cancer"}}, "same dataset"),
        ({"a": _cfg(), "b": _cfg(**{"model.depth": 1})}, "mlp depth 1"),
        ({"a": _cfg(), "b": _cfg(**{"model.arch": "logreg"})}, "an MLP's depth"),
        ({"a": _cfg(), "b": _cfg(**{"penalties.spectral_norm": True})}, "cannot train in a"),
        ({"a": _cfg(), "b": _cfg(**{"model.arch": "cnn"})}, "cnn width 16"),
        ({"a": _cfg(), "b": _cfg(**{"penalties.l2": -1.0})}, "penalties.l2"),
    ],
)
def test_bad_cohorts_are_refused_with_a_clear_error(
    small: Dataset, configs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(SpecError, match=fragment):
        FusedCohort(copy.deepcopy(configs), dataset=small)
    if fragment in ("at least one member", "non-empty strings", "penalties.l2"):
        with pytest.raises(SpecError, match=fragment):
            make_cohort(copy.deepcopy(configs), dataset=small)


def test_one_dataset_for_members_naming_different_ones_is_refused(small: Dataset) -> None:
    with pytest.raises(SpecError, match="same dataset"):
        make_cohort({"a": _cfg(), "b": {**_cfg(), "dataset": "breast_cancer"}}, dataset=small)


def test_finished_member_leaves_the_batch(small: Dataset) -> None:
    cohort = FusedCohort({"a": _cfg(), "b": _cfg(**{"training.seed": 1})}, dataset=small)
    cohort.run_epoch()
    test = cohort.finish("a")
    assert math.isfinite(test["test_acc"])
    assert set(cohort.run_epoch()) == {"b"}
    assert cohort.state_dict("a")["epoch"] == 1


def test_fairness_bound_and_postprocess_members_equal_solo(adult: Dataset) -> None:
    val, test = _cut(adult.val, 300), _cut(adult.test, 300)
    data = dataclasses.replace(adult, train=_cut(adult.train, 500), val=val, test=test)
    fairness = {"kind": "dp", "strength": 0.0, "bound": 0.3, "margin": 0.05}
    configs = {
        "bound": {**_cfg(**{"penalties.fairness": fairness}), "dataset": "adult"},
        "postprocess": {
            **_cfg(**{"penalties.fairness": {"kind": "eo", "method": "postprocess"}}),
            "dataset": "adult",
        },
        "group_temperature": {
            **_cfg(**{"training.calibration": "group_temperature", "training.seed": 2}),
            "dataset": "adult",
        },
    }
    cohort = FusedCohort(configs, dataset=data)
    epochs = _run(cohort)
    for member, cfg in configs.items():
        solo = _solo(cfg, data)
        _assert_rows_close([rows[member] for rows in epochs], solo.history)
        test_metrics, want = cohort.finish(member), solo.finish()
        assert set(test_metrics) == set(want)
        for key, value in want.items():
            assert test_metrics[key] == pytest.approx(value, rel=RTOL, abs=1e-5, nan_ok=True), key


def test_fairness_member_on_data_without_groups_is_refused(small: Dataset) -> None:
    configs = {"a": _cfg(), "b": _cfg(**{"penalties.fairness": {"kind": "dp", "strength": 0.0}})}
    with pytest.raises(SpecError, match="sensitive attribute"):
        FusedCohort(configs, dataset=small)


def test_early_stopping_on_a_gap_the_data_never_reports_is_refused_fused_as_solo(
    tmp_path: Path,
) -> None:
    """A 3-class label with a sensitive column: the gaps are never reported, so early
    stopping on dp_diff would never act. The trainer refused it; the fused cohort
    trained it (its own copy of the dataset checks lacked this one)."""
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "g": np.where(np.arange(n) % 2 == 0, "a", "b"),
            "y": np.arange(n) % 3,
        }
    )
    frame.to_csv(tmp_path / "three.csv", index=False)
    dataset = {"name": "csv", "path": str(tmp_path / "three.csv"), "label": "y", "sensitive": "g"}
    cfg = {
        "dataset": dataset,
        "model": {"arch": "logreg"},
        "training": {"epochs": 2, "early_stopping": {"metric": "dp_diff", "patience": 1}},
    }
    data = load_dataset(parse_train_config(cfg).dataset)
    with pytest.raises(SpecError, match="early stopping on 'dp_diff' would never act"):
        Trainer(cfg, dataset=data)
    with pytest.raises(SpecError, match="early stopping on 'dp_diff' would never act"):
        FusedCohort({"a": cfg, "b": cfg}, dataset=data)

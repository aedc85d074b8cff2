"""What a sweep checks on the loaded dataset before Ray starts: the data
loads, and is checked against the spec (a fairness penalty or objective
needs a binary label and a sensitive attribute), before the "starting Ray"
line; a refused sweep never starts Ray or a trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from regtune.errors import DataError, SpecError
from regtune.platform.tune import sweep
from regtune.platform.tune.sweep import check_dataset_fits, run_sweep
from regtune.search_spaces import load_spec
from regtune.trainables.config import parse_train_config
from regtune.trainables.data import load_dataset


def _csv(path: Path, classes: int, *, nan: bool = False) -> Path:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "g": np.where(np.arange(n) % 2 == 0, "a", "b"),
            "y": np.arange(n) % classes,
        }
    )
    if nan:
        frame.loc[3, "x1"] = np.nan
    frame.to_csv(path, index=False)
    return path


def _spec(data: Path, **over: Any) -> Any:
    raw: dict[str, Any] = {
        "name": "fits",
        "dataset": {"name": "csv", "path": str(data), "label": "y", "sensitive": "g"},
        "model": {"arch": "logreg"},
        "training": {"lr": {"loguniform": [1e-3, 1e-1]}},
        "objectives": ["val_acc"],
        "scheduler": {"kind": "none"},
        "searcher": {"kind": "random", "seed": 0},
        "budget": {"samples": 1, "max_epochs": 1},
    }
    raw.update(over)
    return load_spec(raw)


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records what run_sweep starts: the "starting Ray" callback, Ray itself."""
    started: list[str] = []

    def ensure_ray(*args: Any, **kwargs: Any) -> None:
        started.append("ray")
        raise AssertionError("Ray was started before the dataset was checked")

    monkeypatch.setattr(sweep, "ensure_ray", ensure_ray)
    return started


def _run(spec: Any, tmp_path: Path, started: list[str]) -> None:
    run_sweep(spec, storage=str(tmp_path / "store"), on_ray_start=lambda: started.append("line"))


def test_a_fairness_penalty_on_a_five_class_label_is_refused_before_ray_starts(
    tmp_path: Path, no_ray: list[str]
) -> None:
    data = _csv(tmp_path / "multi.csv", 5)
    spec = _spec(data, penalties={"fairness": {"kind": "dp", "strength": 1.0}})
    with pytest.raises(SpecError, match=r"penalties.fairness.kind='dp' needs .* 5 classes"):
        _run(spec, tmp_path, no_ray)
    assert no_ray == []
    # A value of a distribution other than the representative one counts too.
    spec = _spec(
        data, penalties={"fairness": {"kind": {"choice": ["none", "dp"]}, "strength": 1.0}}
    )
    with pytest.raises(SpecError, match=r"penalties.fairness.kind='dp' needs"):
        _run(spec, tmp_path, no_ray)
    assert no_ray == []


def test_a_fairness_objective_on_a_five_class_label_is_refused_before_ray_starts(
    tmp_path: Path, no_ray: list[str]
) -> None:
    data = _csv(tmp_path / "multi.csv", 5)
    spec = _spec(data, objectives=[{"metric": "dp_diff", "mode": "min"}])
    with pytest.raises(SpecError) as info:
        _run(spec, tmp_path, no_ray)
    assert str(info.value) == (
        "objectives.0.metric: dp_diff is reported only for a dataset with a sensitive "
        f"attribute and a two-class label; the file {data} has the sensitive attribute 'g' "
        "and a label of 5 classes: choose another metric (the fairness gaps need a "
        "two-class label) (nothing was started)"
    )
    assert no_ray == []


def test_a_fairness_objective_names_the_data_and_what_it_lacks(tmp_path: Path) -> None:
    # load_spec refuses the objective without a declared sensitive column;
    # check_dataset_fits, public, is handed data loaded without one here.
    data = _csv(tmp_path / "bin.csv", 2)
    spec = _spec(data, objectives=[{"metric": "eo_diff", "mode": "min"}])
    config = parse_train_config(spec.base_config()).dataset.model_copy(update={"sensitive": None})
    with pytest.raises(SpecError) as info:
        check_dataset_fits(spec, load_dataset(config))
    assert str(info.value) == sweep.OBJECTIVE_NEEDS_GROUPS_MSG.format(
        index=0,
        metric="eo_diff",
        data=f"the file {data}",
        sensitive="no sensitive attribute",
        n_classes=2,
        advice="declare dataset.sensitive, or choose another metric",
    )


def test_combinations_of_drawn_values_are_refused_before_ray_starts(
    tmp_path: Path, no_ray: list[str]
) -> None:
    """Each value passes alone; a trial drawing two of them together would fail."""
    data = _csv(tmp_path / "multi.csv", 5)
    # Early stopping on dp_diff with patience 0 never stops, so never needs the gap.
    spec = _spec(
        data,
        training={
            "lr": 0.01,
            "early_stopping": {
                "metric": {"grid": ["val_loss", "dp_diff"]},
                "patience": {"grid": [0, 3]},
            },
        },
    )
    with pytest.raises(SpecError) as info:
        _run(spec, tmp_path, no_ray)
    assert str(info.value).startswith(
        sweep.TRIAL_WOULD_FAIL_MSG.format(
            values="training.early_stopping.metric='dp_diff', training.early_stopping.patience=3",
            reason="training.early_stopping.metric: early stopping on 'dp_diff' would never act",
        )
    )
    assert no_ray == []


def test_a_choice_of_whole_sections_is_probed_before_ray_starts(
    tmp_path: Path, no_ray: list[str]
) -> None:
    """A distribution above a checked key (``penalties.fairness``, not ``...kind``)."""
    data = _csv(tmp_path / "multi.csv", 5)
    fairness = {"choice": [{"kind": "none"}, {"kind": "dp", "strength": 1.0}]}
    spec = _spec(data, penalties={"fairness": fairness})
    with pytest.raises(SpecError) as info:
        _run(spec, tmp_path, no_ray)
    assert str(info.value).startswith(
        "a trial with penalties.fairness={'kind': 'dp', 'strength': 1.0} would fail at setup: "
        "penalties.fairness.kind='dp' needs a dataset with a sensitive attribute and a "
        f"two-class label; the file {data} has the sensitive attribute 'g' and a label of 5 "
        "classes: remove the penalties.fairness section (the fairness penalties and "
        "thresholds need a two-class label)"
    )
    assert no_ray == []


def test_a_binary_label_with_groups_fits_every_combination(tmp_path: Path) -> None:
    data = _csv(tmp_path / "bin.csv", 2)
    spec = _spec(
        data,
        training={
            "lr": 0.01,
            "calibration": {"choice": ["none", "group_temperature"]},
            "early_stopping": {
                "metric": {"grid": ["val_loss", "dp_diff"]},
                "patience": {"grid": [0, 3]},
            },
        },
        penalties={
            "fairness": {"choice": [{"kind": "none"}, {"kind": "dp", "strength": 1.0}]},
        },
    )
    check_dataset_fits(spec, load_dataset(parse_train_config(spec.base_config()).dataset))
    # Values that set the checked keys alike are probed once: 2 x 2 x 2 x 2, and
    # each strength of a fairness section (not read by the check) only once.
    assert len(list(sweep._probed_configs(spec))) == 16
    spec = _spec(
        data,
        penalties={"fairness": {"kind": "dp", "strength": {"loguniform": [0.01, 10.0]}}},
    )
    assert list(sweep._probed_configs(spec)) == []


def test_past_the_bound_each_value_alone_is_still_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sweep, "MAX_PROBED_COMBINATIONS", 3)
    data = _csv(tmp_path / "multi.csv", 5)
    spec = _spec(
        data,
        training={"lr": 0.01, "calibration": {"choice": ["none", "temperature"]}},
        penalties={"fairness": {"kind": {"choice": ["none", "eo", "dp"]}, "strength": 1.0}},
    )
    ds = load_dataset(parse_train_config(spec.base_config()).dataset)
    refused = pytest.raises(SpecError, match=r"penalties.fairness.kind='eo' needs")
    with caplog.at_level("WARNING", logger=sweep.__name__), refused:
        check_dataset_fits(spec, ds)
    assert "the 6 combinations of training.calibration, penalties.fairness.kind exceed 3" in (
        caplog.text
    )


def test_a_data_error_comes_before_the_starting_ray_line(tmp_path: Path, no_ray: list[str]) -> None:
    spec = _spec(_csv(tmp_path / "nan.csv", 2, nan=True))
    with pytest.raises(DataError, match="missing"):
        _run(spec, tmp_path, no_ray)
    assert no_ray == []


def test_a_binary_label_with_groups_fits_every_fairness_setting(tmp_path: Path) -> None:
    data = _csv(tmp_path / "bin.csv", 2)
    spec = _spec(
        data,
        penalties={"fairness": {"kind": {"choice": ["none", "dp", "eo"]}, "strength": 1.0}},
        objectives=[{"metric": "val_acc", "mode": "max"}, {"metric": "eo_diff", "mode": "min"}],
        scheduler={"kind": "pareto-asha", "grace_period": 1},
        budget={"samples": 1, "max_epochs": 2},
    )
    check_dataset_fits(spec, load_dataset(parse_train_config(spec.base_config()).dataset))


def test_a_refusal_names_only_the_drawn_values_it_depends_on(
    tmp_path: Path, no_ray: list[str]
) -> None:
    """Early stopping is swept too, but only the fairness section makes the trial fail:
    the refusal names it alone, not the early stopping values drawn beside it."""
    data = _csv(tmp_path / "multi.csv", 5)
    fairness = {"choice": [{"kind": "none"}, {"kind": "dp", "strength": 1.0}]}
    spec = _spec(
        data,
        training={
            "lr": 0.01,
            "early_stopping": {
                "metric": {"grid": ["val_loss", "val_acc"]},
                "patience": {"grid": [0, 3]},
            },
        },
        penalties={"fairness": fairness},
    )
    with pytest.raises(SpecError) as info:
        _run(spec, tmp_path, no_ray)
    assert str(info.value).startswith(
        "a trial with penalties.fairness={'kind': 'dp', 'strength': 1.0} would fail at setup: "
        "penalties.fairness.kind='dp' needs"
    )
    assert no_ray == []


def test_an_early_stopping_refusal_does_not_name_the_calibration_drawn_beside_it(
    tmp_path: Path,
) -> None:
    """Calibration and early stopping on dp_diff are both swept; the early stopping refusal
    (a five-class label) names only the early stopping values it needs."""
    data = _csv(tmp_path / "multi.csv", 5)
    spec = _spec(
        data,
        training={
            "lr": 0.01,
            "calibration": {"choice": ["none", "temperature"]},
            "early_stopping": {
                "metric": {"grid": ["val_loss", "dp_diff"]},
                "patience": {"grid": [0, 3]},
            },
        },
    )
    with pytest.raises(SpecError) as info:
        check_dataset_fits(spec, load_dataset(parse_train_config(spec.base_config()).dataset))
    assert str(info.value).startswith(
        sweep.TRIAL_WOULD_FAIL_MSG.format(
            values="training.early_stopping.metric='dp_diff', training.early_stopping.patience=3",
            reason="training.early_stopping.metric: early stopping on 'dp_diff' would never act",
        )
    )


@pytest.mark.parametrize(
    "penalties",
    [
        {"adversarial": {"method": {"choice": ["none", "pgd"]}, "eps": 0.5}},
        {"input_noise": {"choice": [0.0, 0.5]}},
    ],
)
def test_an_attack_or_noise_drawn_on_data_with_no_numeric_feature_is_refused_before_ray(
    tmp_path: Path, no_ray: list[str], penalties: dict[str, Any]
) -> None:
    data = tmp_path / "cat.csv"
    pd.DataFrame(
        {"c": ["u", "v", "w", "u"] * 50, "g": ["a", "b"] * 100, "y": [0, 1, 1, 0] * 50}
    ).to_csv(data, index=False)
    spec = _spec(data, model={"arch": "mlp", "width": 8, "depth": 1}, penalties=penalties)
    # The representative trial perturbs nothing (method none / noise 0): only a
    # drawn value does, and that trial would fail at setup.
    with pytest.raises(SpecError, match=r"would fail at setup: .*no numeric feature to perturb"):
        _run(spec, tmp_path, no_ray)
    assert no_ray == []


def _categorical(path: Path) -> Path:
    rows = ["c,g,y"] + [f"{'abc'[i % 3]},{'xy'[i % 2]},{int(i % 3 == 0)}" for i in range(120)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_resumed_spec_that_perturbs_nothing_is_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An experiment an older regtune stored: input noise on data with no numeric feature.
    data = _categorical(tmp_path / "cat.csv")
    raw = {
        "name": "s",
        "dataset": {"name": "csv", "path": str(data), "label": "y"},
        "model": {"arch": "mlp", "width": 8, "depth": 1},
        "penalties": {"input_noise": 0.1, "l2": {"grid": [0.0, 0.001]}},
        "budget": {"samples": 1, "max_epochs": 1},
        "resources": {"fuse": 1},
    }
    new, stored = load_spec(raw), load_spec(raw, stored=True)
    dataset = load_dataset(parse_train_config(new.base_config()).dataset)
    with pytest.raises(SpecError, match=r"penalties\.input_noise .*no numeric feature"):
        check_dataset_fits(new, dataset)
    check_dataset_fits(stored, dataset, stored=True)

    # run_sweep: a new sweep is refused before Ray starts; --resume (the CLI
    # reads the spec stored) passes the check and goes on to start Ray.
    class RayStarts(Exception):
        pass

    def on_ray_start() -> None:
        raise RayStarts

    storage = str(tmp_path / "store")
    with pytest.raises(SpecError, match="no numeric feature"):
        run_sweep(new, storage=storage, on_ray_start=on_ray_start)
    monkeypatch.setattr(sweep, "_tune_experiment_exists", lambda path: True)
    with pytest.raises(RayStarts):
        run_sweep(stored, storage=storage, name="s-old", resume=True, on_ray_start=on_ray_start)

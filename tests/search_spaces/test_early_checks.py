"""Mistakes found while the spec is validated, before Ray or training starts,
each blamed on what the user wrote: the data file and its columns, relative
data paths, keys no trial can use, PBT perturbations a restore would drop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from regtune.errors import SpecError
from regtune.search_spaces import data_path_as_written, load_spec, load_train_config
from regtune.search_spaces.cross_checks import PBT_BATCH_UNDER_SCHEDULE


def _spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "early",
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 16},
        "penalties": {"l2": {"loguniform": [1e-5, 1e-2]}},
        "budget": {"samples": 2, "max_epochs": 4},
    }
    return spec | over


def _write(folder: Path, name: str, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _table(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "people.csv"
    pd.DataFrame({"age": range(20), "group": ["a", "b"] * 10, "y": [0, 1] * 10}).to_csv(
        path, index=False
    )
    return path


def _problems(error: SpecError) -> dict[str, str]:
    return {p.path: p.message for p in error.problems}


def test_a_missing_data_file_is_named_at_dataset_path_with_its_line(tmp_path: Path) -> None:
    spec = _write(
        tmp_path, "s.yaml", _spec(dataset={"name": "csv", "path": "absent.csv", "label": "y"})
    )
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    message = str(info.value)
    assert f"line 4: dataset.path: {tmp_path / 'absent.csv'}: file not found" in message
    assert list(_problems(info.value)) == ["dataset.path"]


def test_missing_columns_are_each_named(tmp_path: Path) -> None:
    data = _table(tmp_path)
    dataset = {
        "name": "csv", "path": str(data), "label": "income", "features": ["age", "height"],
        "sensitive": "sex",
    }  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(_spec(dataset=dataset))
    found = _problems(info.value)
    assert list(found) == ["dataset.label", "dataset.features", "dataset.sensitive"]
    assert "no label column 'income'" in found["dataset.label"]
    assert "'height'" in found["dataset.features"]
    assert "available columns: ['age', 'group', 'y']" in found["dataset.sensitive"]


def test_the_data_check_can_be_left_to_where_the_data_lives() -> None:
    dataset = {"name": "parquet", "path": "/cluster/only/data.parquet", "label": "y"}
    spec = load_spec(_spec(dataset=dataset), check_data=False)
    assert spec.space["dataset"]["path"] == "/cluster/only/data.parquet"


def test_a_relative_data_path_is_relative_to_the_spec_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _table(tmp_path / "project" / "data")
    dataset = {"name": "csv", "path": "data/people.csv", "label": "y", "sensitive": "group"}
    spec_file = _write(tmp_path / "project", "sweep.yaml", _spec(dataset=dataset))
    run = _write(tmp_path / "project", "run.yaml", {"dataset": dataset})
    monkeypatch.chdir(tmp_path)  # anywhere but the spec's folder
    assert load_spec(spec_file).space["dataset"]["path"] == str(data)
    assert load_train_config(run)["dataset"]["path"] == str(data)
    assert data_path_as_written(spec_file) == "data/people.csv"
    assert data_path_as_written(spec_file, ["dataset.path=/abs.csv"]) == "/abs.csv"
    assert data_path_as_written("quickstart") is None
    # A path given with --set is typed in a shell: relative to the working directory.
    elsewhere = _table(tmp_path / "other")
    spec = load_spec(spec_file, ["dataset.path=other/people.csv"])
    assert spec.space["dataset"]["path"] == str(elsewhere)


def test_a_training_config_with_a_missing_file_is_refused_before_training(
    tmp_path: Path,
) -> None:
    run = _write(tmp_path, "run.yaml", {"dataset": {"name": "csv", "path": "x.csv", "label": "y"}})
    with pytest.raises(SpecError) as info:
        load_train_config(run)
    assert str(info.value).splitlines()[0] == f"invalid training config {run}:"
    assert list(_problems(info.value)) == ["dataset.path"]


def test_a_key_no_trial_can_use_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(_spec(training={"momentum": {"uniform": [0.5, 0.9]}}))
    assert "only optimizer 'sgd' uses momentum" in _problems(info.value)["training.momentum"]
    # Where some trials use it, it is fine.
    load_spec(
        _spec(
            training={
                "momentum": {"uniform": [0.5, 0.9]},
                "optimizer": {"choice": ["sgd", "adamw"]},
            }
        )
    )
    adversarial = {"method": {"choice": ["none", "pgd"]}, "eps": 0.1, "steps": 3}
    load_spec(_spec(penalties={"adversarial": adversarial}, training={"robust_steps": 10}))


def test_an_idle_key_in_a_training_config_is_refused(tmp_path: Path) -> None:
    run = _write(
        tmp_path, "run.yaml", {"dataset": "digits", "model": {"arch": "logreg", "width": 8}}
    )
    with pytest.raises(SpecError) as info:
        load_train_config(run)
    assert "line 4: model.width: has no effect" in str(info.value)


def test_trades_with_mixup_in_a_spec_is_refused() -> None:
    penalties = {
        "mixup": {"uniform": [0.0, 0.4]},
        "adversarial": {"method": {"choice": ["pgd", "trades"]}, "eps": 0.1, "steps": 3},
    }
    with pytest.raises(SpecError, match=r"cannot be combined with penalties\.adversarial\.method"):
        load_spec(_spec(penalties=penalties, training={"robust_steps": 10}))


def test_adult_test_fraction_is_refused_naming_why() -> None:
    with pytest.raises(SpecError, match="official test split"):
        load_spec(_spec(dataset={"name": "adult", "test_fraction": 0.2}))


def _pbt(mutations: list[str], **over: Any) -> dict[str, Any]:
    return _spec(
        scheduler={"kind": "pbt", "perturbation_interval": 1, "hyperparam_mutations": mutations},
        searcher="random",
        checkpoint={"every": 1},
        **over,
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("optimizer", {"choice": ["adamw", "sgd"]}),
        ("lr_schedule", {"choice": ["constant", "cosine"]}),
        ("seed", {"choice": [0, 1]}),
    ],
)
def test_pbt_refuses_keys_a_restore_would_ignore(key: str, value: Any) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(_pbt([f"training.{key}"], training={key: value}))
    assert "cannot be perturbed by pbt" in _problems(info.value)["scheduler.hyperparam_mutations.0"]


def test_pbt_perturbs_batch_size_only_under_a_constant_schedule() -> None:
    batch = {"batch_size": {"choice": [64, 128]}}
    load_spec(_pbt(["training.batch_size"], training=batch))
    with pytest.raises(SpecError) as info:
        load_spec(_pbt(["training.batch_size"], training={**batch, "lr_schedule": "cosine"}))
    assert _problems(info.value)["scheduler.hyperparam_mutations.0"] == (
        PBT_BATCH_UNDER_SCHEDULE.format(schedule="cosine")
    )


def test_pbt_may_perturb_lr_under_a_schedule() -> None:
    # The restore rescales the schedule (see tests/trainables/test_ignored_values.py).
    spec = load_spec(
        _pbt(
            ["training.lr"], training={"lr": {"loguniform": [1e-3, 1e-2]}, "lr_schedule": "cosine"}
        )
    )
    assert spec.pbt_mutation_paths() == (("training", "lr"),)


def test_a_spec_with_every_sampled_value_set_trains_one_configuration() -> None:
    # The --set line that reproduces one trial fixes every distribution: a
    # sweep of it samples nothing, one run of it is exactly that trial, even
    # where the trial's values leave a key idle (method none, eps sampled).
    spec = load_spec("three-objective")
    sets = [f"{'.'.join(p)}={d.representative()!r}" for p, d in spec.iter_distributions()]
    assert "penalties.adversarial.method='none'" in sets
    with pytest.raises(SpecError, match="the spec samples nothing"):
        load_spec("three-objective", sets)
    config = load_train_config("three-objective", ["budget.max_epochs=3", *sets])
    assert config["training"]["epochs"] == 3
    assert config["penalties"]["adversarial"] == {"method": "none", "eps": 0.16, "steps": 5}


@pytest.mark.parametrize(
    "fairness",
    [
        {"kind": "dp", "method": "postprocess"},
        {"kind": "eo", "bound": 0.05},
        {"kind": "eo", "method": {"choice": ["penalty", "postprocess"]}},
        {"kind": "eo", "bound": {"choice": [0.02, 0.05]}},
    ],
)
def test_a_fairness_kind_at_strength_zero_counts_with_a_bound_or_postprocess(
    fairness: dict[str, Any],
) -> None:
    # config.DEPENDENCIES: kind is idle at strength 0 unless a bound or a
    # postprocess method makes it pick the constrained gap (active_if).
    penalties = {"l2": {"loguniform": [1e-5, 1e-2]}, "fairness": fairness}
    spec = load_spec(_spec(dataset="adult", penalties=penalties))
    assert spec.space["penalties"]["fairness"]["kind"] == fairness["kind"]


def test_a_fairness_kind_at_strength_zero_alone_is_still_refused() -> None:
    penalties = {"l2": {"loguniform": [1e-5, 1e-2]}, "fairness": {"kind": "dp"}}
    with pytest.raises(SpecError) as info:
        load_spec(_spec(dataset="adult", penalties=penalties))
    assert "strength is 0" in _problems(info.value)["penalties.fairness.kind"]


def test_every_problem_at_once_in_line_order(tmp_path: Path) -> None:
    # Nothing sampled, a missing data file (line 4) and a bad budget (line 8):
    # all reported, by line.
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: two-faults\n"
        "dataset:\n"
        "  name: csv\n"
        "  path: data.csv\n"
        "  label: y\n"
        "model: {arch: mlp, width: 16}\n"
        "budget:\n"
        "  samples: 0\n"
        "  max_epochs: 4\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    lines = str(info.value).splitlines()[1:]
    assert lines[:2] == [
        f"line 4: dataset.path: {tmp_path / 'data.csv'}: file not found; expected a csv file",
        "line 8: budget.samples: Input should be greater than or equal to 1 (got 0)",
    ]
    # the file holds no searcher key: no line, after those with one
    assert lines[2].startswith("searcher: the spec samples nothing") and len(lines) == 3
    # the problems list is in the message's order
    assert [p.path for p in info.value.problems] == ["dataset.path", "budget.samples", "searcher"]


def test_a_train_config_reports_idle_keys_and_the_data_file_together(tmp_path: Path) -> None:
    run = _write(
        tmp_path,
        "run.yaml",
        {
            "dataset": {"name": "csv", "path": "x.csv", "label": "y"},
            "penalties": {"adversarial": {"method": "none", "eps": 0.1}},
        },
    )
    with pytest.raises(SpecError) as info:
        load_train_config(str(run))
    paths = [p.path for p in info.value.problems]
    assert "dataset.path" in paths and "penalties.adversarial.eps" in paths, str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "dataset: digits\nfoo: 1\n",
            "line 2: foo: unknown key 'foo'; allowed: dataset, model, training, penalties",
        ),
        ("dataset: digits\ntrainig: {epochs: 1}\n", "(did you mean 'training'?)"),
        (
            "description: my run\ndataset: digits\n",
            "line 1: description: unknown key 'description'; allowed: dataset, model",
        ),
    ],
)
def test_a_training_config_with_an_unknown_key_is_named_as_a_training_config(
    tmp_path: Path, text: str, expected: str
) -> None:
    """No sweep-only key (name, objectives, ...): read as a training config, so the
    error does not ask for a sweep's name or budget."""
    spec = tmp_path / "train.yaml"
    spec.write_text(text)
    with pytest.raises(SpecError) as info:
        load_train_config(str(spec))
    message = str(info.value)
    assert message.startswith(f"invalid training config {spec}") and expected in message
    assert "name: Field required" not in message


def test_a_problem_made_by_another_keys_set_value_names_that_set(tmp_path: Path) -> None:
    """An idle file key whose governing key a --set changed keeps its line and
    names that --set; an unrelated --set is not named."""
    spec = _write(tmp_path, "s.yaml", _spec(training={"optimizer": "sgd", "momentum": 0.9}))
    with pytest.raises(SpecError) as info:
        load_spec(spec, overrides=["training.optimizer=adamw", "training.lr=0.1"])
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 1 and lines[0].startswith("line 16: training.momentum: has no effect")
    assert lines[0].endswith("(training.optimizer is set by --set training.optimizer=adamw)")
    assert "training.lr" not in str(info.value)
    # Without the --set changing the governing key, nothing is blamed on a --set.
    idle = _write(tmp_path, "idle.yaml", _spec(training={"optimizer": "adamw", "momentum": 0.9}))
    with pytest.raises(SpecError) as info:
        load_spec(idle, overrides=["training.lr=0.1"])
    assert "--set" not in str(info.value)
    # A whole section given by --set counts as setting the key under it.
    with pytest.raises(SpecError) as info:
        load_spec(spec, overrides=["training={optimizer: adam, momentum: 0.5}"])
    assert str(info.value).splitlines()[1] == (
        "--set training={optimizer: adam, momentum: 0.5}: training.momentum: has no effect in "
        "any trial: only optimizer 'sgd' uses momentum (adam/adamw adapt their own); remove "
        "it, or let training.optimizer take a value where it applies"
    )
    # A grid under a searcher a --set chose; a fairness penalty on a dataset a --set chose.
    grid = _write(tmp_path, "g.yaml", _spec(penalties={"l2": {"grid": [0.01, 0.1]}}))
    with pytest.raises(SpecError) as info:
        load_spec(grid, overrides=["searcher.kind=hyperopt"])
    assert "(searcher.kind is set by --set searcher.kind=hyperopt)" in str(info.value)
    table = _table(tmp_path)
    fair = _write(
        tmp_path,
        "f.yaml",
        _spec(dataset="adult", penalties={"fairness": {"kind": "dp", "strength": 1.0}}),
    )
    with pytest.raises(SpecError) as info:
        load_spec(fair, overrides=[f"dataset={{name: csv, path: {table}, label: y}}"])
    text = str(info.value)
    assert "penalties.fairness.kind: fairness penalty 'dp' needs a dataset" in text
    assert text.endswith(
        f"(dataset.name is set by --set dataset={{name: csv, path: {table}, label: y}})"
    )


def test_a_training_config_names_the_set_that_left_a_key_idle(tmp_path: Path) -> None:
    run = _write(
        tmp_path,
        "run.yaml",
        {"dataset": "digits", "training": {"optimizer": "sgd", "momentum": 0.9}},
    )
    with pytest.raises(SpecError) as info:
        load_train_config(run, overrides=["training.optimizer=adam"])
    assert str(info.value).splitlines()[1] == (
        "line 4: training.momentum: has no effect: only optimizer 'sgd' uses momentum "
        "(adam/adamw adapt their own); remove it, or set training.optimizer so that it applies "
        "(training.optimizer is set by --set training.optimizer=adam)"
    )

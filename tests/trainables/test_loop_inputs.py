"""The trainer refuses what its data cannot honour: input perturbation on a
dataset with no numeric feature, a fairness section on a label it cannot
serve (advising what is accepted then), and a ``threshold_rows`` override
while no thresholds are fitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.search_spaces import load_spec
from regtune.trainables.config import parse_train_config
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import Trainer, check_dataset_fits

NO_NUMERIC = (
    "the file {path} has no numeric feature to perturb (input noise and attacks move only "
    "numeric features, and every feature here is categorical)"
)


def _categorical_csv(tmp_path: Path) -> Path:
    rows = ["c,g,y"] + [f"{'abc'[i % 3]},{'xy'[i % 2]},{int(i % 3 == 0)}" for i in range(120)]
    path = tmp_path / "cat.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _cfg(path: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "dataset": {"name": "csv", "path": str(path), "label": "y"},
        "model": {"arch": "mlp", "width": 16, "depth": 1},
        "training": {"epochs": 2},
    }
    return cfg | over


# -- no numeric feature to perturb ------------------------------------------------------


def test_the_reviewed_config_is_refused_naming_each_key(tmp_path: Path) -> None:
    path = _categorical_csv(tmp_path)
    cfg = _cfg(
        path,
        training={"epochs": 2, "robust_every": 1, "robust_eps": 1.0},
        penalties={"input_noise": 5.0, "adversarial": {"method": "pgd", "eps": 2.0, "steps": 5}},
    )
    with pytest.raises(SpecError) as info:
        Trainer(cfg)
    assert str(info.value) == (
        "penalties.input_noise 5.0, penalties.adversarial.method 'pgd', training.robust_every 1: "
        + NO_NUMERIC.format(path=path)
        + ", so training would run as without them and robust_acc would equal val_acc; remove "
        "penalties.input_noise and penalties.adversarial, and set training.robust_every to 0 "
        "(and leave out training.robust_eps)"
    )


@pytest.mark.parametrize(
    ("over", "named"),
    [
        ({"penalties": {"input_noise": 0.5}}, "penalties.input_noise 0.5"),
        ({"penalties": {"adversarial": {"method": "fgsm_rs"}}}, "method 'fgsm_rs'"),
        ({"penalties": {"adversarial": {"method": "trades", "eps": 0.3}}}, "method 'trades'"),
        ({"training": {"robust_every": 1}}, "training.robust_every 1"),
        ({"training": {"robust_samples": 50}}, "training.robust_every 5"),
        (
            {"training": {"early_stopping": {"metric": "robust_acc", "patience": 2}}},
            "training.robust_every 5",
        ),
    ],
)
def test_each_perturbing_setting_is_refused_alone(
    tmp_path: Path, over: dict[str, Any], named: str
) -> None:
    path = _categorical_csv(tmp_path)
    with pytest.raises(SpecError, match="no numeric feature to perturb") as info:
        Trainer(_cfg(path, **over))
    assert named in str(info.value).split(":")[0]


def test_what_perturbs_nothing_still_trains(tmp_path: Path) -> None:
    path = _categorical_csv(tmp_path)
    # The default robust measurement asks for nothing, also from a config dumped
    # whole (a registry version's, which a distilled student starts from); an
    # attack with eps 0 moves nothing.
    Trainer(_cfg(path))
    Trainer(parse_train_config(_cfg(path)).model_dump(mode="json"))
    Trainer(_cfg(path, training={"epochs": 1, "robust_every": 0}))
    Trainer(_cfg(path, penalties={"adversarial": {"method": "pgd", "eps": 0.0}}))


def test_a_numeric_feature_is_enough(tmp_path: Path) -> None:
    rows = ["a,c,y"] + [f"{i % 7},{'abc'[i % 3]},{int(i % 3 == 0)}" for i in range(120)]
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = _cfg(path, training={"epochs": 1, "robust_every": 1}, penalties={"input_noise": 0.5})
    assert Trainer(cfg).run_epoch()["robust_acc"] >= 0.0


def test_the_sweep_driver_refuses_it_before_ray_starts(tmp_path: Path) -> None:
    from regtune.platform.tune.sweep import check_dataset_fits as sweep_checks

    path = _categorical_csv(tmp_path)
    spec = load_spec(
        {
            "name": "s",
            **_cfg(path, training={}, penalties={"input_noise": {"uniform": [0.1, 1.0]}}),
            "budget": {"samples": 2, "max_epochs": 2},
        }
    )
    base = parse_train_config(spec.base_config())
    dataset = load_dataset(base.dataset)
    with pytest.raises(SpecError, match=r"penalties\.input_noise .*no numeric feature"):
        sweep_checks(spec, dataset)
    # The one check the trainer and the fused cohort make too.
    with pytest.raises(SpecError, match="no numeric feature"):
        check_dataset_fits(base, dataset)


# -- a fairness section the label cannot serve ------------------------------------------


def test_a_multiclass_label_advises_removing_the_fairness_section(
    tmp_path: Path, digits: Dataset
) -> None:
    # "set kind to 'none'" would leave method idle, and that is refused.
    cfg = {
        "dataset": "digits",
        "penalties": {"fairness": {"kind": "eo", "method": "postprocess"}},
    }
    with pytest.raises(SpecError) as info:
        Trainer(cfg, dataset=digits)
    assert str(info.value).endswith(
        "label of 10 classes: remove the penalties.fairness section (the fairness penalties "
        "and thresholds need a two-class label)"
    )


def test_a_binary_file_without_groups_advises_declaring_them_or_removing_the_section(
    tmp_path: Path,
) -> None:
    rows = ["a,y"] + [f"{i % 7},{int(i % 3 == 0)}" for i in range(120)]
    path = tmp_path / "plain.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = _cfg(path, penalties={"fairness": {"kind": "dp", "strength": 1.0}})
    with pytest.raises(SpecError) as info:
        Trainer(cfg)
    assert str(info.value).endswith(
        ": declare dataset.sensitive, or remove the penalties.fairness section"
    )


# -- threshold_rows while no thresholds are fitted --------------------------------------


def _groups_csv(tmp_path: Path) -> Path:
    rows = ["a,s,y"] + [f"{i % 7},{i % 2},{int((i % 7) + (i % 2) > 3)}" for i in range(160)]
    path = tmp_path / "groups.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("fairness", "message"),
    [
        (
            {"kind": "dp", "strength": 1.0},
            "threshold_rows: has no effect: only a method ending in 'postprocess' fits "
            "thresholds; remove it, or set penalties.fairness.method so that it applies",
        ),
        (
            {"kind": "none"},
            "threshold_rows: has no effect: the fairness penalty is off while kind is 'none'; "
            "remove it, or set penalties.fairness.kind so that it applies",
        ),
    ],
)
def test_a_threshold_rows_override_without_thresholds_is_refused(
    tmp_path: Path, fairness: dict[str, Any], message: str
) -> None:
    path = _groups_csv(tmp_path)
    dataset = {"name": "csv", "path": str(path), "label": "y", "sensitive": "s"}
    cfg = _cfg(path, dataset=dataset, penalties={"fairness": fairness})
    with pytest.raises(SpecError) as info:
        Trainer(cfg, threshold_rows="train+val")
    assert str(info.value) == message
    # "val", what the rows are by default, changes nothing either way.
    assert Trainer(cfg, threshold_rows="val").threshold_rows == "val"
    post = {"fairness": {"kind": "dp", "method": "postprocess"}}
    trainer = Trainer(_cfg(path, dataset=dataset, penalties=post), threshold_rows="train+val")
    assert trainer.threshold_rows == "train+val"


# -- a config that ran (or was checked) is not new input --------------------------------


def _idle_cfg(path: Path) -> dict[str, Any]:
    """What an older regtune ran: input noise on data with nothing to perturb."""
    return _cfg(path, training={"epochs": 1, "robust_every": 1}, penalties={"input_noise": 0.1})


def test_a_trials_setup_trains_a_config_that_perturbs_nothing(tmp_path: Path) -> None:
    from regtune.platform.tune.trainable import TuneTrainable

    path = _categorical_csv(tmp_path)
    dataset = load_dataset(parse_train_config(_idle_cfg(path)).dataset)
    # New input is still refused...
    with pytest.raises(SpecError, match="no numeric feature"):
        Trainer(_idle_cfg(path), dataset=dataset)
    # ...but a trial's config was checked before Ray started, or ran before (a
    # resumed sweep's): its setup trains it, the idle settings logged.
    trial = TuneTrainable.__new__(TuneTrainable)
    trial.setup(_idle_cfg(path), dataset=dataset)
    row = trial.step()
    assert row["robust_acc"] == row["val_acc"]
    assert trial.reset_config(_idle_cfg(path))


def test_a_stored_config_skips_only_the_rules_for_new_input(tmp_path: Path) -> None:
    from regtune.trainables.cohort import make_cohort
    from regtune.trainables.loop import idle_on_data

    path = _categorical_csv(tmp_path)
    cfg = parse_train_config(_idle_cfg(path))
    dataset = load_dataset(cfg.dataset)
    check_dataset_fits(cfg, dataset, stored=True)
    assert idle_on_data(cfg, dataset) == [
        "penalties.input_noise 0.1",
        "training.robust_every 1",
    ]
    # The fused sweep's workers build their cohorts stored as well.
    cohort = make_cohort({"a": cfg, "b": cfg}, dataset=dataset, stored=True)
    assert cohort.members == ["a", "b"]
    with pytest.raises(SpecError, match="no numeric feature"):
        make_cohort({"a": cfg, "b": cfg}, dataset=dataset)
    # A fairness section the data cannot serve is refused stored too.
    fair = parse_train_config(_cfg(path, penalties={"fairness": {"kind": "dp", "strength": 1.0}}))
    with pytest.raises(SpecError, match="fairness"):
        check_dataset_fits(fair, dataset, stored=True)

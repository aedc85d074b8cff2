"""Randomized per-group thresholds (``penalties.fairness.randomized``) travel from
training to the registry and ``regtune.load``; a malformed stored lottery is refused.

One real run on Adult (``postprocess`` for EO with ``randomized: true``, per-group
temperatures) is written as the trial folder promotion reads (the layout Tune
writes; promotion needs no Ray) and promoted as a single-trial version: its lottery
is the trainer's (refitted on the same rows and scores) and it decides exactly as
the trainer did. The refusals call :func:`check_postprocessing` directly on a copy
of that version's stored ``postprocessing``, plus one through ``load_version``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

import regtune
from regtune.errors import CheckpointError
from regtune.platform.registry import ModelVersion, load_version, registry_root
from regtune.platform.registry.gates import parse_gates
from regtune.platform.registry.integrity import DIGEST_KEY, meta_digest
from regtune.platform.registry.meta_checks import THRESHOLD_MAX, check_postprocessing
from regtune.platform.registry.postprocess import PostProcessing
from regtune.platform.registry.promote import promote
from regtune.trainables import lottery_draws
from tests.conftest import first_training_rows
from tests.platform.registry.test_postprocessing import _records, _write_trial

if TYPE_CHECKING:
    from regtune.trainables.data import Dataset
    from regtune.trainables.loop import Trainer

#: Training rows kept: the validation and test splits stay whole.
TRAIN_ROWS = 4000
BOUND, MARGIN = 0.05, 0.01
CONFIG: dict[str, Any] = {
    "dataset": "adult",
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "training": {
        "epochs": 2,
        "batch_size": 256,
        "robust_every": 0,
        "seed": 0,
        "calibration": "group_temperature",
    },
    "penalties": {
        "fairness": {
            "kind": "eo",
            "method": "postprocess",
            "bound": BOUND,
            "margin": MARGIN,
            "randomized": True,
        }
    },
}
WHERE = "v"


@dataclasses.dataclass(frozen=True)
class Promoted:
    """The trained trial, its last report, its promoted version and the storage."""

    trainer: Trainer
    final: dict[str, float]
    version: ModelVersion
    storage: str
    dataset: Dataset


@pytest.fixture(scope="module")
def promoted(adult: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Promoted:
    from regtune.trainables.loop import Trainer

    assert adult.train.s is not None
    small = first_training_rows(adult, TRAIN_ROWS)
    trainer = Trainer(CONFIG, dataset=small, device="cpu")
    while not trainer.should_stop:
        trainer.run_epoch()
    final = trainer.finish()
    assert trainer.lottery is not None and trainer.thresholds is None
    storage = tmp_path_factory.mktemp("storage")
    experiment = storage / "lottery-sweep"
    _write_trial(experiment, "l0", trainer, final)
    result = promote(
        str(experiment), name="lottery", top_k=1, objectives=[("val_acc", "max")],
        gates=parse_gates([]), root=registry_root(str(storage)),
    )  # fmt: skip
    assert result.passed and result.version is not None
    return Promoted(trainer, final, result.version, str(storage), adult)


def _post(promoted: Promoted) -> PostProcessing:
    post = promoted.version.postprocessing
    assert post is not None
    return post


def test_a_promoted_randomized_trial_keeps_the_trainers_lottery(promoted: Promoted) -> None:
    trainer, post = promoted.trainer, _post(promoted)
    assert trainer.lottery is not None and trainer.temperatures is not None
    cuts, weights = lottery_draws.unpack(trainer.lottery)
    assert post.lottery == (cuts, weights)
    assert post.thresholds is None and post.decides
    assert post.temperatures == tuple(trainer.temperatures.tolist())
    assert post.settings["constraint"] == {
        "kind": "eo",
        "tolerance": pytest.approx(BOUND - MARGIN),
        "rows": "val",
        "randomized": True,
    }
    assert post.record["source"] == {"temperatures": "trial", "thresholds": "refit"}
    # A real lottery: some group mixes thresholds (else it is a deterministic fit).
    assert any(len(group) > 1 for group in cuts)
    for group in weights:
        assert all(w > 0 for w in group) and sum(group) == pytest.approx(1.0, abs=1e-12)
    # The version reports the trainer's expected numbers on the same rows.
    fit, final = post.record["fit"], promoted.final
    for key in ("val_postprocess_acc", "val_postprocess_gap", "postprocess_fit_rows"):
        assert fit[key] == pytest.approx(final[key], abs=1e-12), key
    assert fit["postprocess_feasible"] == bool(final["postprocess_feasible"])
    # The trainer's metrics of a lottery: each group's lowest, highest, count.
    for key, group in zip(("Female", "Male"), cuts, strict=True):
        assert final[f"threshold_low_{key}"] == min(group)
        assert final[f"threshold_high_{key}"] == max(group)
        assert final[f"threshold_count_{key}"] == len(group)


def test_the_stored_lottery_round_trips_through_meta_json(promoted: Promoted) -> None:
    post, version = _post(promoted), promoted.version
    stored = json.loads((Path(version.path) / "meta.json").read_text())["postprocessing"]
    assert stored == json.loads(json.dumps(post.to_meta()))
    assert stored["thresholds"] is None
    assert stored["lottery"] == {
        "thresholds": [list(t) for t in post.lottery[0]],  # type: ignore[index]
        "weights": [list(w) for w in post.lottery[1]],  # type: ignore[index]
    }
    assert stored["settings"]["constraint"]["randomized"] is True
    groups = version.schema.sensitive_values
    again = PostProcessing.from_meta(stored, sensitive_values=groups, n_classes=2, where=WHERE)
    assert again == post
    assert load_version(version.path).postprocessing == post
    # Without a lottery, meta.json has no "lottery" key (older readers see nothing new).
    plain = dataclasses.replace(post, lottery=None, settings={"calibration": "none"})
    assert "lottery" not in plain.to_meta()


def test_the_version_decides_exactly_as_its_trainer(promoted: Promoted) -> None:
    trainer, post = promoted.trainer, _post(promoted)
    dataset, version = promoted.dataset, promoted.version
    test = dataset.test
    assert test.s is not None
    expected_ids = trainer.decisions("test").cpu().numpy()
    records = _records(dataset)

    loaded = regtune.load("lottery", version=1, storage=promoted.storage)
    groups = loaded.groups(records)
    assert groups is not None
    probs = loaded.predict_proba(records)
    decided = post.decide(probs, np.asarray(groups, dtype=np.int64))
    np.testing.assert_array_equal(decided, expected_ids)
    np.testing.assert_array_equal(loaded.decisions(probs, groups), expected_ids)
    assert loaded.predict(records) == [version.classes[i] for i in expected_ids.tolist()]

    # The lottery matters: the arg-max differs, and so does any one of a mixing
    # group's thresholds alone (the band between them holds both decisions).
    assert not np.array_equal(probs.argmax(axis=1), expected_ids)
    cuts, _ = post.lottery  # type: ignore[misc]
    codes = test.s.numpy()
    mixing = [g for g, group in enumerate(cuts) if len(group) > 1]
    assert mixing
    for g in mixing:
        rows = codes == g
        p = probs[rows, 1]
        band = (p >= min(cuts[g])) & (p < max(cuts[g]))
        assert set(expected_ids[rows][band].tolist()) == {0, 1}
        for cut in cuts[g]:
            assert not np.array_equal((p >= cut).astype(np.int64), expected_ids[rows])
    # The version's test metrics are those of the lottery's decisions.
    accuracy = float((torch.from_numpy(expected_ids) == test.y).double().mean())
    assert version.metrics["test_acc"] == pytest.approx(accuracy, abs=1e-12)
    assert version.metrics["test_acc"] == pytest.approx(promoted.final["test_acc"], abs=1e-12)
    assert version.metrics["test_eo_diff"] == pytest.approx(
        promoted.final["test_eo_diff"], abs=1e-12
    )


def test_rows_of_an_unknown_group_take_the_arg_max_under_a_lottery() -> None:
    # Group 0 always positive (threshold 0), group 1 never (above 1): only a
    # row's group decides, and an unknown group (-1, or past the table) the arg-max.
    post = PostProcessing(
        ("a", "b"), lottery=(((0.0, 0.0), (THRESHOLD_MAX,)), ((0.5, 0.5), (1.0,)))
    )
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    codes = np.array([0, 1, -1, -1, 2, 0])
    np.testing.assert_array_equal(post.decide(probs, codes), [1, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(post.decide(probs, np.full(6, -1)), probs.argmax(axis=1))


# -- refusals -------------------------------------------------------------------------

Change = Callable[[dict[str, Any]], None]


def _lottery(cuts: Any, weights: Any) -> Change:
    def change(raw: dict[str, Any]) -> None:
        raw["lottery"] = {"thresholds": cuts, "weights": weights}

    return change


def _set(key: str, value: Any) -> Change:
    def change(raw: dict[str, Any]) -> None:
        raw[key] = value

    return change


def _constraint(**fields: Any) -> Change:
    def change(raw: dict[str, Any]) -> None:
        raw["settings"]["constraint"] = {**raw["settings"]["constraint"], **fields}

    return change


ABOVE_MAX = math.nextafter(THRESHOLD_MAX, 2.0)
LOTTERY_ALLOWED = "of 2 lists each (one per group) of equal, non-zero length"


def _set_constraint_none(raw: dict[str, Any]) -> None:
    raw["settings"]["constraint"] = None


REFUSED: list[tuple[str, Change, str, str]] = [
    ("weights sum to 0.9", _lottery([[0.2], [0.3, 0.4]], [[1.0], [0.5, 0.4]]), "lottery",
     "weights finite numbers >= 0 summing to 1 per group"),
    ("negative weight", _lottery([[0.2], [0.3, 0.4]], [[1.0], [1.2, -0.2]]), "lottery",
     "weights finite numbers >= 0"),
    ("NaN weight", _lottery([[0.2], [0.3]], [[1.0], [float("nan")]]), "lottery",
     "weights finite numbers >= 0"),
    ("boolean weight", _lottery([[0.2], [0.3]], [[1.0], [True]]), "lottery",
     "weights finite numbers >= 0"),
    ("threshold above the next float past 1", _lottery([[0.2], [ABOVE_MAX]], [[1.0], [1.0]]),
     "lottery", "thresholds probabilities in [0, 1] (or the next float above 1)"),
    ("threshold 1.5", _lottery([[0.2], [1.5]], [[1.0], [1.0]]), "lottery",
     "thresholds probabilities in [0, 1]"),
    ("negative threshold", _lottery([[-0.1], [0.3]], [[1.0], [1.0]]), "lottery",
     "thresholds probabilities in [0, 1]"),
    ("text threshold", _lottery([["0.2"], [0.3]], [[1.0], [1.0]]), "lottery",
     "thresholds probabilities in [0, 1]"),
    ("one group", _lottery([[0.2]], [[1.0]]), "lottery", LOTTERY_ALLOWED),
    ("three groups", _lottery([[0.2]] * 3, [[1.0]] * 3), "lottery", LOTTERY_ALLOWED),
    ("unequal lengths", _lottery([[0.2], [0.3]], [[1.0], [0.5, 0.5]]), "lottery",
     LOTTERY_ALLOWED),
    ("empty group lists", _lottery([[], [0.3]], [[], [1.0]]), "lottery", LOTTERY_ALLOWED),
    ("empty lists", _lottery([], []), "lottery", LOTTERY_ALLOWED),
    ("not lists", _lottery({"0": [0.2]}, {"0": [1.0]}), "lottery", LOTTERY_ALLOWED),
    ("a list, not an object", _set("lottery", [[0.2], [0.3]]), "lottery",
     "an object {thresholds, weights}"),
    ("an extra key", _set("lottery", {"thresholds": [[0.2], [0.3]],
                                      "weights": [[1.0], [1.0]], "seed": 1}),
     "lottery", "an object {thresholds, weights}"),
    ("thresholds too", _set("thresholds", [0.2, 0.3]), "lottery",
     "null while thresholds is set (one decision rule)"),
    ("randomized 'yes'", _constraint(randomized="yes"), "settings.constraint.randomized",
     "true or false (absent: false); true never with robust_quantile"),
    ("randomized 1", _constraint(randomized=1), "settings.constraint.randomized",
     "true or false"),
    ("randomized without a lottery", _set("lottery", None), "settings.constraint.randomized",
     "true exactly when the version holds a lottery"),
    ("a lottery, randomized false", _constraint(randomized=False),
     "settings.constraint.randomized", "true exactly when the version holds a lottery"),
    ("a lottery, randomized absent", lambda raw: raw["settings"]["constraint"].pop("randomized"),
     "settings.constraint.randomized", "true exactly when the version holds a lottery"),
    ("a lottery without a constraint", _set_constraint_none, "lottery",
     "null while settings.constraint is null"),
    ("randomized and robust", _constraint(robust_quantile=0.75, robust_resamples=50, seed=0),
     "settings.constraint.randomized", "true never with robust_quantile"),
]  # fmt: skip


def _stored(promoted: Promoted) -> dict[str, Any]:
    """A fresh copy of the version's stored ``postprocessing`` (JSON types)."""
    raw: dict[str, Any] = json.loads(json.dumps(_post(promoted).to_meta()))
    return raw


def test_the_stored_lottery_passes_the_checks_and_so_do_its_edges(promoted: Promoted) -> None:
    """The cases below are refused for their edit alone: the unedited value, and
    the edges of what is allowed, pass."""
    groups = promoted.version.schema.sensitive_values
    for change in (
        _lottery([[0.0], [0.3, THRESHOLD_MAX]], [[1.0], [0.25, 0.75]]),
        _lottery([[0.2], [0.3, 0.4]], [[1.0], [0.5, 0.5 + 5e-7]]),  # within 1e-6 of 1
        _lottery([[0.2], [0.3, 0.4]], [[1.0], [0.0, 1.0]]),  # a zero weight
    ):
        raw = _stored(promoted)
        change(raw)
        check_postprocessing(raw, sensitive_values=groups, n_classes=2, where=WHERE)
    check_postprocessing(_stored(promoted), sensitive_values=groups, n_classes=2, where=WHERE)


@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [pytest.param(change, field, allowed, id=case) for case, change, field, allowed in REFUSED],
)
def test_a_malformed_stored_lottery_is_refused_naming_the_field(
    promoted: Promoted, change: Change, field: str, allowed: str
) -> None:
    raw = _stored(promoted)
    change(raw)
    groups = promoted.version.schema.sensitive_values
    with pytest.raises(CheckpointError) as info:
        check_postprocessing(raw, sensitive_values=groups, n_classes=2, where=WHERE)
    message = str(info.value)
    assert f"meta.json field 'postprocessing.{field}'" in message, message
    assert allowed in message, message
    # from_meta (what load_version and regtune.load run) refuses it with the same words.
    with pytest.raises(CheckpointError) as again:
        PostProcessing.from_meta(raw, sensitive_values=groups, n_classes=2, where=WHERE)
    assert str(again.value) == message


@pytest.mark.parametrize(("sensitive_values", "n_classes"), [([], 2), (["a", "b"], 10)])
def test_a_lottery_without_groups_or_two_classes_is_refused(
    sensitive_values: list[str], n_classes: int
) -> None:
    raw = {
        "groups": sensitive_values,
        "temperatures": None,
        "fallback_temperature": None,
        "thresholds": None,
        "lottery": {"thresholds": [[0.5]], "weights": [[1.0]]},
        "settings": {"calibration": "none", "constraint": None},
        "record": {},
    }
    with pytest.raises(CheckpointError) as info:
        check_postprocessing(
            raw, sensitive_values=sensitive_values, n_classes=n_classes, where=WHERE
        )
    message = str(info.value)
    assert "meta.json field 'postprocessing.lottery'" in message, message
    assert "null (not a two-class model with groups)" in message, message
    raw["lottery"] = None
    check_postprocessing(raw, sensitive_values=sensitive_values, n_classes=n_classes, where=WHERE)


def test_load_version_refuses_a_rewritten_lottery(promoted: Promoted, tmp_path: Path) -> None:
    target = tmp_path / "v"
    shutil.copytree(promoted.version.path, target)
    meta = json.loads((target / "meta.json").read_text())
    meta["postprocessing"]["lottery"]["weights"][0] = [
        2.0 * w for w in meta["postprocessing"]["lottery"]["weights"][0]
    ]
    meta[DIGEST_KEY] = meta_digest(meta)  # as someone re-writing the file would
    (target / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as info:
        load_version(str(target))
    message = str(info.value)
    assert "meta.json field 'postprocessing.lottery'" in message, message
    assert "summing to 1 per group" in message, message


def test_models_show_lists_each_groups_lottery() -> None:
    from rich.console import Console

    from regtune.platform.cli.models import postprocessing_table

    post = {
        "groups": ["Female", "Male"],
        "temperatures": [1.2, 0.9],
        "fallback_temperature": 1.0,
        "thresholds": None,
        "lottery": {"thresholds": [[0.31, 0.52], [0.4]], "weights": [[0.25, 0.75], [1.0]]},
        "settings": {"calibration": "group_temperature", "constraint": None},
        "record": {"source": {"temperatures": "trial", "thresholds": "refit"}},
    }
    table = postprocessing_table(post)
    assert table is not None
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "lottery 0.31 (0.25), 0.52 (0.75)" in text and "lottery 0.4 (1)" in text
    assert "arg-max" in text  # the unknown-group row only
    assert text.count("arg-max") == 1

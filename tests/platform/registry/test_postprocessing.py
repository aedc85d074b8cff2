"""Post-processing travels from training to the registry, ``regtune.load`` and serving.

Two real runs on Adult (``lagrangian+postprocess`` for EO, per-group
temperatures) are written as the trial folders promotion reads (the layout
Tune writes: ``params.json``, ``result.json``, ``checkpoint_*/regtune_state``;
promotion needs no Ray). A single-trial version keeps the trainer's values and
decides exactly as the trainer did; an ensemble's values are fitted on the
validation split; a malformed stored value is refused. A third run (robust
thresholds fitted on training + validation rows) checks that a promoted
single trial keeps its thresholds and recounts its criterion on those rows.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import regtune
from regtune.errors import CheckpointError
from regtune.platform.cli import app
from regtune.platform.registry import Member, ModelVersion, load_version, registry_root
from regtune.platform.registry.distill import student_postprocessing
from regtune.platform.registry.evaluation import evaluate_module
from regtune.platform.registry.gates import parse_gates
from regtune.platform.registry.integrity import DIGEST_KEY, meta_digest
from regtune.platform.registry.promote import Promotion, promote
from regtune.platform.registry.quantize import quantize_version
from regtune.platform.tune.trial_files import STATE_DIR
from regtune.serve.predictor import ServedModel
from regtune.trainables import calibration, fairness, metrics, thresholds
from regtune.trainables.bootstrap import fairness_intervals
from tests.conftest import first_training_rows

if TYPE_CHECKING:
    from regtune.trainables.data import Dataset
    from regtune.trainables.loop import RunResult, Trainer

runner = CliRunner()

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
        "calibration": "group_temperature",
    },
    "penalties": {
        "fairness": {
            "kind": "eo",
            "method": "lagrangian+postprocess",
            "strength": 1.0,
            "bound": BOUND,
            "margin": MARGIN,
        }
    },
}
OBJECTIVES = [("val_acc", "max")]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A finished two-trial 'sweep' on disk, its trainers and the registry's storage."""

    storage: str
    experiment: Path
    trainers: dict[str, Trainer]
    finals: dict[str, dict[str, float]]
    dataset: Dataset

    @property
    def root(self) -> str:
        return registry_root(self.storage)

    def promote(self, name: str, top_k: int, gates: list[str] | None = None) -> Promotion:
        return promote(
            str(self.experiment),
            name=name,
            top_k=top_k,
            objectives=OBJECTIVES,
            gates=parse_gates(gates or []),
            root=self.root,
        )


def _write_trial(
    experiment: Path, trial_id: str, trainer: Trainer, final: dict[str, float]
) -> None:
    """The files Tune leaves for a finished trial of regtune's trainable."""
    folder = experiment / f"trial_{trial_id}"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(trainer.config.model_dump(mode="json")))
    rows = [
        {**row, "training_iteration": index, "trial_id": trial_id}
        for index, row in enumerate(trainer.history, start=1)
    ]
    rows[-1].update(final)
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trainer.save(folder / "checkpoint_000000" / STATE_DIR)


@pytest.fixture(scope="module")
def sweep(adult: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    from regtune.trainables.loop import Trainer

    assert adult.train.s is not None
    small = first_training_rows(adult, TRAIN_ROWS)
    storage = tmp_path_factory.mktemp("storage")
    experiment = storage / "fair-sweep"
    trainers, finals = {}, {}
    for seed in (0, 1):
        config = {**CONFIG, "training": {**CONFIG["training"], "seed": seed}}
        trainer = Trainer(config, dataset=small, device="cpu")
        while not trainer.should_stop:
            trainer.run_epoch()
        trial_id = f"t{seed}"
        trainers[trial_id], finals[trial_id] = trainer, trainer.finish()
        assert trainer.temperatures is not None and trainer.thresholds is not None
        _write_trial(experiment, trial_id, trainer, finals[trial_id])
    return Sweep(str(storage), experiment, trainers, finals, adult)


@pytest.fixture(scope="module")
def single(sweep: Sweep) -> ModelVersion:
    result = sweep.promote("fair", top_k=1, gates=["test_eo_diff<=0.5"])
    assert result.passed and result.version is not None
    return result.version


@pytest.fixture(scope="module")
def ensemble(sweep: Sweep, single: ModelVersion) -> ModelVersion:
    result = sweep.promote("fair", top_k=2, gates=["test_eo_diff_ci_high<=1"])
    assert result.version is not None and result.version.version == 2
    return result.version


def _records(dataset: Dataset) -> list[dict[str, Any]]:
    return list(json.loads(dataset.raw_test.to_json(orient="records")))


def test_a_single_trial_version_decides_exactly_as_its_trainer(
    sweep: Sweep, single: ModelVersion
) -> None:
    (trial_id,) = single.meta["lineage"]["trials"]
    trainer, final = sweep.trainers[trial_id], sweep.finals[trial_id]
    post = single.postprocessing
    assert post is not None and trainer.temperatures is not None
    assert trainer.thresholds is not None
    assert post.temperatures == tuple(trainer.temperatures.tolist())
    assert post.thresholds == tuple(trainer.thresholds.tolist())
    assert post.groups == tuple(sweep.dataset.group_names)
    assert post.record["source"] == {"temperatures": "trial", "thresholds": "trial"}
    assert post.settings["constraint"] == {
        "kind": "eo",
        "tolerance": pytest.approx(BOUND - MARGIN),
        "rows": "val",
    }
    assert post.record["thresholds_fitted_on"] == "val"
    meta = json.loads((Path(single.path) / "meta.json").read_text())
    assert meta["postprocessing"]["thresholds"] == list(post.thresholds)

    records = _records(sweep.dataset)
    expected = [single.classes[i] for i in trainer.decisions("test").tolist()]
    served = ServedModel(load_version(single.path))
    groups = served.groups(records)
    probs = served.probabilities(served.encode(records), groups)
    assert [a["label"] for a in served.answers(probs, groups)] == expected
    assert served.labels(probs) != expected  # the arg-max differs: the thresholds matter
    # The probabilities are the trainer's calibrated ones.
    trainer_probs = trainer._logits("test").softmax(dim=1).double().numpy()
    np.testing.assert_allclose(probs, trainer_probs, rtol=0, atol=1e-6)

    loaded = regtune.load("fair", version=1, storage=sweep.storage)
    assert loaded.predict(records) == expected
    np.testing.assert_allclose(loaded.predict_proba(records), probs, rtol=0, atol=1e-7)
    module, schema = loaded  # still unpacks as before: the raw network and its encoder
    assert module is loaded.module and schema is loaded.schema

    # The recorded test metrics are the post-processed ones the trainer reported.
    for key in ("test_acc", "test_eo_diff", "test_dp_diff", "test_ece", "test_raw_acc"):
        assert single.metrics[key] == pytest.approx(final[key], abs=1e-9), key
    assert single.metrics["test_acc"] != single.metrics["test_raw_acc"]
    test = sweep.dataset.test
    assert test.s is not None
    intervals = fairness_intervals(
        test.y, trainer.decisions("test"), test.s, sweep.dataset.group_names, seed=0
    )
    for key in ("eo_diff_ci_low", "eo_diff_ci_high", "dp_diff_ci_high"):
        assert single.metrics[f"test_{key}"] == intervals[key], key


def test_an_ensemble_fits_its_own_postprocessing_on_the_validation_split(
    sweep: Sweep, ensemble: ModelVersion
) -> None:
    post = ensemble.postprocessing
    assert post is not None and post.temperatures is not None and post.thresholds is not None
    assert post.record["source"] == {"temperatures": "refit", "thresholds": "refit"}
    val, test = sweep.dataset.val, sweep.dataset.test
    assert val.s is not None and test.s is not None
    # A direct fit with the trainer's functions on the validation split, of the
    # ensemble's output (log of the mean member probabilities).
    z = metrics.logits(ensemble.module, val.x)
    temps = calibration.fit_temperatures(z, val.y, val.s, 2)
    assert post.temperatures == tuple(temps.tolist())
    assert post.fallback_temperature == calibration.fit_temperatures(z, val.y)[0].item()
    scores = calibration.scale_logits(z, temps, val.s).softmax(dim=1)[:, 1]
    fit = thresholds.fit_thresholds(scores, val.y, val.s, 2, kind="eo", tolerance=BOUND - MARGIN)
    assert post.thresholds == fit.thresholds
    members = set(ensemble.meta["lineage"]["trials"])
    assert not any(post.thresholds == tuple(t.thresholds.tolist())  # type: ignore[union-attr]
                   for k, t in sweep.trainers.items() if k in members)  # fmt: skip

    # The gates saw the post-processed test metrics: those of the served decisions.
    served = ServedModel(ensemble)
    records = _records(sweep.dataset)
    groups = served.groups(records)
    decided = served.decisions(served.probabilities(served.encode(records), groups), groups)
    pred = torch.from_numpy(decided)
    m = ensemble.metrics
    assert m["test_acc"] == pytest.approx(float((pred == test.y).double().mean()), abs=1e-12)
    assert m["test_eo_diff"] == pytest.approx(fairness.eo_difference(test.y, pred, test.s))
    assert m["test_eo_diff"] != m["test_raw_eo_diff"]
    for code, group in enumerate(sweep.dataset.group_names):
        rows = test.s == code
        rate = float((pred[rows] == 1).double().mean())
        assert m[f"test_positive_rate.{group}"] == pytest.approx(rate)


def test_a_refit_for_robust_thresholds_is_the_robust_fit_the_trainer_makes(sweep: Sweep) -> None:
    from regtune.platform.registry.postfit import fit_postprocessing, settings_of
    from regtune.platform.registry.postprocess import group_codes

    fairness_cfg = {
        **CONFIG["penalties"]["fairness"],
        "robust_quantile": 0.75,
        "robust_resamples": 50,
    }
    config = {
        **CONFIG,
        "training": {**CONFIG["training"], "seed": 7},
        "penalties": {**CONFIG["penalties"], "fairness": fairness_cfg},
    }
    settings = settings_of(config)
    assert settings is not None
    assert settings["constraint"] | {"seed": 0} == {
        **settings_of(CONFIG)["constraint"],  # type: ignore[index]
        "robust_quantile": 0.75,
        "robust_resamples": 50,
        "seed": 0,
    }
    assert settings["constraint"]["seed"] == 7
    model = sweep.trainers["t0"].model
    post = fit_postprocessing(model, sweep.dataset, settings)
    plain = fit_postprocessing(model, sweep.dataset, settings_of(CONFIG))
    assert post is not None and plain is not None and post.thresholds is not None
    # The same rows and scores, fitted directly with the robust criterion.
    val = sweep.dataset.val
    assert val.s is not None
    z = metrics.logits(model, val.x)
    z = post.scale_logits(z, group_codes(val.s, len(z)))
    direct = thresholds.fit_thresholds(
        z.softmax(dim=1)[:, 1],
        val.y,
        val.s,
        2,
        kind="eo",
        tolerance=BOUND - MARGIN,
        robust_quantile=0.75,
        resamples=50,
        seed=7,
    )
    assert post.thresholds == direct.thresholds
    fit = post.record["fit"]
    assert fit["val_postprocess_robust_gap"] == direct.robust_gap
    assert fit["postprocess_feasible"] == (
        direct.robust_gap is not None
        and direct.robust_gap <= BOUND - MARGIN
        and fit["val_postprocess_gap"] <= BOUND - MARGIN
        and thresholds.beats_constant(
            fit["val_postprocess_acc"], thresholds.constant_accuracy(val.y)
        )
    )
    assert "val_postprocess_robust_gap" not in plain.record["fit"]
    # A trial's own thresholds (single-trial promotion): its robust criterion
    # is recounted on the same rows, and feasibility counts it.
    recount = thresholds.resampled_gap(
        z.softmax(dim=1)[:, 1], val.y, val.s, 2, plain.thresholds,  # type: ignore[arg-type]
        kind="eo", quantile=0.75, resamples=50, seed=7,
    )  # fmt: skip
    own = fit_postprocessing(model, sweep.dataset, settings, stored_thresholds=plain.thresholds)
    assert own is not None and own.record["source"]["thresholds"] == "trial"
    assert own.record["fit"]["val_postprocess_robust_gap"] == recount
    mine = own.record["fit"]
    assert mine["postprocess_feasible"] == (
        recount <= BOUND - MARGIN
        and mine["val_postprocess_gap"] <= BOUND - MARGIN
        and thresholds.beats_constant(
            mine["val_postprocess_acc"], thresholds.constant_accuracy(val.y)
        )
    )


def test_seed_ensembles_share_robust_settings() -> None:
    from regtune.platform.registry.postfit import settings_of
    from regtune.platform.registry.promote import _unseeded

    fairness_cfg = {**CONFIG["penalties"]["fairness"], "robust_quantile": 0.75}
    seeded = [
        settings_of(
            {
                **CONFIG,
                "training": {**CONFIG["training"], "seed": seed},
                "penalties": {**CONFIG["penalties"], "fairness": fairness_cfg},
            }
        )
        for seed in (0, 1)
    ]
    assert seeded[0] != seeded[1]
    assert _unseeded(seeded[0]) == _unseeded(seeded[1])


def test_students_and_int8_copies_refit_on_validation_with_the_parent_settings(
    sweep: Sweep, ensemble: ModelVersion
) -> None:
    trainer = sweep.trainers["t1"]
    student = Member.from_model(trainer.config, trainer.model)
    post = student_postprocessing(ensemble, student, sweep.dataset)
    assert post is not None and post.record["settings_from"] == ensemble.ref
    assert post.settings == ensemble.postprocessing.settings  # type: ignore[union-attr]
    val = sweep.dataset.val
    z = metrics.logits(trainer.model, val.x)
    temps = calibration.fit_temperatures(z, val.y, val.s, 2)
    assert post.temperatures == tuple(temps.tolist())

    copy = quantize_version(ensemble.path, name="fair-int8", root=sweep.root)
    q = copy.postprocessing
    assert q is not None and q.record["settings_from"] == ensemble.ref
    assert q.record["source"]["thresholds"] == "refit" and q.thresholds is not None
    assert copy.metrics["test_eo_diff"] != copy.metrics["test_raw_eo_diff"]


def _rewrite(version: ModelVersion, target: Path, change: Any, *, rehash: bool = True) -> Path:
    shutil.copytree(version.path, target)
    meta = json.loads((target / "meta.json").read_text())
    change(meta["postprocessing"])
    if rehash:
        meta[DIGEST_KEY] = meta_digest(meta)
    (target / "meta.json").write_text(json.dumps(meta))
    return target


def _set(key: str, value: Any) -> Any:
    def change(post: dict[str, Any]) -> None:
        post[key] = value

    return change


@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [
        (_set("thresholds", [0.3]), "postprocessing.thresholds", "a list of 2 (one per group)"),
        (_set("thresholds", [0.3, 1.5]), "postprocessing.thresholds", "probabilities in [0, 1]"),
        (_set("thresholds", [0.3, "x"]), "postprocessing.thresholds", "probabilities in [0, 1]"),
        (_set("temperatures", [0.5, 0.0]), "postprocessing.temperatures", "finite numbers > 0"),
        (_set("temperatures", [1, 2, 3]), "postprocessing.temperatures", "a list of 1 or 2"),
        (_set("fallback_temperature", None), "postprocessing.fallback_temperature", "> 0"),
        (_set("groups", ["Male", "Female"]), "postprocessing.groups", "sensitive values"),
        (
            _set("record", {"source": 3}),
            "postprocessing.record.source",
            "null or an object {temperatures, thresholds}",
        ),
        (
            _set("settings", {"calibration": "none", "constraint": {"kind": "xx"}}),
            "postprocessing.settings.constraint",
            "kind: dp|eo",
        ),
        (
            _set(
                "settings",
                {
                    "calibration": "none",
                    "constraint": {"kind": "eo", "tolerance": 0.02, "rows": "test"},
                },
            ),
            "postprocessing.settings.constraint",
            "rows (optional): val|train+val",
        ),
        (_set("settings", {"calibration": "hot"}), "postprocessing.settings.calibration", "none"),
        *[
            (
                _set(
                    "settings",
                    {
                        "calibration": "none",
                        "constraint": {"kind": "eo", "tolerance": 0.02, key: value},
                    },
                ),
                f"postprocessing.settings.constraint.{key}",
                allowed,
            )
            for key, value, allowed in [
                ("robust_quantile", 5, "strictly between 0 and 1"),
                ("robust_resamples", 10**7, "a whole number in [20, 1000]"),
                ("robust_resamples", 0.5, "a whole number in [20, 1000]"),
                ("seed", "x", "a whole number"),
            ]
        ],
        *[
            (
                _set(
                    "settings",
                    {
                        "calibration": "none",
                        "constraint": {
                            "kind": "eo",
                            "tolerance": 0.02,
                            "robust_quantile": 0.5,
                            **present,
                        },
                    },
                ),
                f"postprocessing.settings.constraint.{missing}",
                "stored with robust_quantile",
            )
            for missing, present in [
                ("robust_resamples", {"seed": 0}),
                ("seed", {"robust_resamples": 50}),
            ]
        ],
    ],
)
def test_a_malformed_stored_value_is_refused_naming_the_field(
    single: ModelVersion, tmp_path: Path, change: Any, field: str, allowed: str
) -> None:
    path = _rewrite(single, tmp_path / "v", change)
    with pytest.raises(CheckpointError) as info:
        load_version(str(path))
    message = str(info.value)
    assert f"meta.json field '{field}'" in message and allowed in message, message


def test_a_tampered_threshold_is_refused_by_the_content_hash(
    single: ModelVersion, tmp_path: Path
) -> None:
    path = _rewrite(single, tmp_path / "v", _set("thresholds", [0.0, 0.0]), rehash=False)
    with pytest.raises(CheckpointError, match=r"meta\.json was modified"):
        load_version(str(path))


def test_models_show_and_diff_list_the_postprocessing(
    sweep: Sweep, single: ModelVersion, ensemble: ModelVersion
) -> None:
    shown = runner.invoke(app, ["models", "show", "fair:2", "--storage", sweep.storage])
    assert shown.exit_code == 0, shown.output
    assert "post-processing" in shown.stdout and "(unknown group)" in shown.stdout
    for group in sweep.dataset.group_names:
        assert group in shown.stdout
    as_json = runner.invoke(app, ["models", "show", "fair:1", "--storage", sweep.storage, "--json"])
    payload = json.loads(as_json.stdout)["postprocessing"]
    assert payload["thresholds"] == list(single.postprocessing.thresholds)  # type: ignore[union-attr]
    diff = runner.invoke(
        app, ["models", "diff", "fair:1", "fair:2", "--storage", sweep.storage, "--json"]
    )
    assert diff.exit_code == 0, diff.output
    rows = {r["key"]: r for r in json.loads(diff.stdout)["changes"]["postprocessing"]}
    assert rows["postprocessing.thresholds.0"]["b"] == ensemble.postprocessing.thresholds[0]  # type: ignore[union-attr]
    assert rows["postprocessing.record.source.thresholds"] == {
        "key": "postprocessing.record.source.thresholds",
        "a": "trial",
        "b": "refit",
    }


def test_one_temperature_without_groups_scales_every_row(
    tiny_run: RunResult, registry: str
) -> None:
    from regtune.platform.registry import save_version
    from regtune.platform.registry.postfit import fit_postprocessing

    digits = tiny_run.dataset
    member = Member.from_model(tiny_run.config, tiny_run.model)
    post = fit_postprocessing(
        tiny_run.model, digits, {"calibration": "temperature", "constraint": None}
    )
    assert post is not None and post.record["fit"]["calibration_kept"]
    assert post.temperatures is not None and len(post.temperatures) == 1
    version = save_version("cal", [member], digits, root=registry, postprocessing=post)
    assert load_version(version.path).postprocessing == post
    records = json.loads(digits.raw_test.head(50).to_json(orient="records"))
    served = ServedModel(version)
    assert served.groups(records) is None
    x = served.encode(records)
    with torch.no_grad():
        expected = (tiny_run.model(x) / post.temperatures[0]).softmax(dim=1).double().numpy()
    np.testing.assert_allclose(served.probabilities(x), expected, rtol=0, atol=1e-6)
    assert version.metrics["test_ece"] < evaluate_module(tiny_run.model, digits)["test_ece"]


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("thresholds", torch.zeros(2, 2), "'thresholds' is not a 1-d tensor"),
        ("thresholds", [0.2, 0.4], "'thresholds' is not a 1-d tensor"),
        ("temperatures", torch.tensor([1.0, float("nan")]), "'temperatures' holds non-finite"),
    ],
)
def test_a_checkpoint_with_unusable_fitted_values_is_refused(
    tiny_run: RunResult, tmp_path: Path, key: str, value: Any, fragment: str
) -> None:
    from regtune.platform.registry.trials import SweepTrial, read_weights
    from regtune.trainables.checkpoint import save_tree

    state = {k: v.detach().clone() for k, v in tiny_run.model.state_dict().items()}
    folder = save_tree({"epoch": 2, "model": state, key: value}, tmp_path / STATE_DIR)
    trial = SweepTrial("t9", tmp_path, {}, {}, folder, 2)
    with pytest.raises(CheckpointError, match=fragment) as info:
        read_weights(trial)
    assert str(folder) in str(info.value)


#: A single robust trial whose thresholds were fitted on training + validation rows.
ROBUST_TRAIN_VAL_CONFIG: dict[str, Any] = {
    "dataset": "adult",
    "model": {"arch": "logreg"},
    "training": {
        "epochs": 1,
        "batch_size": 2048,
        "lr": 1e-2,
        "robust_every": 0,
        "seed": 3,
        "calibration": "group_temperature",
    },
    "penalties": {
        "fairness": {
            "kind": "eo",
            "method": "postprocess",
            "bound": BOUND,
            "margin": MARGIN,
            "threshold_rows": "train+val",
            "robust_quantile": 0.75,
            "robust_resamples": 50,
        }
    },
}


def test_a_promoted_robust_trial_fitted_on_train_and_val_keeps_its_thresholds_and_criterion(
    adult: Dataset, tmp_path: Path
) -> None:
    from regtune.trainables.loop import Trainer

    trainer = Trainer(ROBUST_TRAIN_VAL_CONFIG, dataset=adult, device="cpu")
    while not trainer.should_stop:
        trainer.run_epoch()
    final = trainer.finish()
    assert trainer.thresholds is not None and trainer.temperatures is not None
    assert final["postprocess_fit_rows"] == adult.train.y.shape[0] + adult.val.y.shape[0]
    experiment = tmp_path / "robust-sweep"
    _write_trial(experiment, "r0", trainer, final)
    result = promote(
        str(experiment), name="robust", top_k=1, objectives=OBJECTIVES, gates=parse_gates([]),
        root=registry_root(str(tmp_path)),
    )  # fmt: skip
    assert result.passed and result.version is not None
    post = result.version.postprocessing
    assert post is not None
    tolerance = BOUND - MARGIN
    assert post.settings["constraint"] == {
        "kind": "eo",
        "tolerance": pytest.approx(tolerance),
        "rows": "train+val",
        "robust_quantile": 0.75,
        "robust_resamples": 50,
        "seed": 3,
    }
    assert post.record["thresholds_fitted_on"] == "train+val"
    assert post.record["source"] == {"temperatures": "trial", "thresholds": "trial"}
    assert post.thresholds == tuple(trainer.thresholds.tolist())
    assert post.temperatures == tuple(trainer.temperatures.tolist())
    fit = post.record["fit"]
    # The trial's robust criterion, recounted on its own fitting rows (the
    # calibrated scores of the training and validation splits, its seed):
    # the number its trainer reported.
    assert fit["val_postprocess_robust_gap"] == pytest.approx(
        final["val_postprocess_robust_gap"], abs=1e-12
    )
    val = adult.val
    assert val.s is not None
    assert post.thresholds is not None
    val_scores = trainer.positive_scores("val")
    val_only = thresholds.resampled_gap(
        val_scores, val.y, val.s, 2, post.thresholds,
        kind="eo", quantile=0.75, resamples=50, seed=3,
    )  # fmt: skip
    assert val_only != pytest.approx(fit["val_postprocess_robust_gap"], abs=1e-6)
    # The version's gap, accuracy and feasibility are measured on the fitting
    # rows, as the trainer's are: the trial's own numbers, not validation's.
    assert fit["postprocess_fit_rows"] == final["postprocess_fit_rows"]
    assert fit["val_postprocess_gap"] == pytest.approx(final["val_postprocess_gap"], abs=1e-12)
    assert fit["val_postprocess_acc"] == pytest.approx(final["val_postprocess_acc"], abs=1e-12)
    assert fit["postprocess_feasible"] == bool(final["postprocess_feasible"])
    decided = thresholds.apply_thresholds(val_scores, val.s, post.thresholds)
    assert fit["val_postprocess_gap"] != pytest.approx(
        fairness.eo_difference(val.y, decided, val.s), abs=1e-6
    )  # validation alone would say otherwise
    # What the version decides on the test split is what the trainer decided.
    assert result.version.metrics["test_acc"] == pytest.approx(final["test_acc"], abs=1e-12)
    assert result.version.metrics["test_eo_diff"] == pytest.approx(final["test_eo_diff"], abs=1e-12)


def test_a_gap_at_the_tolerance_up_to_rounding_is_feasible(sweep: Sweep) -> None:
    """As ``fit_thresholds`` (``thresholds.within_tolerance``): stored thresholds whose
    gap equals the tolerance up to float rounding are feasible, not refused by 1e-16."""
    from regtune.platform.registry.postfit import fit_postprocessing, settings_of

    settings = settings_of(CONFIG)
    assert settings is not None
    model = sweep.trainers["t0"].model
    first = fit_postprocessing(model, sweep.dataset, settings)
    assert first is not None and first.thresholds is not None
    gap = first.record["fit"]["val_postprocess_gap"]
    assert gap > 0
    # The tolerance a hair under the gap, as bound - margin rounds (0.3 - 0.1 < 0.2).
    tight = {**settings, "constraint": {**settings["constraint"], "tolerance": gap - 1e-12}}
    again = fit_postprocessing(model, sweep.dataset, tight, stored_thresholds=first.thresholds)
    assert again is not None
    assert again.record["fit"]["val_postprocess_gap"] == gap
    assert again.record["fit"]["postprocess_feasible"] is True

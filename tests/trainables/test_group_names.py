"""Group keys: one distinct, readable metric key per group of a dataset, everywhere a
per-group metric is written, through the Parquet store and the analysis' column reader;
and group names themselves: the canonical values data loading names groups by, from a
CSV through training, the registry and predict()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import regtune
from regtune.platform.analysis.columns import group_columns, group_rate_columns
from regtune.platform.registry import Member, save_version
from regtune.platform.registry.postfit import fit_postprocessing, settings_of
from regtune.platform.results import ResultsWriter, read_epochs, read_trials
from regtune.search_spaces import load_spec
from regtune.serve.predictor import ServedModel
from regtune.trainables.bootstrap import fairness_intervals, group_keys
from regtune.trainables.config import DatasetConfig
from regtune.trainables.data import DataWarning, load_dataset
from regtune.trainables.loop import train
from regtune.trainables.metric_names import parse_group_metric, safe_group_name
from regtune.trainables.metrics import group_accuracy
from tests.platform.results.conftest import tune_result

# The names of the new-user trial (byod report, finding 1): each pair shared one key.
COLLIDING = [["男性", "女性"], ["<=40", ">40"], ["<=50K", ">50K"], ["?", "--"]]


@pytest.mark.parametrize("names", COLLIDING)
def test_colliding_names_get_distinct_keys_that_parse_back(names: list[str]) -> None:
    keys = group_keys(names)
    assert len(set(keys)) == len(names)
    for key in keys:
        parsed = parse_group_metric(f"test_tpr_{key}_ci_high")
        assert parsed is not None and (parsed.group, parsed.bound) == (key, "high")


def test_keys_stay_readable_and_are_stable() -> None:
    # Unicode letters are kept; names that do not collide keep their old key.
    assert group_keys(["男性", "女性"]) == ["男性", "女性"]
    assert group_keys(["African-American", "Caucasian"]) == ["African_American", "Caucasian"]
    assert safe_group_name("Native-American") == "Native_American"
    # A collision keeps the readable part and adds a hash of the exact name: the same
    # key whatever the order of the groups or the other groups present.
    keys = group_keys(["<=40", ">40"])
    assert keys == ["40_6414c2", "40_bce664"]
    assert group_keys([">40", "<=40", "x"]) == [keys[1], keys[0], "x"]


def test_a_hashed_key_never_meets_another_groups_key() -> None:
    first = group_keys(["a b", "a-b"])[0]
    keys = group_keys(["a b", "a-b", first])
    assert len(set(keys)) == 3


def test_repeated_group_names_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"group names must be distinct; repeated: \['x'\]"):
        group_keys(["x", "y", "x"])


def _rows() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group 0 ("<=40"): every decision 1; group 1 (">40"): every decision 0."""
    y = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    s = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    y_pred = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    return y, y_pred, s


def test_every_per_group_writer_keeps_both_groups() -> None:
    y, y_pred, s = _rows()
    names = ["<=40", ">40"]
    young, old = group_keys(names)
    out = fairness_intervals(y, y_pred, s, names, n_resamples=50)
    assert out[f"selection_rate_{young}"] == 1.0 and out[f"selection_rate_{old}"] == 0.0
    assert out[f"tpr_{young}"] == 1.0 and out[f"tpr_{old}"] == 0.0
    acc = group_accuracy(y, y_pred, s, names)
    assert acc[f"test_acc_{young}"] == 0.5 and acc[f"test_acc_{old}"] == 0.5


def _spec() -> dict[str, Any]:
    return {
        "name": "groups",
        "dataset": "adult",
        "model": {"arch": "logreg"},
        "training": {"lr": 0.01},
        "penalties": {"l2": {"grid": [0.0, 1e-4]}},
        "objectives": [{"metric": "val_acc", "mode": "max"}],
        "scheduler": {"kind": "none"},
        "searcher": {"kind": "grid"},
        "budget": {"samples": 1, "max_epochs": 1},
    }


def test_unicode_and_hashed_keys_survive_the_parquet_store_and_the_analysis(
    tmp_path: Path,
) -> None:
    y, y_pred, s = _rows()
    metrics: dict[str, float] = {"val_acc": 0.5}
    for names in (["男性", "女性"], ["<=40", ">40"]):
        intervals = fairness_intervals(y, y_pred, s, names, n_resamples=50)
        metrics.update({f"test_{k}": v for k, v in intervals.items()})
        metrics.update(group_accuracy(y, y_pred, s, names))
    # An older trial's key (before group_keys) is stored too, and still reads.
    metrics["test_tpr_40"] = 0.25
    spec = load_spec(_spec())
    exp = str(tmp_path / "groups")
    writer = ResultsWriter(exp, max_t=1, spec=spec.to_dict(), flush_s=0.0)
    writer.open()
    config = {"dataset": "adult", "model": {"arch": "logreg"}, "penalties": {"l2": 0.0}}
    writer.add("t1", tune_result(1, config, **metrics))
    writer.end_trial("t1", error=False)
    writer.close()
    epochs, trials = read_epochs(exp), read_trials(exp)
    assert epochs.loc[0, "test_tpr_男性"] == 1.0 and epochs.loc[0, "test_tpr_女性"] == 0.0
    young, old = group_keys(["<=40", ">40"])
    last = trials.iloc[0]
    assert last[f"last.test_tpr_{young}"] == 1.0 and last[f"last.test_tpr_{old}"] == 0.0
    assert last["last.test_tpr_男性"] == 1.0 and last["last.test_tpr_女性"] == 0.0
    tpr = {r.group: r for r in group_rate_columns(epochs.columns) if r.stat == "tpr"}
    assert set(tpr) == {"男性", "女性", young, old, "40"}
    assert tpr["女性"].high == "test_tpr_女性_ci_high"
    assert set(group_columns(epochs.columns)["test_acc"]) == {"男性", "女性", young, old}


def test_the_registrys_raw_names_meet_the_trainers_keys_once_each() -> None:
    # The registry writes test_positive_rate.<name>; the trainer the key with an interval.
    names = ["<=40", ">40"]
    young, old = group_keys(names)
    columns = [f"test_positive_rate.{n}" for n in names]
    for key in (young, old):
        columns += [f"test_selection_rate_{key}{end}" for end in ("", "_ci_low", "_ci_high")]
    rates = group_rate_columns(columns)
    assert sorted((r.group, r.low is not None) for r in rates) == [(young, True), (old, True)]


def test_a_float_sensitive_column_trains_stores_and_predicts_with_groups_0_and_1(
    tmp_path: Path,
) -> None:
    """End to end: a CSV whose 0/1 sensitive column reads as floats (one blank cell)
    trains with per-group thresholds; the metrics, the stored schema and the stored
    post-processing name the groups "0" and "1", which is what a client sends."""
    rng = np.random.default_rng(0)
    n = 200
    female = (np.arange(n) % 2).astype(float)
    x1 = rng.normal(size=n) + female  # the groups' scores differ: thresholds matter
    table = pd.DataFrame({"x1": x1, "x2": rng.normal(size=n), "female": female})
    table["y"] = np.where(x1 + 0.5 * rng.normal(size=n) > 0.5, "yes", "no")
    table.loc[5, "female"] = np.nan
    path = tmp_path / "people.csv"
    table.to_csv(path, index=False)
    data: dict[str, Any] = {
        "name": "csv", "path": str(path), "label": "y", "features": ["x1", "x2"],
        "sensitive": "female", "positive_label": "yes", "missing": "drop",
    }  # fmt: skip
    config = {
        "dataset": data,
        "model": {"arch": "logreg"},
        "training": {"epochs": 2, "batch_size": 64, "lr": 0.1, "robust_every": 0},
        "penalties": {"fairness": {"kind": "dp", "method": "postprocess"}},
    }
    with pytest.warns(DataWarning, match="dropped 1 of 200 rows"):
        ds = load_dataset(DatasetConfig(**data))
    assert ds.group_names == ["0", "1"]
    run = train(config, dataset=ds)
    final = run.final_metrics
    for key in ("threshold", "test_acc", "test_selection_rate", "test_tpr"):
        assert f"{key}_0" in final and f"{key}_1" in final, key
        assert f"{key}_0_0" not in final and f"{key}_1_0" not in final, key

    post = fit_postprocessing(run.model, ds, settings_of(run.config))
    assert post is not None and post.groups == ("0", "1")
    member = Member.from_model(run.config, run.model)
    registry = str(tmp_path / "registry")
    saved = save_version("flags", [member], ds, root=registry, postprocessing=post)
    model = regtune.load(saved.path)
    assert model.schema.sensitive_values == ("0", "1") and model.schema.group_names() == ["0", "1"]
    assert model.version.meta["postprocessing"]["groups"] == ["0", "1"]
    served = ServedModel(model.version)
    # Each spelling a client may send for a group reads as that group, and the
    # answers are the trainer's own thresholded decisions on the test rows.
    assert ds.test.s is not None
    codes = ds.test.s.tolist()
    records = ds.raw_test.drop(columns=["y"]).to_dict("records")
    expected = model.predict(records)
    for spell in (int, str, float, lambda v: f"{v:.1f}"):
        sent = [{**r, "female": spell(int(r["female"]))} for r in records]
        assert model.groups(sent) == codes and served.groups(sent) == codes
        assert model.predict(sent) == expected
    probs = torch.softmax(run.model.eval()(ds.test.x), dim=1)[:, 1].detach()
    cut = torch.tensor([final["threshold_0"], final["threshold_1"]])
    trainer = (probs >= cut[ds.test.s]).long().tolist()
    assert [list(ds.schema.classes).index(c) for c in expected] == trainer


def test_a_float_label_trains_stores_and_predicts_classes_0_and_1(tmp_path: Path) -> None:
    """End to end: a CSV whose 0/1 label reads as floats (one blank cell) trains, is
    stored and answers "1" / "0" from predict() and the server, as an int label
    would (the classes are canonical values, not "1.0" / "0.0")."""
    rng = np.random.default_rng(1)
    x1 = rng.normal(size=80)
    table = pd.DataFrame({"x1": x1, "y": (x1 > 0).astype(float)})
    table.loc[4, "y"] = np.nan
    path = tmp_path / "flags.csv"
    table.to_csv(path, index=False)
    data: dict[str, Any] = {
        "name": "csv", "path": str(path), "label": "y", "features": ["x1"], "missing": "drop",
    }  # fmt: skip
    with pytest.warns(DataWarning, match="dropped 1 of 80 rows"):
        ds = load_dataset(DatasetConfig(**data))
    assert ds.schema.classes == (0, 1)
    config = {
        "dataset": data,
        "model": {"arch": "logreg"},
        "training": {"epochs": 3, "batch_size": 64, "lr": 0.5, "robust_every": 0},
    }
    run = train(config, dataset=ds)
    registry = str(tmp_path / "registry")
    saved = save_version("flags", [Member.from_model(run.config, run.model)], ds, root=registry)
    model = regtune.load(saved.path)
    assert model.version.meta["classes"] == ["0", "1"] and model.classes == ["0", "1"]
    records = [{"x1": 3.0}, {"x1": -3.0}]
    assert model.predict(records) == ["1", "0"]
    served = ServedModel(model.version)
    answers = served.answers(served.predict(records))
    assert [a["label"] for a in answers] == ["1", "0"]
    assert [sorted(a["probabilities"]) for a in answers] == [["0", "1"], ["0", "1"]]

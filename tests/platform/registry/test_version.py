"""Versions on disk: round trip, damaged files refused, atomic numbering, light imports."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from regtune.errors import CheckpointError, SpecError
from regtune.platform.registry import (
    EnsembleModule,
    Member,
    ModelVersion,
    list_versions,
    load_version,
    registry_root,
    save_version,
)
from regtune.platform.registry.location import STORAGE_ENV, list_models
from regtune.trainables.data import Dataset
from regtune.trainables.loop import RunResult

from .conftest import train_tiny


def test_round_trip_predicts_like_the_trained_model(
    tiny_run: RunResult, tiny_version: ModelVersion
) -> None:
    loaded = load_version("tiny", root=str(Path(tiny_version.path).parent.parent))
    assert (loaded.name, loaded.version, loaded.kind) == ("tiny", 1, "single")
    ds = tiny_run.dataset
    records = ds.raw_test.to_dict("records")
    x = loaded.schema.transform(records)
    assert torch.equal(x, ds.test.x)
    tiny_run.model.eval()
    with torch.no_grad():
        expected = tiny_run.model(ds.test.x)
    assert torch.allclose(loaded.module(x), expected, atol=1e-6)
    assert loaded.classes == [str(c) for c in range(10)]
    assert not loaded.module.training
    # Metrics equal what the training run scored on the test split.
    assert loaded.metrics["test_acc"] == pytest.approx(tiny_run.test_metrics["test_acc"])
    assert math.isclose(
        loaded.metrics["gap"], loaded.metrics["val_loss"] - loaded.metrics["train_loss"]
    )
    meta = loaded.meta
    assert meta["dataset"]["fingerprint"] == ds.fingerprint
    assert meta["lineage"]["trials"] == ["t0"]
    assert meta["input_shape"] == [1, 8, 8]
    assert set(meta["files"]) == {"weights.safetensors"}


def test_reference_follows_the_contract(tiny_version: ModelVersion, digits: Dataset) -> None:
    ref = tiny_version.reference
    assert ref["n"] == digits.train.x.shape[0]
    assert set(ref["features"]) == set(digits.schema.input_names())
    pixel = ref["features"]["pixel_3_3"]
    assert pixel["kind"] == "numeric" and len(pixel["quantiles"]) == 101
    raw = digits.train.x[:, digits.schema.input_names().index("pixel_3_3")].double() * 16
    assert pixel["quantiles"][0] == pytest.approx(float(raw.min()))
    assert pixel["quantiles"][-1] == pytest.approx(float(raw.max()))
    assert pixel["mean"] == pytest.approx(float(raw.mean()))
    assert sum(ref["prediction"].values()) == pytest.approx(1.0)
    assert set(ref["prediction"]) == {str(c) for c in range(10)}


def test_categorical_reference_and_group_rates(adult: Dataset, tmp_path: Path) -> None:
    run = train_tiny(adult, training={"epochs": 1, "batch_size": 512})
    mv = save_version(
        "adult-tiny", [Member.from_model(run.config, run.model)], adult, root=str(tmp_path)
    )
    sex = mv.reference["features"]["sex"]
    assert sex["kind"] == "categorical"
    assert sum(sex["frequencies"].values()) == pytest.approx(1.0)
    female = float((adult.train.x[:, adult.schema.feature_names().index("sex=Female")]).mean())
    assert sex["frequencies"]["Female"] == pytest.approx(female)
    assert set(mv.reference["features"]["age"]) == {"kind", "quantiles", "mean", "std"}
    for group in adult.group_names:
        assert 0.0 <= mv.metrics[f"test_positive_rate.{group}"] <= 1.0
        assert 0.0 <= mv.metrics[f"test_tpr.{group}"] <= 1.0
    assert "test_dp_diff" in mv.metrics and "test_eo_diff" in mv.metrics

    # Built-in datasets carry their raw training rows: quantiles are exact values.
    assert mv.reference["numeric_source"] == "raw"
    # Without raw training columns the numeric summary is rebuilt from float32 rows.
    encoded = save_version(
        "adult-encoded",
        [Member.from_model(run.config, run.model)],
        dataclasses.replace(adult, raw_train=None),
        metrics={"test_acc": 0.5},
        root=str(tmp_path),
    ).reference
    assert encoded["numeric_source"] == "encoded"
    # Here the test split stands in for the training split: its raw rows are
    # what schema.transform turns into test.x.
    with_raw = dataclasses.replace(adult, train=adult.test, raw_train=adult.raw_test)
    exact = save_version(
        "adult-exact",
        [Member.from_model(run.config, run.model)],
        with_raw,
        metrics={"test_acc": 0.5},
        root=str(tmp_path),
    ).reference
    assert exact["numeric_source"] == "raw"
    for column in ("capital_gain", "age", "hours_per_week"):
        values = adult.raw_test[column].to_numpy(dtype=np.float64)
        quantiles = exact["features"][column]["quantiles"]
        assert quantiles == [float(v) for v in np.quantile(values, np.linspace(0, 1, 101))]
        assert quantiles[0] == values.min() and quantiles[-1] == values.max()
    assert exact["features"]["capital_gain"]["quantiles"][50] == 0.0  # the point mass, exactly
    assert exact["features"]["sex"] == {
        "kind": "categorical",
        "frequencies": {
            k: pytest.approx(v)
            for k, v in adult.raw_test["sex"].astype(str).value_counts(normalize=True).items()
        },
    }


def test_ensemble_is_the_mean_of_member_probabilities(digits: Dataset, registry: str) -> None:
    runs = [train_tiny(digits, training={"seed": s}) for s in (1, 2)]
    members = [Member.from_model(r.config, r.model, trial_id=f"t{i}") for i, r in enumerate(runs)]
    mv = save_version("ens", members, digits, root=registry, lineage={"experiment": "exp"})
    assert mv.kind == "ensemble" and isinstance(mv.module, EnsembleModule)
    with torch.no_grad():
        probs = [r.model.eval()(digits.test.x).softmax(dim=1) for r in runs]
        mean = (probs[0] + probs[1]) / 2
        assert torch.allclose(mv.module(digits.test.x).softmax(dim=1), mean, atol=1e-6)
    assert mv.meta["lineage"] == {"trials": ["t0", "t1"], "experiment": "exp"}
    assert mv.metrics["n_params"] == 2 * sum(p.numel() for p in runs[0].model.parameters())


def _weights(mv: ModelVersion) -> Path:
    return Path(mv.path) / "weights.safetensors"


def test_tampered_weights_are_refused(tiny_version: ModelVersion, registry: str) -> None:
    path = _weights(tiny_version)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors was modified"):
        load_version("tiny:1", root=registry)


def test_truncated_weights_are_refused(tiny_version: ModelVersion, registry: str) -> None:
    path = _weights(tiny_version)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"weights\.safetensors is truncated"):
        load_version("tiny", root=registry)


def test_missing_weights_are_refused(tiny_version: ModelVersion) -> None:
    _weights(tiny_version).unlink()
    with pytest.raises(CheckpointError, match=r"weights\.safetensors is missing"):
        load_version(tiny_version.path)


def test_tampered_meta_is_refused(tiny_version: ModelVersion) -> None:
    meta_path = Path(tiny_version.path) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["metrics"]["test_acc"] = 1.0
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"meta\.json was modified"):
        load_version(tiny_version.path)


def test_truncated_meta_is_refused(tiny_version: ModelVersion) -> None:
    meta_path = Path(tiny_version.path) / "meta.json"
    meta_path.write_bytes(meta_path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"meta\.json cannot be read"):
        load_version(tiny_version.path)


def test_bad_references(tiny_version: ModelVersion, registry: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no version 7 .* versions: \[1\]"):
        load_version("tiny:7", root=registry)
    with pytest.raises(SpecError, match=r"'nope' has no versions .* registered models: \['tiny'\]"):
        load_version("nope", root=registry)
    with pytest.raises(SpecError, match="expected a positive integer"):
        load_version("tiny:x", root=registry)
    with pytest.raises(SpecError, match="expected a positive integer"):
        load_version("tiny:0", root=registry)
    with pytest.raises(SpecError, match="model name 'bad name' is not allowed"):
        load_version("bad name", root=registry)
    with pytest.raises(CheckpointError, match="not a model version directory"):
        load_version(str(tmp_path / "empty") + "/", root=registry)


def test_concurrent_writers_get_distinct_numbers(tiny_run: RunResult, registry: str) -> None:
    member = Member.from_model(tiny_run.config, tiny_run.model)
    metrics = {"test_acc": 0.5}  # precomputed: the race is in the write, not the scoring
    results: list[int] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            mv = save_version("race", [member], tiny_run.dataset, metrics=metrics, root=registry)
            results.append(mv.version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    assert list_versions("race", root=registry) == [1, 2, 3, 4, 5, 6]
    for v in results:  # each directory records its own number
        assert load_version(f"race:{v}", root=registry).version == v
    assert not [p for p in (Path(registry) / "race").iterdir() if p.name.startswith(".")]
    assert list_models(root=registry) == ["race"]


def test_registry_root_follows_storage_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from regtune.platform.tune.sweep import default_storage

    monkeypatch.setenv(STORAGE_ENV, str(tmp_path / "store"))
    assert registry_root() == f"{default_storage()}/registry"
    assert registry_root("s3://bucket/runs") == "s3://bucket/runs/registry"
    monkeypatch.delenv(STORAGE_ENV)
    assert registry_root() == f"{default_storage()}/registry"


def test_unknown_uri_scheme_is_refused_clearly(tiny_run: RunResult) -> None:
    member = Member.from_model(tiny_run.config, tiny_run.model)
    with pytest.raises(SpecError, match=r"'nosuch://bucket/registry' cannot be opened"):
        save_version("x", [member], tiny_run.dataset, root="nosuch://bucket/registry")


def test_reading_imports_neither_tune_nor_the_loop(tiny_version: ModelVersion) -> None:
    code = (
        "import sys, torch\n"
        "from regtune.platform.registry import load_version\n"
        f"mv = load_version({tiny_version.path!r})\n"
        "x = torch.zeros(2, 64)\n"
        "assert mv.module(x).shape == (2, 10)\n"
        "bad = [m for m in ('ray', 'ray.tune', 'regtune.trainables.loop') if m in sys.modules]\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_regtune_load_equals_in_process_predictions(
    tiny_run: RunResult, tiny_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    import regtune

    storage = str(Path(tiny_version.path).parents[2])
    module, schema = regtune.load("tiny", storage=storage)
    x = schema.transform(tiny_run.dataset.raw_test.to_dict("records"))
    tiny_run.model.eval()
    with torch.no_grad():
        assert torch.allclose(module(x), tiny_run.model(x), atol=1e-6)
    monkeypatch.setenv(STORAGE_ENV, storage)
    by_version, _ = regtune.load("tiny", version=1)
    by_path, _ = regtune.load(tiny_version.path)
    with torch.no_grad():
        assert torch.equal(by_version(x), module(x)) and torch.equal(by_path(x), module(x))
    for bad in (0, -1, True):
        with pytest.raises(SpecError, match="expected a positive integer or None"):
            regtune.load("tiny", version=bad)
    with pytest.raises(SpecError, match="cannot be combined with a directory"):
        regtune.load(tiny_version.path, version=1)
    with pytest.raises(SpecError, match="no version 2"):
        regtune.load("tiny", version=2)
    assert "load" in regtune.__all__

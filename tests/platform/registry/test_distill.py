"""Distillation as a Ray task on a local Ray, int8 quantization, and their CLI doors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from regtune.errors import CheckpointError, SpecError
from regtune.platform.cli import app
from regtune.platform.registry import (
    Member,
    ModelVersion,
    list_versions,
    load_version,
    save_version,
)
from regtune.platform.registry.distill import (
    FINITE_METRICS,
    DistillSettings,
    check_finite,
    student_config,
)
from regtune.platform.registry.kd import distillation_loss
from regtune.platform.registry.quantize import quantize_version
from regtune.trainables.data import Dataset
from regtune.trainables.loop import RunResult

from .conftest import train_tiny

runner = CliRunner()


@pytest.fixture
def teacher(digits: Dataset, tmp_path: Path) -> ModelVersion:
    """``teacher:1``, an ensemble of two wider digits MLPs, in a registry under tmp_path."""
    runs = [train_tiny(digits, model={"width": 64}, training={"seed": s}) for s in (0, 1)]
    members = [Member.from_model(r.config, r.model, trial_id=f"t{i}") for i, r in enumerate(runs)]
    return save_version("teacher", members, digits, root=str(tmp_path / "registry"))


def test_check_finite_takes_numpy_scalars_and_refuses_a_bool() -> None:
    """A finite numpy value was called diverged, and True passed as a metric."""
    check_finite("t:1", {k: np.float32(0.5) for k in FINITE_METRICS}, 0.1)
    check_finite("t:1", {**{k: 0.5 for k in FINITE_METRICS}, "val_acc": np.int64(1)}, 0.1)
    for bad in (True, float("nan"), float("inf"), None):
        metrics = {**{k: 0.5 for k in FINITE_METRICS}, "test_acc": bad}
        with pytest.raises(SpecError, match=rf"diverged: test_acc {bad} \(not finite\)"):
            check_finite("t:1", metrics, 0.1)


def test_distillation_loss_is_zero_when_student_matches_teacher() -> None:
    logits = torch.randn(8, 3)
    assert float(distillation_loss(logits, logits, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(torch.zeros(8, 3), logits, 2.0)) > 0.0


def test_student_config_keeps_or_drops_the_teacher_regularizers(
    tiny_run: RunResult, tmp_path: Path
) -> None:
    config = tiny_run.config.model_dump(mode="json")
    config["penalties"].update({"l2": 1e-3, "input_noise": 0.05})
    member = Member(config=config, state=tiny_run.model.state_dict())
    mv = save_version(
        "reg", [member], tiny_run.dataset, metrics={"test_acc": 0.0}, root=str(tmp_path)
    )
    plain = student_config(mv, DistillSettings())
    assert plain.penalties.l2 == 0.0 and plain.model.width == 32
    same = student_config(
        mv, DistillSettings(same_regularizers=True, overrides=("penalties.l1=1e-4",))
    )
    assert (same.penalties.l2, same.penalties.input_noise, same.penalties.l1) == (1e-3, 0.05, 1e-4)
    assert same.dataset == tiny_run.config.dataset


def test_quantized_version_records_accuracy_and_size(
    teacher: ModelVersion, digits: Dataset
) -> None:
    root = str(Path(teacher.path).parents[1])
    q = quantize_version("teacher:1", root=root)
    assert q.version == 2 and q.quantized
    record = q.meta["quantization"]
    assert record["scheme"] == "int8-dynamic" and len(record["layers"]) == 4
    assert record["int8_size_bytes"] < record["float_size_bytes"] / 3
    assert abs(record["int8_test_acc"] - record["float_test_acc"]) < 0.05
    assert q.meta["lineage"]["quantized_from"] == "teacher:1"
    again = load_version("teacher:2", root=root)  # rebuilt from the stored int8 tensors
    with torch.no_grad():
        out = again.module(digits.test.x)
        assert torch.equal(out, q.module(digits.test.x))
        acc = float((out.argmax(dim=1) == digits.test.y).double().mean())
    assert acc == pytest.approx(record["int8_test_acc"])
    with pytest.raises(CheckpointError, match="already quantized"):
        quantize_version("teacher:2", root=root)


@pytest.mark.ray
def test_distill_registers_a_student_with_its_teacher_and_an_int8_copy(
    ray_local: None, teacher: ModelVersion, digits: Dataset
) -> None:
    storage = str(Path(teacher.path).parents[2])
    root = f"{storage}/registry"
    result = runner.invoke(
        app,
        ["distill", "teacher", "--storage", storage, "--width", "16", "--epochs", "3",
         "--lr", "0.02", "--temperature", "3", "--quantize", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["registered"] == "teacher:2" and payload["teacher"] == "teacher:1"
    assert payload["quantized"]["registered"] == "teacher:3"
    assert list_versions("teacher", root=root) == [1, 2, 3]
    student = load_version("teacher:2", root=root)
    assert student.kind == "student"
    lineage = student.meta["lineage"]
    assert lineage["teacher"] == {"name": "teacher", "version": 1, "path": teacher.path}
    assert lineage["distillation"]["temperature"] == 3.0 and lineage["distillation"]["epochs"] == 3
    # The fixture's Ray declares one GPU: the task asked for it, and trained where torch could.
    assert lineage["distillation"]["num_gpus"] == 1.0
    assert lineage["distillation"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert student.metrics["n_params"] < teacher.metrics["n_params"] / 4
    assert student.metrics["test_acc"] > 0.3  # learned something from 3 epochs of soft targets
    int8 = load_version("teacher:3", root=root)
    assert int8.quantized and int8.meta["lineage"]["quantized_from"] == "teacher:2"
    assert int8.meta["quantization"]["float_test_acc"] == student.metrics["test_acc"]


def test_distill_and_quantize_cli_refuse_bad_input(teacher: ModelVersion) -> None:
    storage = str(Path(teacher.path).parents[2])
    for args, fragment in [
        (["--alpha", "2"], "--alpha 2.0 is not allowed"),
        (["--temperature", "0"], "--temperature 0.0 is not allowed"),
        (["--student", "rnn"], "model.arch"),
        (["--set", "penalties.l9=1"], "penalties.l9"),
        (["--gpus", "-1"], "--gpus -1.0 is not allowed"),
    ]:
        bad = runner.invoke(app, ["distill", "teacher", "--storage", storage, *args])
        assert bad.exit_code == 2, (args, bad.output)
        assert fragment in bad.stderr, (fragment, bad.stderr)
    for ref, fragment in [("ghost", "'ghost' has no versions"), ("teacher:9", "no version 9")]:
        bad = runner.invoke(app, ["distill", ref, "--storage", storage])
        assert bad.exit_code == 2 and fragment in bad.stderr, bad.output
    bad = runner.invoke(app, ["models", "quantize", "ghost:1", "--storage", storage])
    assert bad.exit_code == 2 and "'ghost' has no versions" in bad.stderr
    assert list_versions("teacher", root=f"{storage}/registry") == [1]

"""A quantized or distilled version keeps its parent's gates: it is checked against
them on its own metrics, refused when it would become the model's latest version
and misses one, and under another name (--as) records only the gates it meets.
Also: a diverged student is refused, and --as is checked before any work
(digits models trained for real; distillation runs in-process, Ray stood in for)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from regtune.errors import SpecError
from regtune.platform.cli import app
from regtune.platform.registry import Member, ModelVersion, list_versions, save_version
from regtune.platform.registry import distill as distill_module
from regtune.platform.registry import quantize as quantize_module
from regtune.platform.registry.distill import DistillSettings, check_finite, distill
from regtune.platform.registry.promote import GatesNotMet, inherited_gates
from regtune.platform.registry.quantize import quantize_version
from regtune.trainables.data import Dataset
from regtune.trainables.loop import RunResult

runner = CliRunner()

#: A student small enough to train in a second.
SMALL = DistillSettings(student={"arch": "mlp", "width": 8, "depth": 1}, epochs=1, lr=0.01)


def _parent(run: RunResult, root: str, gates: list[str], name: str = "gq") -> ModelVersion:
    member = Member.from_model(run.config, run.model, trial_id="t0")
    return save_version(name, [member], run.dataset, lineage={"gates": gates}, root=root)


def test_an_int8_copy_that_misses_a_parent_gate_is_refused_and_nothing_written(
    tiny_run: RunResult, registry: str
) -> None:
    parent = _parent(tiny_run, registry, ["test_acc>=0.0"])
    size = parent.metrics["size_bytes"]
    parent = _parent(tiny_run, registry, ["test_acc>=0.0", f"size_bytes>={size:g}"])
    assert parent.version == 2
    with pytest.raises(GatesNotMet) as info:
        quantize_version("gq:2", root=registry)
    message = str(info.value)
    assert message.startswith(
        "the int8 copy of gq:2 would become the latest version of 'gq', but it does not meet "
        f"the gate(s) gq:2 was registered with: size_bytes>={size:g}: size_bytes = "
    )
    assert "fails by" in message and "nothing was written" in message
    assert "under another name with --as NAME" in message
    assert "test_acc>=0.0" not in message  # the gate it meets is not blamed
    assert list_versions("gq", root=registry) == [1, 2]
    # The command line says the same, exit 2.
    storage = str(Path(registry).parent)
    shown = runner.invoke(app, ["models", "quantize", "gq:2", "--storage", storage])
    assert shown.exit_code == 2, shown.output
    assert "does not meet the gate(s) gq:2 was registered with" in " ".join(shown.stderr.split())
    assert list_versions("gq", root=registry) == [1, 2]


def test_an_int8_copy_under_another_name_lists_only_the_gates_it_meets(
    tiny_run: RunResult, registry: str
) -> None:
    size = _parent(tiny_run, registry, []).metrics["size_bytes"]
    _parent(tiny_run, registry, ["test_acc>=0.0", f"size_bytes>={size:g}"], name="hq")
    copy = quantize_version("hq:1", name="hq-int8", root=registry)
    lineage = copy.meta["lineage"]
    assert lineage["gates"] == ["test_acc>=0.0"]
    (missed,) = lineage["gates_not_met"]
    assert missed.startswith(f"size_bytes>={size:g}: size_bytes = ") and "fails by" in missed
    assert lineage["quantized_from"] == "hq:1"


def test_an_int8_copy_that_meets_every_gate_keeps_them(tiny_run: RunResult, registry: str) -> None:
    _parent(tiny_run, registry, ["test_acc>=0.0", "gap<=100"])
    copy = quantize_version("gq:1", root=registry)
    assert copy.ref == "gq:2"
    assert copy.meta["lineage"]["gates"] == ["test_acc>=0.0", "gap<=100"]
    assert "gates_not_met" not in copy.meta["lineage"]


def test_a_gate_on_a_metric_the_copy_does_not_measure_is_not_met(
    tiny_run: RunResult, registry: str
) -> None:
    parent = _parent(tiny_run, registry, ["test_acc>=0.0"])
    metrics = {k: v for k, v in parent.metrics.items() if k != "test_acc"}
    with pytest.raises(GatesNotMet, match=r"test_acc>=0\.0: test_acc is not measured"):
        inherited_gates(parent, metrics, name="gq", what="x")
    assert inherited_gates(parent, metrics, name="other", what="x") == {
        "gates": [],
        "gates_not_met": ["test_acc>=0.0: test_acc is not measured on this version"],
    }


def test_quantize_checks_the_as_name_before_any_work(
    tiny_version: ModelVersion, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the version was read before the name was checked")

    monkeypatch.setattr(quantize_module, "load_version", no_work)
    with pytest.raises(SpecError, match="'Bad Name!'"):
        quantize_version("tiny:1", name="Bad Name!", root=registry)


@pytest.fixture
def in_process_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """``distill`` without a Ray cluster: the task runs in this process."""
    import ray

    from regtune.platform.tune import runtime

    class Task:
        def __init__(self, fn: Any) -> None:
            self.fn = fn

        def remote(self, *args: Any) -> Any:
            return self.fn(*args)

    threads = torch.get_num_threads()
    monkeypatch.setattr(runtime, "ensure_ray", lambda address=None: None)
    monkeypatch.setattr(ray, "remote", lambda **_: Task)
    monkeypatch.setattr(ray, "get", lambda value: value)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    yield
    torch.set_num_threads(threads)


def test_a_student_that_misses_the_teachers_gate_is_refused_or_renamed(
    tiny_run: RunResult, registry: str, in_process_ray: None
) -> None:
    teacher = _parent(tiny_run, registry, ["test_acc>=0.0"], name="teach")
    n_params = teacher.metrics["n_params"]
    teacher = _parent(tiny_run, registry, ["test_acc>=0.0", f"n_params>={n_params:g}"], "teach")
    with pytest.raises(GatesNotMet) as info:
        distill("teach", SMALL, root=registry)
    assert str(info.value).startswith(
        "the student of teach:2 would become the latest version of 'teach', but it does not "
        f"meet the gate(s) teach:2 was registered with: n_params>={n_params:g}: n_params = "
    )
    assert list_versions("teach", root=registry) == [1, 2]
    student = distill("teach", SMALL, name="small", root=registry)
    lineage = student.meta["lineage"]
    assert lineage["gates"] == ["test_acc>=0.0"]
    assert lineage["gates_not_met"][0].startswith(f"n_params>={n_params:g}: n_params = ")
    # The metrics checked are the ones stored.
    assert student.metrics["n_params"] < n_params


def test_a_student_that_meets_the_teachers_gates_records_them(
    tiny_run: RunResult, registry: str, in_process_ray: None
) -> None:
    _parent(tiny_run, registry, ["test_acc>=0.0"], name="teach")
    student = distill("teach", SMALL, root=registry)
    assert student.ref == "teach:2"
    assert student.meta["lineage"]["gates"] == ["test_acc>=0.0"]
    assert "gates_not_met" not in student.meta["lineage"]


def test_a_diverged_student_is_not_registered(
    tiny_run: RunResult, registry: str, in_process_ray: None
) -> None:
    _parent(tiny_run, registry, [], name="teach")
    settings = DistillSettings(
        student={"arch": "mlp", "width": 8, "depth": 1}, epochs=1, lr=1e30, alpha=0.0
    )
    with pytest.raises(SpecError) as info:
        distill("teach", settings, name="div", root=registry)
    message = str(info.value)
    assert message.startswith("the student of teach:1 diverged: ")
    assert "(not finite); nothing was written" in message and "--lr (it was 1e+30)" in message
    assert list_versions("div", root=registry) == []


def test_check_finite_names_each_non_finite_metric() -> None:
    metrics = {"train_loss": 0.1, "val_loss": float("inf"), "val_acc": 0.5, "test_loss": 0.2}
    with pytest.raises(SpecError, match=r"diverged: val_loss inf, test_acc None \(not finite\)"):
        check_finite("t:1", metrics, 0.5)
    check_finite("t:1", {**metrics, "val_loss": 0.3, "test_acc": 0.9}, 0.5)


def test_distill_checks_the_as_name_before_any_work(
    tiny_version: ModelVersion, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the teacher was read before the name was checked")

    monkeypatch.setattr(distill_module, "load_version", no_work)
    with pytest.raises(SpecError, match="'Bad Name!'"):
        distill("tiny", SMALL, name="Bad Name!", root=registry)
    storage = str(Path(registry).parent)
    shown = runner.invoke(app, ["distill", "tiny", "--as", "Bad Name!", "--storage", storage])
    assert shown.exit_code == 2 and "'Bad Name!'" in shown.stderr


def test_distill_json_is_valid_when_a_metric_is_not_finite(
    tiny_run: RunResult, registry: str, digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = Member.from_model(tiny_run.config, tiny_run.model)
    lineage = {"teacher": {"name": "t", "version": 1, "path": "p"}, "teacher_metrics": {}}
    student = save_version(
        "stu",
        [member],
        digits,
        kind="student",
        metrics={"test_acc": 0.5, "n_params": 10.0, "ece": float("nan")},
        lineage=lineage,
        root=registry,
    )
    monkeypatch.setattr(distill_module, "distill", lambda *args, **kwargs: student)
    shown = runner.invoke(app, ["distill", "t", "--storage", str(Path(registry).parent), "--json"])
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.stdout, parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    assert payload["metrics"]["ece"] is None and payload["gates_not_met"] == []

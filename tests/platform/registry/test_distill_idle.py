"""Distilling a teacher whose stored config has settings idle on its data (an
older regtune trained ``training.robust_every: 1`` on data with no numeric
feature): what the student copies from its teacher ran so, and is kept and
logged, not refused; a perturbing setting an override adds is new input,
refused before Ray starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.platform.registry import Member, ModelVersion, save_version
from regtune.platform.registry.distill import (
    DistillSettings,
    check_student_fits,
    distill,
    run_distillation,
    student_config,
)
from regtune.trainables.config import parse_train_config
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import train


def _categorical_csv(tmp_path: Path) -> Path:
    rows = ["c,g,y"] + [f"{'abc'[i % 3]},{'xy'[i % 2]},{int(i % 3 == 0)}" for i in range(120)]
    path = tmp_path / "cat.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def stored_teacher(tmp_path: Path) -> tuple[ModelVersion, Dataset]:
    """``cat:1``: one MLP on all-categorical data whose stored config asks for
    robust accuracy (as an older regtune trained and registered it)."""
    config: dict[str, Any] = {
        "dataset": {"name": "csv", "path": str(_categorical_csv(tmp_path)), "label": "y"},
        "model": {"arch": "mlp", "width": 16, "depth": 1},
        "training": {"epochs": 1},
    }
    dataset = load_dataset(parse_train_config(config).dataset)
    run = train(config, dataset=dataset, device="cpu")
    stored = run.config.model_dump(mode="json")
    stored["training"] |= {"robust_every": 1, "robust_eps": 0.2}
    member = Member.from_model(stored, run.model, trial_id="t0")
    return save_version("cat", [member], dataset, root=str(tmp_path / "registry")), dataset


SETTINGS = DistillSettings(student={"arch": "mlp", "width": 8, "depth": 1}, epochs=1)


def test_the_copied_teacher_keys_are_kept_and_train(
    stored_teacher: tuple[ModelVersion, Dataset],
) -> None:
    teacher, dataset = stored_teacher
    config = student_config(teacher, SETTINGS)
    # The student is measured as its teacher was: the keys stay in its config.
    assert config.training.robust_every == 1 and config.training.robust_eps == 0.2
    check_student_fits(teacher, SETTINGS, config, dataset)
    # The Ray task's body (it used to refuse inside Ray, a remote traceback).
    result = run_distillation(teacher.path, config.model_dump(mode="json"), 4.0, 0.9, dataset)
    assert len(result["history"]) == 1
    assert result["history"][0]["robust_acc"] == result["history"][0]["val_acc"]


def test_a_perturbing_override_is_new_input(stored_teacher: tuple[ModelVersion, Dataset]) -> None:
    teacher, dataset = stored_teacher
    settings = DistillSettings(
        student=SETTINGS.student, epochs=1, overrides=["penalties.input_noise=0.1"]
    )
    with pytest.raises(SpecError, match=r"penalties\.input_noise 0\.1: .*no numeric feature"):
        check_student_fits(teacher, settings, student_config(teacher, settings), dataset)


@pytest.mark.ray
def test_distill_of_the_stored_teacher_registers_a_student(
    ray_local: None, stored_teacher: tuple[ModelVersion, Dataset], tmp_path: Path
) -> None:
    assert stored_teacher[0].ref == "cat:1"
    student = distill("cat", SETTINGS, root=str(tmp_path / "registry"))
    assert student.ref == "cat:2" and student.kind == "student"
    assert student.meta["configs"][0]["training"]["robust_every"] == 1


def test_a_perturbing_override_is_refused_before_ray_starts(
    stored_teacher: tuple[ModelVersion, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regtune.platform.tune import runtime

    def no_ray(address: Any = None) -> None:
        raise AssertionError("Ray started")

    monkeypatch.setattr(runtime, "ensure_ray", no_ray)
    settings = DistillSettings(
        student=SETTINGS.student, epochs=1, overrides=["training.robust_every=2"]
    )
    with pytest.raises(SpecError, match="no numeric feature"):
        distill("cat", settings, root=str(tmp_path / "registry"))

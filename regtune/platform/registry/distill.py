"""``distill``: train a smaller student on a registered model's soft targets, as a Ray task.

The teacher is any version (usually a promoted ensemble). The student's
training config starts from the teacher's first member's (same dataset and
split), takes the student architecture and the distillation run's own
epochs/learning rate, and keeps the teacher's regularizers only when asked
(``same_regularizers``); ``overrides`` (``KEY.PATH=VALUE``) adjust anything
after that. Training runs in one Ray task that asks for a GPU when the
cluster has one and trains on CUDA when torch sees one there (else on the
CPU). The student is registered as the next version of ``name`` (default: the
teacher's name) with ``kind="student"`` and the teacher recorded in its lineage.

Before it is written the student's metrics are checked: one of
:data:`FINITE_METRICS` not finite (training diverged) is refused, and the
teacher's gates (``lineage.gates``) are re-checked on the student's own
metrics as for an int8 copy (:func:`~.promote.inherited_gates`): registered
as the teacher's model it must meet every one, else nothing is written;
under another name (``--as``) its lineage lists the gates it meets and the
others under ``gates_not_met``. The name is checked before any training.

Post-processing: the teacher's temperatures and thresholds describe the
teacher's probabilities, not the student's, so they are not copied. The
student gets its own, fitted on the validation split (never test) with the
teacher's settings (calibration mode, constraint kind and tolerance), or,
for a teacher without post-processing, with the student config's own
(``--set training.calibration=...``); see :mod:`.postfit`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from regtune.errors import SpecError
from regtune.platform.registry.kd import check_settings
from regtune.platform.registry.postfit import fit_postprocessing, settings_of
from regtune.platform.registry.postprocess import PostProcessing
from regtune.platform.registry.version import (
    Member,
    ModelVersion,
    build_module,
    check_same_data,
    load_version,
    save_version,
)
from regtune.platform.results.schema import is_finite_number
from regtune.trainables.config import TrainConfig, parse_train_config
from regtune.trainables.data import Dataset

__all__ = [
    "DistillSettings",
    "check_finite",
    "check_student_fits",
    "distill",
    "run_distillation",
    "student_config",
    "student_postprocessing",
]

_log = logging.getLogger(__name__)

BAD_GPUS = "--gpus {value!r} is not allowed; expected a number >= 0"
#: Metrics a student must have finite values of to be registered.
FINITE_METRICS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc")
DIVERGED = (
    "the student of {teacher} diverged: {values} (not finite); nothing was written. "
    "Train it again with a lower --lr (it was {lr:g}) or fewer --epochs"
)


@dataclass(frozen=True)
class DistillSettings:
    """How the student is trained (see :mod:`regtune.platform.registry.kd` for the loss)."""

    student: Mapping[str, Any] = field(
        default_factory=lambda: {"arch": "mlp", "width": 32, "depth": 1}
    )
    temperature: float = 4.0
    alpha: float = 0.9
    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 128
    seed: int = 0
    same_regularizers: bool = False
    overrides: Sequence[str] = ()


def student_config(teacher: ModelVersion, settings: DistillSettings) -> TrainConfig:
    """The student's training config (see the module docstring).

    Raises:
        SpecError: a bad student architecture, setting or override, naming the key.
    """
    return _student_config(teacher, settings)


def _student_config(
    teacher: ModelVersion, settings: DistillSettings, *, robust: bool = True
) -> TrainConfig:
    """:func:`student_config`; ``robust`` False leaves out the teacher's
    ``robust_*`` keys (what the overrides ask, named alone)."""
    from regtune.search_spaces.overrides import apply_overrides

    check_settings(settings.temperature, settings.alpha)
    base = dict(teacher.meta["configs"][0])
    raw: dict[str, Any] = {
        "dataset": base["dataset"],
        "model": dict(settings.student),
        "training": {
            **{k: v for k, v in base["training"].items() if robust and k.startswith("robust_")},
            "epochs": settings.epochs,
            "lr": settings.lr,
            "batch_size": settings.batch_size,
            "seed": settings.seed,
        },
        "penalties": dict(base["penalties"]) if settings.same_regularizers else {},
    }
    return parse_train_config(apply_overrides(raw, settings.overrides))


def student_postprocessing(
    teacher: ModelVersion, student: Member, dataset: Dataset
) -> PostProcessing | None:
    """The student's post-processing, refitted on the validation split with the
    teacher's settings (else the student config's); see the module docstring."""
    post = teacher.postprocessing
    settings = dict(post.settings) if post is not None else settings_of(student.config)
    if settings is None:
        return None
    return fit_postprocessing(
        build_module([student], dataset),
        dataset,
        settings,
        provenance={"settings_from": teacher.ref if post is not None else "student config"},
    )


def run_distillation(
    teacher_path: str,
    config: Mapping[str, Any],
    temperature: float,
    alpha: float,
    dataset: Dataset,
    threads: int = 1,
) -> dict[str, Any]:
    """Train the student (the Ray task's body; runnable without Ray too).

    Returns:
        ``state`` (CPU tensors), ``history``, ``device`` and ``train_s``.
    """
    from regtune.platform.registry.kd import DistillTrainer

    torch.set_num_threads(max(1, threads))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    teacher = load_version(teacher_path).module
    started = time.perf_counter()
    # The config was checked against the data before Ray started
    # (check_student_fits): a setting idle on the data is logged here.
    trainer = DistillTrainer(
        dict(config),
        teacher=teacher,
        temperature=temperature,
        alpha=alpha,
        dataset=dataset,
        device=device,
        stored=True,
    )
    while not trainer.should_stop:
        trainer.run_epoch()
    trainer.finish()
    state = {k: v.detach().to("cpu").clone() for k, v in trainer.model.state_dict().items()}
    return {
        "state": state,
        "history": trainer.history,
        "device": device,
        "train_s": time.perf_counter() - started,
    }


def distill(
    teacher_ref: str,
    settings: DistillSettings,
    *,
    name: str | None = None,
    root: str | None = None,
    address: str | None = None,
    gpus: float | None = None,
    cpus: float = 1.0,
) -> ModelVersion:
    """Distill ``teacher_ref`` into a student on Ray and register it.

    Args:
        teacher_ref: ``name``, ``name:version`` or a version directory.
        name: model name of the student (default: the teacher's).
        address: Ray cluster to use (default: the running one, else a local Ray).
        gpus: GPUs for the task (default: 1 when the cluster has any, else 0).
        cpus: CPUs for the task (also its torch thread count).

    Raises:
        SpecError: bad settings, overrides or ``name`` (all before training), a bad
            teacher reference, a student whose metrics are not finite.
        GatesNotMet: registered as the teacher's model, the student misses a gate
            of the teacher's lineage (see the module docstring); nothing written.
        CheckpointError: a damaged teacher, or data that changed since it was trained.
    """
    import ray

    from regtune.platform.registry.evaluation import evaluate_module
    from regtune.platform.registry.location import check_name
    from regtune.platform.registry.promote import inherited_gates, parent_gates
    from regtune.platform.registry.version import robust_settings
    from regtune.platform.tune.runtime import ensure_ray
    from regtune.trainables.data import load_dataset

    if name is not None:
        check_name(name)
    teacher = load_version(teacher_ref, root=root)
    parent_gates(teacher)  # a malformed lineage.gates is refused before training
    config = student_config(teacher, settings)
    if gpus is not None and (isinstance(gpus, bool) or not gpus >= 0):
        raise SpecError(BAD_GPUS.format(value=gpus))
    dataset = load_dataset(config.dataset)
    check_same_data(
        f"teacher {teacher.ref} ({teacher.path})", teacher.meta["dataset"]["fingerprint"], dataset
    )
    check_student_fits(teacher, settings, config, dataset)
    ensure_ray(address)
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    task = ray.remote(num_cpus=cpus, num_gpus=gpus)(run_distillation)
    result = ray.get(
        task.remote(
            teacher.path,
            config.model_dump(mode="json"),
            settings.temperature,
            settings.alpha,
            dataset,
            max(1, int(cpus)),
        )
    )
    member = Member(config=config, state=result["state"])
    post = student_postprocessing(teacher, member, dataset)
    metrics = evaluate_module(
        build_module([member], dataset), dataset, robust=robust_settings([config]), post=post
    )
    check_finite(teacher.ref, metrics, settings.lr)
    target = name or teacher.name
    gates = inherited_gates(teacher, metrics, name=target, what=f"the student of {teacher.ref}")
    lineage = {
        "teacher": {"name": teacher.name, "version": teacher.version, "path": teacher.path},
        "teacher_metrics": {
            k: teacher.metrics.get(k) for k in ("test_acc", "test_loss", "n_params")
        },
        "distillation": {
            "temperature": settings.temperature,
            "alpha": settings.alpha,
            "epochs": len(result["history"]),
            "same_regularizers": settings.same_regularizers,
            "overrides": list(settings.overrides),
            "device": result["device"],
            "num_gpus": gpus,
            "train_s": round(float(result["train_s"]), 3),
        },
        "experiment": teacher.meta.get("lineage", {}).get("experiment"),
        "trials": [],
        **gates,
    }
    return save_version(
        target,
        [member],
        dataset,
        kind="student",
        metrics=metrics,
        lineage=lineage,
        root=root,
        postprocessing=post,
    )


def check_student_fits(
    teacher: ModelVersion, settings: DistillSettings, config: TrainConfig, dataset: Dataset
) -> None:
    """Refuse, before Ray starts, a student ``config`` that ``dataset`` cannot
    train as asked (``loop.check_dataset_fits``). What the student copies from
    its teacher's stored config (the ``robust_*`` keys, the penalties with
    ``same_regularizers``) ran so: a setting of those that perturbs nothing
    (data with no numeric feature) is kept as the teacher has it, idle, and
    logged, not refused; a perturbing setting the overrides add or change
    is new input and refused as ``regtune train`` refuses it.

    Raises:
        SpecError: the first rule that fails (the trainer's message).
    """
    from regtune.trainables.loop import (
        IDLE_ON_DATA_MSG,
        check_dataset_fits,
        check_early_stopping_fits,
        idle_on_data,
        perturbing_settings,
    )

    inherited = student_config(teacher, replace(settings, overrides=()))
    stored = set(perturbing_settings(config)) <= set(perturbing_settings(inherited))
    if not stored:
        # Named as regtune train names it: without the teacher's robust_*
        # keys the user never set (then with them, should those matter).
        check_dataset_fits(_student_config(teacher, settings, robust=False), dataset)
    check_dataset_fits(config, dataset, stored=stored)
    if stored:
        # A student's early stopping is never the teacher's: only an
        # override sets it, so it is new input (a stored check skips it).
        check_early_stopping_fits(config, dataset)
        idle = idle_on_data(config, dataset)
        if idle:
            _log.warning(
                "the student of %s: %s", teacher.ref, IDLE_ON_DATA_MSG.format(keys=", ".join(idle))
            )


def check_finite(teacher: str, metrics: Mapping[str, float], lr: float) -> None:
    """Refuse a student one of whose :data:`FINITE_METRICS` is not a finite
    number (:func:`~regtune.platform.results.schema.is_finite_number`: a numpy
    scalar is one, a bool is not).

    Raises:
        SpecError: :data:`DIVERGED`, naming the metrics and their values.
    """
    bad = {k: metrics.get(k) for k in FINITE_METRICS if not is_finite_number(metrics.get(k))}
    if bad:
        values = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise SpecError(DIVERGED.format(teacher=teacher, values=values, lr=lr))

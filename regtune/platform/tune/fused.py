"""Fused sweeps: trials trained together, each still a trial.

With ``resources.fuse: K`` (or ``auto``) every member is a trial of Tune's
search algorithm and scheduler, with its own rows in the results store, its
own line in the progress display and its own checkpoints; its epochs are
trained by a cohort worker (:mod:`regtune.platform.tune.cohorts`) that
trains up to K members as one batched model
(:func:`regtune.trainables.cohort.make_cohort`). The sweep itself is driven
from the driver (:mod:`regtune.platform.tune.fused_driver`): no member has
a process of its own.

This module sets a fused sweep up: how many members per cohort
(:func:`resolve_fuse`), the epochs at which a scheduler may decide about a
member (:func:`decision_epochs`: between them a cohort trains ahead), and
the cohort manager with its pool of workers (:func:`start_fused`). A cohort
worker holds what the spec gives one trial (``resources.cpu``/``gpu``), and
at most ``K x cohort slots`` members run at once
(:func:`~regtune.platform.tune.fuse_size.max_concurrent_members`).

A member's checkpoint is written in the format of an unfused trial's
(``regtune_state/``, the ``Trainer.state_dict`` tree as safetensors + JSON):
a restored member continues from it in a new cohort (or alone), and an
unfused ``Trainer`` can continue one. PBT stays unfused (the spec refuses
``fuse`` with it).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

import ray

from regtune.errors import SpecError
from regtune.platform.tune.cohorts import CohortManager
from regtune.platform.tune.fuse_size import (
    asha_milestones,
    auto_fuse,
    cohort_slots,
    max_concurrent_members,
)

__all__ = [
    "STATE_DIR",
    "TOO_BIG",
    "FusedSweep",
    "decision_epochs",
    "resolve_fuse",
    "start_fused",
]

TOO_BIG = (
    "resources.{what}: a cohort worker needs {need:g} but the cluster has {have:g}; "
    "lower resources.{what} (with fuse, it is what one cohort of members holds)"
)
#: Subfolder of a checkpoint holding the training state: the value of
#: :data:`regtune.platform.tune.trial_files.STATE_DIR` (equal, tested).
STATE_DIR = "regtune_state"


@dataclass
class FusedSweep:
    """What ``run_sweep`` needs to run a fused sweep (see :func:`start_fused`)."""

    fuse: int
    slots: int
    max_concurrent: int
    manager: Any

    def stop(self) -> None:
        """End the cohort manager (and with it every cohort worker)."""
        with contextlib.suppress(ray.exceptions.RayError, ValueError):
            ray.kill(self.manager)


def decision_epochs(spec: Any) -> frozenset[int] | None:
    """Epochs at which Tune may stop, pause or checkpoint a member of
    ``spec``'s sweep, when they are known in advance; ``None`` when not.

    Known: ``budget.max_epochs``, every ``checkpoint.every``-th epoch, and the
    rungs of ``asha`` (:func:`~regtune.platform.tune.fuse_size.asha_milestones`)
    and ``pareto-asha`` (its ``rung_levels``); with no scheduler, nothing
    else. A cohort trains ahead between two of these epochs, so nothing a
    scheduler could decide is pre-empted. Not known: ``hyperband`` (pauses
    where its brackets stand), ``median`` (judges every epoch), ``pbt``, and
    any sweep with ``budget.time_limit_s`` (Tune stops every trial when it
    runs out): those run in lockstep, one epoch per request.
    """
    from regtune.search_spaces import AshaConfig, NoSchedulerConfig, ParetoAshaConfig

    sched, max_t = spec.scheduler, int(spec.budget.max_epochs)
    if spec.budget.time_limit_s is not None:
        return None
    stops = {max_t}
    every = int(spec.checkpoint.every)
    if every > 0:
        stops.update(range(every, max_t + 1, every))
    if isinstance(sched, AshaConfig):
        grace = min(sched.grace_period, max_t)
        stops |= asha_milestones(grace, sched.reduction_factor, max_t, sched.brackets)
    elif isinstance(sched, ParetoAshaConfig):
        from regtune.platform.analysis.pareto import rung_levels

        stops.update(rung_levels(min(sched.grace_period, max_t), sched.reduction_factor, max_t))
    elif not isinstance(sched, NoSchedulerConfig):
        return None
    return frozenset(stops)


def resolve_fuse(fuse: int | str, *, config: Any, dataset: Any) -> int:
    """Members per cohort: the spec's count, or for ``auto``
    :func:`~regtune.platform.tune.fuse_size.auto_fuse` of the size of
    ``config``'s model (the spec's base config)."""
    if fuse != "auto":
        return int(fuse)
    from regtune.trainables.metrics import n_params
    from regtune.trainables.models import build_model

    model = build_model(
        config.model,
        input_shape=dataset.input_shape,
        n_classes=dataset.n_classes,
        spectral_norm=config.penalties.spectral_norm,
    )
    return auto_fuse(n_params(model))


def start_fused(
    dataset: Any,
    *,
    fuse: int,
    cpu: float,
    gpu: float,
    trials: int | None = None,
    stops: frozenset[int] | None = None,
    window_s: float | None = None,
    barrier_timeout_s: float | None = None,
) -> FusedSweep:
    """Start a sweep's cohort manager and its pool of cohort workers.

    Ray must be up. ``dataset`` is put in the object store once; each cohort
    worker gets it from there. The cohort workers the sweep will use (one
    per slot, or fewer when ``trials`` fill fewer cohorts) start at once, so
    their start-up overlaps the driver's. ``stops``: :func:`decision_epochs`
    (``None``: lockstep). ``window_s`` / ``barrier_timeout_s``
    default to :data:`~regtune.platform.tune.cohorts.FORMATION_WINDOW_S` and
    :data:`~regtune.platform.tune.cohorts.BARRIER_TIMEOUT_S`.
    """
    resources = ray.cluster_resources()
    have = {"cpu": resources.get("CPU", 0.0), "gpu": resources.get("GPU", 0.0)}
    for what, need in (("cpu", cpu), ("gpu", gpu)):
        if need > have[what]:
            raise SpecError(TOO_BIG.format(what=what, need=need, have=have[what]))
    slots = cohort_slots(have["cpu"], have["gpu"], cpu, gpu)
    prestart = slots if trials is None else min(slots, -(-trials // fuse))
    name = f"regtune-cohorts-{uuid.uuid4().hex[:12]}"
    namespace = ray.get_runtime_context().namespace
    options: dict[str, Any] = {}
    if window_s is not None:
        options["window_s"] = window_s
    if barrier_timeout_s is not None:
        options["barrier_timeout_s"] = barrier_timeout_s
    manager = (
        ray.remote(CohortManager)
        .options(name=name, namespace=namespace, num_cpus=0, max_concurrency=1000)
        .remote(
            [ray.put(dataset)],
            fuse=fuse,
            cpu=cpu,
            gpu=gpu,
            threads=max(1, int(cpu)),
            slots=slots,
            prestart=prestart,
            stops=None if stops is None else sorted(stops),
            **options,
        )
    )
    return FusedSweep(
        fuse=fuse,
        slots=slots,
        max_concurrent=max_concurrent_members(fuse, slots),
        manager=manager,
    )

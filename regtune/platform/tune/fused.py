"""Fused sweeps on Ray Tune: trials trained together, each still a trial.

With ``resources.fuse: K`` (or ``auto``) every trial stays an ordinary Tune
trial: the searcher proposes it, the scheduler judges it at its rungs
(ASHA, HyperBand, median stopping, pareto-asha), it reports its own rows to
the results store and the progress line, and it has its own checkpoints.
What changes is where it trains: its :class:`FusedMember` trainable does
no training itself but forwards each epoch to the cohort worker it joined
(:mod:`regtune.platform.tune.cohorts`), which trains up to K members as
one batched model (:func:`regtune.trainables.cohort.make_cohort`).

Resources: a cohort worker holds what the spec gives one trial
(``resources.cpu``/``gpu``); a member trial holds no CPU, only
:data:`MEMBER_MEMORY_BYTES` of Ray's ``memory`` resource (Ray refuses an
empty request), and Tune runs at most ``K x cohort slots`` members at once
(:func:`~regtune.platform.tune.fuse_size.max_concurrent_members`). Each
member trial is still a Ray actor process: with actor reuse, one per
concurrent member for the whole sweep; it only relays, and this module
never imports torch, so that process does not either.

Between the epochs where Tune can decide about a trial
(:func:`decision_epochs`), a cohort trains ahead of its members' requests
(see :class:`~regtune.platform.tune.cohorts.CohortWorker`).

A member's checkpoint is written in the format of an unfused trial's
(``regtune_state/``, the ``Trainer.state_dict`` tree as safetensors + JSON):
a restored member continues from it in a new cohort (or alone), a resumed
sweep continues fused members like any trial, and an unfused
``Trainer`` can continue one. PBT stays unfused (the spec refuses
``fuse`` with it).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import Callback

from regtune.errors import SpecError
from regtune.platform.tune.cohorts import (
    REREPORT,
    CohortManager,
    StateFiles,
    read_state_files,
    write_state_files,
)
from regtune.platform.tune.fuse_size import (
    asha_milestones,
    auto_fuse,
    cohort_slots,
    max_concurrent_members,
)

__all__ = [
    "MEMBER_MEMORY_BYTES",
    "STATE_DIR",
    "TOO_BIG",
    "CohortMembership",
    "FusedMember",
    "FusedSweep",
    "decision_epochs",
    "resolve_fuse",
    "start_fused",
]

#: Ray ``memory`` resource a member trial reserves (it trains nothing; Ray
#: needs a non-empty request). Nominal: a member's process is mostly Ray's.
MEMBER_MEMORY_BYTES = 32 * 2**20
TOO_BIG = (
    "resources.{what}: a cohort worker needs {need:g} but the cluster has {have:g}; "
    "lower resources.{what} (with fuse, it is what one cohort of members holds)"
)
_RUNNING = "RUNNING"
#: Subfolder of a checkpoint holding the training state: the value of
#: :data:`regtune.platform.tune.trial_files.STATE_DIR` (equal, tested), not
#: imported from there because that module brings torch, and a member
#: trial's process never needs torch (it only relays).
STATE_DIR = "regtune_state"


class FusedMember(tune.Trainable):
    """One trial of a fused sweep: its epochs are trained by its cohort worker."""

    _worker: Any
    _restored_files: StateFiles | None

    def setup(self, config: dict[str, Any], manager: str = "", namespace: str = "") -> None:
        """Remember which cohort manager to join (at the first epoch)."""
        self._manager_name = manager
        self._namespace = namespace or None
        self._worker = None
        self._joined_as = ""
        self._restored_files = None

    def step(self) -> dict[str, Any]:
        """One epoch, trained with the rest of the cohort (see the module docstring)."""
        worker = self._join()
        row: dict[str, Any] = ray.get(worker.step.remote(self.trial_id))
        if row.pop(REREPORT, False):
            # Restored from its final checkpoint: the repeat keeps the epoch's number.
            self._iteration -= 1
        return row

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Write the member's training state as an unfused trial's checkpoint."""
        if self._worker is None and self._restored_files is not None:
            files = self._restored_files
        else:
            files = ray.get(self._join().state_files.remote(self.trial_id))
        write_state_files(files, Path(checkpoint_dir) / STATE_DIR)

    def load_checkpoint(self, checkpoint: str | dict[str, Any] | None) -> None:
        """Continue from a checkpoint folder (fused or not) at the next epoch."""
        if isinstance(checkpoint, str):
            self._leave()
            self._restored_files = read_state_files(Path(checkpoint) / STATE_DIR)

    def cleanup(self) -> None:
        """The actor ends: leave the cohort."""
        self._leave()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Actor reuse: leave the old trial's cohort; the new trial joins at its first epoch."""
        self._leave()
        self._restored_files = None
        self.config = new_config
        return True

    def _manager(self) -> Any:
        return ray.get_actor(self._manager_name, namespace=self._namespace)

    def _join(self) -> Any:
        if self._worker is None:
            manager = self._manager()
            joined = manager.join.remote(self.trial_id, dict(self.config), self._restored_files)
            (self._worker,) = ray.get(joined)
            self._joined_as = self.trial_id
            self._restored_files = None
        return self._worker

    def _leave(self) -> None:
        if self._worker is None:
            return
        self._worker = None
        # The manager is gone once the sweep ended: nothing left to leave.
        with contextlib.suppress(ValueError, ray.exceptions.RayError):
            self._manager().leave.remote(self._joined_as)


class CohortMembership(Callback):
    """Tune callback (driver): a trial that stops running leaves its cohort at once.

    Tune changes a trial's status only after the checkpoint it takes on a
    stop or pause was written, so the cohort has served that checkpoint.
    """

    def __init__(self, manager: str, namespace: str) -> None:
        self._manager_name = manager
        self._namespace = namespace
        self._running: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_running"] = set()
        return state

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Tune hook: tell the manager which trials left RUNNING since the last step."""
        now = {t.trial_id for t in trials if t.status == _RUNNING}
        gone = self._running - now
        self._running = now
        if not gone:
            return
        try:
            manager = ray.get_actor(self._manager_name, namespace=self._namespace)
        except ValueError:  # the manager of an earlier session (resume): nothing to tell
            return
        for tid in sorted(gone):
            manager.leave.remote(tid)


@dataclass
class FusedSweep:
    """What ``run_sweep`` needs to run a fused sweep (see :func:`start_fused`)."""

    fuse: int
    slots: int
    max_concurrent: int
    trainable: Any
    callbacks: list[Any]
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
    """Start a sweep's cohort manager and build its member trainable.

    Ray must be up. ``dataset`` is put in the object store once; each cohort
    worker gets it from there. The cohort workers the sweep will use (one
    per slot, or fewer when ``trials`` fill fewer cohorts) start at once, so
    their start-up overlaps Tune's. ``stops``: :func:`decision_epochs`
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
    trainable = tune.with_resources(
        tune.with_parameters(FusedMember, manager=name, namespace=namespace),
        {"cpu": 0, "gpu": 0, "memory": MEMBER_MEMORY_BYTES},
    )
    return FusedSweep(
        fuse=fuse,
        slots=slots,
        max_concurrent=max_concurrent_members(fuse, slots),
        trainable=trainable,
        callbacks=[CohortMembership(name, namespace)],
        manager=manager,
    )

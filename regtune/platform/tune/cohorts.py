"""Where the members of a fused sweep train: cohort workers and who forms them.

A fused sweep's members are trials of Tune's searcher and scheduler, driven
from the driver (:mod:`~regtune.platform.tune.fused_driver`), which asks for
each member's epochs from a :class:`CohortWorker`: a Ray actor holding the
CPUs/GPU the spec gives one trial, the dataset once and a
:class:`~regtune.trainables.cohort.Cohort` of up to ``fuse`` members
trained as one batched model.

:class:`CohortManager` (one per sweep, no resources) forms the cohorts:
members that ask for their first epoch within
:data:`FORMATION_WINDOW_S` of each other, up to ``fuse`` of them, form a
group; a trial restored from a checkpoint joins like any other and its
member continues from that state. A group gets an idle worker, or a new one
while the cluster has a free slot, or else joins the least loaded worker,
whose live members and the newcomers are then repacked into one cohort
(each member moves with its exact state). So early stopping never leaves a
worker holding a CPU for one straggler while new trials wait. The workers
are a pool, started when the sweep starts (their torch import overlaps
the driver's start-up) and kept to its end: a worker whose members all left
waits idle for the next group, and none is ended and replaced mid-sweep
(each new worker process costs seconds of CPU: torch, the dataset) unless
it died (:meth:`CohortManager.lost`).

The barrier (the one place that could deadlock): a cohort trains an epoch
when every *live* member may have it, and answers each member its own
metrics as it asks. In lockstep a member may have the epoch it asked for.
With ``stops`` (the epochs at which a scheduler can stop, pause or checkpoint a
trial, :func:`~regtune.platform.tune.fused.decision_epochs`) a member may
have every epoch up to the next stop after the last epoch its trial was
let past (it asked for the one after): the cohort trains ahead while the
driver handles results, never past a point where a scheduler could decide.
A member stops being live when

- its epochs are done or its early stopping fired (it is finished at once);
- the scheduler stops or pauses it, or it fails (the driver checkpoints it,
  then says so through :meth:`CohortManager.leave`);
- it holds the others (at its limit, not asking) for
  :data:`BARRIER_TIMEOUT_S` while one of them waits: it is parked (its
  state kept), the others go on, and if it asks later it continues from
  that state in a cohort of its own inside the same worker.

So the barrier never waits for a member that a scheduler paused
(HyperBand) or stopped (ASHA) for longer than the driver takes to act, and
never forever. Members' states cross processes as checkpoint files
(safetensors + JSON, :mod:`regtune.trainables.checkpoint`), never pickles.

Calls may run out of order. Ray runs the calls of an asynchronous actor
(the manager and the workers are) as they arrive, not in the order they
were sent: a retried member's ``join`` can run before the ``leave`` of its
failed try, which then took the new membership out of its forming group
(seen: the new worker answered "not a member"). So each membership carries
a generation (the driver counts them up): a ``leave`` of an older
generation than the newest one heard of for the trial is stale and ignored,
and a ``join`` whose own ``leave`` came first joins nothing. Workers check
the same on their ``leave``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import ray

from regtune.platform.tune.fuse_size import place_group
from regtune.platform.tune.ray_private import DONE

__all__ = [
    "BARRIER_TIMEOUT_S",
    "COHORT_SIZE",
    "FORMATION_WINDOW_S",
    "REREPORT",
    "CohortManager",
    "CohortWorker",
    "StateFiles",
    "read_state_files",
    "write_state_files",
]

#: Seconds a forming group waits for more members after its first one asked
#: (it starts at once when ``fuse`` members have asked). Trials that replace
#: members stopped at one rung start within a fraction of a second of each
#: other once their (reused) actors are up.
FORMATION_WINDOW_S = 0.5
#: Seconds a cohort waits for a live member that does not ask for its next
#: epoch before parking it (see the module docstring). A safety net: the driver's
#: own status changes normally take a member out well before.
BARRIER_TIMEOUT_S = 30.0
#: Result key telling the driver that this result repeats the member's last
#: epoch (restored from its final checkpoint): its iteration is not advanced.
REREPORT = "__regtune_rereport__"
#: Metric each fused epoch reports: how many members trained that epoch together.
COHORT_SIZE = "cohort_size"
#: Workers asked for fuse keys before a dead pool is reported (each a new one).
_KEY_ATTEMPTS = 3
#: Workers a group is sent to before its joiners get the error (one that died
#: unnoticed leaves the pool and the group goes to another).
_PLACE_ATTEMPTS = 2
#: Concurrent calls a cohort worker serves: every member waits in the barrier.
_MAX_CALLS = 1000

_worker_class: Any = None


def _remote_worker() -> Any:
    """The Ray actor class of :class:`CohortWorker` (made once per process)."""
    global _worker_class
    if _worker_class is None:
        _worker_class = ray.remote(CohortWorker)
    return _worker_class


#: A member's training state as the files of one checkpoint folder: name -> bytes.
StateFiles = dict[str, bytes]

MEMBER_LOST = "member {tid!r} left its cohort while waiting for an epoch"
AHEAD_CHECKPOINT = (
    "member {tid!r}: a checkpoint at epoch {epoch} was asked for, but its cohort "
    "had trained {ahead} epoch(s) beyond it; training ahead is only used where every "
    "checkpoint, stop and pause falls on the epochs the cohort stops at"
)
NOT_A_MEMBER = "trial {tid!r} is not a member of this cohort; members: {known}"


def read_state_files(directory: str | Path) -> StateFiles:
    """The files of a training-state folder (``Trainer.save`` output) as bytes."""
    folder = Path(directory)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def write_state_files(files: Mapping[str, bytes], directory: str | Path) -> Path:
    """Write :func:`read_state_files` output into ``directory`` (created)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if Path(name).name != name:
            raise ValueError(f"state file name {name!r} is not a plain file name")
        (folder / name).write_bytes(data)
    return folder


def _state_to_files(state: Mapping[str, Any]) -> StateFiles:
    from regtune.trainables.checkpoint import save_tree

    with tempfile.TemporaryDirectory(prefix="regtune-member-") as tmp:
        return read_state_files(save_tree(dict(state), Path(tmp) / "state"))


def _files_to_state(files: Mapping[str, bytes]) -> dict[str, Any]:
    from regtune.trainables.checkpoint import load_tree

    with tempfile.TemporaryDirectory(prefix="regtune-member-") as tmp:
        folder = write_state_files(files, Path(tmp) / "state")
        return dict(load_tree(folder))


class CohortWorker:
    """One cohort: its members' training, one barrier per epoch (Ray actor).

    Args:
        dataset: the sweep's dataset (from the object store, once per worker).
        members: ``{trial_id: (config, state files or None)}``.
        threads: torch threads (the CPUs the worker holds).
        barrier_timeout_s: see :data:`BARRIER_TIMEOUT_S`.
        stops: the epochs at which a scheduler may stop, pause or checkpoint a
            member (:func:`~regtune.platform.tune.fused.decision_epochs`):
            between two of them the cohort trains ahead without waiting for
            the members to ask, and hands each its precomputed epochs as it
            asks. ``None``: lockstep, one epoch per ask.
    """

    def __init__(
        self,
        dataset: Any,
        members: Mapping[str, tuple[dict[str, Any], StateFiles | None]],
        *,
        threads: int = 1,
        barrier_timeout_s: float = BARRIER_TIMEOUT_S,
        stops: Iterable[int] | None = None,
    ) -> None:
        import torch

        # Imported here, once per worker process: the cohort code brings torch.
        import regtune.trainables.cohort  # noqa: F401

        torch.set_num_threads(max(1, threads))
        self._dataset = dataset
        self._timeout = barrier_timeout_s
        self.rounds = 0
        self.epoch_seconds = 0.0
        self._configs: dict[str, dict[str, Any]] = {}
        self._owner: dict[str, Any] = {}
        self._live: set[str] = set()
        self._rereport: dict[str, dict[str, Any]] = {}
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._parked: set[str] = set()
        #: Members that left: asking again is an error, not a new member.
        self._left: set[str] = set()
        #: Each member's membership generation (see the module docstring).
        self._gen: dict[str, int] = {}
        self._stops = None if stops is None else sorted(set(stops))
        #: Per member: the last epoch handed to its trial, the last epoch
        #: after which its trial asked for more (so the scheduler let it go on), and
        #: the epochs trained but not handed yet (or the error that ended them).
        self._handed: dict[str, int] = {}
        self._confirmed: dict[str, int] = {}
        self._ahead: dict[str, collections.deque[dict[str, Any] | BaseException]] = {}
        self._training: asyncio.Future[None] | None = None
        self.add(members)

    def add(
        self,
        members: Mapping[str, tuple[dict[str, Any], StateFiles | None]],
        gens: Mapping[str, int] | None = None,
    ) -> None:
        """Members join between two epochs: they and every live member are
        repacked into one new cohort (each live member moves with its exact
        state), so newcomers fuse with the members already training. A
        worker without members (just started, or emptied) takes them as a
        new cohort. ``gens``: each member's membership generation (a later
        :meth:`leave` of an older one is ignored)."""
        from regtune.trainables.cohort import make_cohort

        members = self._newest_memberships(members, gens or {})
        if not members:
            return
        moving = {tid: self._owner[tid].state_dict(tid) for tid in sorted(self._live)}
        for tid, (cfg, _) in members.items():
            self._configs[tid] = dict(cfg)
            self._left.discard(tid)
        # Trial configs are not new input: the driver checked them before Ray
        # started, or they ran before (a resumed sweep's).
        cohort = make_cohort(
            {tid: self._configs[tid] for tid in [*moving, *members]},
            dataset=self._dataset,
            stored=True,
        )
        for tid, state in moving.items():
            self._owner[tid].drop(tid)
            cohort.load_state_dict(tid, state, source=f"trial {tid}")
            self._owner[tid] = cohort
        for tid, (_, files) in members.items():
            self._owner[tid] = cohort
            self._parked.discard(tid)
            epoch = 0
            if files is not None:
                state = _files_to_state(files)
                cohort.load_state_dict(tid, state, source=f"trial {tid}")
                epoch = int(state["epoch"])
            if tid not in self._handed:
                # Not trained before it asks (a revived member keeps its own).
                self._handed[tid], self._confirmed[tid] = epoch, epoch - 1
                self._ahead[tid] = collections.deque()
            if cohort.should_stop(tid):
                # Restored from its final checkpoint: it repeats its last epoch and ends.
                self._rereport[tid] = self._final_row(tid, last=True)
            else:
                self._live.add(tid)

    def _newest_memberships(
        self,
        members: Mapping[str, tuple[dict[str, Any], StateFiles | None]],
        gens: Mapping[str, int],
    ) -> dict[str, tuple[dict[str, Any], StateFiles | None]]:
        """``members`` less those of an older generation than one this worker
        had (a late add); a member still here from an older generation than
        its new one leaves first (its leave may arrive later, and is then
        ignored), so the new membership starts from its own state."""
        out = dict(members)
        for tid, gen in gens.items():
            have = self._gen.get(tid)
            if tid not in out or (have is not None and gen < have):
                out.pop(tid, None)
                continue
            if tid in self._owner and (have is None or gen > have):
                self.leave(tid)
            self._gen[tid] = gen
        return out

    # -- the barrier ------------------------------------------------------------

    async def step(self, tid: str) -> dict[str, Any]:
        """The member's next epoch's metrics, once every live member asked."""
        if tid in self._left:
            raise RuntimeError(MEMBER_LOST.format(tid=tid))
        self._member(tid)
        if tid in self._rereport:
            return self._rereport.pop(tid)
        # Its trial asks for the next epoch: the scheduler let it go on after the last.
        self._confirmed[tid] = self._handed[tid]
        if self._ahead[tid]:
            row = self._hand(tid)
            self._maybe_run()
            return row
        if tid in self._parked:
            self._revive(tid)
        if tid not in self._live:
            raise RuntimeError(MEMBER_LOST.format(tid=tid))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[tid] = future
        self._maybe_run()
        while not future.done():
            done, _ = await asyncio.wait({future}, timeout=self._timeout)
            if not done:
                self._park_absent()
                self._maybe_run()
        return future.result()

    def leave(self, tid: str, gen: int | None = None) -> None:
        """The member's trial was stopped, paused or lost: train it no more.

        The worker forgets it (its state was checkpointed before);
        asking for another epoch is then an error. ``gen``: the generation
        of the membership that ends; an older one than the member's here
        (a leave that arrived after its trial joined again) changes nothing.
        """
        if tid not in self._owner or (gen is not None and gen < self._gen.get(tid, gen)):
            return
        self._rereport.pop(tid, None)
        self._parked.discard(tid)
        engine = self._owner.pop(tid)
        self._configs.pop(tid, None)
        self._handed.pop(tid, None)
        self._confirmed.pop(tid, None)
        self._ahead.pop(tid, None)
        self._left.add(tid)
        if tid in self._live:
            self._live.discard(tid)
            with contextlib.suppress(KeyError):
                engine.drop(tid)
        future = self._waiting.pop(tid, None)
        if future is not None and not future.done():
            future.set_exception(RuntimeError(MEMBER_LOST.format(tid=tid)))
        self._maybe_run()

    def state_files(self, tid: str, epoch: int | None = None) -> StateFiles | None:
        """The member's training state as checkpoint files (``Trainer.save`` format).

        With ``epoch``: ``None`` unless the member's state is that epoch's
        (an epoch handed to the driver but not yet read there has moved it on).

        Raises:
            RuntimeError: the cohort trained the member past the epoch its
                trial reported (a checkpoint between two ``stops``).
        """
        engine = self._member(tid)
        if epoch is not None and self._handed.get(tid) != epoch:
            return None
        if self._ahead.get(tid):
            raise RuntimeError(
                AHEAD_CHECKPOINT.format(
                    tid=tid, epoch=self._handed[tid], ahead=len(self._ahead[tid])
                )
            )
        return _state_to_files(engine.state_dict(tid))

    def fuse_keys(self, configs: Mapping[str, dict[str, Any]]) -> dict[str, str | None]:
        """Each configuration's fuse key as text (``None``: it cannot fuse)
        on this worker's device: members with equal keys train as one model."""
        from regtune.trainables.cohort import fuse_key
        from regtune.trainables.config import parse_train_config

        keys: dict[str, str | None] = {}
        for tid, cfg in configs.items():
            key = fuse_key(parse_train_config(cfg))
            keys[tid] = None if key is None else repr(key)
        return keys

    def stats(self) -> dict[str, Any]:
        """Epoch rounds run, seconds spent training, live and parked members,
        and the worker's process id."""
        return {
            "pid": os.getpid(),
            "rounds": self.rounds,
            "epoch_seconds": self.epoch_seconds,
            "members": sorted(self._owner),
            "live": sorted(self._live),
            "parked": sorted(self._parked),
            "ahead": {tid: len(rows) for tid, rows in sorted(self._ahead.items()) if rows},
        }

    # -- internals ----------------------------------------------------------------

    def _member(self, tid: str) -> Any:
        if tid not in self._owner:
            raise KeyError(NOT_A_MEMBER.format(tid=tid, known=", ".join(sorted(self._owner))))
        return self._owner[tid]

    def _horizon(self, tid: str) -> int:
        """The last epoch the member may be trained to before its trial asks again."""
        confirmed = self._confirmed[tid]
        if self._stops is None:
            return confirmed + 1
        return next((d for d in self._stops if d > confirmed), confirmed + 1)

    def _can_train(self) -> bool:
        """Every live member is below its horizon (one at it holds the cohort)."""
        return bool(self._live) and all(
            self._handed[t] + len(self._ahead[t]) < self._horizon(t) for t in self._live
        )

    def _maybe_run(self) -> None:
        """Train epochs (in this actor's event loop) while every live member may."""
        if self._training is not None or not self._can_train():
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called outside the actor's loop: nobody can be waiting
            return
        self._training = asyncio.ensure_future(self._train_while_allowed())

    async def _train_while_allowed(self) -> None:
        try:
            while self._can_train():
                self._run_round()
                # Members asking meanwhile are answered between two epochs.
                await asyncio.sleep(0)
        finally:
            self._training = None

    def _hand(self, tid: str) -> dict[str, Any]:
        """The member's next trained epoch, handed to its trial."""
        item = self._ahead[tid].popleft()
        if isinstance(item, BaseException):
            raise item
        self._handed[tid] += 1
        return item

    def _run_round(self) -> None:
        started = time.perf_counter()
        live = sorted(self._live)
        try:
            rows: dict[str, dict[str, float]] = {}
            # Only cohorts holding a live member train (one object may own many).
            engines = {id(self._owner[t]): self._owner[t] for t in live}
            for engine in engines.values():
                rows.update(engine.run_epoch())
            for tid in live:
                row: dict[str, Any] = dict(rows[tid])
                row[COHORT_SIZE] = float(len(rows))
                if self._owner[tid].should_stop(tid):
                    row.update(self._final_row(tid, last=False))
                    self._live.discard(tid)
                self._ahead[tid].append(row)
        except Exception as exc:  # a failed epoch fails every member's step (the driver retries it)
            for tid in live:
                self._ahead[tid].append(exc)
                self._live.discard(tid)
        finally:
            self.rounds += 1
            self.epoch_seconds += time.perf_counter() - started
        for tid, future in list(self._waiting.items()):
            if self._ahead.get(tid) and not future.done():
                del self._waiting[tid]
                try:
                    future.set_result(self._hand(tid))
                except Exception as exc:
                    future.set_exception(exc)

    def _final_row(self, tid: str, *, last: bool) -> dict[str, Any]:
        """Test metrics and ``done`` for a member whose training ended."""
        engine = self._owner[tid]
        state = engine.state_dict(tid)
        row: dict[str, Any] = dict(state["history"][-1]) if last else {}
        row.update(engine.finish(tid))
        row["stopped_early"] = bool(state["early"]["stopped"])
        row[DONE] = True
        if last:
            row[REREPORT] = True
        return row

    def _park_absent(self) -> None:
        """Members that hold the others at their horizon without asking, for
        the whole timeout, stop holding them."""
        for tid in sorted(self._live - set(self._waiting)):
            if self._handed[tid] + len(self._ahead[tid]) < self._horizon(tid):
                continue
            self._live.discard(tid)
            self._owner[tid].drop(tid)
            self._parked.add(tid)

    def _revive(self, tid: str) -> None:
        """A parked member asked again: it rejoins the live members from its state."""
        state = self._owner[tid].state_dict(tid)
        self.add({tid: (self._configs[tid], _state_to_files(state))})


class _Forming:
    """A cohort being formed: members so far, and the event its joiners await."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[dict[str, Any], StateFiles | None]] = {}
        self.ready = asyncio.Event()
        self.worker: Any = None
        self.error: BaseException | None = None
        self.task: asyncio.Future[None] | None = None
        #: The members were sent to the worker (its ``add`` may still run).
        self.sent = False
        #: Members that left after they were sent, before the worker took them.
        self.gone: set[str] = set()
        #: Each member's membership generation.
        self.gens: dict[str, int] = {}


class CohortManager:
    """Forms cohorts from member trials and places them on workers (Ray actor).

    Workers form a pool of at most ``slots`` (one per cohort the cluster
    holds), kept for the whole sweep: a worker whose members all left waits
    idle for the next group (no new process, no second import of torch), and
    no worker is ever ended while the sweep runs, so a group never waits for
    one to be replaced. ``prestart`` workers start at once, so their start-up
    (torch, the dataset) overlaps the driver's.

    Args:
        dataset: ``[ref]``: the sweep's dataset in the object store (in a
            list, so the manager passes the reference on without loading it).
        fuse: members per cohort.
        cpu, gpu: what each cohort worker holds (the spec's ``resources``).
        slots: cohort workers the cluster holds at once (the pool's size).
        prestart: workers to start now (at most ``slots``).
        stops: each worker's ``stops`` (see :class:`CohortWorker`).
        threads: torch threads per worker.
        window_s: :data:`FORMATION_WINDOW_S`.
        barrier_timeout_s: :data:`BARRIER_TIMEOUT_S`.
    """

    def __init__(
        self,
        dataset: list[Any],
        *,
        fuse: int,
        cpu: float,
        gpu: float,
        threads: int,
        slots: int = 1,
        prestart: int = 0,
        stops: list[int] | None = None,
        window_s: float = FORMATION_WINDOW_S,
        barrier_timeout_s: float = BARRIER_TIMEOUT_S,
    ) -> None:
        self._dataset_ref = dataset[0]
        self._slots = max(1, slots)
        self._fuse = fuse
        self._cpu, self._gpu, self._threads = cpu, gpu, threads
        self._window_s = window_s
        self._timeout = barrier_timeout_s
        self._stops = stops
        self._forming: _Forming | None = None
        self._starting: list[_Forming] = []
        #: Every worker of the pool -> the members placed on it (reserved
        #: before the worker took them, so a worker is never emptied while a
        #: group is on its way to it).
        self._members_of: dict[Any, set[str]] = {}
        #: Worker -> the reference that resolves once its start-up is done.
        self._up: dict[Any, Any] = {}
        self._where: dict[str, Any] = {}
        #: Fuse key of every member placed (text; ``None``: cannot fuse).
        self._keys: dict[str, str | None] = {}
        #: Per trial: the newest membership generation heard of (join or
        #: leave), the newest whose leave was heard, and the one placed.
        self._gen: dict[str, int] = {}
        self._left_gen: dict[str, int] = {}
        self._placed_gen: dict[str, int] = {}
        self.sizes: list[int] = []
        for _ in range(min(prestart, self._slots)):
            self._new_worker()

    async def join(
        self,
        tid: str,
        config: dict[str, Any],
        files: StateFiles | None = None,
        gen: int | None = None,
        lost: Any = None,
    ) -> list[Any]:
        """Put trial ``tid`` in the forming cohort; return ``[worker]`` once it joined one.

        ``gen``: this membership's generation (higher than any earlier one of
        the trial); ``[None]`` when its :meth:`leave` ran first (nothing
        joined). ``None``: no generation check (callers that never retry).
        ``lost``: a worker the trial's last try found dead (:meth:`lost`
        first, so the group does not go to it).
        """
        if lost is not None:
            self.lost(lost)
        if gen is not None:
            if gen < self._gen.get(tid, gen) or gen <= self._left_gen.get(tid, gen - 1):
                return [None]
            self._gen[tid] = gen
        if tid in self._where or any(tid in g.members for g in self._starting):
            # The trial's earlier membership (before a retry or restore) ends here.
            self._leave_now(tid)
        group = self._forming
        if group is None:
            group = self._forming = _Forming()
            asyncio.get_running_loop().call_later(self._window_s, self._close, group)
        group.members[tid] = (config, files)
        if gen is not None:
            group.gens[tid] = gen
        if len(group.members) >= self._fuse:
            self._close(group)
        await group.ready.wait()
        if group.error is not None:
            raise group.error
        return [group.worker]

    def leave(self, tid: str, gen: int | None = None) -> None:
        """Trial ``tid``'s membership ``gen`` ended (its trial stopped training,
        any reason): its worker trains it no more. A leave of an older
        membership than the newest heard of arrived late: it changes nothing
        (``None``: no generation check)."""
        if gen is not None:
            if gen < self._gen.get(tid, gen):
                return
            self._gen[tid] = self._left_gen[tid] = gen
        self._leave_now(tid)

    def _leave_now(self, tid: str) -> None:
        """Trial ``tid``'s current membership ends, wherever it stands."""
        forming = self._forming
        if forming is not None and tid in forming.members:
            # Left before its cohort closed: it is simply not in it.
            del forming.members[tid]
            return
        for group in self._starting:
            if tid in group.members:
                # On its way to a worker: not sent yet, it is simply not in the
                # group; sent, it leaves once the worker has taken it.
                if group.sent:
                    group.gone.add(tid)
                else:
                    del group.members[tid]
                if group.worker is not None and self._where.get(tid) is group.worker:
                    del self._where[tid]
                    self._members_of[group.worker].discard(tid)
                return
        self._keys.pop(tid, None)
        worker = self._where.pop(tid, None)
        if worker is None:
            return
        # Its group is no longer starting: the worker has taken it (add returned).
        worker.leave.remote(tid, self._placed_gen.pop(tid, None))
        self._members_of[worker].discard(tid)

    def lost(self, worker: Any) -> None:
        """``worker`` died: it leaves the pool with the members placed on it
        (each rejoins like a new member); the next group gets a new worker."""
        for tid in self._members_of.pop(worker, set()):
            if self._where.get(tid) == worker:
                del self._where[tid]
                self._keys.pop(tid, None)
                self._placed_gen.pop(tid, None)
        self._up.pop(worker, None)

    def stats(self) -> dict[str, Any]:
        """Sizes of the cohorts formed so far; workers started, busy and idle."""
        return {
            "sizes": list(self.sizes),
            "started": len(self._members_of),
            "workers": sum(1 for m in self._members_of.values() if m),
            "idle": sum(1 for m in self._members_of.values() if not m),
        }

    async def worker_stats(self) -> list[dict[str, Any]]:
        """Every pool worker's :meth:`CohortWorker.stats` (a dead worker is left out)."""
        out = []
        for worker in list(self._members_of):
            with contextlib.suppress(ray.exceptions.RayError):
                out.append(await worker.stats.remote())
        return out

    def _new_worker(self) -> Any:
        worker = (
            _remote_worker()
            .options(num_cpus=self._cpu, num_gpus=self._gpu, max_concurrency=_MAX_CALLS)
            .remote(
                self._dataset_ref,
                {},
                threads=self._threads,
                barrier_timeout_s=self._timeout,
                stops=self._stops,
            )
        )
        self._members_of[worker] = set()
        self._up[worker] = worker.stats.remote()
        return worker

    async def _fuse_keys(self, members: Mapping[str, Any]) -> dict[str, str | None]:
        """The members' fuse keys, computed by a worker (the manager never imports torch)."""
        configs = {tid: cfg for tid, (cfg, _) in members.items()}
        for attempt in range(_KEY_ATTEMPTS):
            worker = next(iter(self._members_of), None)
            if worker is None:
                worker = self._new_worker()
            try:
                await self._up[worker]
                keys: dict[str, str | None] = await worker.fuse_keys.remote(configs)
                return keys
            except ray.exceptions.RayActorError:
                # A dead worker leaves the pool; ask another (or a new one).
                self.lost(worker)
                if attempt == _KEY_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _place(self, group: _Forming, keys: Mapping[str, str | None]) -> Any:
        """Choose the group's worker (:func:`~regtune.platform.tune.fuse_size.
        place_group`) and reserve it: from now on the worker counts them."""
        workers = list(self._members_of)
        at = place_group(
            [[self._keys.get(t) for t in self._members_of[w]] for w in workers],
            [keys.get(t) for t in group.members],
            self._slots,
        )
        worker = self._new_worker() if at is None else workers[at]
        group.worker = worker
        self._members_of[worker].update(group.members)
        for tid in group.members:
            self._where[tid] = worker
            self._keys[tid] = keys.get(tid)
            if tid in group.gens:
                self._placed_gen[tid] = group.gens[tid]
        return worker

    async def _send(self, group: _Forming, worker: Any) -> None:
        """Hand ``group`` to ``worker`` once it is up (members that left on
        the way leave it once it has them)."""
        await self._up[worker]
        group.sent = True
        if group.members:
            gens = {t: group.gens[t] for t in group.members if t in group.gens}
            await worker.add.remote(group.members, gens)
        for tid in group.gone:
            worker.leave.remote(tid, group.gens.get(tid))

    def _close(self, group: _Forming) -> None:
        if group.ready.is_set() or self._forming is not group:
            return
        self._forming = None
        if not group.members:
            group.ready.set()
            return
        self._starting.append(group)
        # Kept so the task is not collected while it runs.
        group.task = asyncio.ensure_future(self._start(group))

    async def _start(self, group: _Forming) -> None:
        """Place the group, hand it to its worker once that worker is up, then
        release its joiners."""
        try:
            keys = await self._fuse_keys(group.members)
            for attempt in range(_PLACE_ATTEMPTS):
                if not group.members:
                    break
                worker = self._place(group, keys)
                size = len(group.members)
                try:
                    await self._send(group, worker)
                    # Counted once it was handed over (another group may be
                    # placed while this one waits for its worker).
                    self.sizes.append(size)
                    break
                except ray.exceptions.RayActorError:
                    if attempt == _PLACE_ATTEMPTS - 1:
                        raise
                    # It died before it took the group, unnoticed so far (no
                    # member of it had asked since): out of the pool, and the
                    # group goes to another worker.
                    self.lost(worker)
                    for tid in group.gone:
                        group.members.pop(tid, None)
                    group.gone.clear()
                    group.sent, group.worker = False, None
        except Exception as exc:  # reported to every joiner
            group.error = exc
            if isinstance(exc, ray.exceptions.RayActorError) and group.worker is not None:
                # The worker died (e.g. out of memory while repacking): out of the pool.
                self.lost(group.worker)
            for tid in group.members:
                worker = self._where.get(tid)
                if worker is not None and worker is group.worker:
                    del self._where[tid]
                    self._members_of[worker].discard(tid)
        finally:
            self._starting.remove(group)
            group.ready.set()

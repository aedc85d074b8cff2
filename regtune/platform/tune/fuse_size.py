"""How many trials a fused sweep trains together, how many at once, and where.

Pure arithmetic, no Ray: :func:`auto_fuse` answers ``resources.fuse: auto``
(members per cohort from the model's size and the device),
:func:`cohort_slots` / :func:`max_concurrent_members` answer how many
cohorts the cluster holds at once and so how many member trials Tune runs
concurrently, and :func:`place_group` which cohort worker a new group of
members joins; :func:`asha_milestones` the epochs at which Ray's ASHA
can decide (a cohort trains ahead between them).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

__all__ = [
    "AUTO_MAX_MEMBERS",
    "AUTO_PARAMS_PER_COHORT",
    "FUSED_MEMBER_COST",
    "asha_milestones",
    "auto_fuse",
    "cohort_load",
    "cohort_slots",
    "max_concurrent_members",
    "place_group",
]

#: Parameters (summed over members) one cohort should hold. Measured on
#: this project's 2-core CPU machine, one torch thread, digits MLP of depth 2
#: (FusedCohort, best of 3 epochs, under other load): per-member epoch time
#: fell 6.8x from K=1 to K=32 at width 32 (3.5k parameters), 2.2x to K=16 at
#: width 128 (26k; flat beyond), and not at all at width 256 (85k, already
#: compute-bound: K=4 was slower than K=1). 2**18 puts K=16, 8 and 2 there.
AUTO_PARAMS_PER_COHORT = 2**18
#: Upper bound of ``fuse: auto``: from 16 to 32 members the width-32 gain was
#: 1.25x, while every concurrent member costs a Ray actor process.
AUTO_MAX_MEMBERS = 16


def auto_fuse(n_params: int) -> int:
    """Members per cohort for ``fuse: auto``: a power of two from 1 to
    :data:`AUTO_MAX_MEMBERS`, with K x ``n_params`` within
    :data:`AUTO_PARAMS_PER_COHORT`.

    Measured on a CPU only; on a GPU a cohort could hold far more (no GPU
    was available to measure it): set ``fuse`` explicitly there.

    Args:
        n_params: parameters of one member's model.
    """
    if n_params < 1:
        raise ValueError(f"n_params must be >= 1; got {n_params}")
    k = max(1, min(AUTO_MAX_MEMBERS, AUTO_PARAMS_PER_COHORT // n_params))
    return 1 << (k.bit_length() - 1)


def cohort_slots(
    cluster_cpus: float, cluster_gpus: float, cpu_per_cohort: float, gpu_per_cohort: float
) -> int:
    """How many cohort workers the cluster holds at once (at least 1)."""
    slots = math.floor(cluster_cpus / cpu_per_cohort + 1e-9) if cpu_per_cohort > 0 else 1
    if gpu_per_cohort > 0:
        slots = min(slots, math.floor(cluster_gpus / gpu_per_cohort + 1e-9))
    return max(1, slots)


def max_concurrent_members(fuse: int, slots: int) -> int:
    """Member trials Tune runs at once: every slot's cohort full."""
    if fuse < 1 or slots < 1:
        raise ValueError(f"fuse and slots must be >= 1; got {fuse}, {slots}")
    return fuse * slots


#: What one more member of a fused group costs per epoch, as a share of a
#: member training alone. Measured (benchmarks/cohort_speed, one thread, CPU):
#: 4 digits MLPs fused took 1/2.3 of their sequential time at width 64
#: (a share of 0.25 per extra member) and 1/1.4 at width 256 (0.62).
FUSED_MEMBER_COST = 0.5


def cohort_load(keys: Sequence[Hashable | None]) -> float:
    """Per-epoch cost of a worker's members, in solo-member epochs.

    ``keys`` holds each member's fuse key (``None``: it cannot fuse). Members
    sharing a key train as one batched model: the first costs 1, each other
    :data:`FUSED_MEMBER_COST`; a member that cannot fuse costs 1.
    """
    groups = Counter(k for k in keys if k is not None)
    solo = sum(1 for k in keys if k is None)
    return solo + sum(1 + FUSED_MEMBER_COST * (n - 1) for n in groups.values())


def place_group(
    workers: Sequence[Sequence[Hashable | None]],
    group: Sequence[Hashable | None],
    slots: int,
) -> int | None:
    """Which cohort worker a new group of members joins; ``None``: start one.

    Args:
        workers: per existing worker, its members' fuse keys.
        group: the new members' fuse keys.
        slots: workers the cluster holds at once.

    An idle worker first (the group trains in parallel with the others),
    else a new worker while there is a free slot, else the worker whose
    :func:`cohort_load` with the group is least: a member joins a worker
    already training its shape, where it costs a fraction of an epoch,
    unless that worker is the busier by more than that saves. Ties go to the
    worker with fewer members, then the first.
    """
    for i, keys in enumerate(workers):
        if not keys:
            return i
    if len(workers) < slots:
        return None
    return min(
        range(len(workers)),
        key=lambda i: (cohort_load([*workers[i], *group]), len(workers[i]), i),
    )


def asha_milestones(
    grace_period: int, reduction_factor: float, max_t: int, brackets: int
) -> set[int]:
    """Epochs at which Ray's ``ASHAScheduler`` can stop a trial: every rung of
    every bracket, and ``max_t``.

    Ray's rule (``ray.tune.schedulers.async_hyperband._Bracket``): bracket
    ``s`` has ``int(log(max_t / grace) / log(rf) - s + 1)`` rungs at
    ``grace * rf**(k + s)``; a trial is judged at its first result at or
    past a rung, i.e. at the rung rounded up. Between two of these epochs
    ASHA always answers CONTINUE.
    """
    out = {int(max_t)}
    for s in range(brackets):
        n = int(math.log(max_t / grace_period) / math.log(reduction_factor) - s + 1)
        out.update(math.ceil(grace_period * reduction_factor ** (k + s)) for k in range(max(0, n)))
    return out

"""How many trials a fused sweep trains together, and how many at once.

Pure arithmetic, no Ray: :func:`auto_fuse` answers ``resources.fuse: auto``
(members per cohort from the model's size and the device), and
:func:`cohort_slots` / :func:`max_concurrent_members` answer how many
cohorts the cluster holds at once and so how many member trials Tune runs
concurrently.
"""

from __future__ import annotations

import math

__all__ = [
    "AUTO_MAX_MEMBERS",
    "AUTO_PARAMS_PER_COHORT",
    "auto_fuse",
    "cohort_slots",
    "max_concurrent_members",
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

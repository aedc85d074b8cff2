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

#: Parameters (summed over members) one cohort should hold, per device kind.
#: Measured with ``benchmarks/sweep_speed.py --fuse-scan`` on the digits MLP
#: (see docs/fused.md): on a CPU the per-member epoch time stops falling once
#: a cohort holds about this many parameters; on a GPU far more fit before
#: the device is busy.
AUTO_PARAMS_PER_COHORT: dict[str, int] = {"cpu": 2_000_000, "cuda": 200_000_000}
#: Upper bound of ``fuse: auto``: past it a cohort's slowest member holds
#: the others back at every rung and the searcher sees results in big lumps.
AUTO_MAX_MEMBERS: dict[str, int] = {"cpu": 16, "cuda": 64}


def auto_fuse(n_params: int, device: str) -> int:
    """Members per cohort for ``fuse: auto``: a power of two, at least 1.

    Args:
        n_params: parameters of one member's model.
        device: ``cpu`` or ``cuda`` (anything else is treated as ``cpu``).
    """
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if n_params < 1:
        raise ValueError(f"n_params must be >= 1; got {n_params}")
    fit = AUTO_PARAMS_PER_COHORT[kind] // n_params
    k = max(1, min(AUTO_MAX_MEMBERS[kind], fit))
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

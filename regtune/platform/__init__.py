"""Sweeps on Ray Tune, their stored results, analysis, the registry, the CLI.

Rooms (subpackages), each answering one question:

- :mod:`regtune.platform.tune` — running a sweep on Ray Tune (the only
  Ray Tune adapter).
- :mod:`regtune.platform.results` — what a sweep stored, read back without Ray.
- :mod:`regtune.platform.analysis` — paths, Pareto fronts, diagnosis (pure maths).
- :mod:`regtune.platform.registry` — model versions and their promotion.
- :mod:`regtune.platform.cli` — the ``regtune`` command.
- :mod:`regtune.platform.jobs` — a sweep as a Ray job.

The names below are the entry points a program needs. They are imported on
first use, so ``import regtune.platform`` (and with it every ``regtune``
command) does not pay for Ray::

    from regtune.platform import run_sweep
    from regtune.search_spaces import load_spec

    outcome = run_sweep(load_spec("quickstart"), storage="/tmp/runs")
    outcome.best                 # TrialSummary of the best trial
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from regtune._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from regtune.platform.jobs import JobOutcome, submit_sweep
    from regtune.platform.results.outcome import SweepOutcome, TrialSummary
    from regtune.platform.tune.sweep import default_storage, run_sweep

__all__ = [
    "JobOutcome",
    "SweepOutcome",
    "TrialSummary",
    "default_storage",
    "run_sweep",
    "submit_sweep",
]

#: Where each public name lives.
_HOMES = {
    "JobOutcome": "jobs",
    "SweepOutcome": "results.outcome",
    "TrialSummary": "results.outcome",
    "default_storage": "tune.sweep",
    "run_sweep": "tune.sweep",
    "submit_sweep": "jobs",
}


__getattr__, __dir__ = _lazy_exports(__name__, _HOMES, globals())

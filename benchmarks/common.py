"""What every benchmark shares: machine facts, JSON results, markdown tables.

Each benchmark is a module ``benchmarks/<name>.py`` with ``main(argv)``; it
measures regtune and the peer in the same run, writes
``benchmarks/results/<name>.json`` (raw numbers, machine facts) and
``benchmarks/results/<name>.md`` (the table quoted in BENCHMARKS.md), and
accepts ``--smoke-test`` (tiny sizes, for CI-speed checks that it runs).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "RESULTS_ENV",
    "SMOKE_RAY_CPUS",
    "SMOKE_RAY_ENV",
    "contender_in_subprocess",
    "contender_in_this_process",
    "machine_facts",
    "markdown_table",
    "mean_interval",
    "median_of",
    "peak_rss_mb",
    "results_dir",
    "smoke_ray_address",
    "start_smoke_ray",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Environment variable that sends results elsewhere (the test suite's smoke
#: runs write to a temporary folder, not over the committed results).
RESULTS_ENV = "REGTUNE_BENCH_RESULTS"
#: CPUs of the one local Ray a ``--smoke-test`` starts for all its contenders:
#: with one, each contender's trials run one after the other in one reused
#: actor process (a trial process imports torch and Ray Tune: seconds of CPU
#: each), and a plain Tune run without actor reuse starts one per trial.
SMOKE_RAY_CPUS = 1
#: Environment variable naming a running Ray (``127.0.0.1:PORT``, one CPU) that
#: :func:`start_smoke_ray` joins instead of starting one: the test suite runs
#: every smoke test of a pytest worker on one such Ray (tests/smoke_zygote.py).
SMOKE_RAY_ENV = "REGTUNE_SMOKE_RAY_ADDRESS"


def results_dir() -> Path:
    """``$REGTUNE_BENCH_RESULTS`` if set, else ``benchmarks/results``."""
    return Path(os.environ.get(RESULTS_ENV) or RESULTS_DIR)


def machine_facts() -> dict[str, Any]:
    """Where the numbers come from (ratios travel, absolute times do not)."""
    import torch

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "machine": platform.machine(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats to 4 significant digits."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, Any], table_md: str, *, smoke: bool) -> Path:
    """Write ``<name>.json`` and ``<name>.md`` (``-smoke`` suffix for smoke runs)."""
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-smoke" if smoke else name
    payload = {"benchmark": name, "smoke_test": smoke, "machine": machine_facts(), **payload}
    path = out / f"{stem}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    (out / f"{stem}.md").write_text(table_md.rstrip() + "\n")
    return path


def contender_in_subprocess(
    module: str, name: str, samples: int, max_epochs: int, *, timeout_s: int = 3600
) -> dict[str, Any]:
    """Run ``python -m <module> --contender NAME ...`` in a fresh process.

    A fresh process counts every start-up cost (imports, Ray) and leaves
    nothing warm for the next contender. The contender prints one JSON line.
    """
    args = ["--samples", str(samples), "--max-epochs", str(max_epochs)]
    return contender_json(module, name, args, timeout_s=timeout_s)


def contender_json(
    module: str, name: str, args: Sequence[str], *, timeout_s: int = 3600
) -> dict[str, Any]:
    """``python -m <module> --contender NAME *args`` in a fresh process; its last JSON line.

    Raises:
        RuntimeError: the process failed or printed no JSON line (with its stderr).
    """
    proc = subprocess.run(
        [sys.executable, "-m", module, "--contender", name, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{module} {name} failed:\n{(proc.stderr or proc.stdout)[-3000:]}")
    return dict(json.loads(lines[-1]))


def contender_in_this_process(
    run: Callable[[str, int, int], dict[str, Any]], name: str, samples: int, max_epochs: int
) -> dict[str, Any]:
    """``run(name, samples, max_epochs)`` here, for ``--smoke-test``: contenders share
    this process (and its Ray), so each one's environment changes are undone after it
    (regtune's sweep turns Tune's CSV/JSON loggers off, which plain Tune relies on)."""
    saved = dict(os.environ)
    try:
        return run(name, samples, max_epochs)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def smoke_ray_address() -> str | None:
    """The running Ray a smoke run joins (``$REGTUNE_SMOKE_RAY_ADDRESS``), if any.

    For a smoke run's own processes that start Ray themselves:
    ``ensure_ray(smoke_ray_address())`` joins it when set and starts a local
    Ray otherwise. Only for a process that needs nothing of the Ray's own
    processes: the shared Ray's processes were started with the test's
    environment, so settings read from environment variables by them (Serve's
    ``RAY_SERVE_*`` in serve_load's contenders, for one) would not apply. Such
    a process must leave the Ray as it found it: other smoke runs use it next.
    """
    return os.environ.get(SMOKE_RAY_ENV) or None


def start_smoke_ray(preload: Sequence[str] = ("regtune.platform.tune.trainable",)) -> None:
    """Start the one local Ray a ``--smoke-test`` runs all its contenders on.

    regtune's own loopback start (:func:`~regtune.platform.tune.runtime.start_local_ray`)
    with :data:`SMOKE_RAY_CPUS`; a no-op when Ray is already up. Contenders that
    would start Ray themselves (``run_sweep``, ``distill``, a plain ``ray.init``
    guarded by ``ray.is_initialized()``) join it. When ``$REGTUNE_SMOKE_RAY_ADDRESS``
    (:data:`SMOKE_RAY_ENV`) names a running Ray, it is joined instead
    (:func:`~regtune.platform.tune.runtime.ensure_ray`); this process's actors
    end with it, as on its own Ray. Full runs do not call this:
    each of their contenders starts its own Ray in a fresh process, and that
    start-up is part of what they measure.

    Args:
        preload: modules imported in a thread while Ray's processes boot (as
            ``run_sweep`` does when it starts Ray itself): by default the
            trainable adapter, which brings torch and Ray Tune.
    """
    import ray

    from regtune.platform.tune.runtime import ensure_ray, start_local_ray

    if ray.is_initialized():
        return
    address = smoke_ray_address()
    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(lambda: [importlib.import_module(name) for name in preload])
        if address:
            ensure_ray(address)
        else:
            start_local_ray(num_cpus=SMOKE_RAY_CPUS)
        loading.result()


def median_of(runs: dict[str, list[dict[str, Any]]], name: str, key: str) -> float:
    """Median of ``key`` over the repeated runs of contender ``name`` (NaN if none):
    for an even count, the mean of the two middle values."""
    values = [float(r[key]) for r in runs.get(name, [])]
    return statistics.median(values) if values else math.nan


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """The mean of ``values`` and the ends of its ``level`` t-interval (the mean
    itself at both ends for fewer than two values)."""
    from scipy import stats

    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    return mean, mean - half, mean + half

"""What every benchmark shares: machine facts, JSON results, markdown tables.

Each benchmark is a module ``benchmarks/<name>.py`` with ``main(argv)``; it
measures regtune and the peer in the same run, writes
``benchmarks/results/<name>.json`` (raw numbers, machine facts) and
``benchmarks/results/<name>.md`` (the table quoted in BENCHMARKS.md), and
accepts ``--smoke-test`` (tiny sizes, for CI-speed checks that it runs).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "machine_facts",
    "markdown_table",
    "peak_rss_mb",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


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
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-smoke" if smoke else name
    payload = {"benchmark": name, "smoke_test": smoke, "machine": machine_facts(), **payload}
    path = RESULTS_DIR / f"{stem}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    (RESULTS_DIR / f"{stem}.md").write_text(table_md.rstrip() + "\n")
    return path

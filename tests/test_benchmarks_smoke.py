"""Every benchmark's ``--smoke-test`` runs inside ``make test``, so none can rot.

Each ``benchmarks/*.py`` with a ``main`` (found by globbing, so a new
benchmark is covered as soon as it exists) runs as ``python -m
benchmarks.<name> --smoke-test`` in a fresh process and must exit 0 and
write its smoke-test JSON and table, to a temporary folder
(``$REGTUNE_BENCH_RESULTS``) rather than over the committed results.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import RESULTS_ENV

ROOT = Path(__file__).resolve().parent.parent
#: Modules of benchmarks/ that are not benchmarks.
NOT_BENCHMARKS = {"__init__", "common", "run_all"}
#: Seconds one smoke test may take (a loaded 2-core machine; quiet ones take a tenth).
SMOKE_TIMEOUT_S = 600


def benchmark_modules() -> list[str]:
    """The benchmark modules: every ``benchmarks/*.py`` that defines ``main``."""
    names = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        if path.stem in NOT_BENCHMARKS:
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            names.append(path.stem)
    return names


def test_run_all_lists_every_benchmark() -> None:
    from benchmarks.run_all import BENCHMARKS

    assert sorted(name for name, _, _ in BENCHMARKS) == benchmark_modules()


@pytest.mark.slow
@pytest.mark.parametrize("name", benchmark_modules())
def test_smoke_test_runs(name: str, data_cache: Path, tmp_path: Path) -> None:
    env = {**os.environ, RESULTS_ENV: str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--smoke-test"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    written = sorted(tmp_path.glob("*-smoke.json"))
    assert written, f"benchmarks.{name} --smoke-test wrote no results"
    for path in written:
        payload = json.loads(path.read_text())
        assert payload["smoke_test"] is True and payload["machine"]["cpu_count"] >= 1
        if "benchmark" in payload:  # a result (write_results), not a raw-runs file
            assert path.with_suffix(".md").read_text().strip()
    assert any("benchmark" in json.loads(p.read_text()) for p in written)

"""Every benchmark's ``--smoke-test`` runs inside ``make test``, so none can rot.

Each ``benchmarks/*.py`` with a ``main`` (found by globbing, so a new
benchmark is covered as soon as it exists) runs as ``python -m
benchmarks.<name> --smoke-test`` in a fresh process and must exit 0 and
write its smoke-test JSON and table, to a temporary folder
(``$REGTUNE_BENCH_RESULTS``) rather than over the committed results.

The fresh process is forked from one warm process per pytest worker
(tests/smoke_zygote.py), which has imported torch, Ray Tune and the rest
once; the benchmarks that start a Ray for their contenders
(``start_smoke_ray``) join one local one-CPU Ray kept by it, and must leave
it as they found it (every CPU free, no named actor).

Every process of a smoke run (the zygote, its forks, the shared Ray's workers,
a benchmark's own subprocesses) runs its BLAS and OpenMP pools on one thread
(:data:`ONE_THREAD`): ``make test`` keeps both cores busy with two pytest
workers, where a second pool thread only spins (measured: 40 small
LogisticRegression fits cost 2.6 CPU-s with OpenBLAS's two threads, 0.3 with
one). What a smoke run checks is that each benchmark runs, not its numbers.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import RESULTS_ENV, SMOKE_RAY_ENV
from tests.smoke_zygote import AUTH_MODE_ENV, IDLE_WAIT_S

ROOT = Path(__file__).resolve().parent.parent
#: Modules of benchmarks/ that are not benchmarks.
NOT_BENCHMARKS = {"__init__", "common", "run_all"}
#: Seconds one smoke test may take (a loaded 2-core machine; quiet ones take a tenth).
SMOKE_TIMEOUT_S = 600
#: Seconds the zygote may take to import, or to start the shared Ray (loaded machine).
STARTUP_TIMEOUT_S = 300
#: Thread pools of one thread in every smoke process (read when numpy/torch load).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


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


def uses_smoke_ray(name: str) -> bool:
    """Whether ``benchmarks/<name>.py`` starts or joins the smoke Ray
    (``start_smoke_ray``, or ``smoke_ray_address`` for a process of its own)."""
    text = (ROOT / "benchmarks" / f"{name}.py").read_text()
    return "start_smoke_ray" in text or "smoke_ray_address" in text


class Zygote:
    """The pytest worker's end of tests/smoke_zygote.py (see its protocol)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.smoke_zygote"],
            cwd=ROOT,
            env={**os.environ, **ONE_THREAD},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        #: The benchmark child running now, if any.
        self.running: int | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")  # EOF: the zygote exited

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``request``; its reply."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self.reply(timeout)

    def reply(self, timeout: float) -> dict[str, Any]:
        line = self._lines.get(timeout=timeout)
        if not line:
            raise RuntimeError(f"the smoke zygote exited ({self.proc.wait()})")
        return dict(json.loads(line))

    def run(self, module: str, args: list[str], env: dict[str, str], out: Path) -> tuple[int, str]:
        """``python -m module *args`` forked from the zygote: (exit code, stderr)."""
        stdout, stderr = out / "stdout.txt", out / "stderr.txt"
        request = {
            "op": "run", "module": module, "args": args, "env": env, "cwd": str(ROOT),
            "stdout": str(stdout), "stderr": str(stderr),
        }  # fmt: skip
        # The first reply waits for the zygote's imports (a minute on a loaded machine).
        self.running = int(self.ask(request, timeout=STARTUP_TIMEOUT_S)["pid"])
        try:
            rc = int(self.reply(timeout=SMOKE_TIMEOUT_S)["rc"])
        except queue.Empty:
            self._kill_running()
            self.reply(timeout=60)
            pytest.fail(f"{module} ran past {SMOKE_TIMEOUT_S} s:\n{stderr.read_text()[-4000:]}")
        self.running = None
        return rc, stderr.read_text()

    def _kill_running(self) -> None:
        """SIGKILL the running child's process group (it leads its own)."""
        if self.running is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.running, signal.SIGKILL)
            self.running = None

    def close(self) -> None:
        """Stop it (and a child still running, after an interrupted test)."""
        self._kill_running()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def zygote(data_cache: Path) -> Iterator[Zygote]:
    """The warm process the smoke tests fork from (after data_cache set its variable)."""
    z = Zygote()
    yield z
    z.close()


def test_run_all_lists_every_benchmark() -> None:
    from benchmarks.run_all import BENCHMARKS

    assert sorted(name for name, _, _ in BENCHMARKS) == benchmark_modules()


@pytest.mark.slow
@pytest.mark.parametrize("name", benchmark_modules())
def test_smoke_test_runs(name: str, zygote: Zygote, tmp_path: Path) -> None:
    env = {**os.environ, **ONE_THREAD, RESULTS_ENV: str(tmp_path)}
    if uses_smoke_ray(name):
        address = zygote.ask({"op": "ray"}, timeout=STARTUP_TIMEOUT_S)["address"]
        env[SMOKE_RAY_ENV] = str(address)
        # As the zygote imported Ray with (a driver joining by address must say so).
        env.setdefault(AUTH_MODE_ENV, "token")
    logs = tmp_path / "logs"
    logs.mkdir()
    rc, stderr = zygote.run(f"benchmarks.{name}", ["--smoke-test"], env, logs)
    assert rc == 0, stderr[-4000:]
    if uses_smoke_ray(name):
        # Its driver's actors ended with it: the shared Ray is as it found it.
        left = zygote.ask({"op": "ray_check"}, timeout=IDLE_WAIT_S + 60)
        assert left["ok"], f"benchmarks.{name} left this on the shared Ray: {left}"
    written = sorted(tmp_path.glob("*-smoke.json"))
    assert written, f"benchmarks.{name} --smoke-test wrote no results"
    for path in written:
        payload = json.loads(path.read_text())
        assert payload["smoke_test"] is True and payload["machine"]["cpu_count"] >= 1
        if "benchmark" in payload:  # a result (write_results), not a raw-runs file
            assert path.with_suffix(".md").read_text().strip()
    assert any("benchmark" in json.loads(p.read_text()) for p in written)

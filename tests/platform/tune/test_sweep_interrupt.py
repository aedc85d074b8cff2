"""A real sweep interrupted with SIGINT (Ctrl+C) and resumed.

On Ctrl+C Ray Tune 2.60's ``tune.run`` saves its experiment state with the
running trials still RUNNING, then its clean-up stops their actors and sets
them TERMINATED without ``on_trial_complete``. Those trials used to be stored
``stopped early`` (fewer than ``budget.max_epochs`` epochs), so ``--resume``
said "nothing left to resume" and they never finished; the interrupted sweep
also exited 0, as a finished one. Now: exit 130, the trials stored
``running``, the ``--resume`` line printed, and the resume trains each trial
to its last epoch, one row per epoch.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import ray
import yaml

from regtune.platform.results import read_epochs
from regtune.platform.results.files import locate
from regtune.platform.results.read import load_trial_states
from regtune.platform.results.trials import RUNNING, STOPPED_EARLY
from regtune.platform.results.writer import FLUSH_ENV
from tests.platform.tune.stubs import TINY_SPEC

pytestmark = [pytest.mark.ray, pytest.mark.slow]

MAX_EPOCHS = 8
#: Two trials at once (one CPU each), epochs of many small batches (~0.5-1 s on
#: digits), a checkpoint every 2 epochs: interrupted after their first epoch,
#: both are cut off well before MAX_EPOCHS.
SPEC: dict[str, Any] = TINY_SPEC | {
    "name": "interrupted",
    "training": {"batch_size": 8, "lr": 0.01, "robust_every": 0},
    "budget": {"samples": 2, "max_epochs": MAX_EPOCHS},
    "checkpoint": {"every": 2},
}
#: Seconds to wait for each piece of evidence (generous: 2 slow shared cores).
PATIENCE_S = 240


def _regtune(*args: str) -> list[str]:
    return [sys.executable, "-c", "from regtune.platform.cli import main; main()", *args]


def _rows_per_trial(exp: Path) -> dict[str, int]:
    """Epoch rows each trial has on disk so far (the parts, read as written)."""
    counts: dict[str, int] = {}
    for part in sorted((exp / "results" / "epochs").glob("part-*.parquet")):
        try:
            ids = pq.read_table(part, columns=["trial_id"])["trial_id"].to_pylist()
        except OSError:
            continue  # being written
        for tid in ids:
            counts[tid] = counts.get(tid, 0) + 1
    return counts


def _wait_for(what: str, check: Any, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not check():
        assert proc.poll() is None, f"the sweep ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {PATIENCE_S} s"
        time.sleep(0.2)


def test_a_sweep_interrupted_by_sigint_exits_130_and_resume_finishes_every_trial(
    ray_local: None, tmp_path: Path
) -> None:
    spec = tmp_path / "interrupted.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    runs = tmp_path / "runs"
    exp = runs / "int"
    env = {
        **os.environ,
        FLUSH_ENV: "0",  # every epoch row on disk at once: the evidence waited for
        "PYTHONPATH": os.getcwd(),
        "RAY_AUTH_MODE": "token",
    }
    # The sweeps join the session's Ray (two Ray starts fewer).
    address = ray.get_runtime_context().gcs_address
    args = ["sweep", str(spec), "--storage", str(runs), "--address", address, "--name", "int"]
    proc = subprocess.Popen(
        _regtune(*args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Both trials trained an epoch (and have most of theirs still to go).
        _wait_for(
            "epoch of both trials",
            lambda: len(_rows_per_trial(exp)) == 2,
            proc,
        )
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=PATIENCE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-3000:]
    # Tune's own warnings are replaced by one line and the exact resume command.
    assert "Tuner.restore" not in stderr and "Stop signal received" not in stderr
    assert "time_limit_s" not in stdout
    lines = stderr.strip().splitlines()
    assert lines[-2].startswith("interrupted: sweep int stopped with 2 trials unfinished"), stderr
    resume = shlex.split(lines[-1])
    assert resume == ["regtune", *args, "--resume"]

    states = load_trial_states(locate(str(exp))).states
    assert len(states) == 2
    cut = _rows_per_trial(exp)
    for tid, state in states.items():
        assert state.status == RUNNING != STOPPED_EARLY, (tid, state)
    assert all(n < MAX_EPOCHS for n in cut.values()), cut  # really cut off
    assert "2 trials (2 running)" in stdout

    resumed = subprocess.run(
        _regtune(*resume[1:]),
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE_S * 2,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "nothing left to resume" not in resumed.stderr
    assert "2 trials (2 finished)" in resumed.stdout, resumed.stdout
    states = load_trial_states(locate(str(exp))).states
    assert {s.status for s in states.values()} == {"finished"}
    epochs = read_epochs(str(exp))
    assert not epochs.duplicated(["trial_id", "iteration"]).any()
    for tid, rows in epochs.groupby("trial_id"):
        assert sorted(rows["iteration"]) == list(range(1, MAX_EPOCHS + 1)), tid
    # A third call has nothing left to do.
    again = subprocess.run(
        _regtune(*resume[1:]), env=env, capture_output=True, text=True, timeout=PATIENCE_S
    )
    assert again.returncode == 0 and "nothing left to resume" in again.stderr, again.stderr

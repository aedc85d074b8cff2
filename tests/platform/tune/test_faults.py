"""Faults: a trial worker killed mid-sweep, a driver killed and resumed."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
import yaml
from ray import tune

from regtune.platform.tune.scheduler_state import STATE_FILE
from regtune.platform.tune.sweep import CHECKPOINTS_KEPT, run_sweep
from regtune.platform.tune.trial_files import list_checkpoints
from regtune.search_spaces import load_spec

pytestmark = pytest.mark.ray

BASE: dict[str, Any] = {
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 32, "depth": 1},
    "training": {"batch_size": 128, "lr": 0.01, "robust_every": 0},
    "penalties": {"l2": {"grid": [0.0, 1e-4]}},
    "objectives": [{"metric": "val_acc", "mode": "max"}],
    "scheduler": {"kind": "none"},
    "searcher": {"kind": "grid", "max_concurrent": 1},
    "resources": {"cpu": 1},
    "checkpoint": {"every": 1},
}


class _KillOnce(tune.Callback):
    """SIGKILLs a trial's worker process the first time it reports epoch 2."""

    def __init__(self) -> None:
        self.killed: list[str] = []

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if not self.killed and result["training_iteration"] == 2:
            # Let the epoch-2 checkpoint land before the process dies.
            time.sleep(0.5)
            os.kill(int(result["pid"]), signal.SIGKILL)
            self.killed.append(trial.trial_id)


def test_killed_worker_restarts_from_checkpoint(ray_local: None, tmp_path: Path) -> None:
    spec = load_spec(
        {
            **BASE,
            "name": "kill",
            "budget": {"samples": 1, "max_epochs": 4},
            "failure": {"max_retries": 2},
        }
    )
    killer = _KillOnce()
    outcome = run_sweep(spec, storage=str(tmp_path), callbacks=[killer])
    assert killer.killed, "the callback killed a worker"
    victim = next(t for t in outcome.trials if t.trial_id == killer.killed[0])
    assert victim.status == "finished"
    assert victim.iterations == 4
    # Restored, not restarted: fewer iterations since the restore than in total.
    assert victim.metrics["iterations_since_restore"] < victim.metrics["training_iteration"]
    assert all(t.status == "finished" for t in outcome.trials)


def _results(exp: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for path in exp.glob("trial_*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[path.parent.name] = rows
    return out


def _checkpoints(exp: Path) -> dict[str, dict[str, int | None]]:
    """Per trial folder: checkpoint folder name -> the epoch it holds (None: incomplete)."""
    fs = pafs.LocalFileSystem()
    return {
        trial.name: {Path(c.path).name: c.epoch for c in list_checkpoints(fs, str(trial))}
        for trial in sorted(exp.glob("trial_*"))
    }


def _newest(checkpoints: dict[str, int | None]) -> int:
    return max((e for e in checkpoints.values() if e is not None), default=0)


#: ASHA rungs for grace_period 1, reduction_factor 2, max_epochs 40 (and max_t).
RESUME_MAX_EPOCHS = 40
RUNGS = {1, 2, 4, 8, 16, 32, RESUME_MAX_EPOCHS}


def test_killed_driver_resumes_each_trial_from_its_newest_checkpoint(
    ray_local: None, tmp_path: Path
) -> None:
    """SIGKILL the driver after trials checkpointed but before Tune's next
    experiment snapshot, then resume in another driver (this test process,
    on the session's Ray: one Ray start fewer).

    Tune's snapshot period is an hour in the first run, so every checkpoint
    on disk at the kill is newer than the snapshot (which recorded no
    checkpoint at all): Tune alone would restart each trial from scratch and
    write its epochs over the existing checkpoint folders.
    """
    raw = {
        **BASE,
        "name": "resume",
        "model": {"arch": "mlp", "width": 64, "depth": 2},
        "training": {"batch_size": 32, "lr": 0.01, "robust_every": 0},
        "penalties": {"l2": {"grid": [0.0, 1e-5, 1e-4]}},
        "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
        "searcher": {"kind": "grid"},
        "budget": {"samples": 1, "max_epochs": RESUME_MAX_EPOCHS},
    }
    spec_file = tmp_path / "resume.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    storage = tmp_path / "runs"
    cmd = [
        sys.executable, "-m", "regtune.platform.cli", "sweep", str(spec_file),
        "--storage", str(storage), "--json",
    ]  # fmt: skip
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "3600"}
    # No --name: a new experiment named resume-<time>-<hex>.
    driver = subprocess.Popen(cmd, start_new_session=True, env=env, stdout=subprocess.DEVNULL)
    exp = storage / "not-yet"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            exp = next(storage.glob("resume-*"), exp)
            rows = _results(exp)
            unfinished = [t for t, r in rows.items() if r and not r[-1].get("done")]
            if any(_newest(_checkpoints(exp).get(t, {})) >= 4 for t in unfinished):
                break
            time.sleep(0.02)
        assert driver.poll() is None, "the sweep ended before it could be interrupted"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        driver.wait(timeout=30)
    before_rows = _results(exp)
    before = _checkpoints(exp)
    assert any(_newest(c) >= 4 for c in before.values()), before
    with (exp / STATE_FILE).open("rb") as handle:  # written by the test's own run
        stopped_before = pickle.load(handle)["stopped_at"]

    # resume without a name: the newest experiment of the spec.
    outcome = run_sweep(load_spec(raw), storage=str(storage), resume=True)
    assert outcome.name == exp.name
    assert len(outcome.trials) == 3
    after_rows = _results(exp)
    after = _checkpoints(exp)
    for trial, rows in before_rows.items():
        new_rows = after_rows[trial][len(rows) :]
        trial_id = trial.removeprefix("trial_")
        if trial_id in stopped_before:
            # Stopped at a rung before the kill: stopped again, nothing rerun.
            assert not new_rows, f"{trial} was stopped at {stopped_before[trial_id]} and rerun"
            continue
        if new_rows:
            # Continued from its newest complete checkpoint, not an older one.
            assert new_rows[0]["training_iteration"] == _newest(before[trial]) + 1, trial
        # No checkpoint folder was written again with another epoch.
        for folder, epoch in before[trial].items():
            if epoch is not None and folder in after[trial]:
                assert after[trial][folder] == epoch, f"{trial}/{folder} overwritten"
        # Retention: the newest CHECKPOINTS_KEPT remain once the run is over.
        assert len([e for e in after[trial].values() if e is not None]) <= CHECKPOINTS_KEPT
    for t in outcome.trials:
        assert t.status in ("finished", "stopped early"), t
        # ASHA stops trials only at rungs, also after the resume.
        assert t.iterations in RUNGS, t

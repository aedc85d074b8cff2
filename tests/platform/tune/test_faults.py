"""Faults: a trial worker killed mid-sweep, a driver killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray import tune

from regtune.platform.tune.sweep import run_sweep
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


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    max_epochs = 12
    raw = {
        **BASE,
        "name": "resume",
        "model": {"arch": "cnn", "width": 32},
        "penalties": {"l2": {"grid": [0.0, 1e-5, 1e-4]}},
        "budget": {"samples": 1, "max_epochs": max_epochs},
    }
    spec_file = tmp_path / "resume.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    storage = tmp_path / "runs"
    exp = storage / "resume"
    cmd = [
        sys.executable,
        "-m",
        "regtune.platform.cli",
        "sweep",
        str(spec_file),
        "--storage",
        str(storage),
        "--json",
    ]
    driver = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    finished: dict[str, int] = {}
    while time.monotonic() < deadline and driver.poll() is None:
        results = _results(exp)
        finished = {k: len(v) for k, v in results.items() if v and v[-1].get("done")}
        if finished and len(results) > len(finished):
            time.sleep(3)  # let the experiment state catch up with the finished trial
            break
        time.sleep(0.5)
    assert driver.poll() is None, "the sweep ended before it could be interrupted"
    assert finished, "no trial finished in time"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
    driver.wait(timeout=30)

    resumed = subprocess.run(
        [*cmd, "--resume"], capture_output=True, text=True, timeout=300, check=False
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert len(summary["trials"]) == 3
    assert all(t["status"] == "finished" for t in summary["trials"]), summary
    after = _results(exp)
    for trial, n_rows in finished.items():
        assert len(after[trial]) == n_rows, f"{trial} was rerun"
    assert all(rows[-1]["training_iteration"] == max_epochs for rows in after.values())

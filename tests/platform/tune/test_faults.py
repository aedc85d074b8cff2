"""Faults: a trial worker killed mid-sweep, a driver killed and resumed."""

from __future__ import annotations

import contextlib
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
    assert victim.run_info["iterations_since_restore"] < victim.run_info["training_iteration"]
    assert all(t.status == "finished" for t in outcome.trials)


def _checkpoints(exp: Path) -> dict[str, dict[str, int | None]]:
    """Per trial id: checkpoint folder path -> the epoch it holds (None: incomplete)."""
    fs = pafs.LocalFileSystem()
    return {
        trial.name.removeprefix("trial_"): {
            c.path: c.epoch for c in list_checkpoints(fs, str(trial))
        }
        for trial in sorted(exp.glob("trial_*"))
    }


def _newest(checkpoints: dict[str, int | None]) -> tuple[int, str]:
    """(epoch, path) of the newest complete checkpoint; (0, "") when none."""
    return max(((e, p) for p, e in checkpoints.items() if e is not None), default=(0, ""))


class _Recorder(tune.Callback):
    """What the resumed run restored from and wrote, per trial id."""

    def __init__(self) -> None:
        self.restored_from: dict[str, str] = {}
        self.written: dict[str, list[str]] = {}

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        # Tune restores a started trial from this checkpoint (Tune 2.60 has
        # no on_trial_restore call).
        if trial.checkpoint is not None:
            self.restored_from.setdefault(trial.trial_id, str(trial.checkpoint.path))

    def on_checkpoint(
        self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        self.written.setdefault(trial.trial_id, []).append(str(checkpoint.path))


#: Starts of the driver to try: on a loaded 2-core machine Ray's raylet can
#: miss its fixed 30 s start-up deadline; that is retried, nothing else is.
DRIVER_ATTEMPTS = 3


def _interrupt_after_checkpoints(
    cmd: list[str], env: dict[str, str], storage: Path, log: Path
) -> Path:
    """Run the driver until a trial is past rung 4 at a non-rung epoch, then
    SIGKILL it with the local Ray it started; return the experiment folder."""
    for _ in range(DRIVER_ATTEMPTS):
        with log.open("w") as handle:
            driver = subprocess.Popen(
                cmd, start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=handle
            )
        exp = storage / "not-yet"
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline and driver.poll() is None:
                exp = next(storage.glob("resume-*"), exp)
                # A trial past rung 4 at an epoch that is no rung is running.
                epochs = [_newest(c)[0] for c in _checkpoints(exp).values()]
                if any(e >= 5 and e not in RUNGS for e in epochs):
                    break
                time.sleep(0.02)
            running = driver.poll() is None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
            driver.wait(timeout=30)
        if running:
            return exp
        text = log.read_text()
        if exp.exists() or "timed out during startup" not in text:
            pytest.fail(f"the sweep ended before it could be interrupted:\n{text[-3000:]}")
    pytest.fail(f"Ray did not start in {DRIVER_ATTEMPTS} attempts:\n{log.read_text()[-3000:]}")


#: ASHA rungs for grace_period 1, reduction_factor 2, max_epochs 20 (and max_t).
RESUME_MAX_EPOCHS = 20
RUNGS = {1, 2, 4, 8, 16, RESUME_MAX_EPOCHS}


def test_killed_driver_resumes_each_trial_from_its_newest_checkpoint(
    ray_local: None, tmp_path: Path
) -> None:
    """SIGKILL the driver (a ``regtune sweep`` process with the local Ray it
    started) after trials checkpointed but before Tune's next experiment
    snapshot, then resume in another driver (this test process, on the
    session's Ray: one Ray start fewer).

    Tune's snapshot period is an hour in the first run, so every checkpoint
    on disk at the kill is newer than the snapshot (which recorded none):
    Tune alone would restart each trial from scratch, judge it against empty
    rungs, and write its epochs into the existing checkpoint folders.
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
    # No --name: a new experiment named resume-<time>-<hex>.
    cmd = [
        sys.executable, "-m", "regtune.platform.cli", "sweep", str(spec_file),
        "--storage", str(storage), "--json",
    ]  # fmt: skip
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "3600"}
    exp = _interrupt_after_checkpoints(cmd, env, storage, tmp_path / "driver.log")
    before = _checkpoints(exp)
    with (exp / STATE_FILE).open("rb") as handle:  # written by the test's own run
        stopped_before: dict[str, int] = pickle.load(handle)["stopped_at"]

    recorder = _Recorder()
    # Resume without a name: the newest experiment of the spec.
    outcome = run_sweep(load_spec(raw), storage=str(storage), resume=True, callbacks=[recorder])
    assert outcome.name == exp.name
    assert len(outcome.trials) == 3
    after = _checkpoints(exp)
    existed = {path for folders in before.values() for path in folders}
    continued = 0
    for t in outcome.trials:
        assert t.status in ("finished", "stopped early"), t
        # ASHA stops trials only at rungs, also after the resume.
        assert t.iterations in RUNGS, t
        # No folder that existed at the kill was written again.
        assert not existed & set(recorder.written.get(t.trial_id, [])), t.trial_id
        # Retention: the newest CHECKPOINTS_KEPT remain once the run is over.
        assert len([e for e in after[t.trial_id].values() if e is not None]) <= CHECKPOINTS_KEPT
        if t.trial_id in stopped_before:
            # Stopped at a rung before the kill: stopped again, not rerun.
            assert t.iterations == stopped_before[t.trial_id], t
            assert t.trial_id not in recorder.restored_from
            continue
        epoch, path = _newest(before[t.trial_id])
        if not path:
            continue  # had not checkpointed yet: started from scratch
        # Continued from its newest complete checkpoint, not an older one...
        assert recorder.restored_from[t.trial_id] == path, t.trial_id
        # ...and trained on from that epoch.
        assert t.run_info["training_iteration"] - t.run_info["iterations_since_restore"] == epoch
        continued += 1
    assert continued, "no trial was interrupted with a checkpoint"

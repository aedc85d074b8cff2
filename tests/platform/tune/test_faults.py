"""Faults in real sweeps: a trial worker killed mid-sweep, a driver killed and resumed on S3.

Each test also checks what the results store (:mod:`regtune.platform.results`)
kept through the fault: one row per epoch, the rerun's row where an epoch was
reported twice, and each trial's status and checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import ray
from ray import tune

from regtune.platform.results import SweepOutcome, read_epochs, read_trials
from regtune.platform.results.writer import FLUSH_ENV
from regtune.platform.tune import banners, progress
from regtune.platform.tune.scheduler_state import STATE_FILE
from regtune.platform.tune.sweep import CHECKPOINTS_KEPT, run_sweep
from regtune.platform.tune.trial_files import list_checkpoints
from regtune.search_spaces import load_spec
from regtune.search_spaces.sections import AshaConfig
from tests.conftest import BUCKET

pytestmark = pytest.mark.ray

#: The smallest sweep that shows the faults: epochs of a few batches on digits.
BASE: dict[str, Any] = {
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "training": {"batch_size": 256, "lr": 0.01, "robust_every": 0},
    "objectives": [{"metric": "val_acc", "mode": "max"}],
    "resources": {"cpu": 1},
    # Checkpoints at even epochs: a trial interrupted after an odd epoch
    # continues from the one before it and reports that odd epoch again.
    "checkpoint": {"every": 2},
}

WORKER_MAX_EPOCHS = 4


class _KillWorkerAtEpoch3(tune.Callback):
    """SIGKILLs the first trial's worker right after it reports epoch 3
    (its newest checkpoint holds epoch 2)."""

    def __init__(self) -> None:
        self.killed: dict[str, float] = {}
        self.pid = 0

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if not self.killed and result["training_iteration"] == 3:
            self.killed[trial.trial_id] = time.time()
            self.pid = int(result["pid"])
            os.kill(self.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    "scheduler",
    [
        {"kind": "none"},
        # No rung before the last epoch: nothing may stop the retried trial.
        # (The scheduler wrapper used to stop it at its first retried epoch.)
        # load_spec refuses such an asha as new input (it stops nothing early),
        # so the test loads a valid one and puts this one in its place; the
        # stored spec reads back as it ran.
        {"kind": "asha", "grace_period": WORKER_MAX_EPOCHS, "reduction_factor": 2},
    ],
    ids=["none", "asha"],
)
def test_killed_worker_restarts_from_checkpoint_and_leaves_one_row_per_epoch(
    ray_local: None,
    tmp_path: Path,
    scheduler: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not verbose, as `regtune sweep` without --verbose (restored afterwards).
    monkeypatch.delenv(banners.TUNE_OUTPUT_ENV, raising=False)
    monkeypatch.setattr(banners, "_state", {**banners._state, "set_tune_env": False})
    banners.set_verbose(False)
    caplog.set_level(logging.WARNING)
    spec = load_spec(
        {
            **BASE,
            "name": "kill",
            "penalties": {"l2": {"grid": [0.0, 1e-4]}},
            "scheduler": {**scheduler, "grace_period": 1}
            if "grace_period" in scheduler
            else scheduler,
            "searcher": {"kind": "grid", "max_concurrent": 1},
            "budget": {"samples": 1, "max_epochs": WORKER_MAX_EPOCHS},
            "failure": {"max_retries": 2},
        }
    )
    if scheduler["kind"] == "asha":
        spec = dataclasses.replace(spec, scheduler=AshaConfig.model_validate(scheduler))
    killer = _KillWorkerAtEpoch3()
    try:
        outcome = run_sweep(spec, storage=str(tmp_path), callbacks=[killer])
    finally:
        banners.apply_verbosity(True)
    ((victim_id, killed_at),) = killer.killed.items()
    # One regtune line says what happened; Tune's record of it (Ray's traceback) is hidden.
    said = [r.getMessage() for r in caplog.records if r.name == progress.__name__]
    assert said == [
        f"trial {victim_id}: its worker process died (pid {killer.pid}: Worker unexpectedly "
        "exits with a connection error code 2. End of file.); retry 1 of 2 "
        "(failure.max_retries) from its newest checkpoint"
    ], said
    assert not [r for r in caplog.records if r.getMessage().startswith("Trial task failed")]
    assert [t.status for t in outcome.trials] == ["finished", "finished"], outcome.trials
    victim = next(t for t in outcome.trials if t.trial_id == victim_id)
    assert victim.iterations == WORKER_MAX_EPOCHS
    # Ranked on an epoch that the retried run trained (and a checkpoint holds).
    assert (victim.epoch or victim.iterations) == WORKER_MAX_EPOCHS
    # Restored, not restarted: fewer iterations since the restore than in total.
    assert victim.run_info["iterations_since_restore"] < victim.run_info["training_iteration"]

    # The store: one row per epoch; the victim's epoch 3, reported twice, is the rerun's.
    epochs = read_epochs(outcome.path)
    assert len(epochs) == 2 * WORKER_MAX_EPOCHS
    for _, rows in epochs.groupby("trial_id"):
        assert list(rows["iteration"]) == list(range(1, WORKER_MAX_EPOCHS + 1))
    # The victim's rows after its checkpoint (epoch 2) are the retried run's.
    rerun = epochs[(epochs["trial_id"] == victim_id) & (epochs["iteration"] > 2)]
    assert list(rerun["iteration"]) == [3, WORKER_MAX_EPOCHS]
    assert (rerun["timestamp"] > killed_at).all()
    assert {"val_acc", "train_loss", "gap", "n_params", "test_acc"} <= set(epochs.columns)
    assert not {"pid", "hostname", "date", "done", "time_this_iter_s"} & set(epochs.columns)
    trials = read_trials(outcome.path)
    assert list(trials["status"]) == ["finished", "finished"]
    assert trials["checkpoint"].notna().all()
    # The outcome rebuilt from disk is the one run_sweep returned.
    rebuilt = SweepOutcome.from_path(outcome.path).to_dict()
    direct = outcome.to_dict()
    assert rebuilt["elapsed_s"] > 0
    for d in (rebuilt, direct):
        d.pop("elapsed_s")
        d["trials"].sort(key=lambda t: t["trial_id"])
        d["front"] = []
    assert rebuilt == direct
    json.dumps(direct, allow_nan=False)


#: ASHA rungs for grace_period 1, reduction_factor 2, max_epochs 8 (and max_t).
RESUME_MAX_EPOCHS = 8
RUNGS = {1, 2, 4, 8}
#: The driver dies when a trial first reports this epoch: past rung 4, no
#: rung, one past its newest checkpoint (epoch 6).
KILL_AT = 7
KILLED_DRIVER = textwrap.dedent(
    """
    import contextlib, json, os, signal, sys
    from ray import tune
    from regtune.platform.tune.sweep import run_sweep
    from regtune.search_spaces import load_spec

    spec, storage, address = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    kill_at = int(sys.argv[4])

    class KillDriver(tune.Callback):
        # After the store and the checkpoint keeper took the result (they
        # come first), the driver and its running trials' workers die at
        # once, as with the local Ray a `regtune sweep` starts: no worker
        # writes a checkpoint once the driver is gone.
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result["training_iteration"] != kill_at:
                return
            pids = {int(result["pid"])}
            pids |= {int(t.last_result["pid"]) for t in trials
                     if t.status == "RUNNING" and "pid" in (t.last_result or {})}
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            os.killpg(os.getpgrp(), signal.SIGKILL)

    # No name: a new experiment named <spec name>-<time>-<hex>.
    run_sweep(load_spec(spec), storage=storage, address=address, callbacks=[KillDriver()])
    """
)


def _checkpoints(fs: pafs.FileSystem, exp: str) -> dict[str, dict[str, int | None]]:
    """Per trial id: checkpoint folder path -> the epoch it holds (None: incomplete)."""
    trials = fs.get_file_info(pafs.FileSelector(exp))
    return {
        info.base_name.removeprefix("trial_"): {
            c.path: c.epoch for c in list_checkpoints(fs, info.path)
        }
        for info in sorted(trials, key=lambda i: i.base_name)
        if info.base_name.startswith("trial_")
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


def test_killed_driver_resumed_on_s3_continues_each_trial_and_loses_no_row(
    ray_local: None, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """SIGKILL a driver (with its trials' workers) after trials checkpointed
    but before Tune's next experiment snapshot, then resume in another driver
    (this test process), on the session's Ray and on S3 throughout.

    Tune's snapshot period is an hour in the first run, so every checkpoint
    written by the kill is newer than the snapshot (which recorded none):
    Tune alone would restart each trial from scratch, judge it against empty
    rungs, and write its epochs into the existing checkpoint folders.
    """
    raw = {
        **BASE,
        "name": "resume",
        "penalties": {"l2": {"grid": [0.0, 1e-5, 1e-4]}},
        "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
        "searcher": {"kind": "grid"},
        "budget": {"samples": 1, "max_epochs": RESUME_MAX_EPOCHS},
    }
    storage = f"s3://{BUCKET}/faults"
    script = tmp_path / "driver.py"
    script.write_text(KILLED_DRIVER)
    env = {
        **os.environ,
        **s3_env,
        FLUSH_ENV: "0",
        "TUNE_GLOBAL_CHECKPOINT_S": "3600",
        "PYTHONPATH": os.getcwd(),
        # Ray sends the token to an address given explicitly only when asked.
        "RAY_AUTH_MODE": "token",
    }
    # The driver joins the session's Ray (one Ray start fewer) and kills itself.
    address = ray.get_runtime_context().gcs_address
    killed = subprocess.run(
        [sys.executable, str(script), json.dumps(raw), storage, address, str(KILL_AT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        start_new_session=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]

    fs, base = pafs.FileSystem.from_uri(storage)
    (exp_info,) = fs.get_file_info(pafs.FileSelector(base))
    exp_path, exp_uri = exp_info.path, f"{storage}/{exp_info.base_name}"
    before = _checkpoints(fs, exp_path)
    with fs.open_input_stream(f"{exp_path}/{STATE_FILE}") as handle:  # the test's own run wrote it
        stopped_before: dict[str, int] = pickle.loads(handle.read())["stopped_at"]
    rows_before = read_epochs(exp_uri)
    # The row reported just before the kill was stored: one trial reached
    # KILL_AT, with every epoch up to it.
    last = rows_before.groupby("trial_id")["iteration"].max()
    (victim,) = last[last == KILL_AT].index
    for _, rows in rows_before.groupby("trial_id"):
        assert list(rows["iteration"]) == list(range(1, len(rows) + 1))

    recorder = _Recorder()
    # Resume without a name: the newest experiment of the spec.
    outcome = run_sweep(load_spec(raw), storage=storage, resume=True, callbacks=[recorder])
    assert outcome.name == exp_info.base_name
    assert len(outcome.trials) == 3
    after = _checkpoints(fs, exp_path)
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
    assert _newest(before[victim])[0] == KILL_AT - 1

    # The store lost and repeated no row: one per epoch each trial ran...
    rows_after = read_epochs(exp_uri)
    assert len(rows_after) == sum(t.iterations for t in outcome.trials)
    assert not rows_after.duplicated(["trial_id", "iteration"]).any()
    iterations = {t.trial_id: t.iterations for t in outcome.trials}
    for trial_id, rows in rows_after.groupby("trial_id"):
        assert list(rows["iteration"]) == list(range(1, iterations[str(trial_id)] + 1))

    # ...and the victim's epoch KILL_AT, run again after the resume, replaced the first row.
    def stamp(rows: Any) -> float:
        at = rows[(rows["trial_id"] == victim) & (rows["iteration"] == KILL_AT)]
        return float(at["timestamp"].iloc[0])

    assert stamp(rows_after) > stamp(rows_before)
    trials = read_trials(exp_uri).set_index("trial_id")
    assert trials["status"].to_dict() == {t.trial_id: t.status for t in outcome.trials}
    # Every trial that reached a checkpoint epoch names its checkpoint, on S3.
    assert trials.loc[trials["iterations"] >= 2, "checkpoint"].notna().all()
    assert all(c.startswith(f"s3://{BUCKET}/faults/") for c in trials["checkpoint"].dropna())


#: A one-trial sweep whose driver dies at epoch 5, two epochs past its first
#: checkpoint (epoch 2) and one past its second (epoch 4).
UNSTORED_MAX_EPOCHS = 6
UNSTORED_KILL_AT = 5
#: The epochs whose rows the constructed kill leaves unstored.
UNSTORED = [3, 4, 5]


def _epoch_parts(exp: Path) -> dict[Path, list[tuple[str, int]]]:
    """Each stored epoch part and the (trial id, iteration) rows it holds."""
    out = {}
    for part in sorted((exp / "results" / "epochs").glob("part-*.parquet")):
        table = pq.read_table(part, columns=["trial_id", "iteration"])
        ids, iterations = table["trial_id"].to_pylist(), table["iteration"].to_pylist()
        out[part] = list(zip(ids, iterations, strict=True))
    return out


def test_resumed_trial_never_starts_past_its_stored_rows(ray_local: None, tmp_path: Path) -> None:
    """The results store writes rows every few seconds, so a killed driver can
    leave a checkpoint on disk whose epochs (and some before it) it never
    stored. Resuming from that checkpoint would never train, nor store, them.

    The kill is made deterministic: the driver stores every row at once and
    dies at epoch 5 with checkpoints of epochs 2 and 4 and no Tune snapshot
    since the start; the rows of epochs 3 to 5 are then taken out of the
    store, which is what the store holds when a driver dies with them still
    buffered. The resumed trial must continue
    from epoch 2, the newest checkpoint whose epoch is stored, and store
    every epoch once, with the numbers the killed run had computed.
    """
    raw = {
        **BASE,
        "name": "unstored",
        "penalties": {"l2": {"grid": [1e-4]}},
        "scheduler": {"kind": "none"},
        "searcher": {"kind": "grid"},
        "budget": {"samples": 1, "max_epochs": UNSTORED_MAX_EPOCHS},
    }
    script = tmp_path / "driver.py"
    script.write_text(KILLED_DRIVER)
    storage = tmp_path / "runs"
    env = {
        **os.environ,
        FLUSH_ENV: "0",
        "TUNE_GLOBAL_CHECKPOINT_S": "3600",
        "PYTHONPATH": os.getcwd(),
        "RAY_AUTH_MODE": "token",
    }
    address = ray.get_runtime_context().gcs_address
    args = [json.dumps(raw), str(storage), address, str(UNSTORED_KILL_AT)]
    killed = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        start_new_session=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]

    (exp,) = storage.iterdir()
    ((trial_id, checkpoints),) = _checkpoints(pafs.LocalFileSystem(), str(exp)).items()
    assert sorted(e for e in checkpoints.values() if e is not None) == [2, 4]
    # The rows of epochs 3-5 leave the store. (Tune's result.json has not
    # reached the storage folder either: Tune syncs it there periodically.)
    first_run: dict[int, dict[str, Any]] = {}
    stored = read_epochs(str(exp)).set_index("iteration")
    for part, rows in _epoch_parts(exp).items():
        assert len(rows) == 1  # every row was written at once, in its own part
        if rows[0][1] in UNSTORED:
            first_run[rows[0][1]] = stored.loc[rows[0][1]].to_dict()
            part.unlink()
    assert sorted(first_run) == UNSTORED
    assert list(read_epochs(str(exp))["iteration"]) == [1, 2]

    recorder = _Recorder()
    outcome = run_sweep(
        load_spec(raw), storage=str(storage), resume=True, name=exp.name, callbacks=[recorder]
    )
    (trial,) = outcome.trials
    assert trial.status == "finished" and trial.iterations == UNSTORED_MAX_EPOCHS
    # Continued from epoch 2's checkpoint (newer than Tune's snapshot, but
    # stored), not epoch 4's (its epochs 3 and 4 were never stored).
    epoch_2 = next(path for path, e in checkpoints.items() if e == 2)
    assert recorder.restored_from[trial_id] == epoch_2
    assert trial.run_info["training_iteration"] - trial.run_info["iterations_since_restore"] == 2

    # Every epoch once, and the rerun epochs with the killed run's numbers.
    rows = read_epochs(str(exp))
    assert list(rows["iteration"]) == list(range(1, UNSTORED_MAX_EPOCHS + 1))
    rows = rows.set_index("iteration")
    for epoch, before in first_run.items():
        for metric in ("train_loss", "val_loss", "val_acc", "gap"):
            assert rows.loc[epoch, metric] == before[metric], (epoch, metric)

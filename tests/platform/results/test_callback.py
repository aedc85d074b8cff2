"""The results store inside real sweeps: a killed worker, a killed and resumed driver on S3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import ray.cloudpickle as cloudpickle
from ray import tune

from regtune.platform.results import SweepOutcome, read_epochs, read_trials
from regtune.platform.results.callback import ResultsCallback, results_callbacks
from regtune.platform.results.schema import NOT_METRICS
from regtune.platform.results.writer import FLUSH_ENV
from regtune.platform.tune.sweep import run_sweep
from regtune.search_spaces import load_spec
from tests.conftest import BUCKET

pytestmark = pytest.mark.ray

MAX_EPOCHS = 4
SPEC: dict[str, Any] = {
    "name": "store-sweep",
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "training": {"batch_size": 256, "lr": 0.01, "robust_every": 0},
    "penalties": {"l2": {"grid": [0.0, 1e-4]}},
    "objectives": [{"metric": "val_acc", "mode": "max"}],
    "scheduler": {"kind": "none"},
    "searcher": {"kind": "grid", "max_concurrent": 1},
    "resources": {"cpu": 1},
    "budget": {"samples": 1, "max_epochs": MAX_EPOCHS},
    # Checkpoints at epochs 2 and 4: a worker killed after epoch 3 restores
    # from epoch 2 and reports epoch 3 again.
    "checkpoint": {"every": 2},
    "failure": {"max_retries": 2},
}


def test_not_metrics_covers_every_key_tune_adds() -> None:
    from ray.tune.result import AUTO_RESULT_KEYS

    assert set(AUTO_RESULT_KEYS) <= NOT_METRICS


def test_callback_survives_pickling_without_its_writer(tmp_path: Path) -> None:
    spec = load_spec(SPEC)
    (callback,) = results_callbacks(spec, str(tmp_path / "exp"))
    assert isinstance(callback, ResultsCallback)
    callback.setup()
    assert (tmp_path / "exp" / "results" / "spec.json").exists()
    copy = cloudpickle.loads(cloudpickle.dumps(callback))
    assert copy._writer is None and copy.exp_path == callback.exp_path
    assert copy.writer.max_t == MAX_EPOCHS


class _KillAtEpoch3(tune.Callback):
    """SIGKILLs the first trial's worker right after it reports epoch 3."""

    def __init__(self) -> None:
        self.killed: dict[str, float] = {}

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if not self.killed and result["training_iteration"] == 3:
            self.killed[trial.trial_id] = time.time()
            os.kill(int(result["pid"]), signal.SIGKILL)


def test_killed_worker_leaves_one_row_per_epoch(ray_local: None, tmp_path: Path) -> None:
    killer = _KillAtEpoch3()
    outcome = run_sweep(load_spec(SPEC), storage=str(tmp_path), callbacks=[killer])
    ((victim, killed_at),) = killer.killed.items()
    epochs = read_epochs(outcome.path)
    assert len(epochs) == 2 * MAX_EPOCHS
    for _, rows in epochs.groupby("trial_id"):
        assert list(rows["iteration"]) == list(range(1, MAX_EPOCHS + 1))
    # The victim's epoch 3 was reported twice; the row kept is the rerun's.
    rerun = epochs[(epochs["trial_id"] == victim) & (epochs["iteration"] == 3)]
    assert float(rerun["timestamp"].iloc[0]) > killed_at
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


DRIVER = textwrap.dedent(
    """
    import json, os, signal, sys
    from ray import tune
    from regtune.platform.tune.sweep import run_sweep
    from regtune.search_spaces import load_spec

    spec, storage, resume = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "resume"

    class KillDriver(tune.Callback):
        # The whole driver (and the Ray it started) dies once the first trial
        # has reported epoch 3: that row is stored, the newest checkpoint is
        # epoch 2, so the resumed sweep reports epoch 3 again.
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result["training_iteration"] == 3:
                os.killpg(os.getpgrp(), signal.SIGKILL)

    outcome = run_sweep(
        load_spec(spec), storage=storage, name=spec["name"], resume=resume,
        callbacks=[] if resume else [KillDriver()],
    )
    print(json.dumps(outcome.to_dict()))
    """
)


def test_killed_driver_resumed_on_s3_loses_and_repeats_no_row(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    storage = f"s3://{BUCKET}/runs"
    exp = f"{storage}/{SPEC['name']}"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, **s3_env, FLUSH_ENV: "0", "PYTHONPATH": os.getcwd()}

    def driver(mode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), json.dumps(SPEC), storage, mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            start_new_session=True,
            check=False,
        )

    killed = driver("start")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = read_epochs(exp)
    assert list(before["iteration"]) == [1, 2, 3] and before["trial_id"].nunique() == 1

    resumed = driver("resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    statuses = [t["status"] for t in summary["trials"]]
    assert statuses == ["finished", "finished"], resumed.stderr[-3000:]
    after = read_epochs(exp)
    assert len(after) == 2 * MAX_EPOCHS
    assert not after.duplicated(["trial_id", "iteration"]).any()
    for _, rows in after.groupby("trial_id"):
        assert list(rows["iteration"]) == list(range(1, MAX_EPOCHS + 1))
    # Epoch 3 of the interrupted trial ran again: the later row replaced the first.
    victim = before["trial_id"].iloc[0]
    was = before[before["iteration"] == 3]["timestamp"].iloc[0]
    now = after[(after["trial_id"] == victim) & (after["iteration"] == 3)]["timestamp"].iloc[0]
    assert now > was
    trials = read_trials(exp)
    assert set(trials["status"]) == {"finished"}
    assert all(str(c).startswith(f"s3://{BUCKET}/runs/") for c in trials["checkpoint"])

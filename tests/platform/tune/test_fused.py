"""Fused sweeps: members trained together in a cohort worker, each still a trial.

The cohort worker's barrier (who it waits for, when it stops waiting) is
driven in this process, without Ray; one tiny real sweep on a local Ray
checks that every member is a trial end to end (own rows in the Parquet
store, own early stopping, own checkpoints that an unfused Trainer continues).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
from ray import tune

from regtune.platform.tune.cohorts import (
    COHORT_SIZE,
    MEMBER_LOST,
    REREPORT,
    CohortWorker,
    read_state_files,
    write_state_files,
)
from regtune.platform.tune.fuse_size import (
    AUTO_MAX_MEMBERS,
    FUSED_MEMBER_COST,
    asha_milestones,
    auto_fuse,
    cohort_load,
    cohort_slots,
    max_concurrent_members,
    place_group,
)
from regtune.platform.tune.naming import FUSED_STATE_FILE
from regtune.platform.tune.ray_private import DONE
from regtune.trainables.data import Dataset
from regtune.trainables.loop import Trainer
from tests.conftest import BUCKET

#: Relative tolerance between a member's metrics and a solo Trainer's (a
#: batched model sums in another order than one model: float32 rounding).
REL = 1e-4


def _config(lr: float, *, epochs: int = 3, seed: int = 0) -> dict[str, Any]:
    return {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "width": 16, "depth": 1},
        "training": {
            "batch_size": 256,
            "lr": lr,
            "epochs": epochs,
            "robust_every": 0,
            "seed": seed,
        },
        "penalties": {"l2": 1e-4},
    }


def _worker(digits: Dataset, members: dict[str, Any], **kw: Any) -> CohortWorker:
    return CohortWorker(digits, {tid: (cfg, files) for tid, (cfg, files) in members.items()}, **kw)


def _steps(worker: CohortWorker, *tids: str) -> list[dict[str, Any]]:
    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(worker.step(t) for t in tids)))

    return asyncio.run(both())


def _solo_rows(digits: Dataset, config: dict[str, Any], epochs: int) -> list[dict[str, float]]:
    trainer = Trainer(config, dataset=digits)
    return [trainer.run_epoch() for _ in range(epochs)]


def _close(row: dict[str, Any], solo: dict[str, float]) -> None:
    for key in ("train_loss", "val_loss", "val_acc"):
        assert math.isclose(row[key], solo[key], rel_tol=REL, abs_tol=1e-6), (key, row, solo)


def _member_sweep(name: str, lrs: list[float], **sections: Any) -> Any:
    """A fused sweep (fuse 2 on one 2-CPU cohort worker) of tiny digits MLPs over
    the learning rates ``lrs``: no scheduler and grid search unless ``sections``
    (top-level spec sections) say otherwise."""
    from regtune.search_spaces import load_spec

    raw: dict[str, Any] = {
        "name": name,
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 16, "depth": 1},
        "training": {"batch_size": 256, "lr": {"grid": lrs}, "robust_every": 0},
        "penalties": {"l2": 1e-4},
        "objectives": [{"metric": "val_acc", "mode": "max"}],
        "scheduler": {"kind": "none"},
        "searcher": {"kind": "grid"},
        "resources": {"cpu": 2, "fuse": 2},
    }
    return load_spec(raw | sections)


# -- the barrier, in this process -----------------------------------------------


def test_an_epoch_runs_once_every_live_member_asked(digits: Dataset) -> None:
    a, b = _config(0.01), _config(0.05, seed=1)
    worker = _worker(digits, {"a": (a, None), "b": (b, None)})
    row_a, row_b = _steps(worker, "a", "b")
    assert worker.stats()["rounds"] == 1
    assert row_a["epoch"] == row_b["epoch"] == 1.0
    assert row_a[COHORT_SIZE] == row_b[COHORT_SIZE] == 2.0
    _close(row_a, _solo_rows(digits, a, 1)[0])
    _close(row_b, _solo_rows(digits, b, 1)[0])


def test_a_member_that_left_is_not_waited_for_and_the_rest_go_on(digits: Dataset) -> None:
    a = _config(0.01)
    worker = _worker(digits, {"a": (a, None), "b": (_config(0.05, seed=1), None)})
    _steps(worker, "a", "b")
    worker.leave("b")  # e.g. ASHA stopped b at this rung
    (row,) = _steps(worker, "a")
    assert (row["epoch"], row[COHORT_SIZE]) == (2.0, 1.0)
    _close(row, _solo_rows(digits, a, 2)[1])
    with pytest.raises(RuntimeError, match=MEMBER_LOST.format(tid="b")):
        _steps(worker, "b")


def test_a_member_leaving_while_others_wait_releases_them(digits: Dataset) -> None:
    worker = _worker(digits, {"a": (_config(0.01), None), "b": (_config(0.05), None)})

    async def a_waits_then_b_leaves() -> dict[str, Any]:
        waiting = asyncio.ensure_future(worker.step("a"))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the barrier holds a for b
        worker.leave("b")
        return await waiting

    row = asyncio.run(a_waits_then_b_leaves())
    assert (row["epoch"], row[COHORT_SIZE]) == (1.0, 1.0)


def test_an_absent_member_is_parked_after_the_timeout_and_continues_alone(
    digits: Dataset,
) -> None:
    # A member Tune paused (HyperBand) and nobody reported: the barrier must not hang.
    a, b = _config(0.01), _config(0.05, seed=1)
    worker = _worker(digits, {"a": (a, None), "b": (b, None)}, barrier_timeout_s=0.2)
    (row_a1,) = _steps(worker, "a")
    assert worker.stats()["parked"] == ["b"]
    assert row_a1[COHORT_SIZE] == 1.0
    # b comes back (Tune resumed it): its first epoch, in the same round as a's second.
    row_b1, row_a2 = _steps(worker, "b", "a")
    assert (row_a2["epoch"], row_b1["epoch"]) == (2.0, 1.0)
    assert worker.stats()["parked"] == [] and row_a2[COHORT_SIZE] == 2.0
    _close(row_a2, _solo_rows(digits, a, 2)[1])
    _close(row_b1, _solo_rows(digits, b, 1)[0])


def test_newcomers_are_repacked_with_the_live_members_exactly(digits: Dataset) -> None:
    # ASHA stopped b; the trial that replaces it joins a's worker between epochs.
    a, c = _config(0.01), _config(0.03, seed=2)
    worker = _worker(digits, {"a": (a, None), "b": (_config(0.05, seed=1), None)})
    _steps(worker, "a", "b")
    worker.leave("b")
    worker.add({"c": (c, None)})
    row_a2, row_c1 = _steps(worker, "a", "c")
    assert (row_a2["epoch"], row_c1["epoch"]) == (2.0, 1.0)
    assert row_a2[COHORT_SIZE] == row_c1[COHORT_SIZE] == 2.0
    _close(row_a2, _solo_rows(digits, a, 2)[1])
    _close(row_c1, _solo_rows(digits, c, 1)[0])


def test_a_finished_member_reports_its_test_metrics_and_done(digits: Dataset) -> None:
    worker = _worker(digits, {"a": (_config(0.01, epochs=1), None), "b": (_config(0.05), None)})
    row_a, row_b = _steps(worker, "a", "b")
    assert row_a[DONE] is True and row_a["stopped_early"] is False
    assert "test_acc" in row_a and DONE not in row_b
    # b trains on alone: a is no longer live.
    (row,) = _steps(worker, "b")
    assert (row["epoch"], row[COHORT_SIZE]) == (2.0, 1.0)


def test_member_state_files_continue_in_a_solo_trainer_and_a_new_cohort(
    digits: Dataset, tmp_path: Path
) -> None:
    a = _config(0.01)
    worker = _worker(digits, {"a": (a, None), "b": (_config(0.05), None)})
    _steps(worker, "a", "b")
    files = worker.state_files("a")
    solo = Trainer(a, dataset=digits)
    solo.restore(write_state_files(files, tmp_path / "state"))
    assert read_state_files(tmp_path / "state") == files
    (row_fused,) = _steps(_worker(digits, {"a": (a, files)}), "a")
    row_solo = solo.run_epoch()
    assert row_fused["epoch"] == row_solo["epoch"] == 2.0
    _close(row_fused, row_solo)
    _close(row_fused, _solo_rows(digits, a, 2)[1])


def test_a_member_restored_from_its_final_checkpoint_repeats_its_last_epoch(
    digits: Dataset,
) -> None:
    a = _config(0.01, epochs=1)
    worker = _worker(digits, {"a": (a, None)})
    (last,) = _steps(worker, "a")
    again = _worker(digits, {"a": (a, worker.state_files("a"))})
    (row,) = _steps(again, "a")
    assert row[REREPORT] is True and row[DONE] is True
    assert row["epoch"] == last["epoch"] and row["val_loss"] == last["val_loss"]
    assert again.stats()["rounds"] == 0


def test_a_late_leave_of_an_earlier_membership_leaves_the_member_in(digits: Dataset) -> None:
    a, b = _config(0.01), _config(0.05, seed=1)
    worker = _worker(digits, {})
    worker.add({"a": (a, None), "b": (b, None)}, {"a": 1, "b": 1})
    _steps(worker, "a", "b")
    # Ray may run an actor's calls out of order. a's try 2 arrives before the
    # leave of its try 1: try 1 ends there, and try 2 starts from its own state
    # (here none: epoch 1 again, as a solo run).
    worker.add({"a": (a, None)}, {"a": 2})
    worker.leave("a", 1)  # late: changes nothing
    # A late add of try 1 changes nothing either.
    worker.add({"a": (a, None)}, {"a": 1})
    assert worker.stats()["members"] == ["a", "b"]
    (row_a, _) = _steps(worker, "a", "b")
    assert row_a["epoch"] == 1.0
    _close(row_a, _solo_rows(digits, a, 1)[0])
    worker.leave("a", 2)
    assert worker.stats()["members"] == ["b"]
    with pytest.raises(RuntimeError, match=r"left its cohort"):
        _steps(worker, "a")


@pytest.mark.ray
def test_the_manager_keeps_a_retried_member_whose_old_leave_runs_late(
    ray_local: None, digits: Dataset
) -> None:
    import ray

    from regtune.platform.tune.cohorts import CohortManager

    async def scenario() -> tuple[list[Any], list[str], list[Any]]:
        manager = CohortManager([ray.put(digits)], fuse=2, cpu=1, gpu=0, threads=1, window_s=0.05)
        # The driver sent leave(a, try 1), then join(a, try 2); the join ran first.
        join_a = asyncio.ensure_future(manager.join("a", _config(0.01), None, 2))
        await asyncio.sleep(0)
        manager.leave("a", 1)
        placed = await asyncio.gather(join_a, manager.join("b", _config(0.05, seed=1), None, 3))
        stats = await placed[0][0].stats.remote()
        # A leave that ran before its own join: that join joins nothing.
        manager.leave("c", 5)
        late = await manager.join("c", _config(0.02), None, 5)
        ray.kill(placed[0][0])
        return [w for (w,) in placed], list(stats["members"]), late

    workers, members, late = asyncio.run(scenario())
    assert workers[0] == workers[1]
    assert members == ["a", "b"]
    assert late == [None]


@pytest.mark.ray
def test_a_group_placed_on_a_worker_that_died_unnoticed_goes_to_another(
    ray_local: None, digits: Dataset
) -> None:
    import ray

    from regtune.platform.tune.cohorts import CohortManager

    async def scenario() -> tuple[bool, list[str]]:
        manager = CohortManager(
            [ray.put(digits)], fuse=1, cpu=1, gpu=0, threads=1, slots=2, prestart=2, window_s=0.05
        )
        first, second = list(manager._members_of)
        # The second dies as it starts; nobody is told.
        ray.kill(second)
        (where_a,) = await manager.join("a", _config(0.01), None, 1)
        assert where_a == first  # the idle worker first in the pool
        # b's group is placed on the idle one, finds it dead, and goes to a new worker.
        (where_b,) = await manager.join("b", _config(0.05, seed=1), None, 2)
        stats = await where_b.stats.remote()
        for worker in (first, where_b):
            ray.kill(worker)
        return where_b not in (first, second), list(stats["members"])

    elsewhere, members = asyncio.run(scenario())
    assert elsewhere
    assert members == ["b"]


def test_state_file_names_must_be_plain(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        write_state_files({"../x": b""}, tmp_path)


# -- how many, pure -------------------------------------------------------------


def test_auto_fuse_is_a_bounded_power_of_two() -> None:
    for n_params in (1, 1_000, 3_466, 26_122, 85_002, 10**7):
        k = auto_fuse(n_params)
        assert 1 <= k <= AUTO_MAX_MEMBERS and k & (k - 1) == 0
    # The digits MLPs the rule was measured on (widths 32, 128, 256).
    assert [auto_fuse(n) for n in (3_466, 26_122, 85_002)] == [16, 8, 2]
    assert auto_fuse(10**7) == 1
    with pytest.raises(ValueError, match="n_params"):
        auto_fuse(0)


def test_cohort_slots_and_member_limit() -> None:
    assert cohort_slots(2, 0, 1, 0) == 2
    assert cohort_slots(2, 0, 4, 0) == 1
    assert cohort_slots(16, 1, 1, 0.5) == 2
    assert max_concurrent_members(8, 2) == 16
    with pytest.raises(ValueError):
        max_concurrent_members(0, 2)


# -- a real fused sweep -----------------------------------------------------------


@pytest.mark.ray
def test_a_cohort_bigger_than_the_cluster_is_refused(ray_local: None, digits: Dataset) -> None:
    from regtune.errors import SpecError
    from regtune.platform.tune.fused import start_fused

    # ray_local declares 2 CPUs and 1 GPU: a worker could never start.
    with pytest.raises(SpecError, match=r"resources\.cpu: a cohort worker needs 4"):
        start_fused(digits, fuse=2, cpu=4, gpu=0)
    with pytest.raises(SpecError, match=r"resources\.gpu: a cohort worker needs 2"):
        start_fused(digits, fuse=2, cpu=1, gpu=2)


@pytest.mark.ray
def test_fused_sweep_members_are_trials(ray_local: None, digits: Dataset, tmp_path: Path) -> None:
    from regtune.platform.analysis import swept_parameters
    from regtune.platform.results.read import read_epochs, read_trials
    from regtune.platform.tune.sweep import run_sweep

    # From good to hopeless, in the order the trials start. One cohort worker
    # fits (2 CPUs), so two members run at a time: the good pair records each
    # rung first, and the hopeless pair falls below ASHA's cutoff there (with
    # two workers the pairs raced, and the order in which a rung was reached
    # decided whether anyone stopped).
    spec = _member_sweep(
        "fused",
        [0.05, 0.01, 0.002, 0.0003],
        scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 2},
        searcher={"kind": "random", "seed": 0},
        budget={"samples": 1, "max_epochs": 3},
        checkpoint={"every": 1},
    )
    outcome = run_sweep(spec, storage=str(tmp_path))
    epochs = read_epochs(outcome.path)
    trials = read_trials(outcome.path).set_index("trial_id")
    assert len(outcome.trials) == 4 and set(epochs["trial_id"]) == set(trials.index)
    # Every member has its own rows, one per epoch it trained, with its config
    # (as an unfused trial's rows have it): what analysis reads as swept.
    for tid, rows in epochs.groupby("trial_id"):
        assert list(rows["iteration"]) == list(range(1, int(trials.loc[tid, "iterations"]) + 1))
        config = next(t.config for t in outcome.trials if t.trial_id == tid)
        assert (rows["config.training.lr"] == config["training"]["lr"]).all()
        assert trials.loc[tid, "config.training.lr"] == config["training"]["lr"]
    swept = [p.name for p in swept_parameters(trials.reset_index(), spec)]
    assert swept == ["training.lr"]
    # Members trained together, and stopped members left while the others went on.
    assert (epochs[COHORT_SIZE] == 2.0).any()
    statuses = set(trials["status"])
    assert {"stopped early", "finished"} <= statuses, trials["status"]
    finished = trials[trials["status"] == "finished"]
    assert (finished["iterations"] == 3).all()
    # A member's checkpoint is an ordinary one: an unfused Trainer continues it
    # exactly (the epoch-2 one; retention keeps the newest two per trial).
    tid = str(finished.index[0])
    summary = next(t for t in outcome.trials if t.trial_id == tid)
    trainer = Trainer(summary.config, dataset=digits)
    trainer.restore(Path(outcome.path) / f"trial_{tid}" / "checkpoint_000001" / "regtune_state")
    assert trainer.epoch == 2
    stored = epochs[(epochs["trial_id"] == tid) & (epochs["iteration"] == 3)].iloc[0]
    _close(dict(stored), trainer.run_epoch())


# -- checkpoints and resume --------------------------------------------------------


def test_member_checkpoints_use_the_unfused_state_folder() -> None:
    from regtune.platform.tune import fused, trial_files

    assert fused.STATE_DIR == trial_files.STATE_DIR


class _InterruptAt(tune.Callback):
    """Ctrl+C for the driver (Tune saves its state and ends the run) once a
    trial reported ``epoch``; records where resumed trials start from."""

    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch
        self.restored_from: dict[str, str] = {}

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if self.epoch is not None and result["training_iteration"] >= self.epoch:
            self.epoch = None
            os.kill(os.getpid(), signal.SIGINT)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if trial.checkpoint is not None:
            self.restored_from.setdefault(trial.trial_id, str(trial.checkpoint.path))


def _count_fused_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The experiments ``is_fused_experiment`` is asked about from now on (on
    object storage each look-up is requests)."""
    from regtune.platform.tune import fused_driver

    asked: list[str] = []
    real = fused_driver.is_fused_experiment

    def counting(exp_path: str) -> bool:
        asked.append(exp_path)
        return real(exp_path)

    monkeypatch.setattr(fused_driver, "is_fused_experiment", counting)
    return asked


@pytest.mark.ray
def test_a_resumed_fused_sweep_continues_each_member_from_its_checkpoint(
    ray_local: None, s3_env: dict[str, str], digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On S3 (moto): the driver's state, the search algorithm's, every
    # checkpoint and result.json are written and read back through pyarrow.
    from regtune.platform.results.read import read_epochs
    from regtune.platform.tune.sweep import run_sweep

    spec = _member_sweep(
        "fused-resume",
        [0.05, 0.01],
        budget={"samples": 1, "max_epochs": 4},
        # Checkpoints at 2 and 4 only: the cohort trains ahead to them.
        checkpoint={"every": 2},
    )
    from regtune.platform.tune.fused_driver import ExperimentFiles, is_fused_experiment

    storage = f"s3://{BUCKET}/fused"
    # An earlier Tune run in a process leaves Tune's SIGINT handler behind (it
    # only sets a flag): Ctrl+C must still stop a fused sweep the first time.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        run_sweep(spec, storage=storage, name="resumed", callbacks=[_InterruptAt(3)])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert is_fused_experiment(f"{storage}/resumed")
    before = read_epochs(f"{storage}/resumed")
    assert before["iteration"].max() < 4  # interrupted before any member ended

    recorder = _InterruptAt(None)
    asked = _count_fused_lookups(monkeypatch)
    outcome = run_sweep(spec, storage=storage, name="resumed", resume=True, callbacks=[recorder])
    assert asked == [f"{storage}/resumed"]  # once, for every check of the resume
    assert len(outcome.trials) == 2
    epochs = read_epochs(outcome.path)
    for t in outcome.trials:
        assert (t.status, t.iterations) == ("finished", 4), t
        # Continued from its own epoch-2 checkpoint (both had asked for epoch 3,
        # so both were saved; the epochs trained ahead past it were not kept)...
        assert t.trial_id in recorder.restored_from
        restored_at = t.run_info["training_iteration"] - t.run_info["iterations_since_restore"]
        assert restored_at == 2
        rows = epochs[epochs["trial_id"] == t.trial_id].sort_values("iteration")
        assert list(rows["iteration"]) == [1, 2, 3, 4]
        # ...exactly: its last epoch is the solo run's fourth.
        _close(dict(rows.iloc[-1]), _solo_rows(digits, t.config, 4)[-1])
        # Its files on S3: params, one result line per epoch reported (the
        # interrupted run's third one again after the restore), and the
        # newest two checkpoints (epochs 2 and 4).
        assert t.checkpoint is not None and t.checkpoint.startswith(f"s3://{BUCKET}/fused/")
        files = ExperimentFiles(outcome.path)
        lines = files.read(f"trial_{t.trial_id}/result.json").decode().splitlines()
        reported = [json.loads(x)["training_iteration"] for x in lines]
        # Both sessions' lines (S3 cannot append: the file is rewritten whole).
        assert reported[:2] == [1, 2] and reported[-2:] == [3, 4], reported
        kept = files.loc.fs.get_file_info(
            pafs.FileSelector(files.path(f"trial_{t.trial_id}"), allow_not_found=True)
        )
        assert sorted(i.base_name for i in kept if i.type == pafs.FileType.Directory) == [
            "checkpoint_000000",
            "checkpoint_000001",
        ]


@pytest.mark.ray
def test_hyperband_pauses_fused_members_and_they_continue_from_their_checkpoints(
    ray_local: None, digits: Dataset, tmp_path: Path
) -> None:
    from regtune.platform.results.read import read_epochs
    from regtune.platform.tune.sweep import run_sweep

    # max_epochs 4, reduction factor 2: HyperBand's first bracket runs three
    # trials to 4 epochs; its second runs three to 2 epochs, pauses the first
    # two there and lets the best go on to 4 (lr 0.005, the fastest learner of
    # the three, paused and continued).
    spec = _member_sweep(
        "fused-hyperband",
        [0.05, 0.02, 0.01, 0.005, 0.002, 0.0003],
        scheduler={"kind": "hyperband", "reduction_factor": 2},
        searcher={"kind": "random", "seed": 0},
        budget={"samples": 1, "max_epochs": 4},
    )
    outcome = run_sweep(spec, storage=str(tmp_path))
    epochs = read_epochs(outcome.path)
    assert len(outcome.trials) == 6
    for t in outcome.trials:
        rows = epochs[epochs["trial_id"] == t.trial_id].sort_values("iteration")
        # Each epoch once, in order, across pauses.
        assert list(rows["iteration"]) == list(range(1, t.iterations + 1)), t
    # HyperBand paused members at its rungs; the ones it let go on continued
    # from their pause checkpoints (restored) to max_epochs, exactly.
    continued = [t for t in outcome.trials if t.run_info["iterations_since_restore"] < t.iterations]
    assert continued, [t.run_info for t in outcome.trials]
    best = max(continued, key=lambda t: t.iterations)
    assert best.iterations == 4
    last = epochs[(epochs["trial_id"] == best.trial_id) & (epochs["iteration"] == 4)].iloc[0]
    _close(dict(last), _solo_rows(digits, best.config, 4)[-1])
    # Members that were not let go on ended below max_epochs.
    assert any(t.iterations < 4 for t in outcome.trials)


class _KillCohortWorker(tune.Callback):
    """SIGKILLs the cohort worker's process once a member reported ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch: int | None = epoch
        self.killed = 0

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        import ray

        if self.epoch is None or result["training_iteration"] < self.epoch:
            return
        self.epoch = None
        (name,) = [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("regtune-cohorts-")
        ]
        manager = ray.get_actor(name, namespace=ray.get_runtime_context().namespace)
        for stats in ray.get(manager.worker_stats.remote()):
            if trial.trial_id in stats["members"]:
                os.kill(stats["pid"], signal.SIGKILL)
                self.killed += 1


@pytest.mark.ray
def test_members_of_a_killed_cohort_worker_continue_from_their_checkpoints(
    ray_local: None, digits: Dataset, tmp_path: Path
) -> None:
    from regtune.platform.results.read import read_epochs
    from regtune.platform.tune.sweep import run_sweep

    spec = _member_sweep(
        "fused-killed",
        [0.05, 0.01],
        budget={"samples": 1, "max_epochs": 4},
        checkpoint={"every": 2},
        # One retry is what the kill needs.
        failure={"max_retries": 1},
    )
    killer = _KillCohortWorker(3)
    outcome = run_sweep(spec, storage=str(tmp_path), callbacks=[killer])
    assert killer.killed == 1
    epochs = read_epochs(outcome.path)
    for t in outcome.trials:
        # Both members were on the killed worker: each went on in a new one
        # from its epoch-2 checkpoint and finished, its last epoch exact.
        assert (t.status, t.iterations) == ("finished", 4), t
        assert t.run_info["iterations_since_restore"] == 2, t.run_info
        rows = epochs[epochs["trial_id"] == t.trial_id].sort_values("iteration")
        assert sorted(set(rows["iteration"])) == [1, 2, 3, 4]
        _close(dict(rows.iloc[-1]), _solo_rows(digits, t.config, 4)[-1])


class _JumpingClock:
    """The fused driver's clock (its module's ``time``), moved an hour on by a
    callback once a member reported a given epoch."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import time as real

        from regtune.platform.tune import fused_driver

        self.offset = 0.0
        self.jumped = False
        clock = self

        class _Time:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def monotonic(self) -> float:
                return real.monotonic() + clock.offset

        monkeypatch.setattr(fused_driver, "time", _Time())

    def jump_at(self, epoch: int) -> tune.Callback:
        clock = self

        class _Jump(tune.Callback):
            def on_trial_result(
                self,
                iteration: int,
                trials: list[Any],
                trial: Any,
                result: dict[str, Any],
                **info: Any,
            ) -> None:
                if not clock.jumped and result["training_iteration"] >= epoch:
                    clock.offset, clock.jumped = 7200.0, True

        return _Jump()


@pytest.mark.ray
def test_a_time_limit_ends_running_members_at_a_checkpoint_of_their_last_epoch(
    ray_local: None, digits: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regtune.platform.tune.sweep import run_sweep
    from regtune.trainables.checkpoint import load_tree

    spec = _member_sweep(
        "fused-time",
        [0.05, 0.03, 0.02, 0.01, 0.005, 0.002],
        # Far more epochs and time than the test gives it: the driver's clock
        # jumps past the limit once a member reported epoch 3 (a wall-clock
        # limit would make the test depend on the machine's load).
        budget={"samples": 1, "max_epochs": 1000, "time_limit_s": 3600},
    )
    clock = _JumpingClock(monkeypatch)
    outcome = run_sweep(spec, storage=str(tmp_path), callbacks=[clock.jump_at(3)])
    assert clock.jumped
    trained = [t for t in outcome.trials if t.iterations > 0]
    assert trained and all(t.iterations < 1000 for t in outcome.trials)
    assert max(t.iterations for t in trained) >= 3
    # Members running when time ran out ended there; their checkpoint is the
    # state of the epoch they last reported (never a later one the cohort had
    # already trained), so its stored row and its weights belong together.
    for t in trained:
        assert t.status == "stopped early", t
        newest = max((Path(outcome.path) / f"trial_{t.trial_id}").glob("checkpoint_*"))
        assert load_tree(newest / "regtune_state")["epoch"] == t.iterations


def test_resuming_with_another_fuse_is_refused_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regtune.errors import SpecError
    from regtune.platform.tune.fused_driver import STATE_FILE
    from regtune.platform.tune.sweep import run_sweep
    from regtune.search_spaces import load_spec

    exp = tmp_path / "was-fused"
    exp.mkdir()
    state = exp / STATE_FILE
    state.write_text('{"format": 1, "search": 0, "trials": []}')
    spec = load_spec(
        {
            "name": "unfused",
            "dataset": "digits",
            "model": {"arch": "mlp", "width": 16, "depth": 1},
            "training": {"lr": {"grid": [0.05, 0.01]}},
            "objectives": [{"metric": "val_acc", "mode": "max"}],
            "budget": {"samples": 1, "max_epochs": 2},
        }
    )
    _refuse_ray(monkeypatch)
    asked = _count_fused_lookups(monkeypatch)
    with pytest.raises(SpecError, match=r"run with fused trials but this spec asks without"):
        run_sweep(spec, storage=str(tmp_path), name="was-fused", resume=True)
    assert asked == [str(exp)]
    assert state.read_text() == '{"format": 1, "search": 0, "trials": []}'
    assert sorted(p.name for p in exp.iterdir()) == [STATE_FILE]


def _refuse_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, the sweep starting Ray fails the test."""
    from regtune.platform.tune import sweep

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Ray was started before the resume was refused")

    monkeypatch.setattr(sweep, "ensure_ray", no_ray)


@pytest.mark.parametrize(
    ("stored", "width", "match"),
    [
        # An unfused (Tune) experiment; auto picks 16 for a width-16 MLP.
        ("tuner.pkl", 16, r"run without fused trials but this spec asks with"),
        # A fused one; auto picks 1 for a width-2048 MLP (153,610 parameters).
        (FUSED_STATE_FILE, 2048, r"run with fused trials but this spec asks without"),
    ],
    ids=["unfused-then-auto-fused", "fused-then-auto-unfused"],
)
def test_resuming_with_fuse_auto_of_the_other_kind_is_refused_before_ray_starts(
    data_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stored: str,
    width: int,
    match: str,
) -> None:
    from regtune.errors import SpecError
    from regtune.platform.tune.sweep import run_sweep

    exp = tmp_path / "was"
    exp.mkdir()
    (exp / stored).write_bytes(b"{}")
    spec = _member_sweep(
        "auto",
        [0.05, 0.01],
        model={"arch": "mlp", "width": width, "depth": 1},
        resources={"cpu": 2, "fuse": "auto"},
    )
    _refuse_ray(monkeypatch)
    asked = _count_fused_lookups(monkeypatch)
    with pytest.raises(SpecError, match=match) as info:
        run_sweep(spec, storage=str(tmp_path), name="was", resume=True)
    assert "nothing was changed" in str(info.value) and "resources.fuse" in str(info.value)
    assert asked == [str(exp)]
    assert sorted(p.name for p in exp.iterdir()) == [stored]
    assert (exp / stored).read_bytes() == b"{}"


@pytest.mark.parametrize(
    ("state", "match"),
    [
        # The state of a driver from before the searcher's state was versioned.
        ('{"format": 1, "trials": []}', r"is unreadable \(.*'search'"),
        ('{"format": 1, "search": "x", "trials": []}', r"is unreadable \(invalid literal"),
        ('{"format": 1, "search": null, "trials": []}', r"is unreadable"),
        ('{"format": 9, "search": 0, "trials": []}', r"is unreadable \(format 9, expected 1\)"),
        ('{"format": 1, "search": 3, "trials": []}', r"search state .*/3, which is missing"),
        ("{not json", r"is unreadable"),
        # Trial records unlike what the driver writes.
        ('{"format": 1, "search": 0, "trials": null}', r"is unreadable"),
        ('{"format": 1, "search": 0, "trials": [{}]}', r"is unreadable \(.*'trial_id'"),
        (
            '{"format": 1, "search": 0, "trials": [{"trial_id": "a", "config": [], '
            '"status": "RUNNING"}]}',
            r"is unreadable \(a trial record needs a trial_id and a config",
        ),
        (
            '{"format": 1, "search": 0, "trials": [{"trial_id": "a", "config": {}, '
            '"status": "RUNNING", "checkpoints": [["c", "x"]]}]}',
            r"is unreadable \(invalid literal",
        ),
    ],
)
def test_a_bad_fused_state_file_is_refused_by_name_on_resume(
    tmp_path: Path, state: str, match: str
) -> None:
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    from regtune.errors import RegtuneError
    from regtune.platform.tune.fused_driver import STATE_FILE, _Loop

    exp = tmp_path / "fused"
    exp.mkdir()
    (exp / STATE_FILE).write_text(state)
    loop = _Loop(
        _member_sweep("fused", [0.05]),
        manager=None,
        max_concurrent=2,
        exp_path=str(exp),
        name="fused",
        root=str(tmp_path),
        callbacks=[],
        search_alg=BasicVariantGenerator(),
        scheduler=FIFOScheduler(),
    )
    with pytest.raises(RegtuneError, match=match) as info:
        loop._restore()
    assert "nothing was changed" in str(info.value) and STATE_FILE in str(info.value)
    assert (exp / STATE_FILE).read_text() == state
    assert sorted(p.name for p in exp.iterdir()) == [STATE_FILE]


def test_cohort_load_counts_a_fused_member_at_a_fraction() -> None:
    assert cohort_load([]) == 0
    assert cohort_load(["w64", "w64", "w64"]) == 1 + 2 * FUSED_MEMBER_COST
    assert cohort_load(["w64", "w256", None, None]) == 4


def test_a_group_goes_to_an_idle_worker_then_a_new_one_then_its_own_shape() -> None:
    assert place_group([["a"], []], ["b"], slots=2) == 1
    assert place_group([["a"]], ["b"], slots=2) is None
    assert place_group([], ["b"], slots=1) is None
    # Every slot busy: b fuses with the b's although that worker holds more.
    assert place_group([["a", "c"], ["b", "b", "b"]], ["b"], slots=2) == 1
    # ... but not when it is far busier than what fusing saves.
    assert place_group([["a"], ["b", "c", "d", "e"]], ["b"], slots=2) == 0
    # Equal loads (3 each with it): the worker with fewer members.
    assert place_group([["a", "a", "a"], ["b", "c"]], [None], slots=2) == 1


# -- training ahead between decision epochs ----------------------------------------


def test_a_cohort_trains_ahead_to_the_next_stop_and_no_further(digits: Dataset) -> None:
    a, b = _config(0.01, epochs=4), _config(0.05, epochs=4, seed=1)
    worker = _worker(digits, {"a": (a, None), "b": (b, None)}, stops=[2, 4])

    async def until_rounds(n: int) -> None:
        for _ in range(500):
            if worker.rounds >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"rounds {worker.stats()} never reached {n}")

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(worker.step("a"), worker.step("b")))

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        rows: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        for tid, row in zip("ab", await both(), strict=True):
            rows[tid].append(row)
        # Nobody asks: the cohort trains epoch 2 (the next stop) on its own...
        await until_rounds(2)
        await asyncio.sleep(0.2)
        # ...and no further before both trials were let past it.
        assert worker.rounds == 2 and worker.stats()["ahead"] == {"a": 1, "b": 1}
        # A checkpoint between two stops would not be the reported epoch's: refused.
        with pytest.raises(RuntimeError, match="trained 1 epoch"):
            worker.state_files("a")
        for tid, row in zip("ab", await both(), strict=True):
            rows[tid].append(row)
        assert worker.rounds == 2  # handed from what was trained ahead
        worker.state_files("a")  # at a stop: the reported epoch's state
        worker.leave("b")  # e.g. ASHA stopped b at its rung
        rows["a"].append(await worker.step("a"))
        await until_rounds(4)
        rows["a"].append(await worker.step("a"))
        assert worker.rounds == 4
        return rows

    rows = asyncio.run(scenario())
    assert [r["epoch"] for r in rows["a"]] == [1.0, 2.0, 3.0, 4.0]
    assert rows["a"][-1][DONE] is True and [r[COHORT_SIZE] for r in rows["a"]] == [2, 2, 1, 1]
    for got, solo in zip(rows["a"], _solo_rows(digits, a, 4), strict=True):
        _close(got, solo)
    for got, solo in zip(rows["b"], _solo_rows(digits, b, 2), strict=True):
        _close(got, solo)


def _spec(**over: Any) -> Any:
    from regtune.search_spaces import load_spec

    raw: dict[str, Any] = {
        "name": "stops",
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 16, "depth": 1},
        "training": {"lr": {"loguniform": [1e-3, 1e-1]}},
        "objectives": [{"metric": "val_acc", "mode": "max"}],
        "scheduler": {"kind": "asha", "grace_period": 2, "reduction_factor": 3},
        "budget": {"samples": 4, "max_epochs": 30},
        "checkpoint": {"every": 0},
    }
    for key, value in over.items():  # scheduler and objectives replaced, others updated
        raw[key] = value if key in ("scheduler", "objectives") else {**raw[key], **value}
    return load_spec(raw)


def test_decision_epochs_are_the_rungs_checkpoints_and_the_end_or_none() -> None:
    from regtune.platform.tune.fused import decision_epochs

    assert decision_epochs(_spec()) == {2, 6, 18, 30}
    assert decision_epochs(_spec(checkpoint={"every": 10})) == {2, 6, 10, 18, 20, 30}
    assert decision_epochs(_spec(scheduler={"kind": "none"}, budget={"max_epochs": 12})) == {12}
    pareto = {"kind": "pareto-asha", "grace_period": 1, "reduction_factor": 2}
    two = [{"metric": "val_acc", "mode": "max"}, {"metric": "val_loss", "mode": "min"}]
    pareto_spec = _spec(scheduler=pareto, budget={"max_epochs": 8}, objectives=two)
    assert decision_epochs(pareto_spec) == {1, 2, 4, 8}
    # Decisions at epochs not known in advance: lockstep.
    assert decision_epochs(_spec(scheduler={"kind": "median"})) is None
    assert decision_epochs(_spec(scheduler={"kind": "hyperband"})) is None
    assert decision_epochs(_spec(budget={"time_limit_s": 60})) is None


def test_asha_milestones_are_rays_own_rungs() -> None:
    from ray.tune.schedulers import ASHAScheduler

    for grace, rf, max_t, brackets in [(2, 3, 30, 1), (1, 2, 3, 1), (1, 3, 27, 3), (2, 2.5, 40, 2)]:
        ray_asha = ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_t,
            grace_period=grace,
            reduction_factor=rf,
            brackets=brackets,
        )
        rungs = {math.ceil(m) for b in ray_asha._brackets for m, _ in b._rungs}
        assert asha_milestones(grace, rf, max_t, brackets) == rungs | {max_t}

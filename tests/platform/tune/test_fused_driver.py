"""The fused driver's bookkeeping, in this process: what it saves, what it
tells the cohort manager, and what it asks of the store.

The driver's loop (:class:`~regtune.platform.tune.fused_driver._Loop`) is
driven here without Ray: its search algorithm, scheduler and files are the
real ones (on a local folder, or on moto's S3); only the cohort manager's
actor handle is replaced by :class:`_ManagerCalls`, which records the calls
the driver sends it (the manager's side of them is tested against real
cohort workers in ``test_fused.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
from ray.exceptions import RayActorError
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import BasicVariantGenerator

from regtune.platform.results.files import ResultsLocation
from regtune.platform.tune.fused_driver import STATE_FILE, _Loop
from regtune.search_spaces import load_spec
from tests.conftest import BUCKET
from tests.platform.counting_fs import CountingFs

#: What the dead cohort worker's handle is to the driver here.
DEAD = "dead-worker"


class _ManagerCalls:
    """Stands in for the cohort manager's actor handle: ``manager.<method>.remote(...)``
    records ``(method, args)`` and returns a reference nobody waits on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, method: str) -> Any:
        calls = self.calls

        class _Method:
            def remote(self, *args: Any) -> object:
                calls.append((method, args))
                return object()

        return _Method()

    def reports_of(self, worker: Any) -> list[str]:
        """The calls that told the manager ``worker`` died: ``lost``, or a
        ``join`` carrying it."""
        return [
            m
            for m, args in self.calls
            if (m == "lost" and args == (worker,)) or (m == "join" and args[-1] == worker)
        ]


def _loop(exp: str, *, resume: bool = False, **sections: Any) -> tuple[_Loop, _ManagerCalls]:
    """A fused driver's loop over a grid of two digits MLPs, set up (trials
    admitted) with no cohort behind it."""
    from regtune.platform.tune.space import to_param_space

    spec = load_spec(
        {
            "name": "driver",
            "dataset": "digits",
            "model": {"arch": "mlp", "width": 16, "depth": 1},
            "training": {"lr": {"grid": [0.05, 0.01]}},
            "objectives": [{"metric": "val_acc", "mode": "max"}],
            "scheduler": {"kind": "none"},
            "searcher": {"kind": "grid"},
            "budget": {"samples": 1, "max_epochs": 3},
            "resources": {"cpu": 2, "fuse": 2},
            **sections,
        }
    )
    manager = _ManagerCalls()
    root, name = exp.rstrip("/").rsplit("/", 1)
    loop = _Loop(
        spec,
        manager=manager,
        max_concurrent=2,
        exp_path=exp,
        name=name,
        root=root,
        callbacks=[],
        search_alg=BasicVariantGenerator(),
        scheduler=FIFOScheduler(),
    )
    loop.setup(to_param_space(spec), resume=resume)
    loop._admit()
    return loop, manager


def _count_saves(loop: _Loop, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """Each save_state of ``loop`` from now on, as the trial statuses it wrote."""
    saved: list[dict[str, str]] = []
    real: Callable[[], None] = loop.save_state

    def save() -> None:
        real()
        state = json.loads(loop.files.read(STATE_FILE))
        saved.append({r["trial_id"]: r["status"] for r in state["trials"]})

    monkeypatch.setattr(loop, "save_state", save)
    return saved


def test_stop_now_saves_the_state_once_with_the_trial_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop, _ = _loop(str(tmp_path / "exp"))
    waiting, running = loop.ctrl.trials
    loop._start(running)  # joins (the manager's answer never comes here)
    saved = _count_saves(loop, monkeypatch)
    # A pending trial (HyperBand ending its bracket) and a running member
    # (ended at its last reported epoch): one save each, the trial ended in it.
    for trial in (waiting, running):
        loop.stop_now(trial)
        assert trial.status == "TERMINATED"
        assert len(saved) == 1 and saved[-1][trial.trial_id] == "TERMINATED", saved
        saved.clear()
    loop.stop_now(waiting)  # already ended: nothing
    assert saved == []


def _failed_member(loop: _Loop, manager: _ManagerCalls) -> Any:
    """The first trial started, its join answered with :data:`DEAD`."""
    trial = loop.ctrl.trials[0]
    loop._start(trial)
    member = loop.running[trial.trial_id]
    member.worker = DEAD
    manager.calls.clear()
    return member


def test_a_dead_worker_is_reported_once_by_the_retry_that_avoids_it(tmp_path: Path) -> None:
    loop, manager = _loop(str(tmp_path / "exp"), failure={"max_retries": 1})
    member = _failed_member(loop, manager)
    tid = member.trial.trial_id
    loop._failed(member, RayActorError())
    # The retry's join says the worker died (Ray may run it before any
    # separate report, so it must say so itself): no second report.
    assert manager.reports_of(DEAD) == ["join"], manager.calls
    assert [m for m, _ in manager.calls] == ["leave", "join"]
    assert loop.running[tid].gen == member.gen + 1


@pytest.mark.parametrize("case", ["no retries left", "out of time", "paused"])
def test_a_dead_worker_with_no_retry_now_is_reported_once_on_its_own(
    tmp_path: Path, case: str
) -> None:
    retries = 0 if case == "no retries left" else 1
    loop, manager = _loop(str(tmp_path / "exp"), failure={"max_retries": retries})
    member = _failed_member(loop, manager)
    loop.out_of_time = case == "out of time"
    then = "PAUSED" if case == "paused" else "PENDING"
    loop._failed(member, RayActorError(), then=then)
    assert manager.reports_of(DEAD) == ["lost"], manager.calls
    assert member.trial.trial_id not in loop.running
    expected = {"no retries left": "ERROR", "out of time": "PENDING", "paused": "PAUSED"}
    assert member.trial.status == expected[case]


def _counted(loop: _Loop) -> CountingFs:
    """Count ``loop``'s look-ups in its experiment folder from now on."""
    loc = loop.files.loc
    counter = CountingFs(loc.fs)
    loop.files.loc = ResultsLocation(
        fs=pafs.PyFileSystem(counter), root=loc.root, scheme=loc.scheme
    )
    return counter


def _result(epoch: int) -> dict[str, Any]:
    return {"training_iteration": epoch, "val_acc": 0.5}


def test_new_members_files_on_s3_are_written_without_looking_first(
    s3_env: dict[str, str],
) -> None:
    exp = f"s3://{BUCKET}/driver-files/exp"
    loop, _ = _loop(exp)
    first, second = loop.ctrl.trials
    counter = _counted(loop)
    # Trials of this session: nothing can be stored in their folders yet (the
    # experiment is new, or their ids are new to it), so their params and
    # first result lines go out with no look-up.
    loop._write_params(first)
    loop._append_result(first, _result(1))
    loop._append_result(first, _result(2))
    loop.files.flush()
    loop._write_params(first)  # the same trial started again: written already
    assert counter.lookups == []
    loop.save_state()
    params = loop.files.read(f"trial_{first.trial_id}/params.json")

    # Resumed: a restored trial's lines from the earlier session are kept (one
    # read, no look-up first); its params are looked for once and not
    # rewritten; a restored trial with nothing stored starts an empty file.
    again, _ = _loop(exp, resume=True)
    by_id = {t.trial_id: t for t in again.ctrl.trials}
    counter = _counted(again)
    for trial in (by_id[first.trial_id], by_id[second.trial_id]):
        again._write_params(trial)
        again._append_result(trial, _result(3))
        again._write_params(trial)
    again.files.flush()
    assert [p.rsplit("/", 1)[-1] for p in counter.lookups] == ["params.json"] * 2

    def epochs(trial: Any) -> list[int]:
        text = again.files.read(f"trial_{trial.trial_id}/result.json").decode()
        return [json.loads(line)["training_iteration"] for line in text.splitlines()]

    assert epochs(first) == [1, 2, 3] and epochs(second) == [3]
    assert again.files.read(f"trial_{first.trial_id}/params.json") == params
    stored = json.loads(again.files.read(f"trial_{second.trial_id}/params.json"))
    assert stored == json.loads(json.dumps(second.config))

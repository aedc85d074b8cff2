"""A fused sweep (``resources.fuse`` 2) interrupted with SIGINT (Ctrl+C), then resumed.

The fused driver stops on Ctrl+C in its own handler and saves its state with
the cut-off members still running. ``run_sweep`` could not tell that from a
time limit (whose cut-off members wait PENDING, unfinished too), so such a
sweep exited 0 and its summary said ``stopped early``. Now it behaves as an
unfused one (``test_sweep_interrupt.py``): exit 130, the trials ``running``
in the summary and the store, the ``--resume`` line printed, and the resume
trains each trial to its last epoch, one row per epoch.

The end to end run is here; :func:`_run_fused`'s handling of what the driver
reports, and the driver's report itself, are tested without Ray below.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import ray
import yaml

from regtune.platform.results import read_epochs
from regtune.platform.results.callback import ResultsCallback
from regtune.platform.results.files import locate
from regtune.platform.results.read import load_trial_states
from regtune.platform.results.trials import FINISHED, NOT_STARTED, RUNNING, STOPPED_EARLY
from regtune.platform.results.writer import FLUSH_ENV
from regtune.search_spaces import load_spec
from tests.platform.tune.stubs import TINY_SPEC
from tests.platform.tune.test_sweep_interrupt import (
    PATIENCE_S,
    _regtune,
    _rows_per_trial,
    _wait_for,
)

MAX_EPOCHS = 8
#: Two members in one cohort (fuse 2, one CPU), epochs of many small batches, a
#: checkpoint every 2 epochs: interrupted after both reported an epoch, both are
#: cut off before MAX_EPOCHS (the cohort trains ahead a little).
SPEC: dict[str, Any] = TINY_SPEC | {
    "name": "fused-interrupted",
    "training": {"batch_size": 8, "lr": 0.01, "robust_every": 0},
    "budget": {"samples": 2, "max_epochs": MAX_EPOCHS},
    "checkpoint": {"every": 2},
    "resources": {"cpu": 1, "fuse": 2},
}


@pytest.mark.ray
@pytest.mark.slow
def test_a_fused_sweep_interrupted_by_sigint_exits_130_and_resume_finishes_every_trial(
    ray_local: None, tmp_path: Path
) -> None:
    spec = tmp_path / "fused.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    runs = tmp_path / "runs"
    exp = runs / "fint"
    env = {
        **os.environ,
        FLUSH_ENV: "0",  # every epoch row on disk at once: the evidence waited for
        "PYTHONPATH": os.getcwd(),
        "RAY_AUTH_MODE": "token",
    }
    address = ray.get_runtime_context().gcs_address
    args = ["sweep", str(spec), "--storage", str(runs), "--address", address, "--name", "fint"]
    proc = subprocess.Popen(
        _regtune(*args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for("epoch of both trials", lambda: len(_rows_per_trial(exp)) == 2, proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=PATIENCE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-3000:]
    assert "time_limit_s" not in stdout
    lines = stderr.strip().splitlines()
    assert lines[-2].startswith("interrupted: sweep fint stopped with 2 trials unfinished"), stderr
    resume = shlex.split(lines[-1])
    assert resume == ["regtune", *args, "--resume"]
    assert "2 trials (2 running)" in stdout, stdout
    assert STOPPED_EARLY not in stdout

    states = load_trial_states(locate(str(exp))).states
    assert len(states) == 2
    assert {s.status for s in states.values()} == {RUNNING}, states
    cut = _rows_per_trial(exp)
    assert all(n < MAX_EPOCHS for n in cut.values()), cut  # really cut off

    resumed = subprocess.run(
        _regtune(*resume[1:]),
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE_S * 2,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "2 trials (2 finished)" in resumed.stdout, resumed.stdout
    states = load_trial_states(locate(str(exp))).states
    assert {s.status for s in states.values()} == {FINISHED}
    epochs = read_epochs(str(exp))
    assert not epochs.duplicated(["trial_id", "iteration"]).any()
    for tid, rows in epochs.groupby("trial_id"):
        assert sorted(rows["iteration"]) == list(range(1, MAX_EPOCHS + 1)), tid


# -- without Ray: what _run_fused makes of the driver's report -------------------------


def _spec() -> Any:
    return load_spec(SPEC)


def _row(tid: str, epochs: int) -> Any:
    """One trial as the fused driver's ``outcome_rows`` gives it."""
    metrics = {"training_iteration": epochs, "trial_id": tid}
    if epochs:
        metrics["val_acc"] = 0.5
    return SimpleNamespace(
        metrics=metrics, config={}, path=f"/nowhere/trial_{tid}", error=None, checkpoint=None
    )


def _run_fused_with(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, interrupted: bool
) -> tuple[Any, list[list[str]], list[str]]:
    """``_run_fused`` over a driver that reports ``interrupted`` with trials ``a``
    (2 epochs) and ``b`` (none), both left unfinished as the results callback saw
    them: the outcome, what ``on_interrupt`` got, and the fused set-up's calls."""
    from regtune.platform.results import callback as callback_module
    from regtune.platform.tune import fused_driver
    from regtune.platform.tune.sweep import _run_fused

    results = ResultsCallback.__new__(ResultsCallback)
    results.unfinished = frozenset({"a", "b"})
    monkeypatch.setattr(callback_module, "results_callbacks", lambda spec, exp: [results])

    def fake_run(spec: Any, **kw: Any) -> Any:
        assert results in kw["callbacks"]
        return fused_driver.FusedRun([_row("a", 2), _row("b", 0)], interrupted)

    monkeypatch.setattr(fused_driver, "run_fused_sweep", fake_run)
    calls: list[str] = []
    fused = SimpleNamespace(manager=None, max_concurrent=2, stop=lambda: calls.append("stop"))
    reported: list[list[str]] = []
    outcome = _run_fused(
        _spec(),
        fused,
        name="fint",
        root=str(tmp_path),
        exp_path=str(tmp_path / "fint"),
        resume=False,
        callbacks=[],
        on_progress=None,
        on_interrupt=reported.append,
        started=0.0,
    )
    return outcome, reported, calls


def test_run_fused_reports_an_interrupted_driver_and_keeps_its_trials_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outcome, reported, calls = _run_fused_with(monkeypatch, tmp_path, interrupted=True)
    assert reported == [["a", "b"]]
    assert {t.trial_id: t.status for t in outcome.trials} == {"a": RUNNING, "b": NOT_STARTED}
    assert calls == ["stop"]


def test_run_fused_does_not_take_a_time_limit_for_an_interrupt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A time limit leaves the driver's cut-off members unfinished (PENDING) too.
    outcome, reported, _ = _run_fused_with(monkeypatch, tmp_path, interrupted=False)
    assert reported == []
    assert {t.trial_id: t.status for t in outcome.trials} == {
        "a": STOPPED_EARLY,
        "b": NOT_STARTED,
    }


def _driver_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, sigint: bool) -> Any:
    """``run_fused_sweep`` whose loop starts its members (a cohort manager that
    only records calls) and then, with ``sigint``, gets Ctrl+C; no Ray."""
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    from regtune.platform.tune import fused_driver
    from regtune.platform.tune.space import to_param_space
    from tests.platform.tune.test_fused_driver import _ManagerCalls

    def run(loop: Any) -> None:
        loop._fill()
        if sigint:
            os.kill(os.getpid(), signal.SIGINT)  # the driver's own handler takes it

    monkeypatch.setattr(fused_driver._Loop, "run", run)
    spec = _spec()
    return fused_driver.run_fused_sweep(
        spec,
        manager=_ManagerCalls(),
        max_concurrent=2,
        exp_path=str(tmp_path / "fint"),
        name="fint",
        root=str(tmp_path),
        resume=False,
        callbacks=[],
        search_alg=BasicVariantGenerator(),
        scheduler=FIFOScheduler(),
        param_space=to_param_space(spec),
    )


def test_the_fused_driver_says_whether_ctrl_c_stopped_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json

    from regtune.platform.tune.fused_driver import STATE_FILE

    stopped = _driver_run(monkeypatch, tmp_path / "int", sigint=True)
    assert stopped.interrupted is True
    assert len(stopped.rows) == 2
    # Saved with its members still running: --resume continues them.
    state = json.loads((tmp_path / "int" / "fint" / STATE_FILE).read_text())
    assert {r["status"] for r in state["trials"]} == {"RUNNING"}
    ended = _driver_run(monkeypatch, tmp_path / "end", sigint=False)
    assert ended.interrupted is False

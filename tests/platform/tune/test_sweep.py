"""Sweeps on a real local Ray: every scheduler and searcher, several objectives;
and what is refused before Ray starts."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from regtune.errors import SpecError
from regtune.platform.storage import BAD_STORAGE, STORAGE_ENV
from regtune.platform.tune.sweep import (
    EXISTS_MSG,
    NO_EXPERIMENT_OF_SPEC_MSG,
    NOTHING_TO_RESUME_MSG,
    resolve_name,
    run_sweep,
)
from regtune.search_spaces import load_spec

TINY: dict[str, Any] = {
    "name": "tiny",
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "training": {"batch_size": 256, "lr": 0.01, "robust_every": 0},
    "penalties": {"l2": {"loguniform": [1e-6, 1e-2]}},
    "objectives": [{"metric": "val_acc", "mode": "max"}],
    "budget": {"samples": 3, "max_epochs": 3},
    "resources": {"cpu": 1},
}


def _spec(**over: Any) -> Any:
    return load_spec({**TINY, **over})


#: One trial at a time where the scheduler does not need a population at
#: once: the trials (a few batches each) then share one worker process,
#: whose start-up is most of a tiny sweep's cost. Hyperband pauses trials
#: until their bracket catches up and PBT exploits trials running beside
#: them, so those two run two at a time.
ONE_AT_A_TIME = {"max_concurrent": 1}


@pytest.mark.parametrize(
    ("scheduler", "searcher", "extra"),
    [
        (
            {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
            {"kind": "hyperopt", **ONE_AT_A_TIME},
            {},
        ),
        ({"kind": "hyperband"}, {"kind": "random", "seed": 1}, {}),
        ({"kind": "median", "grace_period": 1}, {"kind": "random", "seed": 2, **ONE_AT_A_TIME}, {}),
        (
            {"kind": "pbt", "perturbation_interval": 1},
            {"kind": "random", "seed": 3},
            {"checkpoint": {"every": 1}},
        ),
    ],
    ids=["asha-hyperopt", "hyperband-random", "median-random", "pbt-random"],
)
@pytest.mark.ray
def test_scheduler_and_searcher(
    ray_local: None,
    tmp_path: Path,
    scheduler: dict[str, Any],
    searcher: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    spec = _spec(scheduler=scheduler, searcher=searcher, **extra)
    _assert_sweep_ran(spec, run_sweep(spec, storage=str(tmp_path)))


def _assert_sweep_ran(spec: Any, outcome: Any) -> None:
    """Every trial of ``spec`` ran without error within its epoch budget, the
    best one learned something, and the finished ones scored the test split."""
    assert len(outcome.trials) == spec.n_trials
    assert all(t.status != "error" for t in outcome.trials)
    assert all(1 <= t.iterations <= spec.budget.max_epochs for t in outcome.trials)
    best = outcome.best
    assert best is not None and 0.1 < best.objectives["val_acc"] <= 1.0
    assert Path(outcome.path).is_dir()
    if spec.searcher.kind == "grid":
        assert sorted(t.params["penalties.l2"] for t in outcome.trials) == [0.0, 1e-3]
    # Finished trials scored the test split.
    assert any("test_acc" in t.metrics for t in outcome.trials if t.status == "finished")


@pytest.mark.ray
def test_multi_objective_pareto_asha(ray_local: None, tmp_path: Path) -> None:
    spec = _spec(
        name="multi",
        objectives=[{"metric": "val_acc", "mode": "max"}, {"metric": "sparsity", "mode": "max"}],
        penalties={"l1": {"loguniform": [1e-6, 1e-1]}},
        scheduler={"kind": "pareto-asha", "grace_period": 1, "reduction_factor": 2},
        searcher={"kind": "random", "seed": 0, **ONE_AT_A_TIME},
        budget={"samples": 4, "max_epochs": 4},
    )
    outcome = run_sweep(spec, storage=str(tmp_path))
    assert len(outcome.trials) == 4
    assert outcome.front, "a multi-objective sweep reports its Pareto front"
    front = [outcome.trials[i] for i in outcome.front]
    others = [t for i, t in enumerate(outcome.trials) if i not in outcome.front]
    for t in others:  # every trial off the front is dominated by one on it
        assert any(
            f.objectives["val_acc"] >= t.objectives["val_acc"]
            and f.objectives["sparsity"] >= t.objectives["sparsity"]
            for f in front
        )
    assert all(not math.isnan(v) for t in front for v in t.objectives.values())


@pytest.mark.ray
def test_each_unnamed_sweep_is_a_new_experiment_and_none_is_overwritten(
    ray_local: None, tmp_path: Path
) -> None:
    """Also the FIFO + grid sweep of the scheduler/searcher matrix (each of the
    two sweeps is one: a sweep's cost is mostly its worker's start-up)."""
    spec = _spec(
        name="twice",
        scheduler={"kind": "none"},
        searcher={"kind": "grid", **ONE_AT_A_TIME},
        penalties={"l2": {"grid": [0.0, 1e-3]}},
        budget={"samples": 1, "max_epochs": 2},
    )
    with pytest.raises(SpecError) as info:
        run_sweep(spec, storage=str(tmp_path), resume=True)
    assert str(info.value) == NO_EXPERIMENT_OF_SPEC_MSG.format(spec="twice", root=str(tmp_path))
    first = run_sweep(spec, storage=str(tmp_path))
    second = run_sweep(spec, storage=str(tmp_path))
    for outcome in (first, second):
        _assert_sweep_ran(spec, outcome)
    assert first.name != second.name
    assert all(re.fullmatch(r"twice-\d{8}-\d{6}-[0-9a-f]{4}", o.name) for o in (first, second))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])
    # --resume without --name continues the newest one (here: nothing left to run).
    assert resolve_name(spec, resume=True, storage=str(tmp_path)) == max(first.name, second.name)

    # An existing experiment named again (without --resume) is refused, untouched.
    before = sorted(p.name for p in Path(first.path).iterdir())
    with pytest.raises(SpecError) as info:
        run_sweep(spec, storage=str(tmp_path), name=first.name)
    assert str(info.value) == EXISTS_MSG.format(name=first.name, path=first.path)
    assert sorted(p.name for p in Path(first.path).iterdir()) == before
    # --resume of a name that does not exist is refused, and creates nothing.
    with pytest.raises(SpecError) as info:
        run_sweep(spec, storage=str(tmp_path), name="other", resume=True)
    other = f"{tmp_path}/other"
    assert str(info.value) == NOTHING_TO_RESUME_MSG.format(name="other", path=other)
    assert not Path(other).exists()


@pytest.mark.ray
def test_fractional_gpu_packs_four_trials_on_one_gpu(ray_local: None, tmp_path: Path) -> None:
    import ray

    if ray.cluster_resources().get("GPU", 0) < 1:
        pytest.skip("the session cluster declares no GPU")
    from ray.util import placement_group_table

    seen: list[int] = []
    held: list[list[float]] = []

    def watch(snapshot: dict[str, Any]) -> None:
        seen.append(snapshot["running"])
        # The GPU shares reserved at this moment by the trials' placement groups.
        created = [g for g in placement_group_table().values() if g["state"] == "CREATED"]
        held.append([b["GPU"] for g in created for b in g["bundles"].values() if "GPU" in b])

    spec = _spec(
        name="gpu-quarter",
        # Long enough epochs that all four overlap, on a busy machine too.
        model={"arch": "cnn", "width": 16},
        penalties={"l2": {"grid": [0.0, 1e-5, 1e-4, 1e-3]}},
        searcher={"kind": "grid"},
        scheduler={"kind": "none"},
        budget={"samples": 1, "max_epochs": 5},
        resources={"cpu": 0.5, "gpu": 0.25},
    )
    outcome = run_sweep(spec, storage=str(tmp_path), on_progress=watch)
    assert all(t.status == "finished" for t in outcome.trials)
    # A quarter GPU each: all four trials' reservations fit on the one GPU at
    # once (whether all four worker processes are up at the same moment
    # depends on the machine's load, so that is not asked), and more than one
    # trial ran at a time.
    assert max(held, key=len) == [0.25] * 4
    assert max(seen) >= 2


# --- refused before Ray starts (no Ray needed) ---------------------------------


def _refuse_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, the sweep starting Ray fails the test."""
    from regtune.platform.tune import sweep

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Ray was started before the bad storage was refused")

    monkeypatch.setattr(sweep, "ensure_ray", no_ray)


def test_a_storage_root_nothing_can_be_written_to_is_refused_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_ray(monkeypatch)
    afile = tmp_path / "afile"
    afile.write_text("")
    spec = _spec(budget={"samples": 1, "max_epochs": 1})
    cases = [
        (str(afile), "it is a file, not a folder"),
        ("foo://bar/x", "Unrecognized filesystem type in URI: foo://bar/x"),
        ("s3:///x", "Missing bucket name in S3 URI"),
    ]
    for storage, reason in cases:
        expected = BAD_STORAGE.format(option="--storage", root=storage, reason=reason)
        for resume in (False, True):
            with pytest.raises(SpecError) as info:
                run_sweep(spec, storage=storage, resume=resume)
            assert str(info.value) == expected
    # From $REGTUNE_STORAGE, the variable is named.
    monkeypatch.setenv(STORAGE_ENV, str(afile))
    with pytest.raises(SpecError) as info:
        run_sweep(spec, name="x")
    assert str(info.value) == BAD_STORAGE.format(
        option=STORAGE_ENV, root=str(afile), reason="it is a file, not a folder"
    )
    assert afile.read_text() == "" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_the_sweep_command_exits_2_on_a_bad_storage_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from regtune.platform.cli import app

    _refuse_ray(monkeypatch)
    afile = tmp_path / "afile"
    afile.write_text("")
    for extra in ([], ["--resume"]):
        args = ["sweep", "quickstart", "--storage", str(afile), "--set", "budget.samples=1"]
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 2, (result.output, result.exception)
        assert f"--storage '{afile}': not usable as the storage root" in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""

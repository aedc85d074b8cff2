"""A trial that fails on a reused actor before its first report is itself in
Tune's results: its own id and config, not those of the trial the actor ran
before (which the sweep summary showed as a second row, marked error)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ray import tune

from regtune.platform.tune.progress import ProgressCallback, claim_default_result


def _trial(trial_id: str, config: dict[str, Any], reported: dict[str, Any], default: Any) -> Any:
    """A stand-in for Tune's Trial: ``last_result`` as Tune's property gives it."""
    meta = SimpleNamespace(last_result=reported)

    class _Trial:
        run_metadata = meta

        @property
        def last_result(self) -> dict[str, Any]:
            result = meta.last_result
            if not {k for k in result if k != "trial_id"}:
                result = default or result
            result.setdefault("trial_id", trial_id)
            return dict(result)

    t = _Trial()
    t.trial_id = trial_id  # type: ignore[attr-defined]
    t.config = config  # type: ignore[attr-defined]
    return t


def test_a_default_result_of_another_trial_is_given_the_trials_own_id_and_config() -> None:
    stale = {"trial_id": "x_00002", "config": {"lr": 0.1}, "pid": 7}
    trial = _trial("x_00003", {"lr": 0.5}, {}, stale)
    claim_default_result(trial)
    assert trial.last_result == {"trial_id": "x_00003", "config": {"lr": 0.5}, "pid": 7}
    # Its own default, or a result it reported, is left as is.
    own = _trial("x_00004", {"lr": 0.5}, {}, {"trial_id": "x_00004", "config": {"lr": 0.5}})
    claim_default_result(own)
    assert own.run_metadata.last_result == {}
    reported = {"trial_id": "x_00005", "config": {"lr": 0.2}, "training_iteration": 1}
    ran = _trial("x_00005", {"lr": 0.2}, reported, stale)
    claim_default_result(ran)
    assert ran.last_result == reported


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_a_trial_failing_in_reset_config_is_itself_in_the_results(
    ray_local: None, tmp_path: Path
) -> None:
    class _Reused(tune.Trainable):
        # Defined here, it goes to the trial worker by value.
        def step(self) -> dict[str, Any]:
            return {"score": float(self.config["x"]), "done": True}

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            pass

        def load_checkpoint(self, checkpoint: Any) -> None:
            pass

        def reset_config(self, new_config: dict[str, Any]) -> bool:
            if new_config["x"] == 2:
                raise ValueError("x=2 cannot run")
            return True

    progress = ProgressCallback(objectives=[("score", "max")], total=2, max_t=1)
    tuner = tune.Tuner(
        _Reused,
        param_space={"x": tune.grid_search([1, 2])},
        # One trial at a time on one reused actor: the second trial's
        # reset_config runs in the first one's actor.
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="reused", verbose=0, callbacks=[progress]
        ),
    )
    grid = tuner.fit()
    assert grid.num_errors == 1
    results = [grid[i] for i in range(len(grid))]
    ids = [r.metrics["trial_id"] for r in results]
    assert len(set(ids)) == 2, ids  # not the first trial's id twice
    (failed,) = [r for r in results if r.error is not None]
    assert failed.config == {"x": 2}
    assert failed.metrics["trial_id"] in Path(failed.path).name
    (ran,) = [r for r in results if r.error is None]
    assert ran.config == {"x": 1}
    assert ran.metrics["score"] == 1.0

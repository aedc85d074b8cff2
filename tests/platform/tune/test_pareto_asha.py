"""ParetoASHA driven with hand-made trial histories, plus one real Ray Tune run."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from regtune.errors import SpecError
from regtune.platform.analysis import pareto
from regtune.platform.analysis.pareto import pareto_front, to_minimization
from regtune.platform.tune import pareto_asha
from regtune.platform.tune.pareto_asha import ParetoASHA

CONTINUE = TrialScheduler.CONTINUE
STOP = TrialScheduler.STOP
OBJECTIVES = [("loss", "min"), ("acc", "max")]


def _scheduler(**kwargs: Any) -> ParetoASHA:
    settings: dict[str, Any] = {
        "objectives": OBJECTIVES,
        "max_t": 4,
        "grace_period": 1,
        "reduction_factor": 2,
    }
    settings.update(kwargs)
    return ParetoASHA(**settings)


def _trial(scheduler: ParetoASHA) -> Trial:
    # A stub Trial is a real Trial that needs no registered trainable or cluster.
    trial = Trial("__fake", stub=True)
    scheduler.on_trial_add(None, trial)
    return trial


def _result(iteration: int, f1: float, f2: float) -> dict[str, Any]:
    """A result whose minimisation-space point is (f1, f2): loss = f1, acc = 1 - f2."""
    return {"training_iteration": iteration, "loss": f1, "acc": 1.0 - f2, "done": False}


def _report(scheduler: ParetoASHA, trial: Trial, iteration: int, f1: float, f2: float) -> str:
    return scheduler.on_trial_result(None, trial, _result(iteration, f1, f2))


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objectives": []}, pareto.MSG_NO_OBJECTIVES.format(value=[])),
        (
            {"objectives": [("loss", "down")]},
            pareto.MSG_BAD_MODE.format(
                index=0, value="down", metric="loss", allowed="'min', 'max'"
            ),
        ),
        ({"time_attr": ""}, pareto_asha.MSG_BAD_TIME_ATTR.format(value="")),
        ({"max_t": 0}, pareto.MSG_BAD_INT.format(name="max_t", value=0, minimum=1)),
        ({"grace_period": 5}, pareto.MSG_MAX_T_BELOW_GRACE.format(max_t=4, grace=5)),
        (
            {"reduction_factor": 1},
            pareto.MSG_BAD_INT.format(name="reduction_factor", value=1, minimum=2),
        ),
        (
            {"brackets": 0},
            pareto_asha.MSG_BAD_BRACKETS.format(value=0, maximum=3, levels=[1, 2]),
        ),
        (
            {"brackets": 4},
            pareto_asha.MSG_BAD_BRACKETS.format(value=4, maximum=3, levels=[1, 2]),
        ),
        ({"seed": -1}, pareto_asha.MSG_BAD_SEED.format(value=-1)),
    ],
)
def test_invalid_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        _scheduler(**kwargs)
    assert str(info.value) == message


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        ParetoASHA(OBJECTIVES)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- promotion rule


def test_promotion_on_a_hand_made_rung_history() -> None:
    """Reduction factor 2, rungs at iterations 1 and 2, max_t 4.

    Points are (f1, f2) in minimisation space; A, B, C, D, F lie on the line
    f1 + f2 = 1 (one front), X, Y, Z are dominated by A. A trial continues iff
    fewer than n/2 of the n records at the rung rank strictly ahead of it.
    """
    scheduler = _scheduler()
    trials = {name: _trial(scheduler) for name in "ABXDYZCF"}
    history = [
        ("A", 0.0, 1.0, CONTINUE),  # first at the rung
        ("B", 1.0, 0.0, CONTINUE),  # front {A, B}, both boundaries: 0 ahead
        ("X", 1.2, 1.2, STOP),  # dominated: 2 ahead of 3
        ("D", 0.9, 0.1, STOP),  # first front, but A and B ahead: 2 of 4
        ("Y", 1.5, 1.5, STOP),
        ("Z", 2.0, 2.0, STOP),
        # First front, crowding 1.8 > D's 1.0: only A and B ahead of 7 records.
        ("C", 0.5, 0.5, CONTINUE),
        # First front but crowded next to D and B (crowding 0.2): A, B, C, D ahead of 8.
        ("F", 0.95, 0.08, STOP),
    ]
    for name, f1, f2, expected in history:
        assert _report(scheduler, trials[name], 1, f1, f2) == expected, name
    assert scheduler.num_stopped == 5
    assert sorted(scheduler.rung_records()[1]) == sorted(t.trial_id for t in trials.values())

    # Survivors go on to the rung at 2; iteration 3 is between rungs; 4 is max_t.
    assert _report(scheduler, trials["C"], 2, 0.4, 0.4) == CONTINUE  # first at rung 2
    assert _report(scheduler, trials["A"], 2, 0.5, 0.9) == STOP  # dominated by C there
    assert _report(scheduler, trials["B"], 2, 0.9, 0.0) == CONTINUE  # trade-off with C
    assert _report(scheduler, trials["C"], 3, 9.0, 9.0) == CONTINUE  # no rung, no judgement
    assert _report(scheduler, trials["C"], 4, 0.3, 0.3) == STOP  # finished
    assert scheduler.num_stopped == 6
    assert sorted(scheduler.rung_records()[2]) == sorted(
        [trials["A"].trial_id, trials["B"].trial_id, trials["C"].trial_id]
    )


def test_mixed_modes_are_read_from_raw_metrics() -> None:
    # reduction factor 2: the second trial at a rung continues iff not beaten.
    scheduler = _scheduler()
    first, better, worse = _trial(scheduler), _trial(scheduler), _trial(scheduler)
    raw = lambda loss, acc: {"training_iteration": 1, "loss": loss, "acc": acc}  # noqa: E731
    assert scheduler.on_trial_result(None, first, raw(0.5, 0.80)) == CONTINUE
    # Higher accuracy at the same loss is better, not worse.
    assert scheduler.on_trial_result(None, better, raw(0.5, 0.90)) == CONTINUE
    assert scheduler.on_trial_result(None, worse, raw(0.5, 0.70)) == STOP
    np.testing.assert_array_equal(scheduler.rung_records()[1][better.trial_id], [0.5, -0.9])


def test_nan_result_is_the_worst_trial() -> None:
    scheduler = _scheduler()
    good, diverged = _trial(scheduler), _trial(scheduler)
    assert _report(scheduler, good, 1, 5.0, 5.0) == CONTINUE
    # Best loss, but accuracy NaN: without the whole-point rule it would be a
    # boundary point of the front and continue.
    assert _report(scheduler, diverged, 1, 0.0, math.nan) == STOP


def test_missing_objective_names_metric_and_available_keys() -> None:
    scheduler = _scheduler()
    trial = _trial(scheduler)
    result = {"training_iteration": 1, "loss": 0.5, "val_acc": 0.9}
    with pytest.raises(SpecError) as info:
        scheduler.on_trial_result(None, trial, result)
    assert str(info.value) == pareto.MSG_MISSING_METRIC.format(
        metric="acc", available="loss, training_iteration, val_acc"
    )


def test_missing_or_bad_time_attr_is_an_error() -> None:
    scheduler = _scheduler(time_attr="epoch")
    trial = _trial(scheduler)
    with pytest.raises(SpecError) as info:
        scheduler.on_trial_result(None, trial, _result(1, 0.1, 0.1))
    assert str(info.value) == pareto_asha.MSG_MISSING_TIME.format(
        time_attr="epoch", available="acc, done, loss, training_iteration"
    )
    with pytest.raises(SpecError) as info:
        scheduler.on_trial_result(None, trial, {"epoch": math.nan, "loss": 1.0, "acc": 0.0})
    assert str(info.value) == pareto_asha.MSG_BAD_TIME.format(time_attr="epoch", value=math.nan)


def test_result_without_metrics_is_not_judged() -> None:
    # What Tune passes for a trainable that returned without reporting.
    scheduler = _scheduler()
    trial = _trial(scheduler)
    assert scheduler.on_trial_result(None, trial, {"done": True, "trial_id": "x"}) == CONTINUE
    scheduler.on_trial_complete(None, trial, {"done": True, "trial_id": "x"})
    assert scheduler.rung_records() == {1: {}, 2: {}}


def test_time_jumping_past_rungs_is_judged_at_the_highest_one() -> None:
    scheduler = _scheduler(max_t=100, reduction_factor=3)  # rungs 1, 3, 9, 27, 81
    trial = _trial(scheduler)
    assert _report(scheduler, trial, 10, 1.0, 1.0) == CONTINUE
    records = scheduler.rung_records()
    assert [level for level, recorded in records.items() if recorded] == [9]


# --------------------------------------------------------------------------- bookkeeping


def test_on_trial_complete_records_once_and_forgets_the_trial() -> None:
    scheduler = _scheduler()
    finished, later = _trial(scheduler), _trial(scheduler)
    # Stopped by something else (e.g. a Tune Stopper) before the scheduler saw
    # iteration 1: its last result is still recorded at the rung.
    scheduler.on_trial_complete(None, finished, _result(1, 0.1, 0.1))
    assert list(scheduler.rung_records()[1]) == [finished.trial_id]
    # Completion after a judged rung does not record twice.
    scheduler.on_trial_complete(None, finished, _result(1, 5.0, 5.0))
    np.testing.assert_array_equal(scheduler.rung_records()[1][finished.trial_id], [0.1, -0.9])
    # The recorded trial counts for those that come later.
    assert _report(scheduler, later, 1, 0.2, 0.2) == STOP


def test_on_trial_remove_and_retry_keep_state_consistent() -> None:
    scheduler = _scheduler(brackets=3, seed=1)
    trial = _trial(scheduler)
    bracket = scheduler._trial_bracket[trial.trial_id]
    scheduler.on_trial_error(None, trial)
    scheduler.on_trial_add(None, trial)  # Tune re-adds a retried trial
    assert scheduler._trial_bracket[trial.trial_id] == bracket
    scheduler.on_trial_remove(None, trial)
    assert trial.trial_id not in scheduler._trial_bracket


def test_brackets_draw_is_seeded_and_uses_every_bracket() -> None:
    def draws(seed: int) -> list[int]:
        scheduler = _scheduler(max_t=9, reduction_factor=3, brackets=2, seed=seed)
        return [scheduler._trial_bracket[_trial(scheduler).trial_id] for _ in range(30)]

    assert draws(0) == draws(0)
    assert set(draws(0)) == {0, 1}


def test_bracket_one_starts_at_the_second_rung() -> None:
    scheduler = _scheduler(max_t=9, reduction_factor=3, brackets=2)
    scheduler._trial_bracket["late"] = 1
    trial = Trial("__fake", stub=True, trial_id="late")
    assert _report(scheduler, trial, 1, 9.0, 9.0) == CONTINUE
    assert scheduler.rung_records(1) == {3: {}}
    assert _report(scheduler, trial, 3, 9.0, 9.0) == CONTINUE
    assert list(scheduler.rung_records(1)[3]) == ["late"]


def test_debug_string_counts_records() -> None:
    scheduler = _scheduler()
    for f1 in (0.1, 0.2, 0.3):
        _report(scheduler, _trial(scheduler), 1, f1, f1)
    text = scheduler.debug_string()
    assert "objectives=loss (min), acc (max)" in text
    assert "num_stopped=2" in text
    assert "Bracket 0: 1: 3 recorded | 2: 0 recorded" in text


def test_save_restore_and_pickle_keep_the_rungs(tmp_path: Path) -> None:
    scheduler = _scheduler()
    first = _trial(scheduler)
    _report(scheduler, first, 1, 0.1, 0.1)
    path = tmp_path / "scheduler.pkl"
    scheduler.save(str(path))
    restored = _scheduler()
    restored.restore(str(path))
    # Tune cloudpickles the scheduler inside tuner.pkl: it must survive pickling.
    copied = pickle.loads(pickle.dumps(scheduler))
    for candidate in (restored, copied):
        worse = Trial("__fake", stub=True)
        candidate.on_trial_add(None, worse)
        assert _report(candidate, worse, 1, 0.2, 0.2) == STOP


# --------------------------------------------------------------------------- Tune wiring


def test_set_search_properties() -> None:
    scheduler = _scheduler()
    assert scheduler.set_search_properties(None, None)
    assert scheduler.set_search_properties("acc", "max")
    assert scheduler.set_search_properties("loss", None)
    assert scheduler.metric is None  # Tune's strict metric check stays off
    with pytest.raises(SpecError) as info:
        scheduler.set_search_properties("acc", "min")
    assert str(info.value) == pareto_asha.MSG_SEARCH_METRIC.format(
        metric="acc", mode="min", objectives=(("loss", "min"), ("acc", "max"))
    )
    with pytest.raises(SpecError, match="'val_loss'"):
        scheduler.set_search_properties("val_loss", "min")


# Two Pareto-optimal configs A and B, and six C configs that A and B dominate at
# every iteration (larger y is worse, so each C is also dominated by the Cs
# before it). Minimisation points: (x + 1/t + y, 1 - x + 1/t + y).
E2E_CONFIGS: list[dict[str, Any]] = [
    {"name": "A", "x": 0.2, "y": 0.0},
    {"name": "B", "x": 0.8, "y": 0.0},
] + [{"name": f"C{k}", "x": 0.5, "y": round(0.3 + 0.1 * k, 2)} for k in range(1, 7)]
E2E_MAX_T = 9


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_real_tune_run_stops_dominated_trials(ray_local: None, tmp_path: Path) -> None:
    def _two_objective_trainable(config: dict[str, Any]) -> None:
        # Defined here, it goes to the trial workers by value: they do not
        # import this test module (pytest, numpy, regtune's analysis: ~0.5
        # CPU-s each).
        point = config["point"]
        for step in range(1, E2E_MAX_T + 1):
            decay = 1.0 / step
            tune.report(
                {
                    "loss": point["x"] + decay + point["y"],
                    "acc": 1.0 - (1.0 - point["x"] + decay + point["y"]),
                }
            )

    scheduler = ParetoASHA(
        objectives=OBJECTIVES, max_t=E2E_MAX_T, grace_period=1, reduction_factor=3
    )
    tuner = tune.Tuner(
        _two_objective_trainable,
        param_space={"point": tune.grid_search(E2E_CONFIGS)},
        # No metric/mode: the multi-objective set-up. Reused actors: two
        # worker processes for the eight trials, not one each.
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="pareto_asha", verbose=0),
    )
    results = tuner.fit()
    assert results.num_errors == 0
    runs = [results[i] for i in range(len(results))]
    final: dict[str, dict[str, Any]] = {
        run.config["point"]["name"]: run.metrics for run in runs if run.config and run.metrics
    }
    assert sorted(final) == sorted(c["name"] for c in E2E_CONFIGS)
    iterations = {name: metrics["training_iteration"] for name, metrics in final.items()}

    # Trials stop only at a rung (1, 3) or at max_t.
    assert set(iterations.values()) <= {1, 3, E2E_MAX_T}
    # A and B are never dominated at any rung, so they always form (at most) a
    # two-point first front with infinite crowding and reach max_t, whatever
    # order the two workers deliver results in.
    names = sorted(final)
    points = to_minimization([[final[n]["loss"], final[n]["acc"]] for n in names], ["min", "max"])
    front = {names[i] for i in pareto_front(points)}
    assert front == {"A", "B"}
    assert all(iterations[name] == E2E_MAX_T for name in front)
    # The worst config starts last (grid order, two workers), so at least one
    # earlier trial is recorded at rung 1 and dominates it: stopped there.
    assert iterations["C6"] == 1
    # Tune drives the scheduler object it was given: every trial is recorded
    # at rung 1 and each early stop was this scheduler's decision.
    assert len(scheduler.rung_records()[1]) == len(E2E_CONFIGS)
    assert scheduler.num_stopped == sum(it < E2E_MAX_T for it in iterations.values()) >= 1

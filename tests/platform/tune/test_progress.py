"""Sweep progress bookkeeping (no Ray needed)."""

from __future__ import annotations

import pickle

from regtune.platform.tune.progress import (
    PeriodicLines,
    ProgressCallback,
    SweepProgress,
    progress_text,
)


def test_counts_and_best_so_far() -> None:
    p = SweepProgress(objectives=[("val_acc", "max"), ("dp_diff", "min")], total=3, max_t=4)
    for tid in ("a", "b", "c"):
        p.started(tid)
    p.result("a", {"training_iteration": 4, "val_acc": 0.8, "dp_diff": 0.10})
    p.result("b", {"training_iteration": 1, "val_acc": 0.9, "dp_diff": float("nan")})
    p.result("c", {"training_iteration": 2, "val_acc": 0.5, "dp_diff": 0.05})
    p.completed("a")
    p.completed("b")
    p.completed("c", error=True)
    snap = p.snapshot()
    assert snap["finished"] == 1 and snap["stopped_early"] == 1 and snap["errors"] == 1
    assert snap["running"] == 0 and snap["done"] == 3
    # The best epoch by the first objective, with its own values: b's dp_diff is NaN.
    assert snap["best"] == {"val_acc": 0.9} and snap["best_trial"] == "b"


def test_a_trial_that_ended_before_its_first_epoch_counts_as_not_started() -> None:
    """A sweep cut by budget.time_limit_s ends queued trials that never trained:
    neither finished nor stopped early, as the summary and the store say."""
    p = SweepProgress(objectives=[("val_acc", "max")], total=3, max_t=4)
    p.started("a")
    p.result("a", {"training_iteration": 4, "val_acc": 0.8})
    p.completed("a")
    p.completed("b")  # never reported an epoch
    snap = p.snapshot()
    assert (snap["finished"], snap["stopped_early"], snap["not_started"]) == (1, 0, 1)
    assert snap["done"] == 2
    line = progress_text(snap)
    assert "trials 2/3 done: 1 finished, 0 stopped early, 1 not started, 0 failed" in line
    # Without such a trial the line is as before.
    p2 = SweepProgress(objectives=[("val_acc", "max")], total=1, max_t=4)
    p2.result("a", {"training_iteration": 4, "val_acc": 0.8})
    p2.completed("a")
    assert "1 finished, 0 stopped early, 0 failed" in progress_text(p2.snapshot())


def test_best_is_one_trials_epoch_never_a_mix_of_trials() -> None:
    objectives = [("val_acc", "max"), ("dp_diff", "min"), ("eo_diff", "min")]
    p = SweepProgress(objectives=objectives, total=3, max_t=4)
    p.result("a", {"training_iteration": 1, "val_acc": 0.85, "dp_diff": 0.09, "eo_diff": 0.20})
    p.result("b", {"training_iteration": 1, "val_acc": 0.80, "dp_diff": 0.02, "eo_diff": 0.08})
    snap = p.snapshot()
    assert snap["best"] == {"val_acc": 0.85, "dp_diff": 0.09, "eo_diff": 0.20}
    assert snap["best_trial"] == "a"
    line = progress_text(snap)
    assert line.endswith("best val_acc 0.8500  dp_diff 0.0900  eo_diff 0.2000 (trial a)")
    # A later epoch of a with a worse val_acc: a keeps that epoch's weights
    # (no kept_epoch reported: the latest), so it is ranked on it, as the
    # summary ranks it; still the best, with that epoch's own values.
    p.result("a", {"training_iteration": 2, "val_acc": 0.84, "dp_diff": 0.01, "eo_diff": 0.01})
    snap = p.snapshot()
    assert snap["best"] == {"val_acc": 0.84, "dp_diff": 0.01, "eo_diff": 0.01}
    assert snap["best_trial"] == "a"
    # Its epoch 1 comes back only if it reports keeping it (early stopping).
    p.result(
        "a",
        {"training_iteration": 3, "val_acc": 0.6, "dp_diff": 0.5, "eo_diff": 0.5, "kept_epoch": 2},
    )
    assert p.snapshot()["best"] == {"val_acc": 0.84, "dp_diff": 0.01, "eo_diff": 0.01}
    p.result("a", {"training_iteration": 4, "val_acc": 0.85, "dp_diff": 0.09, "eo_diff": 0.20})
    # A tie on val_acc goes to the next objective (results.ranking.best_first)...
    p.result("c", {"training_iteration": 1, "val_acc": 0.85, "dp_diff": 0.03, "eo_diff": 0.50})
    assert p.snapshot()["best"] == {"val_acc": 0.85, "dp_diff": 0.03, "eo_diff": 0.50}
    assert p.snapshot()["best_trial"] == "c"
    # ...and a full tie to the lower validation loss, then the trial id.
    tie = {"val_acc": 0.85, "dp_diff": 0.03, "eo_diff": 0.50}
    p.result("d", {"training_iteration": 1, **tie, "val_loss": 0.4})
    p.result("e", {"training_iteration": 1, **tie, "val_loss": 0.3})
    p.result("b2", {"training_iteration": 1, **tie, "val_loss": 0.3})
    assert p.snapshot()["best_trial"] == "b2"


def test_no_best_until_an_epoch_reports_a_finite_first_objective() -> None:
    p = SweepProgress(objectives=[("val_acc", "max")], total=1, max_t=2)
    p.result("a", {"training_iteration": 1, "val_acc": float("nan")})
    p.result("a", {"training_iteration": 2, "val_acc": True})
    snap = p.snapshot()
    assert snap["best"] == {} and snap["best_trial"] is None
    assert progress_text(snap).endswith("| best -")


def test_callback_pickles_without_its_display_hook() -> None:
    seen: list[dict[str, object]] = []
    cb = ProgressCallback(
        objectives=[("val_acc", "max")], total=1, max_t=1, on_progress=seen.append
    )
    clone = pickle.loads(pickle.dumps(cb))
    assert clone._emit is None
    assert clone.state.total == 1


class FakeClock:
    """A clock the test moves by hand (the real one would make the test depend on load)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_snapshot_reports_elapsed_time() -> None:
    clock = FakeClock()
    p = SweepProgress(objectives=[("val_acc", "max")], total=2, max_t=3, clock=clock)
    clock.now += 7.5
    assert p.snapshot()["elapsed_s"] == 7.5
    assert progress_text(p.snapshot()).startswith("[8 s] trials 0/2 done")


def test_periodic_lines_write_one_line_per_period_and_the_last_at_close() -> None:
    clock = FakeClock()
    p = SweepProgress(objectives=[("val_acc", "max")], total=3, max_t=2, clock=clock)
    written: list[str] = []
    lines = PeriodicLines(written.append, period_s=5.0, clock=clock)
    lines(p.snapshot())  # the first snapshot is written at once
    for tid, t in (("a", 1.0), ("b", 2.0), ("c", 4.9)):
        clock.now = 100.0 + t
        p.started(tid)
        lines(p.snapshot())
    assert len(written) == 1
    clock.now = 105.0
    p.result("a", {"training_iteration": 2, "val_acc": 0.75})
    p.completed("a")
    lines(p.snapshot())
    assert len(written) == 2 and "1/3 done" in written[1] and "val_acc 0.7500" in written[1]
    clock.now = 106.0
    p.completed("b", error=True)
    lines(p.snapshot())
    assert len(written) == 2
    lines.close()
    assert len(written) == 3 and "2/3 done" in written[2] and "1 failed" in written[2]
    lines.close()
    assert len(written) == 3


def _epoch(i: int, acc: float, gap: float) -> dict[str, float]:
    """An epoch with a sensitive attribute: a constant predictor has both gaps exactly 0."""
    return {"training_iteration": i, "val_acc": acc, "dp_diff": gap, "eo_diff": gap}


def test_constant_predictors_are_never_the_best_and_are_said_to_be_left_out() -> None:
    # A 2%-positive label: predicting "no" for everyone scores val_acc 0.9822.
    p = SweepProgress(objectives=[("val_acc", "max")], total=2, max_t=3)
    for tid in ("a", "b"):
        for i in (1, 2, 3):
            p.result(tid, _epoch(i, 0.9822, 0.0))
        p.completed(tid)
    snap = p.snapshot()
    assert snap["best"] == {} and snap["best_trial"] is None and snap["constant"] == 2
    line = progress_text(snap)
    assert line.endswith(
        "| best - (2 constant predictors left out: one class for every row; "
        "val_acc 0.9822, trial a)"
    )
    # A trial that learned is the best, however much lower its accuracy.
    p.result("c", _epoch(1, 0.9, 0.05))
    snap = p.snapshot()
    assert snap["best_trial"] == "c" and snap["constant_trial"] is None
    line = progress_text(snap)
    assert line.endswith("| best val_acc 0.9000 (trial c) (2 constant predictors left out)")


def test_the_best_goes_back_when_its_trial_becomes_constant_or_fails() -> None:
    p = SweepProgress(objectives=[("val_acc", "max")], total=3, max_t=3)
    p.result("a", _epoch(1, 0.80, 0.10))
    p.result("b", _epoch(1, 0.85, 0.10))
    assert p.best_trial == "b"
    # b collapses to one class: its earlier epoch is no longer offered.
    p.result("b", _epoch(2, 0.90, 0.0))
    assert p.best_trial == "a" and p.best == {"val_acc": 0.80}
    # b predicts both classes again: ranked on the epoch it keeps (0.70), a stays.
    p.result("b", _epoch(3, 0.70, 0.02))
    assert p.best_trial == "a" and p.best == {"val_acc": 0.80}
    p.result("b", _epoch(4, 0.85, 0.02))
    assert p.best_trial == "b" and p.best == {"val_acc": 0.85}
    # b fails for good: the summary will not take it, nor does the line.
    p.completed("b", error=True)
    assert p.best_trial == "a" and p.snapshot()["errors"] == 1
    p.completed("a", error=True)
    snap = p.snapshot()
    assert snap["best"] == {} and snap["best_trial"] is None
    assert progress_text(snap).endswith("| best -")
    # Without group gaps (no sensitive attribute) nothing can be told constant.
    q = SweepProgress(objectives=[("val_acc", "max")], total=1, max_t=1)
    q.result("x", {"training_iteration": 1, "val_acc": 0.98})
    assert q.best_trial == "x" and q.snapshot()["constant"] == 0

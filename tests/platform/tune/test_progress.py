"""Sweep progress bookkeeping (no Ray needed)."""

from __future__ import annotations

import pickle

from regtune.platform.tune.progress import ProgressCallback, SweepProgress


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
    assert snap["best"] == {"val_acc": 0.9, "dp_diff": 0.05}


def test_callback_pickles_without_its_display_hook() -> None:
    seen: list[dict[str, object]] = []
    cb = ProgressCallback(
        objectives=[("val_acc", "max")], total=1, max_t=1, on_progress=seen.append
    )
    clone = pickle.loads(pickle.dumps(cb))
    assert clone._emit is None
    assert clone.state.total == 1

"""Live sweep progress: trials running / finished / stopped early, best so far.

:class:`SweepProgress` is plain bookkeeping (tested without Ray);
:class:`ProgressCallback` feeds it from Tune's driver-side callback hooks and
hands a snapshot to whoever displays it (the CLI's rich status line).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback

__all__ = ["ProgressCallback", "SweepProgress", "trial_status"]


def trial_status(iterations: int, max_t: int, *, error: bool) -> str:
    """``error``, ``stopped early`` (fewer than ``max_t`` epochs) or ``finished``."""
    if error:
        return "error"
    return "stopped early" if iterations < max_t else "finished"


@dataclass
class SweepProgress:
    """Counts and best objective values of a running sweep."""

    objectives: Sequence[tuple[str, str]]
    total: int
    max_t: int
    running: set[str] = field(default_factory=set)
    finished: int = 0
    stopped_early: int = 0
    errors: int = 0
    best: dict[str, float] = field(default_factory=dict)
    _last_iter: dict[str, int] = field(default_factory=dict)

    def started(self, trial_id: str) -> None:
        """A trial started (or restarted after a failure)."""
        self.running.add(trial_id)

    def result(self, trial_id: str, result: dict[str, Any]) -> None:
        """A trial reported an epoch."""
        self.running.add(trial_id)
        self._last_iter[trial_id] = int(result.get("training_iteration", 0))
        for metric, mode in self.objectives:
            value = result.get(metric)
            if value is None or not isinstance(value, (int, float)) or math.isnan(value):
                continue
            old = self.best.get(metric)
            if old is None or (value > old if mode == "max" else value < old):
                self.best[metric] = float(value)

    def completed(self, trial_id: str, *, error: bool = False) -> None:
        """A trial ended: ran all epochs, was stopped, or failed for good."""
        self.running.discard(trial_id)
        status = trial_status(self._last_iter.get(trial_id, 0), self.max_t, error=error)
        if status == "error":
            self.errors += 1
        elif status == "stopped early":
            self.stopped_early += 1
        else:
            self.finished += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able view for display."""
        return {
            "total": self.total,
            "running": len(self.running),
            "finished": self.finished,
            "stopped_early": self.stopped_early,
            "errors": self.errors,
            "done": self.finished + self.stopped_early + self.errors,
            "best": dict(self.best),
        }


class ProgressCallback(Callback):
    """Tune callback feeding :class:`SweepProgress` (runs on the driver)."""

    def __init__(
        self,
        *,
        objectives: Sequence[tuple[str, str]],
        total: int,
        max_t: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.state = SweepProgress(objectives=objectives, total=total, max_t=max_t)
        self._emit = on_progress

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks into its experiment state; the display hook
        # holds terminal locks and belongs to this process only.
        state = self.__dict__.copy()
        state["_emit"] = None
        return state

    def _push(self) -> None:
        if self._emit is not None:
            self._emit(self.state.snapshot())

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook."""
        self.state.started(trial.trial_id)
        self._push()

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        """Tune hook."""
        self.state.result(trial.trial_id, result)
        self._push()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook."""
        self.state.completed(trial.trial_id)
        self._push()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook (called once retries are exhausted)."""
        self.state.completed(trial.trial_id, error=True)
        self._push()

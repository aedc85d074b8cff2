"""``pareto-asha``: asynchronous successive halving on several objectives, for Ray Tune.

:class:`ParetoASHA` is a Ray Tune ``TrialScheduler``. It keeps Ray's
``AsyncHyperBandScheduler`` bookkeeping (geometric rungs, trial-to-bracket
assignment, a trial is judged once per rung against every trial recorded there
so far) but ranks trials by Pareto dominance and crowding distance instead of
one metric (MO-ASHA, Schmucker et al. 2021). The rule itself is the pure
:func:`regtune.platform.analysis.pareto.should_promote`; this module only adapts it to
Tune's callbacks.

Using it with Tune::

    scheduler = ParetoASHA(objectives=[("val_loss", "min"), ("robust_acc", "max")],
                           max_t=27, grace_period=1, reduction_factor=3)
    tune.Tuner(trainable, tune_config=tune.TuneConfig(scheduler=scheduler))

What Tune needs around it:

* ``TuneConfig(metric=None, mode=None)`` is the multi-objective set-up and
  works: Tune then calls ``set_search_properties(None, None)``, which this
  scheduler accepts. ``TuneConfig`` may also name *one* of the objectives with
  its own mode (e.g. so that ``ResultGrid.get_best_result()`` has a default, or
  for a single-metric searcher); any other metric/mode raises :class:`SpecError`.
* Without a ``TuneConfig`` metric the ``ResultGrid`` has no default metric:
  call ``get_best_result(metric=..., mode=...)`` explicitly, or read the final
  metrics with ``get_dataframe()`` and take the Pareto front with
  :func:`regtune.platform.analysis.pareto.pareto_front`.
* Searchers are independent of the scheduler; multi-objective ones (e.g.
  ``OptunaSearch(metric=[...], mode=[...])``) get their metrics themselves.
* Tune hands schedulers flattened results: a nested metric is named
  ``"eval/loss"``.
* Tune 2.60 does not save scheduler state in experiment checkpoints
  (``TuneController.save_to_dir`` saves only the searcher and callbacks).
  ``run_sweep`` wraps this scheduler in
  :class:`~regtune.platform.tune.scheduler_state.PersistentScheduler`, which
  saves it (rungs, brackets, recorded objective vectors) next to the
  experiment and restores it on ``--resume``. :meth:`ParetoASHA.save` /
  :meth:`ParetoASHA.restore` exist for callers that persist it themselves.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from ray.tune.experiment import Trial
from ray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from regtune.errors import SpecError
from regtune.platform.analysis.pareto import (
    Objective,
    objective_vector,
    rung_levels,
    should_promote,
    validate_objectives,
)
from regtune.platform.tune.ray_private import DEBUG_METRICS, DONE

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

__all__ = ["SCHEDULER_NAME", "ParetoASHA"]

#: The name sweeps use to ask for this scheduler.
SCHEDULER_NAME = "pareto-asha"

MSG_BAD_TIME_ATTR = "time_attr: {value!r} is not allowed; allowed: a non-empty result key"
MSG_BAD_BRACKETS = (
    "brackets: {value!r} is not allowed; allowed: an integer from 1 to {maximum} "
    "(one per rung level {levels}, plus one without early stopping)"
)
MSG_BAD_SEED = "seed: {value!r} is not allowed; allowed: an integer >= 0"
MSG_MISSING_TIME = "result has no time_attr {time_attr!r}; available keys: {available}"
MSG_BAD_TIME = "time_attr {time_attr!r}: value {value!r} is not a finite number"
MSG_SEARCH_METRIC = (
    "ParetoASHA: TuneConfig metric {metric!r} (mode {mode!r}) is not one of the "
    "scheduler's objectives {objectives}; leave TuneConfig metric/mode unset or "
    "name one of the objectives with its mode"
)

_Rung = tuple[int, dict[str, NDArray[np.float64]]]


def _carries_metrics(result: Mapping[str, Any]) -> bool:
    """Whether a result holds reported metrics at all.

    Mirrors Tune's own strict metric check (``TuneController.
    _validate_result_metrics``): a result with at most one key besides debug
    keys and ``done`` is the empty result of a trainable that returned without
    reporting, and is not an error.
    """
    ignored = {*DEBUG_METRICS, DONE}
    return len([key for key in result if key not in ignored]) > 1


class ParetoASHA(FIFOScheduler):
    """Multi-objective asynchronous successive halving (``pareto-asha``).

    Each trial is put in a bracket (Ray's softmax over rung counts, drawn from
    a generator seeded with ``seed``; always bracket 0 when ``brackets=1``).
    Bracket ``s`` has the rungs ``rung_levels(grace_period, reduction_factor,
    max_t)[s:]``. When a trial's ``time_attr`` first reaches a rung, its
    objectives are recorded there and it continues iff
    :func:`~regtune.platform.analysis.pareto.should_promote` says so against every
    trial recorded at that rung so far; otherwise it is stopped. A trial
    reaching ``max_t`` is stopped (finished). If ``time_attr`` jumps past
    several rungs at once, the trial is judged at the highest one only.

    Args:
        objectives: ``(metric, mode)`` pairs, mode ``"min"`` or ``"max"``.
        time_attr: the monotonically increasing result key that measures
            progress.
        max_t: the ``time_attr`` value at which a trial is finished.
        grace_period: the first rung; no trial stops before it.
        reduction_factor: roughly one in this many trials continues at a rung.
        brackets: number of Hyperband brackets; the last allowed one (one more
            than the number of rungs) has no rungs, i.e. no early stopping.
        seed: seeds the bracket draw when ``brackets > 1``.

    Raises:
        SpecError: an invalid argument (the message names it, the value, and
            what is allowed).
    """

    def __init__(
        self,
        *,
        objectives: Sequence[tuple[str, str]],
        time_attr: str = "training_iteration",
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: int = 3,
        brackets: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._objectives: tuple[Objective, ...] = validate_objectives(objectives)
        if not isinstance(time_attr, str) or not time_attr:
            raise SpecError(MSG_BAD_TIME_ATTR.format(value=time_attr))
        levels = rung_levels(grace_period, reduction_factor, max_t)
        if (
            isinstance(brackets, bool)
            or not isinstance(brackets, int)
            or not 1 <= brackets <= len(levels) + 1
        ):
            raise SpecError(
                MSG_BAD_BRACKETS.format(value=brackets, maximum=len(levels) + 1, levels=levels)
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpecError(MSG_BAD_SEED.format(value=seed))
        self._time_attr = time_attr
        self._max_t = int(max_t)
        self._reduction_factor = int(reduction_factor)
        self._brackets: list[list[_Rung]] = [
            [(level, {}) for level in levels[s:]] for s in range(brackets)
        ]
        self._rng = np.random.default_rng(seed)
        self._trial_bracket: dict[str, int] = {}
        self._num_stopped = 0

    # ------------------------------------------------------------------ properties

    @property
    def objectives(self) -> tuple[Objective, ...]:
        """The ``(metric, mode)`` pairs trials are ranked on."""
        return self._objectives

    @property
    def num_stopped(self) -> int:
        """How many trials this scheduler stopped before ``max_t``."""
        return self._num_stopped

    def rung_records(self, bracket: int = 0) -> dict[int, dict[str, NDArray[np.float64]]]:
        """Copy of the points recorded per rung level of ``bracket`` (minimisation space)."""
        return {
            level: {trial_id: point.copy() for trial_id, point in recorded.items()}
            for level, recorded in self._brackets[bracket]
        }

    # ------------------------------------------------------------------ Tune hooks

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Accept Tune's single ``metric``/``mode`` only when it is one of the objectives.

        Tune calls this with ``TuneConfig``'s metric and mode (``None`` when
        unset). The scheduler never uses them; it only refuses a contradiction.

        Raises:
            SpecError: ``metric`` is not an objective, or its ``mode`` differs.
        """
        if metric is None:
            return True
        modes = dict(self._objectives)
        if metric not in modes or (mode is not None and mode != modes[metric]):
            raise SpecError(
                MSG_SEARCH_METRIC.format(metric=metric, mode=mode, objectives=self._objectives)
            )
        return True

    def on_trial_add(self, tune_controller: TuneController | None, trial: Trial) -> None:
        """Assign a new trial to a bracket; a re-added (retried) trial keeps its own."""
        self._bracket_of(trial.trial_id)

    def on_trial_error(self, tune_controller: TuneController | None, trial: Trial) -> None:
        """Keep the trial's bracket: Tune re-adds a trial it retries after an error."""

    def on_trial_result(
        self, tune_controller: TuneController | None, trial: Trial, result: dict[str, Any]
    ) -> str:
        """Record the result at a newly reached rung and return CONTINUE or STOP.

        Raises:
            SpecError: the result lacks ``time_attr`` or an objective (the
                message lists the keys it has), or a value is not a number.
        """
        if not _carries_metrics(result):
            return TrialScheduler.CONTINUE
        time = self._time_of(result)
        point = objective_vector(result, self._objectives)
        if time >= self._max_t:
            return TrialScheduler.STOP
        if self._record(trial.trial_id, time, point, decide=True):
            return TrialScheduler.CONTINUE
        self._num_stopped += 1
        return TrialScheduler.STOP

    def on_trial_complete(
        self, tune_controller: TuneController | None, trial: Trial, result: dict[str, Any]
    ) -> None:
        """Record the final result at its rung if not recorded yet, then forget the trial."""
        if _carries_metrics(result):
            time = self._time_of(result)
            point = objective_vector(result, self._objectives)
            self._record(trial.trial_id, time, point, decide=False)
        self._trial_bracket.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: TuneController | None, trial: Trial) -> None:
        """Forget a trial removed while pending or paused."""
        self._trial_bracket.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        """One line per bracket with the number of trials recorded at each rung."""
        objectives = ", ".join(f"{metric} ({mode})" for metric, mode in self._objectives)
        lines = [
            f"Using ParetoASHA ({SCHEDULER_NAME}): objectives={objectives}, "
            f"reduction_factor={self._reduction_factor}, max_t={self._max_t}, "
            f"num_stopped={self._num_stopped}"
        ]
        for index, rungs in enumerate(self._brackets):
            cells = " | ".join(f"{level}: {len(recorded)} recorded" for level, recorded in rungs)
            lines.append(f"Bracket {index}: {cells or 'no rungs'}")
        return "\n".join(lines)

    def save(self, checkpoint_path: str) -> None:
        """Pickle the whole scheduler state to ``checkpoint_path``."""
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        """Load the state written by :meth:`save` (a trusted file: it is a pickle)."""
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))

    # ------------------------------------------------------------------ internals

    def _bracket_of(self, trial_id: str) -> int:
        """The trial's bracket, drawn on first sight (also after a Tune resume)."""
        if trial_id not in self._trial_bracket:
            if len(self._brackets) == 1:
                choice = 0
            else:
                sizes = np.array([len(rungs) for rungs in self._brackets], dtype=np.float64)
                weights = np.exp(sizes - sizes.max())
                choice = int(self._rng.choice(len(self._brackets), p=weights / weights.sum()))
            self._trial_bracket[trial_id] = choice
        return self._trial_bracket[trial_id]

    def _time_of(self, result: Mapping[str, Any]) -> float:
        if self._time_attr not in result:
            available = ", ".join(sorted(map(str, result))) or "(none)"
            raise SpecError(MSG_MISSING_TIME.format(time_attr=self._time_attr, available=available))
        value = result[self._time_attr]
        if (
            isinstance(value, bool)
            or not isinstance(value, (Real, np.number))
            or not math.isfinite(float(value))
        ):
            raise SpecError(MSG_BAD_TIME.format(time_attr=self._time_attr, value=value))
        return float(value)

    def _record(
        self, trial_id: str, time: float, point: NDArray[np.float64], *, decide: bool
    ) -> bool:
        """Record ``point`` at the highest rung ``time`` has reached; return promote-or-not.

        Returns True (continue) when no rung is reached yet, or the trial was
        already judged at that rung, or ``decide`` is False.
        """
        reached = [rung for rung in self._brackets[self._bracket_of(trial_id)] if rung[0] <= time]
        if not reached:
            return True
        _level, recorded = reached[-1]
        if trial_id in recorded:
            return True
        recorded[trial_id] = point
        if not decide:
            return True
        records = np.stack(list(recorded.values()))
        return should_promote(records, len(records) - 1, self._reduction_factor)

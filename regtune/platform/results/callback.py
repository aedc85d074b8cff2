"""Tune callbacks that record a sweep's results on disk (installed by ``run_sweep``).

The only module of the results store that imports Ray: it forwards Tune's
driver-side events to :class:`~regtune.platform.results.writer.ResultsWriter`.

Tune pickles the run's callbacks into the experiment (``tuner.pkl``) and
``Tuner.restore`` reuses them, so :class:`ResultsCallback` holds only plain
data; its writer is built in :meth:`ResultsCallback.setup`, which Tune calls
on a fresh run and on a resumed one alike, and reloads what is already
stored.

An interrupted run (Ctrl+C: ``tune.run`` saves its experiment state one last
time, with the running trials still RUNNING, and only then cleans up, which
sets those trials TERMINATED without calling ``on_trial_complete``) must not
store its cut-off trials as ended: ``--resume`` continues exactly the trials
Tune's last saved experiment state holds unfinished. So :meth:`get_state`
(called as Tune saves that state, after it wrote the trials' statuses) notes
which trials the saved state leaves unfinished, and :meth:`on_experiment_end`
keeps those ``running`` (:attr:`ResultsCallback.unfinished`). A sweep that
ended by itself (every trial done, or ``budget.time_limit_s``: Tune stops the
trials, then saves) leaves none.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from regtune.platform.results.files import as_uri
from regtune.platform.results.trials import TrialState
from regtune.platform.results.writer import ResultsWriter
from regtune.search_spaces import SweepSpec

__all__ = ["ResultsCallback", "results_callbacks"]

#: Tune's trial statuses (``ray.tune.experiment.Trial``) that mean "ended".
_TUNE_TERMINATED = "TERMINATED"
_TUNE_ERROR = "ERROR"
_TUNE_ENDED = (_TUNE_TERMINATED, _TUNE_ERROR)


class ResultsCallback(Callback):
    """Stores every reported epoch and the trial table under ``exp_path``.

    Args:
        exp_path: the experiment directory (``<storage>/<name>``, path or URI).
        max_t: the sweep's ``budget.max_epochs``.
        spec: the spec as plain data (``SweepSpec.to_dict()``).
    """

    def __init__(self, exp_path: str, *, max_t: int, spec: dict[str, Any]) -> None:
        self.exp_path = exp_path
        self.max_t = max_t
        self.spec = spec
        self._writer: ResultsWriter | None = None
        #: Tune's trial list (the controller's own list, given to each hook).
        self._trials: list[Any] | None = None
        #: Trials the experiment state Tune saved last leaves unfinished.
        self._saved_unfinished: set[str] = set()
        #: Trials Tune said ended in this run (``on_trial_complete``/``on_trial_error``).
        self._ended: set[str] = set()
        #: After :meth:`on_experiment_end`: the trials the run ended without
        #: finishing (Tune's last saved state holds them PENDING, RUNNING or
        #: PAUSED: the run was interrupted, and ``--resume`` continues them).
        self.unfinished: frozenset[str] = frozenset()

    def __getstate__(self) -> dict[str, Any]:
        # The writer holds a filesystem handle and buffers of this process only;
        # the trials are Tune's, of this run only.
        state = self.__dict__.copy()
        state["_writer"] = None
        state["_trials"] = None
        state["_saved_unfinished"] = set()
        state["_ended"] = set()
        state["unfinished"] = frozenset()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A callback pickled before these attributes existed gets them too.
        self.__dict__.update(state)
        self.__dict__.setdefault("_trials", None)
        self.__dict__.setdefault("_saved_unfinished", set())
        self.__dict__.setdefault("_ended", set())
        self.__dict__.setdefault("unfinished", frozenset())

    @property
    def writer(self) -> ResultsWriter:
        """The writer (built on first use)."""
        if self._writer is None:
            self._writer = ResultsWriter(self.exp_path, max_t=self.max_t, spec=self.spec)
            self._writer.open()
        return self._writer

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Tune hook: write the spec, load what an earlier session stored."""
        self._writer = None
        self._trials = None
        self._saved_unfinished = set()
        self._ended = set()
        self.unfinished = frozenset()
        _ = self.writer

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Tune hook: keep Tune's trial list (read as Tune saves its state)."""
        self._trials = trials

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        """Tune hook: one reported epoch."""
        self._trials = trials
        self.writer.add(trial.trial_id, result)

    def on_checkpoint(
        self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        """Tune hook: a trial saved a checkpoint."""
        path = getattr(checkpoint, "path", None)
        self.writer.checkpoint(trial.trial_id, as_uri(self.exp_path, path) if path else None)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook: the trial ran out its epochs or was stopped."""
        self._ended.add(trial.trial_id)
        self.writer.end_trial(
            trial.trial_id, error=False, checkpoint=self._checkpoint(trial), config=trial.config
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook: the trial failed for good (retries exhausted)."""
        self._ended.add(trial.trial_id)
        self.writer.end_trial(
            trial.trial_id, error=True, checkpoint=self._checkpoint(trial), config=trial.config
        )

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Tune hook: write buffered rows once they are old enough."""
        self._trials = trials
        if self._writer is not None:
            self._writer.maybe_flush()

    def get_state(self) -> dict[str, Any] | None:
        """Tune hook, called as Tune saves its experiment state: flush first,
        so every epoch that a resumed sweep will not rerun is stored, and
        every status and checkpoint path Tune's snapshot holds is in the
        trial table (:meth:`ResultsWriter.save_state`).
        The store's state is on disk, so there is nothing to return.

        Tune has just written its trials' statuses (``save_to_dir`` saves them
        before the callbacks' states): the trials not ended now are the ones a
        resume continues."""
        if self._trials is not None:
            self._saved_unfinished = {
                t.trial_id for t in self._trials if t.status not in _TUNE_ENDED
            }
        if self._writer is not None:
            self._writer.save_state()
        return None

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Tune hook: final statuses from Tune's trial list, parts merged.

        A trial Tune's last saved experiment state leaves unfinished, and that
        Tune never said ended, was cut off by an interrupt (Tune's clean-up
        sets it TERMINATED, without ``on_trial_complete``): it stays
        ``running``, as ``--resume`` will continue it (:attr:`unfinished`)."""
        writer = self.writer
        final: dict[str, TrialState] = {}
        unfinished = set()
        for trial in trials:
            if trial.trial_id in self._saved_unfinished and trial.trial_id not in self._ended:
                unfinished.add(trial.trial_id)
                state = writer.unfinished_state(trial.trial_id, checkpoint=self._checkpoint(trial))
                if state is not None:
                    final[trial.trial_id] = state
            elif trial.status in _TUNE_ENDED:
                final[trial.trial_id] = writer.ended_state(
                    trial.trial_id,
                    error=trial.status == _TUNE_ERROR,
                    checkpoint=self._checkpoint(trial),
                )
        self.unfinished = frozenset(unfinished)
        writer.close(final)

    def _checkpoint(self, trial: Any) -> str | None:
        checkpoint = trial.checkpoint
        return as_uri(self.exp_path, checkpoint.path) if checkpoint is not None else None


def results_callbacks(spec: SweepSpec, exp_path: str) -> list[Any]:
    """The callbacks every sweep installs to store its results under ``exp_path``."""
    return [ResultsCallback(exp_path, max_t=spec.budget.max_epochs, spec=spec.to_dict())]

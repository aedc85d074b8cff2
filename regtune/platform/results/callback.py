"""Tune callbacks that record a sweep's results on disk (installed by ``run_sweep``).

The only module of the results store that imports Ray: it forwards Tune's
driver-side events to :class:`~regtune.platform.results.writer.ResultsWriter`.

Tune pickles the run's callbacks into the experiment (``tuner.pkl``) and
``Tuner.restore`` reuses them, so :class:`ResultsCallback` holds only plain
data; its writer is built in :meth:`ResultsCallback.setup`, which Tune calls
on a fresh run and on a resumed one alike, and reloads what is already
stored.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from regtune.platform.results.files import as_uri
from regtune.platform.results.writer import ResultsWriter
from regtune.search_spaces import SweepSpec

__all__ = ["ResultsCallback", "results_callbacks"]

#: Tune's trial statuses (``ray.tune.experiment.Trial``) that mean "ended".
_TUNE_TERMINATED = "TERMINATED"
_TUNE_ERROR = "ERROR"


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

    def __getstate__(self) -> dict[str, Any]:
        # The writer holds a filesystem handle and buffers of this process only.
        state = self.__dict__.copy()
        state["_writer"] = None
        return state

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
        _ = self.writer

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        """Tune hook: one reported epoch."""
        self.writer.add(trial.trial_id, result)

    def on_checkpoint(
        self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        """Tune hook: a trial saved a checkpoint."""
        path = getattr(checkpoint, "path", None)
        self.writer.checkpoint(trial.trial_id, as_uri(self.exp_path, path) if path else None)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook: the trial ran out its epochs or was stopped."""
        self.writer.end_trial(
            trial.trial_id, error=False, checkpoint=self._checkpoint(trial), config=trial.config
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune hook: the trial failed for good (retries exhausted)."""
        self.writer.end_trial(
            trial.trial_id, error=True, checkpoint=self._checkpoint(trial), config=trial.config
        )

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Tune hook: write buffered rows once they are old enough."""
        if self._writer is not None:
            self._writer.maybe_flush()

    def get_state(self) -> dict[str, Any] | None:
        """Tune hook, called as Tune saves its experiment state: flush first,
        so every epoch that a resumed sweep will not rerun is stored, and
        every status and checkpoint path Tune's snapshot holds is in the
        trial table (:meth:`ResultsWriter.save_state`).
        The store's state is on disk, so there is nothing to return."""
        if self._writer is not None:
            self._writer.save_state()
        return None

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Tune hook: final statuses from Tune's trial list, parts merged."""
        writer = self.writer
        final = {}
        for trial in trials:
            if trial.status in (_TUNE_TERMINATED, _TUNE_ERROR):
                final[trial.trial_id] = writer.ended_state(
                    trial.trial_id,
                    error=trial.status == _TUNE_ERROR,
                    checkpoint=self._checkpoint(trial),
                )
        writer.close(final)

    def _checkpoint(self, trial: Any) -> str | None:
        checkpoint = trial.checkpoint
        return as_uri(self.exp_path, checkpoint.path) if checkpoint is not None else None


def results_callbacks(spec: SweepSpec, exp_path: str) -> list[Any]:
    """The callbacks every sweep installs to store its results under ``exp_path``."""
    return [ResultsCallback(exp_path, max_t=spec.budget.max_epochs, spec=spec.to_dict())]

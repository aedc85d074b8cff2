"""Early-stopping schedulers whose state survives a killed driver.

Tune 2.60 does not save a scheduler's state with the experiment
(``TuneController.save_to_dir`` saves trials, the searcher and callbacks). A
resumed sweep would judge its trials against empty ASHA rungs, a fresh
HyperBand bracket or a pareto-asha rung without the objective vectors
recorded before the kill, and stop them at whatever epoch they happen to
report first (not at a rung).

:class:`PersistentScheduler` wraps any Tune scheduler and, after every call
that may change it, writes the wrapped scheduler's whole state next to the
experiment (``regtune-scheduler-state.pkl``, atomic replace). On a resumed
run it loads that file before the first decision, so trials are judged only
at rungs and against everything recorded before the kill. It also remembers,
per trial, the last epoch it judged and the epoch at which the scheduler
stopped it: an epoch rerun after a restore (the driver or a worker died
before its checkpoint) gets the same answer without being recorded twice,
and a trial stopped just before the kill stays stopped at that epoch.

The file is a pickle, like Tune's own experiment state (``tuner.pkl``):
restore only from experiment folders you trust. Tune ``Trial`` objects in a
scheduler's state are saved as their ids and matched to the resumed run's
trials; a trial the resumed run no longer has (added after Tune's last
snapshot) is removed from the restored scheduler.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from typing import Any

from ray import cloudpickle
from ray.tune.experiment import Trial
from ray.tune.schedulers.trial_scheduler import TrialScheduler

from regtune.platform.tune.ray_private import trial_storage

__all__ = ["STATE_FILE", "PersistentScheduler"]

#: File in the experiment folder holding the wrapped scheduler's state.
STATE_FILE = "regtune-scheduler-state.pkl"
_FORMAT = 1


class _Pickler(cloudpickle.Pickler):
    """Saves Tune trials as ``("trial", trial_id)``: they are matched again on load.

    cloudpickle, as Tune uses: HyperBand holds a lambda."""

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Trial):
            return ("trial", obj.trial_id)
        return None


class _LostTrial:
    """Stands in for a trial the resumed run does not have (so it can be removed)."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.status = Trial.TERMINATED
        self.config: dict[str, Any] = {}
        self.last_result: dict[str, Any] = {}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, trials: dict[str, Any]) -> None:
        super().__init__(io.BytesIO(data))
        self._trials = trials
        self.lost: dict[str, _LostTrial] = {}

    def persistent_load(self, pid: Any) -> Any:
        kind, trial_id = pid
        if kind != "trial":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        if trial_id in self._trials:
            return self._trials[trial_id]
        return self.lost.setdefault(trial_id, _LostTrial(trial_id))


class PersistentScheduler(TrialScheduler):
    """A Tune scheduler wrapper that saves the wrapped scheduler's state in
    the experiment folder and restores it on resume (see the module docstring).

    Args:
        inner: the scheduler to wrap (ASHA, HyperBand, median stopping,
            pareto-asha). PBT is not wrapped: Tune treats it specially.
        time_attr: the result key counting epochs.
    """

    def __init__(self, inner: TrialScheduler, *, time_attr: str = "training_iteration") -> None:
        super().__init__()
        self._inner = inner
        self._time_attr = time_attr
        self._path: str | None = None
        self._fs: Any = None
        self._last_written: bytes | None = None
        # Resume bookkeeping: the saved state waits until every restored trial is back.
        self._saved: dict[str, Any] | None = None
        self._restored: dict[str, Any] = {}
        self._held_new: list[Any] = []
        self._judged: dict[str, int] = {}
        self._stopped_at: dict[str, int] = {}
        self._stop_results: dict[str, dict[str, Any]] = {}
        self._added: set[str] = set()
        #: Trials whose end (complete, error, remove) the wrapped scheduler was
        #: told of: told again after a kill (a driver that had not saved its own
        #: state yet reruns the end), it would fail (ASHA forgets the trial).
        self._ended: set[str] = set()
        #: Trials of ``_ended`` that ended by an error: Tune retries such a
        #: trial (``FailureConfig.max_retries``) by calling ``on_trial_error``
        #: and then ``on_trial_add``, which makes it live again.
        self._errored: set[str] = set()
        # Restored trials being stopped again (the scheduler already let go of them).
        self._closing: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_fs=None, _path=None, _last_written=None, _saved=None)
        state.update(_restored={}, _held_new=[], _closing=set())
        return state

    @property
    def inner(self) -> TrialScheduler:
        """The wrapped scheduler (after a resume: the restored one)."""
        return self._inner

    @property
    def metric(self) -> Any:
        """The wrapped scheduler's metric."""
        return self._inner.metric

    @property
    def supports_buffered_results(self) -> bool:
        """Whether the wrapped scheduler accepts buffered results."""
        return bool(self._inner.supports_buffered_results)

    # ------------------------------------------------------------------ Tune hooks

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Pass Tune's metric and mode to the wrapped scheduler."""
        return bool(self._inner.set_search_properties(metric, mode, **spec))

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        """Add a trial; on resume, trials the saved state knows are not re-added.

        A trial retried after an error (Tune calls ``on_trial_error``, then
        ``on_trial_add``) is live again: it is no longer ended, and its
        epochs rerun from its checkpoint get the answers given the first time.
        """
        self._locate(trial)
        if self._saved is not None:
            if trial.trial_id in self._saved["trial_ids"]:
                self._restored[trial.trial_id] = trial
                return
            # A new trial (from the searcher): the restored trials are all back.
            self._held_new.append(trial)
            self._finish_restore(tune_controller)
            return
        if trial.trial_id in self._errored:
            # Retried after an error (Tune re-adds the trial it requeues).
            self._revive(tune_controller, trial)
        else:
            self._inner.on_trial_add(tune_controller, trial)
            self._added.add(trial.trial_id)
        self._save()

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        """Tune hook."""
        self._finish_restore(tune_controller)
        if trial.trial_id in self._ended:
            return
        self._inner.on_trial_error(tune_controller, trial)
        self._ended.add(trial.trial_id)
        self._errored.add(trial.trial_id)
        self._save()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        """Judge a result once per epoch: a rerun epoch gets the earlier answer."""
        self._finish_restore(tune_controller)
        step = result.get(self._time_attr)
        tid = trial.trial_id
        if tid in self._ended:
            # Ended before a kill the driver's own state missed: it ends again.
            return TrialScheduler.STOP
        if isinstance(step, int):
            stop = self._stopped_at.get(tid)
            if stop is not None and step >= stop:
                return TrialScheduler.STOP
            if step <= self._judged.get(tid, 0):
                return TrialScheduler.CONTINUE
        decision = str(self._inner.on_trial_result(tune_controller, trial, result))
        if isinstance(step, int):
            self._judged[tid] = step
            if decision == TrialScheduler.STOP:
                self._stopped_at[tid] = step
                self._stop_results[tid] = dict(result)
        self._save()
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        """Tune hook."""
        self._finish_restore(tune_controller)
        if trial.trial_id in self._ended:
            return
        self._inner.on_trial_complete(tune_controller, trial, result)
        self._ended.add(trial.trial_id)
        self._save()

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        """Tune hook."""
        self._finish_restore(tune_controller)
        if trial.trial_id in self._closing:
            self._closing.discard(trial.trial_id)
            return
        if trial.trial_id in self._ended:
            return
        self._inner.on_trial_remove(tune_controller, trial)
        self._ended.add(trial.trial_id)
        self._save()

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """The wrapped scheduler's choice; a restored trial that the scheduler
        had stopped before the kill is stopped again instead of run, with the
        result it was stopped at as its last result."""
        self._finish_restore(tune_controller)
        while True:
            trial = self._inner.choose_trial_to_run(tune_controller)
            if trial is None or trial.trial_id not in self._stopped_at:
                return trial
            if trial.trial_id in self._closing:
                # stop_trial did not take: let Tune run it rather than loop.
                return trial
            result = self._stop_results.get(trial.trial_id)
            if result is not None:
                trial.update_last_result(dict(result))
            self._closing.add(trial.trial_id)
            tune_controller.stop_trial(trial)

    def debug_string(self) -> str:
        """The wrapped scheduler's status line."""
        return str(self._inner.debug_string())

    def save(self, checkpoint_path: str) -> None:
        """Write the wrapped scheduler's state to ``checkpoint_path``."""
        with open(checkpoint_path, "wb") as handle:
            handle.write(self._dumps())

    def restore(self, checkpoint_path: str) -> None:
        """Load state written by :meth:`save` (trials matched on the next calls)."""
        with open(checkpoint_path, "rb") as handle:
            self._saved = pickle.loads(handle.read())

    # ------------------------------------------------------------------ internals

    def _locate(self, trial: Any) -> None:
        """On the first trial: find the state file; load it when resuming."""
        if self._path is not None:
            return
        storage = trial_storage(trial)
        self._fs = storage.filesystem
        self._path = f"{storage.experiment_path}/{STATE_FILE}"
        try:
            with self._fs.open_input_stream(self._path) as handle:
                data = bytes(handle.read())
        except (FileNotFoundError, OSError):
            return
        self._saved = pickle.loads(data)

    def _finish_restore(self, tune_controller: Any) -> None:
        """Swap in the saved scheduler once the restored trials are all back."""
        if self._saved is None:
            return
        saved, self._saved = self._saved, None
        restored = self._restored
        unpickler = _Unpickler(saved["scheduler"], restored)
        self._inner = unpickler.load()
        self._judged = dict(saved["judged"])
        self._stopped_at = dict(saved["stopped_at"])
        self._stop_results = dict(saved["stop_results"])
        self._added = set(saved["trial_ids"])
        self._ended = set(saved.get("ended", ()))
        self._errored = set(saved.get("errored", ()))
        for lost in unpickler.lost.values():
            # A scheduler that already let go of this trial raises KeyError:
            # there is then nothing left to remove.
            with contextlib.suppress(KeyError):
                self._inner.on_trial_remove(tune_controller, lost)  # type: ignore[arg-type]
        held, self._held_new, self._restored = self._held_new, [], {}
        for trial in restored.values():
            if trial.trial_id in self._errored and trial.status == Trial.PENDING:
                # Failed before the kill, run again by --resume (Tune's
                # resume_errored): live again, as for a retry.
                self._revive(tune_controller, trial)
        for trial in held:
            self._inner.on_trial_add(tune_controller, trial)
            self._added.add(trial.trial_id)
        self._save()

    def _revive(self, tune_controller: Any, trial: Any) -> None:
        """A trial that ended by an error runs again (a retry, or --resume):
        no longer ended, added to the wrapped scheduler again as Tune adds a
        trial it retries. Its rerun epochs get the answers of their first run."""
        self._errored.discard(trial.trial_id)
        self._ended.discard(trial.trial_id)
        self._inner.on_trial_add(tune_controller, trial)
        self._added.add(trial.trial_id)

    def _dumps(self) -> bytes:
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(self._inner)
        return pickle.dumps(
            {
                "format": _FORMAT,
                "scheduler": buffer.getvalue(),
                "trial_ids": sorted(self._added),
                "judged": self._judged,
                "stopped_at": self._stopped_at,
                "stop_results": self._stop_results,
                "ended": sorted(self._ended),
                "errored": sorted(self._errored),
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def _save(self) -> None:
        if self._path is None or self._saved is not None:
            return
        data = self._dumps()
        if data == self._last_written:
            return
        tmp = f"{self._path}.tmp"
        with self._fs.open_output_stream(tmp) as handle:
            handle.write(data)
        self._fs.move(tmp, self._path)
        self._last_written = data

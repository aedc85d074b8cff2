"""Checkpoints that survive a killed driver: resume from the newest, delete only the unreferenced.

Why Tune alone is not enough (Ray 2.60): Tune writes its experiment state
(``experiment_state-*.json``: each trial's status, last result and tracked
checkpoints) every few seconds, and on ``--resume`` it restores each trial
from the checkpoint that *snapshot* recorded. A driver killed between a
trial's checkpoint and the next snapshot therefore resumes that trial from
an older checkpoint, reruns the epochs after it, and, because the trial's
checkpoint counter was restored too, writes them over the newer checkpoint
folder. Tune's retention (``num_to_keep``) deletes old checkpoints at once,
including ones the last snapshot still points to, which then fail to load.

:class:`CheckpointKeeper` is a Tune callback that fixes both, without
patching Ray:

- **Resume** (first controller step of a restored run, before any trial
  starts): for each unfinished trial, the newest *complete* checkpoint on
  disk (see :mod:`regtune.platform.tune.trial_files`) becomes the one Tune
  restores from, with the metrics that epoch reported; checkpoints that are
  gone or incomplete are dropped from Tune's list; and the trial's
  checkpoint counter moves past the highest folder on disk, so no folder is
  ever written twice.
- **Retention** (Tune's own is switched off): when a trial has more than
  ``keep`` checkpoints, the oldest ones leave Tune's list at once, and their
  folders are deleted only once the experiment state stored next to them no
  longer mentions them. A checkpoint the saved experiment state references
  is never deleted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import pyarrow.fs as pafs
from ray.tune import Callback

from regtune.platform.tune.ray_private import (
    registered_checkpoints,
    set_registered_checkpoints,
    trial_storage,
)
from regtune.platform.tune.trial_files import (
    list_checkpoints,
    newest_complete,
    reported_rows,
)

__all__ = ["EXPERIMENT_STATE_PREFIX", "CheckpointKeeper", "mentions"]

#: Tune's experiment snapshot files: ``experiment_state-<time>.json``.
EXPERIMENT_STATE_PREFIX = "experiment_state-"
#: Trial statuses a resumed run continues (Tune re-queues errored ones as PENDING).
_UNFINISHED = frozenset({"PENDING", "PAUSED"})

logger = logging.getLogger(__name__)


def mentions(state_text: str, path: str) -> bool:
    """Whether an experiment state file refers to ``path``.

    Tune stores each trial's checkpoint list cloudpickled and hex-encoded
    inside the JSON, so the path is looked for both as text and as hex. A
    false match only keeps a checkpoint longer.
    """
    return path in state_text or path.encode("utf-8").hex() in state_text


def _newest_state_text(fs: pafs.FileSystem, experiment_path: str) -> str | None:
    try:
        infos = fs.get_file_info(pafs.FileSelector(experiment_path, allow_not_found=True))
    except OSError:
        return None
    names = sorted(
        info.path
        for info in infos
        if info.base_name.startswith(EXPERIMENT_STATE_PREFIX) and info.base_name.endswith(".json")
    )
    if not names:
        return None
    try:
        with fs.open_input_stream(names[-1]) as handle:
            return bytes(handle.read()).decode("utf-8", errors="replace")
    except OSError:
        return None


class CheckpointKeeper(Callback):
    """Tune callback: resume each trial from its newest complete checkpoint,
    and keep ``keep`` checkpoints per trial without deleting any that the
    stored experiment state still references (see the module docstring)."""

    def __init__(self, *, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1; got {keep}")
        self._keep = keep
        self._reconciled = False
        self._trials: Sequence[Any] = ()
        # Folder path -> (filesystem, experiment path) of checkpoints out of
        # Tune's list, waiting until the stored experiment state drops them.
        self._pending: dict[str, tuple[Any, str]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks with the experiment; live trials and pending
        # deletions belong to this driver (a resume rescans the disk).
        state = self.__dict__.copy()
        state.update(_reconciled=False, _trials=(), _pending={})
        return state

    @property
    def pending(self) -> list[str]:
        """Checkpoint folders waiting to be deleted (oldest first per trial)."""
        return list(self._pending)

    # ------------------------------------------------------------------ Tune hooks

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Tune hook: on the first step, reconcile restored trials with the disk."""
        self._trials = trials
        if self._reconciled:
            return
        self._reconciled = True
        for trial in trials:
            if trial.status in _UNFINISHED:
                self._reconcile(trial)

    def on_checkpoint(
        self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        """Tune hook, just before Tune tracks a new checkpoint: untrack the
        oldest so that ``keep`` remain with the new one."""
        registered = registered_checkpoints(trial)
        excess = len(registered) - (self._keep - 1)
        if excess <= 0:
            return
        storage = trial_storage(trial)
        for path, _ in registered[:excess]:
            self._pending[path] = (storage.filesystem, storage.experiment_path)
        set_registered_checkpoints(trial, registered[excess:])

    def get_state(self) -> dict[str, Any] | None:
        """Tune hook, called right after each experiment snapshot: delete the
        untracked checkpoints that the stored snapshot no longer mentions."""
        self._delete_unreferenced()
        return None

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Tune hook, after the final snapshot was stored: last deletions."""
        self._delete_unreferenced()

    # ------------------------------------------------------------------ internals

    def _reconcile(self, trial: Any) -> None:
        storage = trial_storage(trial)
        if not storage.trial_path:
            return
        on_disk = list_checkpoints(storage.filesystem, storage.trial_path)
        if not on_disk:
            return
        by_path = {c.path.rstrip("/"): c for c in on_disk}
        tracked = [
            (path, metrics)
            for path, metrics in registered_checkpoints(trial)
            if (c := by_path.get(path.rstrip("/"))) is not None and c.complete
        ]
        newest = newest_complete(on_disk)
        tracked_epoch = by_path[tracked[-1][0].rstrip("/")].epoch if tracked else None
        if (
            newest is not None
            and newest.epoch is not None
            and (tracked_epoch is None or newest.epoch > tracked_epoch)
        ):
            row = reported_rows(storage.filesystem, storage.trial_path).get(newest.epoch)
            metrics = dict(row) if row else {"training_iteration": newest.epoch}
            tracked.append((newest.path, metrics))
            logger.info(
                "trial %s resumes from %s (epoch %d), newer than Tune's snapshot",
                trial.trial_id,
                newest.path,
                newest.epoch,
            )
        last_index = max(c.index for c in on_disk)
        set_registered_checkpoints(trial, tracked, last_index=last_index)
        if not tracked:
            return
        # Complete checkpoints older than the restore point that Tune does not
        # track (the killed driver's retention had untracked them) are deleted
        # like any other, once the stored state no longer mentions them.
        restore_point = by_path[tracked[-1][0].rstrip("/")]
        kept = {path.rstrip("/") for path, _ in tracked[-self._keep :]}
        for path, c in by_path.items():
            if c.complete and path not in kept and c.index < restore_point.index:
                self._pending.setdefault(path, (storage.filesystem, storage.experiment_path))
        if len(tracked) > self._keep:
            set_registered_checkpoints(trial, tracked[-self._keep :])

    def _delete_unreferenced(self) -> None:
        if not self._pending:
            return
        texts: dict[tuple[int, str], str | None] = {}
        for path, (fs, experiment_path) in list(self._pending.items()):
            key = (id(fs), experiment_path)
            if key not in texts:
                texts[key] = _newest_state_text(fs, experiment_path)
            text = texts[key]
            if text is None or mentions(text, path):
                continue
            # Already gone (deleted by hand, or by the killed driver): fine.
            with contextlib.suppress(FileNotFoundError):
                fs.delete_dir(path)
            del self._pending[path]

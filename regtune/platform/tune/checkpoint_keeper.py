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
  starts): for each unfinished trial, the newest *usable* checkpoint on
  disk becomes the one Tune restores from, with the metrics that epoch
  reported; checkpoints that are not usable are dropped from Tune's list;
  and the trial's checkpoint counter moves past the highest folder on disk,
  so no folder is ever written twice.

  A checkpoint is usable when it is *complete* (see
  :mod:`regtune.platform.tune.trial_files`) and *its epoch is stored*: the
  results store (:mod:`regtune.platform.results`) holds the trial's row for
  the checkpoint's epoch, with the training loss the checkpoint itself
  recorded for that epoch. The store writes rows every few seconds, so a
  killed driver can leave checkpoints whose epochs (and some before them)
  were reported but never stored; a trial resumed from one would never
  train, nor store, those epochs again. Rows are written in the order they
  were reported, whole parts at a time, so a stored row for the
  checkpoint's epoch means every epoch before it is stored too. Comparing
  the training loss, not only the epoch number, refuses a checkpoint of
  another lineage than the stored row (PBT: a trial that cloned another's
  weights and re-reported epochs it had stored before). A trial with no
  usable checkpoint starts over. Either way it reruns only epochs whose
  rows are missing or are replaced by the same numbers (the checkpoint
  holds every RNG state). Complete checkpoints that are not usable are
  deleted like any other untracked one.
- **Retention** (Tune's own is switched off): when a trial has more than
  ``keep`` checkpoints, the oldest ones leave Tune's list at once, and their
  folders are deleted only once the experiment state stored next to them no
  longer mentions them. A checkpoint the saved experiment state references
  is never deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.tune import Callback

from regtune.platform.results.files import RESULTS_DIR, ResultsLocation
from regtune.platform.results.read import check_part, scan_epoch_parts
from regtune.platform.tune.ray_private import (
    registered_checkpoints,
    set_registered_checkpoints,
    trial_storage,
)
from regtune.platform.tune.trial_files import (
    STATE_DIR,
    CheckpointOnDisk,
    list_checkpoints,
    reported_rows,
)
from regtune.trainables.checkpoint import TREE_FILE

__all__ = [
    "EXPERIMENT_STATE_PREFIX",
    "STORED_METRIC",
    "CheckpointKeeper",
    "mentions",
    "stored_losses",
    "usable_checkpoints",
]

#: Tune's experiment snapshot files: ``experiment_state-<time>.json``.
EXPERIMENT_STATE_PREFIX = "experiment_state-"
#: Trial statuses a resumed run continues (Tune re-queues errored ones as PENDING).
_UNFINISHED = frozenset({"PENDING", "PAUSED"})
#: The metric that ties a checkpoint to a stored row: every epoch reports it,
#: the trainer's history (saved in the checkpoint) keeps it, and two
#: lineages of one trial practically never share it to the last bit.
STORED_METRIC = "train_loss"

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


def stored_losses(fs: pafs.FileSystem, experiment_path: str) -> dict[str, dict[int, float]]:
    """Per trial id: each stored epoch and its :data:`STORED_METRIC` (NaN
    where the row has none), from the results store of the experiment at
    ``experiment_path`` on ``fs``. The latest written row of an epoch wins,
    as for every reader of the store; parts the store would not read are
    skipped (the results writer has warned about them already).

    Raises:
        DataError: a part of another schema version.
    """
    loc = ResultsLocation(fs=fs, root=f"{experiment_path.rstrip('/')}/{RESULTS_DIR}", scheme="")

    def read(path: str) -> pa.Table:
        with pq.ParquetFile(path, filesystem=fs) as parquet:
            check_part(path, parquet.schema_arrow)
            names = parquet.schema_arrow.names
            wanted = ("trial_id", "iteration", STORED_METRIC)
            return parquet.read(columns=[c for c in wanted if c in names])

    out: dict[str, dict[int, float]] = {}
    for _, table in scan_epoch_parts(loc, read, lambda path, reason: None):
        losses = (
            table[STORED_METRIC].to_pylist()
            if STORED_METRIC in table.column_names
            else [None] * table.num_rows
        )
        for trial_id, iteration, loss in zip(
            table["trial_id"].to_pylist(), table["iteration"].to_pylist(), losses, strict=True
        ):
            out.setdefault(str(trial_id), {})[int(iteration)] = (
                math.nan if loss is None else float(loss)
            )
    return out


def _recorded_loss(fs: pafs.FileSystem, checkpoint: CheckpointOnDisk) -> float | None:
    """The :data:`STORED_METRIC` the checkpoint's own training history gives
    its epoch, or ``None`` when the history does not say."""
    try:
        with fs.open_input_stream(f"{checkpoint.path}/{STATE_DIR}/{TREE_FILE}") as handle:
            history = json.loads(bytes(handle.read()))["tree"]["history"]
        entry = history[-1]
        if int(entry.get("epoch", len(history))) != checkpoint.epoch:
            return None
        return float(entry[STORED_METRIC])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def usable_checkpoints(
    fs: pafs.FileSystem, on_disk: Sequence[CheckpointOnDisk], stored: Mapping[int, float]
) -> list[CheckpointOnDisk]:
    """The checkpoints a resumed trial may continue from, oldest first: the
    complete ones whose epoch is stored (``stored``: the trial's epochs and
    their :data:`STORED_METRIC`, from :func:`stored_losses`) with the value
    the checkpoint's own history recorded for that epoch."""
    usable = []
    for c in on_disk:
        if c.epoch is None or c.epoch not in stored:
            continue
        recorded = _recorded_loss(fs, c)
        if recorded is not None and _same(recorded, stored[c.epoch]):
            usable.append(c)
    return usable


class CheckpointKeeper(Callback):
    """Tune callback: resume each trial from its newest checkpoint whose
    epoch is stored, and keep ``keep`` checkpoints per trial without deleting any that the
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
        stored: dict[tuple[int, str], dict[str, dict[int, float]]] = {}
        for trial in trials:
            if trial.status not in _UNFINISHED:
                continue
            storage = trial_storage(trial)
            key = (id(storage.filesystem), storage.experiment_path)
            if key not in stored:
                stored[key] = stored_losses(storage.filesystem, storage.experiment_path)
            self._reconcile(trial, stored[key].get(trial.trial_id, {}))

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

    def _reconcile(self, trial: Any, stored: Mapping[int, float]) -> None:
        storage = trial_storage(trial)
        if not storage.trial_path:
            return
        on_disk = list_checkpoints(storage.filesystem, storage.trial_path)
        if not on_disk:
            return
        usable = usable_checkpoints(storage.filesystem, on_disk, stored)
        by_path = {c.path.rstrip("/"): c for c in usable}
        registered = registered_checkpoints(trial)
        tracked = [(path, metrics) for path, metrics in registered if path.rstrip("/") in by_path]
        newest = max(usable, key=lambda c: (c.epoch, c.index), default=None)
        tracked_epoch = by_path[tracked[-1][0].rstrip("/")].epoch if tracked else None
        if newest is not None and newest.epoch is not None:
            if tracked_epoch is None or newest.epoch > tracked_epoch:
                row = reported_rows(storage.filesystem, storage.trial_path).get(newest.epoch)
                metrics = dict(row) if row else {"training_iteration": newest.epoch}
                tracked.append((newest.path, metrics))
            logger.info(
                "trial %s resumes from %s (epoch %d)", trial.trial_id, newest.path, newest.epoch
            )
        elif registered:
            logger.info(
                "trial %s starts over: none of its checkpoints' epochs is stored", trial.trial_id
            )
        last_index = max(c.index for c in on_disk)
        set_registered_checkpoints(trial, tracked, last_index=last_index)
        # Complete checkpoints Tune does not track are deleted like any other,
        # once the stored state no longer mentions them: those older than the
        # restore point (the killed driver's retention had untracked them)
        # and those whose epochs are not stored (never restored from).
        restore_index = by_path[tracked[-1][0].rstrip("/")].index if tracked else None
        kept = {path.rstrip("/") for path, _ in tracked[-self._keep :]}
        for c in on_disk:
            path = c.path.rstrip("/")
            if not c.complete or path in kept:
                continue
            if path not in by_path or (restore_index is not None and c.index < restore_index):
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

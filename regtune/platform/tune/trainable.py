"""The one module that adapts a training run to Ray Tune.

:class:`TuneTrainable` is a class trainable so Tune can reuse its actor for
the next trial (``reset_config``) instead of paying ~1.5 s for a new process,
and so a step is one epoch with checkpoints Tune can request at any time
(PBT exploits, pauses, retries after a worker died).

The dataset arrives through :func:`ray.tune.with_parameters`, i.e. once in
Ray's object store, shared by every trial on a node rather than re-read per
trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from ray import tune

from regtune.platform.tune.ray_private import DONE
from regtune.platform.tune.trial_files import STATE_DIR
from regtune.trainables.data import Dataset
from regtune.trainables.loop import Trainer

__all__ = ["STATE_DIR", "TuneTrainable", "make_trainable"]


class TuneTrainable(tune.Trainable):
    """One regtune training run as a Tune trainable (one step = one epoch)."""

    _trainer: Trainer
    _dataset: Dataset | None

    def setup(
        self, config: dict[str, Any], dataset: Dataset | None = None, threads: int = 1
    ) -> None:
        """Build the trainer; ``dataset`` comes from the object store."""
        # A trial given n CPUs runs n intra-op threads: more would oversubscribe
        # the node when several trials share it.
        torch.set_num_threads(max(1, threads))
        self._dataset = dataset
        # A trial's config is not new input: the driver checked it against the
        # data before Ray started, or it ran before (a resumed sweep's, read
        # as stored). A setting idle on the data is logged, not refused.
        self._trainer = Trainer(config, dataset=dataset, stored=True)

    def step(self) -> dict[str, Any]:
        """Train one epoch; on the last one also score the test split.

        A trial restored from its final checkpoint (it ended after Tune's last
        experiment snapshot, then the driver was killed) trains nothing more:
        it re-reports its last epoch, under the same iteration, and ends.
        """
        if self._trainer.should_stop:
            # Tune adds one to the iteration after step(); the re-report keeps
            # the number the epoch had, so stores and schedulers see a repeat.
            self._iteration -= 1
            row: dict[str, Any] = dict(self._trainer.history[-1])
            row.update(self._trainer.finish())
            row["stopped_early"] = self._trainer.early.stopped
            row[DONE] = True
            return row
        row = dict(self._trainer.run_epoch())
        if self._trainer.should_stop:
            row.update(self._trainer.finish())
            row["stopped_early"] = self._trainer.early.stopped
            row[DONE] = True
        return row

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Write the trainer state (safetensors + JSON) under ``checkpoint_dir``."""
        self._trainer.save(Path(checkpoint_dir) / STATE_DIR)

    def load_checkpoint(self, checkpoint: str | dict[str, Any] | None) -> None:
        """Continue from a directory written by :meth:`save_checkpoint`."""
        if isinstance(checkpoint, str):
            self._trainer.restore(Path(checkpoint) / STATE_DIR)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Start a new trial in this actor (actor reuse)."""
        self._trainer = Trainer(new_config, dataset=self._dataset, stored=True)
        self.config = new_config
        return True


def make_trainable(dataset: Dataset, *, threads: int) -> Any:
    """Bind ``dataset`` (put once in the object store) and thread count."""
    return tune.with_parameters(TuneTrainable, dataset=dataset, threads=threads)

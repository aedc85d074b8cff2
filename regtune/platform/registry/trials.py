"""A finished sweep's trials as promotion sees them: config, metrics and weights on disk.

Read from Tune's experiment directory (local path), without Ray: each trial
folder holds ``params.json``, ``result.json`` (one JSON line per reported
epoch) and ``checkpoint_NNNNNN/regtune_state/`` (regtune's safetensors
training state). A trial counts with its newest *complete* checkpoint, and
its metrics are the row it reported at that checkpoint's epoch, so a member's
weights and the numbers it was chosen by always belong together.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from regtune.errors import CheckpointError, SpecError
from regtune.platform.registry.location import storage_root
from regtune.trainables.checkpoint import TENSORS_FILE, TREE_FILE, load_tree

__all__ = [
    "SweepTrial",
    "TrialWeights",
    "excluded_by_results_store",
    "experiment_path",
    "read_objectives",
    "read_sweep_trials",
    "read_weights",
]

#: Subfolder of a Tune checkpoint holding regtune's training state.
STATE_DIR = "regtune_state"
_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")

NO_EXPERIMENT = (
    "experiment {ref!r} not found: {path} is not a directory; pass an experiment name under "
    "the storage root {root} (or --storage) or the experiment's path"
)
NOT_LOCAL = (
    "promotion reads experiments from a local path; {where} is on an object store: sync the "
    "experiment locally (e.g. aws s3 sync / gcloud storage rsync) and pass its path"
)
NO_TRIALS = "experiment {path} has no trial folders (params.json); was the sweep run?"


@dataclass(frozen=True)
class SweepTrial:
    """One trial: its id, folder, config, the metrics at its checkpoint, the checkpoint."""

    trial_id: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    checkpoint: Path | None
    epoch: int | None


@dataclass(frozen=True)
class TrialWeights:
    """A trial's trained weights, the config and dataset fingerprint they belong
    to, and the post-processing the trainer fitted for them (None: none stored:
    not configured, not kept, or the run never finished)."""

    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    fingerprint: str | None
    temperatures: tuple[float, ...] | None = None
    thresholds: tuple[float, ...] | None = None


def _local(where: str) -> str:
    """``where`` as a local path (``file://`` stripped).

    Raises:
        SpecError: ``where`` is any other URI (an object store).
    """
    if where.startswith("file://"):
        return where.removeprefix("file://")
    if "://" in where:
        raise SpecError(NOT_LOCAL.format(where=where))
    return where


def experiment_path(ref: str, storage: str | None = None) -> Path:
    """An experiment name under the storage root, or a path to an experiment
    (local, or a ``file://`` URI).

    Raises:
        SpecError: neither names a directory, or the experiment is on an
            object store (``s3://``, ``gs://``; promotion reads local files).
    """
    candidate = Path(_local(ref)).expanduser()
    if ("/" in ref or candidate.is_dir()) and candidate.is_dir():
        return candidate.resolve()
    root = storage_root(storage)
    if "://" in root and not root.startswith("file://"):
        raise SpecError(NOT_LOCAL.format(where=f"{root.rstrip('/')}/{ref}"))
    path = Path(_local(root)) / ref
    if not path.is_dir():
        raise SpecError(NO_EXPERIMENT.format(ref=ref, path=path, root=root))
    return path.resolve()


def _reported_rows(path: Path) -> dict[int, dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn last line while the trial was being killed
        if isinstance(row, dict) and isinstance(row.get("training_iteration"), int):
            rows[row["training_iteration"]] = row
    return rows


def _checkpoint_epoch(state_dir: Path) -> int | None:
    if not (state_dir / TENSORS_FILE).is_file():
        return None
    try:
        epoch = json.loads((state_dir / TREE_FILE).read_text())["tree"]["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def _newest_checkpoint(trial: Path) -> tuple[Path | None, int | None]:
    best: tuple[int, int, Path] | None = None
    for entry in trial.iterdir():
        match = _CHECKPOINT.match(entry.name)
        if not match or not entry.is_dir():
            continue
        epoch = _checkpoint_epoch(entry / STATE_DIR)
        if epoch is not None and (best is None or (epoch, int(match.group(1))) > best[:2]):
            best = (epoch, int(match.group(1)), entry / STATE_DIR)
    return (best[2], best[0]) if best else (None, None)


def read_sweep_trials(experiment: Path) -> list[SweepTrial]:
    """Every trial folder of ``experiment`` (sorted by trial id).

    Raises:
        SpecError: the folder holds no trials.
    """
    trials = []
    for folder in sorted(p for p in experiment.iterdir() if (p / "params.json").is_file()):
        try:
            config = json.loads((folder / "params.json").read_text())
        except (OSError, ValueError):
            continue
        rows = _reported_rows(folder / "result.json")
        checkpoint, epoch = _newest_checkpoint(folder)
        row = rows.get(epoch, {}) if epoch is not None else (rows[max(rows)] if rows else {})
        trial_id = str(row.get("trial_id") or folder.name.removeprefix("trial_"))
        metrics = {
            k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        trials.append(SweepTrial(trial_id, folder, config, metrics, checkpoint, epoch))
    if not trials:
        raise SpecError(NO_TRIALS.format(path=experiment))
    return trials


def read_objectives(experiment: Path) -> list[tuple[str, str]] | None:
    """The sweep's objectives from ``results/spec.json``, when the results store wrote one."""
    try:
        spec = json.loads((experiment / "results" / "spec.json").read_text())
        objectives = [(str(o["metric"]), str(o["mode"])) for o in spec["objectives"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return objectives or None


def read_weights(trial: SweepTrial) -> TrialWeights:
    """The weights a trial would be scored with: the early-stopping best state when
    the checkpoint keeps one, else the current model.

    Raises:
        CheckpointError: the trial has no complete checkpoint or it cannot be read.
    """
    if trial.checkpoint is None:
        raise CheckpointError(
            f"trial {trial.trial_id} ({trial.path}) has no complete checkpoint to promote"
        )
    tree = load_tree(trial.checkpoint)
    state = tree.get("best_state") or tree.get("model")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {trial.checkpoint} holds no model weights")
    stored = tree.get("config")
    config: dict[str, Any] = stored if isinstance(stored, dict) else trial.config
    fingerprint = tree.get("fingerprint")
    return TrialWeights(
        state=dict(state),
        config=dict(config),
        fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        temperatures=_stored_vector(tree, "temperatures", trial.checkpoint),
        thresholds=_stored_vector(tree, "thresholds", trial.checkpoint),
    )


def _stored_vector(tree: dict[str, Any], key: str, where: Path) -> tuple[float, ...] | None:
    """A 1-d finite tensor the trainer saved (``thresholds``/``temperatures``), or None.

    Raises:
        CheckpointError: the entry is there but not a 1-d finite tensor.
    """
    value = tree.get(key)
    if value is None:
        return None
    if not isinstance(value, torch.Tensor) or value.ndim != 1 or value.numel() == 0:
        raise CheckpointError(
            f"checkpoint {where}: {key!r} is not a 1-d tensor; expected the trainer's fitted "
            f"{key} (one value, or one per group)"
        )
    values = tuple(float(v) for v in value.double().tolist())
    if not all(torch.isfinite(value.double()).tolist()):
        raise CheckpointError(f"checkpoint {where}: {key!r} holds non-finite values {values}")
    return values


def excluded_by_results_store(experiment: Path) -> dict[str, str]:
    """Trials the results store marks unusable (``{trial_id: reason}``): an
    ``error`` status or a constant predictor. Empty when the experiment has
    no results store (sweeps from before it) or it cannot be read."""
    if not (experiment / "results" / "trials.parquet").is_file():
        return {}
    from regtune.errors import DataError
    from regtune.platform.results import read_trials

    try:
        table = read_trials(str(experiment))
    except (DataError, OSError):
        return {}
    out: dict[str, str] = {}
    for row in table.itertuples(index=False):
        if bool(row.degenerate):
            out[str(row.trial_id)] = "constant predictor"
        elif row.status == "error":
            out[str(row.trial_id)] = "error"
    return out

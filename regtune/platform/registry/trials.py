"""A finished sweep's trials as promotion sees them: config, metrics and weights on disk.

Read from Tune's experiment directory (local path), without Ray: each trial
folder holds ``params.json``, ``result.json`` (one JSON line per reported
epoch) and ``checkpoint_NNNNNN/regtune_state/`` (regtune's safetensors
training state). A trial counts with its newest *complete* checkpoint (one
whose ``state.json`` parses and whose ``tensors.safetensors`` holds every
byte its header promises): a damaged newer one is passed over and named in
:attr:`SweepTrial.damaged`. Its
weights are the ones the trainer keeps (:func:`read_weights`): the
checkpoint's ``best_state`` when it holds one (early stopping's best epoch,
or the epoch a fairness bound keeps), else the current model. Its metrics
and ``epoch`` are those of the epoch those weights are from, so a member's
weights and the numbers it was chosen by always belong together:

- no ``best_state``: the row reported at the checkpoint's epoch;
- a ``best_state``: the kept epoch's row (validation numbers, model facts),
  plus what the last report added at the checkpoint's epoch that is not an
  epoch's number (the ``test_*`` metrics, calibration):
  ``Trainer.finish`` scores those on the kept weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

from regtune.errors import CheckpointError, SpecError
from regtune.platform.registry.location import storage_root
from regtune.platform.tune.trial_files import safetensors_problem
from regtune.trainables.checkpoint import TENSORS_FILE, TREE_FILE, load_tree
from regtune.trainables.config import parse_train_config
from regtune.trainables.selection import gap_metric, select_epoch

__all__ = [
    "SweepTrial",
    "TrialWeights",
    "excluded_by_results_store",
    "experiment_path",
    "kept_epoch",
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
#: A trial left out because its config file cannot be read (a reason of promotion's left_out).
BAD_PARAMS = "params.json cannot be read ({error})"


def _one_line(exc: Exception) -> str:
    """An exception as one short line (a JSON error names line and column)."""
    return " ".join(str(exc).split())[:200]


@dataclass(frozen=True)
class SweepTrial:
    """One trial: its id, folder, config, the metrics of the weights it would be
    promoted with, their epoch, and the checkpoint (see the module docstring)."""

    trial_id: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    checkpoint: Path | None
    #: The epoch of the weights promotion ships (the kept epoch with a ``best_state``).
    epoch: int | None
    #: The epoch the checkpoint was written after (None: no complete checkpoint).
    checkpoint_epoch: int | None = None
    #: Newer checkpoints passed over as damaged, each ``"checkpoint_NNNNNN (why)"``.
    damaged: tuple[str, ...] = ()
    #: Why the trial cannot be promoted at all (its ``params.json`` cannot be read).
    problem: str | None = None


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
        except (ValueError, RecursionError):
            continue  # a torn last line while the trial was being killed
        if isinstance(row, dict) and isinstance(row.get("training_iteration"), int):
            rows[row["training_iteration"]] = row
    return rows


def _checkpoint_tree(state_dir: Path) -> dict[str, Any] | None:
    """The JSON part of a complete checkpoint's tree (tensors left as markers), or None."""
    if not (state_dir / TENSORS_FILE).is_file():
        return None
    try:
        tree = json.loads((state_dir / TREE_FILE).read_text())["tree"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if not isinstance(tree, dict) or not _is_int(tree.get("epoch")):
        return None
    return tree


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _newest_checkpoint(trial: Path) -> tuple[Path | None, dict[str, Any] | None, tuple[str, ...]]:
    """(state folder, JSON tree) of the trial's newest complete checkpoint (None, None:
    none), and the newer ones passed over as damaged (``"checkpoint_NNNNNN (why)"``)."""
    found: list[tuple[tuple[int, int], Path, dict[str, Any]]] = []
    for entry in trial.iterdir():
        match = _CHECKPOINT.match(entry.name)
        if not match or not entry.is_dir():
            continue
        tree = _checkpoint_tree(entry / STATE_DIR)
        if tree is not None:
            found.append(((int(tree["epoch"]), int(match.group(1))), entry / STATE_DIR, tree))
    damaged: list[str] = []
    for _, state_dir, tree in sorted(found, key=lambda f: f[0], reverse=True):
        problem = safetensors_problem(pafs.LocalFileSystem(), str(state_dir / TENSORS_FILE))
        if problem is None:
            return state_dir, tree, tuple(damaged)
        damaged.append(f"{state_dir.parent.name} ({problem})")
    return None, None, tuple(damaged)


def kept_epoch(tree: dict[str, Any]) -> int | None:
    """The epoch whose weights a checkpoint's ``best_state`` holds (the trainer's rule,
    ``Trainer.kept_selection`` then early stopping's best epoch); None: the
    checkpoint keeps no ``best_state`` (its current weights are the ones used),
    or the epoch cannot be told from it."""
    if not tree.get("best_state"):
        return None
    history = [r for r in tree.get("history") or [] if isinstance(r, dict)]
    epochs = {int(r["epoch"]) for r in history if isinstance(r.get("epoch"), (int, float))}
    # Today's trainer names it in every row (loop.kept_epoch); older checkpoints
    # get the rule rebuilt below.
    named = history[-1].get("kept_epoch") if history else None
    if isinstance(named, (int, float)) and not isinstance(named, bool) and named in epochs:
        return int(named)
    try:
        fair = parse_train_config(tree.get("config") or {}, stored=True).penalties.fairness
    except (SpecError, ValueError, TypeError):
        return None
    key = gap_metric(fair.kind) if fair.kind != "none" else None
    bound = fair.bound if fair.training_method is not None else None
    if bound is not None and key is not None and history and key in history[0]:
        try:
            kept = select_epoch(history, gap_key=key, bound=bound, margin=fair.margin)
        except ValueError:
            return None
        return kept.epoch if kept.epoch in epochs else None
    early = tree.get("early")
    best = early.get("best_epoch") if isinstance(early, dict) else None
    return best if _is_int(best) and best in epochs else None


def _numbers(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _trial_metrics(
    rows: dict[int, dict[str, Any]], tree: dict[str, Any] | None
) -> tuple[dict[str, Any], int | None, bool]:
    """(metrics, epoch of the shipped weights, usable) of a trial; see the module doc."""
    if tree is None:
        return _numbers(rows[max(rows)] if rows else {}), None, True
    at_checkpoint = rows.get(int(tree["epoch"]), {})
    if not tree.get("best_state"):
        return _numbers(at_checkpoint), int(tree["epoch"]), True
    epoch = kept_epoch(tree)
    if epoch is None:
        return {}, None, False
    history = {int(r["epoch"]): r for r in tree["history"] if isinstance(r, dict) and "epoch" in r}
    # The checkpoint's own history, not result.json's row of that iteration: after a
    # PBT exploit the trial's earlier reports are of other weights.
    kept_row = history[epoch]
    # What only the last report adds (test_*, kept_epoch, calibration) is of the kept weights.
    epoch_keys = set().union(*(r.keys() for r in history.values()))
    extra = {k: v for k, v in at_checkpoint.items() if k not in epoch_keys}
    return {**_numbers(extra), **_numbers(kept_row)}, epoch, True


def read_sweep_trials(experiment: Path) -> list[SweepTrial]:
    """Every trial folder of ``experiment`` (sorted by trial id).

    A trial whose checkpoint keeps a ``best_state`` of an epoch it cannot name
    counts as having no usable checkpoint. A trial whose ``params.json`` cannot
    be read is kept, without a checkpoint, with why in ``problem``.

    Raises:
        SpecError: the folder holds no trials.
    """
    trials = []
    for folder in sorted(p for p in experiment.iterdir() if (p / "params.json").is_file()):
        problem = None
        try:
            config = json.loads((folder / "params.json").read_text())
            if not isinstance(config, dict):
                raise ValueError(f"it holds {type(config).__name__}, not an object")
        except (OSError, ValueError, RecursionError) as exc:
            config, problem = {}, BAD_PARAMS.format(error=_one_line(exc))
        rows = _reported_rows(folder / "result.json")
        checkpoint, tree, damaged = _newest_checkpoint(folder)
        metrics, epoch, usable = _trial_metrics(rows, tree)
        last = rows.get(int(tree["epoch"]), {}) if tree else (rows[max(rows)] if rows else {})
        trial_id = str(last.get("trial_id") or folder.name.removeprefix("trial_"))
        trials.append(
            SweepTrial(
                trial_id,
                folder,
                config,
                metrics,
                checkpoint if usable and problem is None else None,
                epoch,
                int(tree["epoch"]) if tree else None,
                damaged,
                problem,
            )
        )
    if not trials:
        raise SpecError(NO_TRIALS.format(path=experiment))
    return trials


def read_objectives(experiment: Path) -> list[tuple[str, str]] | None:
    """The sweep's objectives from ``results/spec.json``, when the results store wrote one."""
    try:
        spec = json.loads((experiment / "results" / "spec.json").read_text())
        objectives = [(str(o["metric"]), str(o["mode"])) for o in spec["objectives"]]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
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

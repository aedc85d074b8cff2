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

- no ``best_state``: the checkpoint's epoch's row;
- a ``best_state``: the kept epoch's row (validation numbers, model facts),
  plus what the last report added at the checkpoint's epoch that is not an
  epoch's number (the ``test_*`` metrics, calibration):
  ``Trainer.finish`` scores those on the kept weights.

An epoch's numbers come from the checkpoint's own ``history`` (the rows its
weights' training reported), never from ``result.json`` alone: under PBT Ray's
``result.json`` loses lines (a trial's iterations read ``1,2,3,4,7,8``) and
repeats iterations after an exploit (``1,2,3,4,3,4,...``: the repeat is of the
donor's weights, the first of the trial's own). The report at the
checkpoint's epoch (for what only it holds: ``test_*``, calibration, Tune's
times) is the ``result.json`` line of that iteration whose epoch numbers are
the history's row, else the experiment's results store row of that trial and
iteration when its numbers are; with neither, the history row alone counts.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
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


def _reported_rows(path: Path) -> dict[int, list[dict[str, Any]]]:
    """Every line of ``result.json`` by iteration, in the order written (after a
    PBT exploit an iteration is reported twice, by weights of two lineages)."""
    rows: dict[int, list[dict[str, Any]]] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue  # a torn last line while the trial was being killed
        if isinstance(row, dict) and _is_int(row.get("training_iteration")):
            rows.setdefault(row["training_iteration"], []).append(row)
    return rows


#: Epoch-row keys ``Trainer.finish`` may restate in the last report (not evidence
#: of which weights a report is of).
_RESTATED = frozenset({"epoch", "kept_epoch"})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_numbers(a: Any, b: Any) -> bool:
    if not (_is_number(a) and _is_number(b)):
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _reports_row(report: dict[str, Any], epoch_row: dict[str, Any]) -> bool:
    """Whether ``report`` is the report of the history row ``epoch_row``: every
    number both hold (but the restated ones) is the same, and there is one."""
    shared = [
        k for k, v in epoch_row.items() if k not in _RESTATED and _is_number(v) and k in report
    ]
    return bool(shared) and all(_same_numbers(epoch_row[k], report[k]) for k in shared)


#: The results store's rows of one trial and iteration (None: the store has none).
StoreRow = Callable[[str, int], "dict[str, Any] | None"]


def _store_rows(experiment: Path) -> StoreRow:
    """A look-up of the experiment's results store rows (read once, when first asked;
    nothing when the experiment has no store or it cannot be read)."""
    cache: dict[tuple[str, int], dict[str, Any]] | None = None

    def lookup(trial_id: str, iteration: int) -> dict[str, Any] | None:
        nonlocal cache
        if cache is None:
            cache = _read_store_rows(experiment)
        return cache.get((trial_id, iteration))

    return lookup


def _read_store_rows(experiment: Path) -> dict[tuple[str, int], dict[str, Any]]:
    if not (experiment / "results").is_dir():
        return {}
    from regtune.errors import DataError
    from regtune.platform.results import ResultsWarning, read_epochs

    try:
        with warnings.catch_warnings():
            # Parts the store skips are named by the commands that read the store itself.
            warnings.simplefilter("ignore", ResultsWarning)
            frame = read_epochs(str(experiment))
    except (DataError, OSError, ValueError):
        return {}
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for record in frame.to_dict("records"):
        row = {
            str(k): v.item() if hasattr(v, "item") else v
            for k, v in record.items()
            if not str(k).startswith("config.")
        }
        # A metric the epoch did not report is null in the store (NaN in pandas).
        row = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        if _is_int(row.get("iteration")):
            out[(str(row.get("trial_id")), row["iteration"])] = row
    return out


def _checkpoint_report(
    reported: list[dict[str, Any]],
    epoch_row: dict[str, Any] | None,
    store_row: Callable[[], dict[str, Any] | None],
) -> dict[str, Any]:
    """The report made at a checkpoint's epoch by the checkpoint's weights ({}: none known).

    ``reported``: result.json's lines of that iteration; ``epoch_row``: the
    checkpoint history's row of that epoch (None: an old checkpoint without
    one, when the latest line is taken as before).
    """
    if epoch_row is None:
        return reported[-1] if reported else {}
    for row in reversed(reported):
        if _reports_row(row, epoch_row):
            return row
    stored = store_row()
    if stored is not None and _reports_row(stored, epoch_row):
        return stored
    return {}


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


def _history_rows(tree: dict[str, Any]) -> dict[int, dict[str, Any]]:
    history = tree.get("history")
    return {
        int(r["epoch"]): r
        for r in (history if isinstance(history, list) else [])
        if isinstance(r, dict) and _is_number(r.get("epoch")) and math.isfinite(r["epoch"])
    }


def _trial_metrics(
    rows: dict[int, list[dict[str, Any]]],
    tree: dict[str, Any] | None,
    store_row: Callable[[int], dict[str, Any] | None],
) -> tuple[dict[str, Any], dict[str, Any], int | None, bool]:
    """(metrics, the checkpoint epoch's report, epoch of the shipped weights, usable)
    of a trial; see the module doc. ``store_row(iteration)``: the results
    store's row of this trial at that iteration."""
    if tree is None:
        last = rows[max(rows)][-1] if rows else {}
        return _numbers(last), last, None, True
    at = int(tree["epoch"])
    history = _history_rows(tree)
    epoch_row = history.get(at)
    report = _checkpoint_report(rows.get(at, []), epoch_row, lambda: store_row(at))
    if not tree.get("best_state"):
        # The report's extras (test_*, Tune's times), then the epoch's own numbers.
        return {**_numbers(report), **_numbers(epoch_row or {})}, report, at, True
    epoch = kept_epoch(tree)
    if epoch is None:
        return {}, report, None, False
    # The checkpoint's own history, not result.json's row of that iteration: after a
    # PBT exploit the trial's earlier reports are of other weights.
    kept_row = history[epoch]
    # What only the last report adds (test_*, kept_epoch, calibration) is of the kept weights.
    epoch_keys = set().union(*(r.keys() for r in history.values()))
    extra = {k: v for k, v in report.items() if k not in epoch_keys}
    return {**_numbers(extra), **_numbers(kept_row)}, report, epoch, True


def read_sweep_trials(experiment: Path) -> list[SweepTrial]:
    """Every trial folder of ``experiment`` (sorted by trial id).

    A trial whose checkpoint keeps a ``best_state`` of an epoch it cannot name
    counts as having no usable checkpoint. A trial whose ``params.json`` cannot
    be read is kept, without a checkpoint, with why in ``problem``.

    Raises:
        SpecError: the folder holds no trials.
    """
    trials = []
    store = _store_rows(experiment)
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
        named = next(
            (r["trial_id"] for lines in rows.values() for r in lines if r.get("trial_id")), None
        )
        known_id = str(named or folder.name.removeprefix("trial_"))
        metrics, last, epoch, usable = _trial_metrics(rows, tree, partial(store, known_id))
        trial_id = str(last.get("trial_id") or known_id)
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

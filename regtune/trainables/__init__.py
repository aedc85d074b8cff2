"""Training one configuration, in pure PyTorch (no Ray): data, models,
penalties, attacks, fairness, metrics and the epoch loop.

The public names below are imported on first use, so ``import
regtune.trainables.config`` (what a spec validator needs) does not pay for
torch::

    from regtune.trainables import Trainer, load_dataset, parse_train_config

    config = parse_train_config({"dataset": "digits", "training": {"epochs": 3}})
    result = train(config)            # RunResult: history, test metrics, model
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from regtune.trainables.catalog import BUILTIN_DATASETS
    from regtune.trainables.checkpoint import load_tree, save_tree
    from regtune.trainables.cohort import Cohort, fusable, make_cohort
    from regtune.trainables.config import METRIC_MODES, TrainConfig, parse_train_config
    from regtune.trainables.data import Dataset, Split, load_dataset
    from regtune.trainables.loop import RunResult, Trainer, train
    from regtune.trainables.models import build_model
    from regtune.trainables.schema import FeatureSchema
    from regtune.trainables.sources import check_data_file

__all__ = [
    "BUILTIN_DATASETS",
    "METRIC_MODES",
    "Cohort",
    "Dataset",
    "FeatureSchema",
    "RunResult",
    "Split",
    "TrainConfig",
    "Trainer",
    "build_model",
    "check_data_file",
    "fusable",
    "load_dataset",
    "load_tree",
    "make_cohort",
    "parse_train_config",
    "save_tree",
    "train",
]

#: Where each public name lives.
_HOMES = {
    "BUILTIN_DATASETS": "catalog",
    "METRIC_MODES": "config",
    "Cohort": "cohort",
    "Dataset": "data",
    "FeatureSchema": "schema",
    "RunResult": "loop",
    "Split": "data",
    "TrainConfig": "config",
    "Trainer": "loop",
    "build_model": "models",
    "check_data_file": "sources",
    "fusable": "cohort",
    "load_dataset": "data",
    "load_tree": "checkpoint",
    "make_cohort": "cohort",
    "parse_train_config": "config",
    "save_tree": "checkpoint",
    "train": "loop",
}


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})  # the lazy names too, for dir() and completion

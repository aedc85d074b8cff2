"""Is a user's data file there, and does it have the declared columns?

Answered from the file's column names alone (a CSV header, a Parquet
schema), so a sweep spec or training config is refused before Ray starts or
a model is built; :mod:`~regtune.trainables.data` loads and checks the rest
(values, labels, groups). Imports nothing heavy at module level: the spec
validator imports this.
"""

from __future__ import annotations

from pathlib import Path

from regtune.errors import Problem
from regtune.trainables.catalog import FILE_DATASETS
from regtune.trainables.config import DatasetConfig

__all__ = ["MISSING_COLUMN", "MISSING_FILE", "UNREADABLE_COLUMNS", "check_data_file"]

MISSING_FILE = "{path}: file not found; expected a {kind} file"
MISSING_COLUMN = "{path}: no {role} column {column!r}; available columns: {available}"
UNREADABLE_COLUMNS = "{path}: cannot read the column names as {kind} ({error})"


def check_data_file(cfg: DatasetConfig) -> list[Problem]:
    """What is wrong with a csv/parquet dataset that can be told without
    loading it: a missing or unreadable file, and declared columns (label,
    features, categorical, sensitive) the file lacks. Reads only the column
    names (the CSV header, the Parquet schema), so it is cheap enough to run
    while a spec is validated, before Ray starts. Built-ins: no problems.

    Returns:
        Problems at ``dataset.path`` (the file) or ``dataset.<role>`` (a
        column), each naming the file.
    """
    if cfg.name not in FILE_DATASETS:
        return []
    path = Path(str(cfg.path)).expanduser()
    if not path.is_file():
        return [Problem("dataset.path", MISSING_FILE.format(path=path, kind=cfg.name))]
    # Imported here: a spec over a built-in dataset never needs them.
    import pandas as pd
    import pyarrow.parquet as pq

    try:
        if cfg.name == "csv":
            columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        else:
            columns = list(pq.read_schema(path).names)
    except (OSError, ValueError) as exc:
        message = UNREADABLE_COLUMNS.format(path=path, kind=cfg.name, error=exc)
        return [Problem("dataset.path", message)]
    wanted = [("label", cfg.label)]
    wanted += [("features", c) for c in cfg.features or []]
    wanted += [("categorical", c) for c in cfg.categorical or []]
    wanted += [("sensitive", cfg.sensitive)]
    role_names = {"features": "feature", "categorical": "categorical"}
    return [
        Problem(
            f"dataset.{role}",
            MISSING_COLUMN.format(
                path=path, role=role_names.get(role, role), column=column, available=columns
            ),
        )
        for role, column in wanted
        if column is not None and column not in columns
    ]

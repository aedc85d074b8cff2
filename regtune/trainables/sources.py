"""Is a user's data file there, and does it have the declared columns?

Answered from the file's column names alone (a CSV header, a Parquet
schema), so a sweep spec or training config is refused before Ray starts or
a model is built; :mod:`~regtune.trainables.data` loads and checks the rest
(values, labels, groups). Imports nothing heavy at module level: the spec
validator imports this.

Refused from the header: a missing file or column; a CSV whose header is one
column holding another separator (``;``, tab, ``|``: the file needs
``dataset.sep``); a column name the header repeats, when that column is used
(pandas would rename the second ``hours`` to ``hours.1`` and train on both);
any column name a Parquet schema repeats (such a file cannot be read as one
table); a Parquet date/time column among the features (derive numbers from it).
"""

from __future__ import annotations

from pathlib import Path

from regtune.errors import Problem
from regtune.trainables.catalog import FILE_DATASETS
from regtune.trainables.config import CSV_SEPARATORS, DatasetConfig

__all__ = [
    "DATETIME_COLUMN",
    "DUPLICATE_HEADER",
    "DUPLICATE_PARQUET_COLUMN",
    "MISSING_COLUMN",
    "MISSING_FILE",
    "NOT_A_FILE",
    "ONE_COLUMN_SEP",
    "UNREADABLE_COLUMNS",
    "check_data_file",
    "read_columns",
]

MISSING_FILE = "{path}: file not found; expected a {kind} file"
NOT_A_FILE = "{path}: is a folder, not a file; expected a {kind} file"
MISSING_COLUMN = "{path}: no {role} column {column!r}; available columns: {available}"
UNREADABLE_COLUMNS = "{path}: cannot read the column names as {kind} ({error})"
ONE_COLUMN_SEP = (
    "{path}: the header is one column {header!r} that holds {found!r}: the file looks "
    "{found!r}-separated, not {sep!r}-separated; set dataset.sep: {found!r} "
    "(allowed: {allowed})"
)
DUPLICATE_HEADER = (
    "{path}: the header names column {column!r} {n} times (columns {positions}); pandas would "
    "read them as {renamed}; rename them in the file so that each name is unique"
)
DUPLICATE_PARQUET_COLUMN = (
    "{path}: the Parquet schema names column {column!r} {n} times (columns {positions}), so the "
    "file cannot be read as one table; rename them in the file so that each name is unique"
)
DATETIME_COLUMN = (
    "{path}: column {column!r} holds dates/times ({kind}), which cannot be a feature as is; "
    "derive numeric features from it (year, month, days since a date) in a new column, or "
    "leave it out of 'features'"
)
#: Separators looked for in a one-column header (a wrong ``sep``).
_OTHER_SEPARATORS = (";", "\t", "|", ",")


def read_columns(cfg: DatasetConfig) -> tuple[list[str], list[str]]:
    """The file's column names as written and as pandas names them.

    For a CSV the two differ where the header repeats a name (pandas renames
    the second ``hours`` to ``hours.1``). Reads only the header (CSV, with
    ``dataset.sep``) or the schema (Parquet).

    Raises:
        OSError, ValueError: the file cannot be read as its kind.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    path = Path(str(cfg.path)).expanduser()
    if cfg.name == "csv":
        sep = cfg.sep or ","
        named = [str(c) for c in pd.read_csv(path, nrows=0, sep=sep).columns]
        first = pd.read_csv(path, header=None, nrows=1, sep=sep, dtype=str, keep_default_na=False)
        written = [str(c) for c in first.iloc[0].tolist()] if len(first) else named
        return written, named
    names = list(pq.read_schema(path).names)
    return names, names


def _header_problems(
    cfg: DatasetConfig, path: Path, written: list[str], named: list[str]
) -> list[Problem]:
    """A wrong separator and repeated names that matter (see the module doc)."""
    problems: list[Problem] = []
    sep = cfg.sep or ","
    if cfg.name == "csv" and len(written) == 1:
        found = [s for s in _OTHER_SEPARATORS if s != sep and s in written[0]]
        if found:
            message = ONE_COLUMN_SEP.format(
                path=path, header=written[0], found=found[0], sep=sep, allowed=list(CSV_SEPARATORS)
            )
            problems.append(Problem("dataset.sep", message))
    used = set(named) if cfg.features is None else {
        *cfg.features, *(cfg.categorical or []), cfg.label, cfg.sensitive
    }  # fmt: skip
    for column in dict.fromkeys(written):
        positions = [i for i, c in enumerate(written) if c == column]
        if cfg.name == "parquet":
            # pandas reads a Parquet file whole: any repeat fails it, used or not.
            if len(positions) > 1:
                message = DUPLICATE_PARQUET_COLUMN.format(
                    path=path, column=column, n=len(positions), positions=[i + 1 for i in positions]
                )
                problems.append(Problem("dataset.path", message))
            continue
        renamed = [named[i] for i in positions] if len(named) == len(written) else [column]
        # Empty names are no repeat: pandas names them 'Unnamed: <i>'.
        if column.strip() and len(positions) > 1 and used & {column, *renamed}:
            message = DUPLICATE_HEADER.format(
                path=path,
                column=column,
                n=len(positions),
                positions=[i + 1 for i in positions],
                renamed=renamed,
            )
            problems.append(Problem("dataset.path", message))
    return problems


def _datetime_problems(cfg: DatasetConfig, path: Path, named: list[str]) -> list[Problem]:
    """Parquet date/time columns among the used features (their type is in the schema)."""
    if cfg.name != "parquet":
        return []
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    feats = named if cfg.features is None else cfg.features
    skip = {cfg.label, cfg.sensitive}
    problems = []
    names = schema.names
    for column in dict.fromkeys(feats):
        # A repeated name is refused by _header_problems; schema.field() would raise on it.
        if column in skip or names.count(column) != 1:
            continue
        kind = schema.field(column).type
        if pa.types.is_temporal(kind):
            message = DATETIME_COLUMN.format(path=path, column=column, kind=kind)
            problems.append(Problem("dataset.features", message))
    return problems


def check_data_file(cfg: DatasetConfig) -> list[Problem]:
    """What is wrong with a csv/parquet dataset that can be told without
    loading it: a missing or unreadable file, and declared columns (label,
    features, categorical, sensitive) the file lacks. Reads only the column
    names (the CSV header, the Parquet schema), so it is cheap enough to run
    while a spec is validated, before Ray starts. Built-ins: no problems.

    Also refused here: a one-column header holding another separator
    (``dataset.sep``), a repeated column name that is used (in a Parquet
    schema: any repeated name), a Parquet date/time feature column.

    Returns:
        Problems at ``dataset.path`` (the file), ``dataset.sep`` or
        ``dataset.<role>`` (a column), each naming the file.
    """
    if cfg.name not in FILE_DATASETS:
        return []
    path = Path(str(cfg.path)).expanduser()
    if path.is_dir():
        return [Problem("dataset.path", NOT_A_FILE.format(path=path, kind=cfg.name))]
    if not path.is_file():
        return [Problem("dataset.path", MISSING_FILE.format(path=path, kind=cfg.name))]
    try:
        written, columns = read_columns(cfg)
        problems = _header_problems(cfg, path, written, columns)
        problems += _datetime_problems(cfg, path, columns)
    except (OSError, ValueError) as exc:
        message = UNREADABLE_COLUMNS.format(path=path, kind=cfg.name, error=exc)
        return [Problem("dataset.path", message)]
    if any(p.path == "dataset.sep" for p in problems):
        return problems  # every declared column would be reported missing too
    wanted = [("label", cfg.label)]
    wanted += [("features", c) for c in cfg.features or []]
    wanted += [("categorical", c) for c in cfg.categorical or []]
    wanted += [("sensitive", cfg.sensitive)]
    role_names = {"features": "feature", "categorical": "categorical"}
    return problems + [
        Problem(
            f"dataset.{role}",
            MISSING_COLUMN.format(
                path=path, role=role_names.get(role, role), column=column, available=columns
            ),
        )
        for role, column in wanted
        if column is not None and column not in columns
    ]

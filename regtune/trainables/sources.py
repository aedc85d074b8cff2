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
table); a Parquet date/time column among the features (derive numbers from it), the
sensitive column included while it is a feature;
a Parquet list, struct, map or fixed-size binary column among the used columns
(no such value is a number or a category; a plain binary column, as Hive,
Impala and older Spark write strings, is read as UTF-8 text when loaded); a
first column without a name (pandas calls
it ``Unnamed: 0``: most likely a DataFrame index saved with the file) among
the features, unless ``features`` lists the columns to use. A URI ``dataset.path`` (``s3://...``)
is refused: the file is read from the local disk.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from pathlib import Path

from regtune.errors import Problem
from regtune.trainables.catalog import FILE_DATASETS
from regtune.trainables.config import CSV_SEPARATORS, DatasetConfig
from regtune.trainables.paths import NoHomeError, expand_user

__all__ = [
    "DATETIME_COLUMN",
    "DUPLICATE_HEADER",
    "DUPLICATE_PARQUET_COLUMN",
    "INDEX_COLUMN",
    "MISSING_COLUMN",
    "MISSING_FILE",
    "NESTED_COLUMN",
    "NOT_A_FILE",
    "ONE_COLUMN_SEP",
    "UNREADABLE_COLUMNS",
    "URI_PATH",
    "check_data_file",
    "column_roles",
    "read_columns",
    "role_wording",
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
#: A date/time feature, refused from a Parquet schema (``what``: the type) and
#: at load (``what``: ``e.g. '2020-01-31'``, a value of a datetime or text column).
DATETIME_COLUMN = (
    "{path}: column {column!r} holds dates/times ({what}), which cannot be a feature as is; "
    "derive numeric features from it (year, month, days since a date) in a new column, or "
    "leave it out of 'features'"
)
NESTED_COLUMN = (
    "{path}: column {column!r} has the Parquet type {kind}, whose values (lists, structs, "
    "maps, fixed-size bytes) are neither numbers nor categories, so it cannot be {role}; {fix}"
)
#: NESTED_COLUMN's advice for a feature, for the label or sensitive column (named on
#: purpose), and for one that is both (the sensitive column is a feature unless
#: ``features`` leaves it out): see :func:`role_wording`.
NESTED_FEATURE_FIX = (
    "leave it out of 'features' (list the columns to use), or derive numeric or text columns "
    "from it in the file"
)
NESTED_NAMED_FIX = "choose another column, or derive a numeric or text column from it in the file"
NESTED_BOTH_FIX = (
    "derive a numeric or text column from it in the file, or choose another {key} column and "
    "leave this one out of 'features' too (list the columns to use)"
)
#: What a message calls a column by its role (a key of :func:`column_roles`'
#: sets), the roles named on purpose first.
ROLE_NAMES = {"label": "the label", "sensitive": "the sensitive column", "features": "a feature"}
INDEX_COLUMN = (
    "{path}: column {column!r} is how pandas names a column with no name in the header: "
    "it looks like a saved DataFrame index (row numbers), which would be "
    "trained on as a feature and then required by the server; drop it from the file, write the "
    "file with index=False (df.to_csv(path, index=False)), or list the columns to use in "
    "'features'"
)
URI_PATH = (
    "must be a local file path; got the URI {path!r}: the file is read from this "
    "machine's disk (and, in a sweep, each trial's), so copy it there first and give that path"
)
#: How pandas names a column whose header cell is empty (a written DataFrame index).
_UNNAMED = re.compile(r"Unnamed: \d+(_level_\d+)?")
#: Separators looked for in a one-column header (a wrong ``sep``).
_OTHER_SEPARATORS = (";", "\t", "|", ",")


def column_roles(
    features: Iterable[str], label: str | None, sensitive: str | None
) -> dict[str, frozenset[str]]:
    """Each used column's roles: ``"features"``, ``"label"``, ``"sensitive"``
    (the config keys naming them), columns in the order features, sensitive,
    label. A column can hold more than one: the sensitive column is a feature
    too unless ``features`` leaves it out (features default to every column but
    the label), so a rule for features applies to it as well.

    Args:
        features: the feature columns, as used (the default already worked out).
    """
    roles: dict[str, set[str]] = {}
    for column in features:
        roles.setdefault(column, set()).add("features")
    if sensitive is not None:
        roles.setdefault(sensitive, set()).add("sensitive")
    if label is not None:
        roles.setdefault(label, set()).add("label")
    return {column: frozenset(held) for column, held in roles.items()}


def role_wording(
    roles: Collection[str], feature_fix: str, named_fix: str, both_fix: str
) -> tuple[str, str, str]:
    """How a message about a column that cannot hold its ``roles`` (one of
    :func:`column_roles`' sets) names it: what it is (the label or sensitive
    column, named on purpose, before a feature), the config key of the
    problem, and the advice: ``feature_fix`` for a feature only, ``named_fix``
    for the label or sensitive column only, ``both_fix`` (formatted with
    ``key``) for one that is both, which only a fix in the file, or another
    column there and leaving it out of ``features``, clears."""
    key = next(role for role in ROLE_NAMES if role in roles)
    if key == "features":
        fix = feature_fix
    elif "features" in roles:
        fix = both_fix.format(key=key)
    else:
        fix = named_fix
    return ROLE_NAMES[key], key, fix


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

    path = expand_user(str(cfg.path))
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


def _index_problems(cfg: DatasetConfig, path: Path, named: list[str]) -> list[Problem]:
    """Leading columns without a name among the features taken by default (no
    ``features``): pandas names them ``Unnamed: <i>``, and a DataFrame index
    saved with the file (``to_csv`` without ``index=False``) is written so, first.
    Listed in ``features``, such a column is used as asked; as the label or
    sensitive column it is named on purpose. Unnamed columns after a named one
    (a spreadsheet's trailing commas) are left to the values' checks."""
    if cfg.features is not None:
        return []
    skip = {cfg.label, cfg.sensitive}
    problems = []
    for column in named:
        if not _UNNAMED.fullmatch(column):
            break
        if column not in skip:
            message = INDEX_COLUMN.format(path=path, column=column)
            problems.append(Problem("dataset.features", message))
    return problems


def _nested(kind: object) -> bool:
    """Whether a pyarrow type holds values no feature, label or group can be
    (lists, structs, maps, unions, fixed-size bytes), a dictionary by its
    values'. Plain and large binary are not: Hive, Impala and older Spark
    write strings so, and loading reads them as UTF-8 text."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        return _nested(kind.value_type)  # type: ignore[attr-defined]
    checks = (
        pa.types.is_list,
        pa.types.is_large_list,
        pa.types.is_fixed_size_list,
        pa.types.is_struct,
        pa.types.is_map,
        pa.types.is_union,
        pa.types.is_fixed_size_binary,
    )
    return any(check(kind) for check in checks)


def _schema_problems(cfg: DatasetConfig, path: Path, named: list[str]) -> list[Problem]:
    """Parquet columns whose type (in the schema) no model input can be: a
    date/time feature; a list, struct, map or fixed-size binary feature,
    label or sensitive column."""
    if cfg.name != "parquet":
        return []
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    feats = [c for c in named if c != cfg.label] if cfg.features is None else cfg.features
    problems = []
    names = schema.names
    for column, roles in column_roles(feats, cfg.label, cfg.sensitive).items():
        # A repeated name is refused by _header_problems; schema.field() would raise on it.
        if names.count(column) != 1:
            continue
        kind = schema.field(column).type
        if "features" in roles and pa.types.is_temporal(kind):
            message = DATETIME_COLUMN.format(path=path, column=column, what=kind)
            problems.append(Problem("dataset.features", message))
        elif _nested(kind):
            role, key, fix = role_wording(
                roles, NESTED_FEATURE_FIX, NESTED_NAMED_FIX, NESTED_BOTH_FIX
            )
            message = NESTED_COLUMN.format(path=path, column=column, kind=kind, role=role, fix=fix)
            problems.append(Problem(f"dataset.{key}", message))
    return problems


def check_data_file(cfg: DatasetConfig) -> list[Problem]:
    """What is wrong with a csv/parquet dataset that can be told without
    loading it: a missing or unreadable file, and declared columns (label,
    features, categorical, sensitive) the file lacks. Reads only the column
    names (the CSV header, the Parquet schema), so it is cheap enough to run
    while a spec is validated, before Ray starts. Built-ins: no problems.

    Also refused here: a URI path (``s3://...``: the file must be local), a
    one-column header holding another separator (``dataset.sep``), a repeated
    column name that is used (in a Parquet schema: any repeated name), a
    Parquet date/time feature column, a Parquet list/struct/map/fixed-size
    binary column that is used, a first column without a name (``Unnamed: 0``, a saved
    index) among the features taken by default.

    Returns:
        Problems at ``dataset.path`` (the file), ``dataset.sep`` or
        ``dataset.<role>`` (a column), each naming the file.
    """
    if cfg.name not in FILE_DATASETS:
        return []
    if "://" in str(cfg.path):
        return [Problem("dataset.path", URI_PATH.format(path=str(cfg.path)))]
    try:
        path = expand_user(str(cfg.path))
    except NoHomeError as exc:
        return [Problem("dataset.path", f"{cfg.path}: {exc}")]
    if path.is_dir():
        return [Problem("dataset.path", NOT_A_FILE.format(path=path, kind=cfg.name))]
    if not path.is_file():
        return [Problem("dataset.path", MISSING_FILE.format(path=path, kind=cfg.name))]
    try:
        written, columns = read_columns(cfg)
        problems = _header_problems(cfg, path, written, columns)
        problems += _index_problems(cfg, path, columns)
        problems += _schema_problems(cfg, path, columns)
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

"""Datasets as tensors: built-ins and user CSV/Parquet, split, encoded, checked.

:func:`load_dataset` returns a :class:`Dataset` whose splits are float32
feature matrices (flat, even for images), int64 class ids and int64 group
codes. The :class:`~regtune.trainables.schema.FeatureSchema` fitted on the
training split encodes every split, and serving uses the same schema.

Built-ins (label, class ids, default sensitive attribute):

* ``digits``: 8x8 images, pixels / 16 into [0, 1], input shape (1, 8, 8),
  bounds (0, 1); classes 0..9; no sensitive attribute.
* ``breast_cancer``: 30 numeric features; ``diagnosis`` malignant=0, benign=1.
* ``adult``: ``income`` <=50K=0, >50K=1 (positive); sensitive ``sex``. The
  official ``adult.test`` is the test split (so ``test_fraction`` is refused)
  and val is drawn from ``adult.data``. ``fnlwgt`` (a census sampling weight) is
  dropped; ``'?'`` (missing) is kept as its own category.
* ``german``: ``credit`` bad=0, good=1 (positive = good credit, the favourable
  outcome); sensitive ``sex`` derived from ``personal_status`` (A91/A93/A94
  male, A92/A95 female), which stays a feature too.
* ``compas``: ``two_year_recid`` 0/1 (positive = reoffended); ProPublica's row
  filter, then only African-American and Caucasian defendants (the pair
  ProPublica compared; other groups are too small for stable gaps); sensitive
  ``race``. Features: age, age_cat, sex, race, priors_count, juv_fel_count,
  juv_misd_count, juv_other_count, c_charge_degree. COMPAS's own scores
  (decile_score, score_text, v_*) and outcome columns (is_recid, r_*, ...)
  are excluded: they are the tool under audit or leak the label.

The sensitive column stays a model feature unless ``features`` omits it; it
is never dropped silently. ``DatasetConfig.sensitive`` overrides the default.
Splits are stratified by label, seeded by ``split_seed``; val and test are
``val_fraction`` and ``test_fraction`` of all rows. A label class with a single
row cannot be stratified: the split is then drawn at random, with a
:class:`DataWarning` naming the class and its row count. For built-ins
``path`` and ``label`` must not be set, nor ``features``/``categorical`` for
``digits`` (DatasetConfig refuses them).
:func:`check_data_file` finds a missing file or column from the column names
alone, so a spec is refused before any training starts.

User files (csv/parquet), at load, from the rows:

* Missing values: every feature, label and sensitive column with missing or
  non-finite values is named in one :class:`~regtune.errors.DataError` (count
  and first row numbers, 1 = the first data row), unless ``dataset.missing:
  drop`` drops those rows (a :class:`DataWarning` says how many). In a column
  that is otherwise numeric, the markers of :data:`MISSING_MARKERS` (``?``,
  ``NA``, ``-``, ...) are missing values (in the sensitive column too, when it
  is not a feature); in a text column ``?`` is a category like any other. A
  blank (spaces only) value of the sensitive column is missing: it names no
  group.
* Group names: each sensitive group is named by its canonical value
  (:func:`~regtune.trainables.schema.canonical_value`), as the schema, the
  server and ``predict()`` read a record's value: a 0/1 column read as floats
  has the groups ``"0"`` and ``"1"``; ``" Male"`` and ``"Male"`` are one group.
  A sensitive column with a single group, in the rows kept or in the training,
  validation or test split, is refused: fairness penalties and
  ``dp_diff``/``eo_diff`` would compare nothing.
* Label classes: one per canonical value too. Values spelled several ways
  (``"yes"`` and ``"yes "``) are one class, with a :class:`DataWarning` naming
  the spellings and their row counts; a class is named by its canonical value
  (``"yes"``), an integral float by its int (a 0/1 label read as floats has the
  classes ``0`` and ``1``, served as ``"0"``/``"1"``); a blank (spaces only)
  label is missing. A built-in keeps its classes as written (Adult's
  ``"<=50K"``/``">50K"``). ``positive_label`` is matched to a class canonically.
* Bytes: a used Parquet binary column (Hive, Impala and older Spark write
  strings so) is read as the UTF-8 text it holds, as a string column would be
  (categories ``'red'``, not ``"b'red'"``); one holding bytes that are not
  UTF-8 is refused, naming the column, its row count and first row.
* Inferred types: a column not listed in ``categorical`` that is numeric in
  most rows but holds other strings is refused, naming them; so is a
  date/time column (derive numbers from it). A categorical column with a
  distinct value in every row (an identifier) or more than
  :data:`MANY_LEVELS` values gets a :class:`DataWarning` (one one-hot input
  per value).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import numpy as np
import pandas as pd
import torch
from pandas.api.types import is_bool_dtype, is_numeric_dtype, is_object_dtype, is_string_dtype
from pydantic import ValidationError

from regtune.errors import DataError, DataWarning, Problem, SpecError
from regtune.trainables import catalog
from regtune.trainables.config import DatasetConfig, validation_problems
from regtune.trainables.fetch import SPLIT_COLUMN, fetch_dataset
from regtune.trainables.paths import expand_user
from regtune.trainables.schema import FeatureSchema, Label, ValueIndex, canonical_value
from regtune.trainables.sources import (
    DATETIME_COLUMN,
    MISSING_COLUMN,
    MISSING_FILE,
    check_data_file,
    column_roles,
    role_wording,
)

__all__ = [
    "MANY_LEVELS",
    "MISSING_COLUMN",
    "MISSING_FILE",
    "MISSING_MARKERS",
    "DataWarning",
    "Dataset",
    "Split",
    "check_data_file",
    "describe_dataset",
    "load_dataset",
]

MIN_ROWS = 10
MAX_GROUPS = 20
#: A categorical feature with more values than this gets a warning.
MANY_LEVELS = 100
#: Share of a column's non-missing values that must be numbers (or dates) for
#: it to count as a numeric (date) column holding a few stray strings.
MOSTLY = 0.9
#: Strings read as missing in an otherwise numeric column (compared stripped).
MISSING_MARKERS = ("?", "", "-", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "None")
#: Row numbers (stray values) shown per column in an error.
SHOWN_ROWS = 5
#: Distinct values of a text column looked at to tell whether it holds dates.
DATE_SAMPLE = 1000
#: Rows of a text column (a seeded sample) looked at to tell whether it may be
#: numeric; at least half of them must be numbers for all rows to be parsed.
NUMERIC_SAMPLE = 2000
_DATE_LIKE = re.compile(
    r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?.*)?$"
    r"|^\d{1,2}[-/.]\d{1,2}[-/.]\d{4}( \d{1,2}:\d{2}(:\d{2})?)?$"
)
GERMAN_SEX = {"A91": "male", "A93": "male", "A94": "male", "A92": "female", "A95": "female"}
COMPAS_RACES = ("African-American", "Caucasian")
COMPAS_FEATURES = (
    "age", "age_cat", "sex", "race", "priors_count", "juv_fel_count", "juv_misd_count",
    "juv_other_count", "c_charge_degree",
)  # fmt: skip

UNREADABLE_FILE = "{path}: cannot read as {kind} ({error})"
#: Added to UNREADABLE_FILE for a built-in's cached file.
REBUILD_CACHE = "; rebuild the cached file with `regtune data fetch {name} --force`"
NO_FEATURES = "{path}: no feature columns besides the label {column!r}; 'features' is empty"
LABEL_IS_FEATURE = "{path}: label column {column!r} cannot also be a feature"
CATEGORICAL_NOT_FEATURE = (
    "{path}: categorical column {column!r} is not a feature; features: {features}"
)
NOT_NUMERIC_COLUMN = (
    "{path}: column {column!r} has dtype {dtype}, so it cannot be numeric; list it in 'categorical'"
)
TOO_FEW_ROWS = "{path}: table has {n} rows; need at least {min_rows}"
NOT_UTF8 = (
    "{path}: column {column!r} holds bytes (a Parquet binary column) that are not UTF-8 text in "
    "{count} rows (row 1 is the first data row; first: row {row}, {value}), so it cannot be "
    "{role}; {fix}"
)
#: NOT_UTF8's advice for a feature, for the label or sensitive column, and for
#: one that is both (see :func:`~regtune.trainables.sources.role_wording`).
NOT_UTF8_FEATURE_FIX = (
    "leave it out of 'features' (list the columns to use), or write it in the file as UTF-8 text"
)
NOT_UTF8_NAMED_FIX = "choose another column, or write it in the file as UTF-8 text"
NOT_UTF8_BOTH_FIX = (
    "write it in the file as UTF-8 text, or choose another {key} column and leave this one out "
    "of 'features' too (list the columns to use)"
)
#: Bytes of a non-UTF-8 value shown in NOT_UTF8.
SHOWN_BYTES = 20
NAN_VALUES = (
    "{path}: missing or non-finite values in {n} column(s) of {rows} rows (row 1 is the first "
    "data row): {columns}; none are "
    "allowed in feature, label and sensitive columns: fill them or drop those rows in the file, "
    "or set dataset.missing: drop to drop the {dropped} rows holding one"
)
NAN_COLUMN = "{column!r} {count} rows{markers} (rows {first}{more})"
EMPTY_COLUMN = ", every row: an empty column, leave it out of 'features'"
INFINITE_VALUES = (
    ", {n} of them infinite or out of float range (beyond +-1.8e308): rescale the column in the "
    "file (other units, a logarithm)"
)
DROPPED_ROWS = (
    "{path}: dataset.missing: drop dropped {dropped} of {rows} rows with missing or non-finite "
    "values ({columns})"
)
NON_NUMERIC_VALUES = (
    "{path}: column {column!r} is numeric in {share:.0%} of its rows but also holds {values}; "
    "fix those values in the file (or blank them to make them missing), or list {column!r} in "
    "'categorical' to treat every value as a category"
)
IDENTIFIER_COLUMN = (
    "{path}: categorical column {column!r} has a different value in each of its {n} rows "
    "(an identifier?): it becomes one one-hot input per training row and unseen at serving; "
    "leave it out of 'features'"
)
MANY_LEVELS_COLUMN = (
    "{path}: categorical column {column!r} has {n} distinct values in {rows} rows, so up to {n} "
    "one-hot inputs; if it is a number, fix its non-numeric values; else bin it or leave it out "
    "of 'features'"
)
NOT_STRATIFIED = (
    "{path}: label class(es) {small} too small to stratify (a class needs at least 2 rows), so "
    "{what} drawn at random, not stratified by label: validation or test may lack that class"
)
SPLIT_TOO_SMALL = (
    "{path}: a split of {sizes} rows is too small to hold each of the {k} label classes, so "
    "{what} drawn at random, not stratified by label: raise val_fraction/test_fraction or add rows"
)
SINGLE_CLASS = (
    "{path}: label column {column!r} has only the value {values}; need at least 2 classes"
)
UNKNOWN_POSITIVE = (
    "{path}: positive_label {positive!r} is not a value of label column {column!r}; "
    "values: {values}"
)
#: Added to UNKNOWN_POSITIVE for a True/False positive_label and a text label column.
YAML_BOOL_HINT = (
    " (YAML reads an unquoted yes/no/on/off/true/false as a boolean: quote the value, "
    "e.g. positive_label: 'yes')"
)
NOT_BINARY = (
    "{path}: positive_label {positive!r} needs a binary label, but column {column!r} has "
    "{n} values: {values}"
)
MERGED_LABELS = (
    "{path}: label column {column!r} spells {n} class(es) in more than one way, each read as "
    "one class, as the server reads a value (canonically: integral floats as integers, strings "
    "NFC without outer spaces): {merged}; if they are meant as different classes, give them "
    "different values in the file"
)
#: One merged class in MERGED_LABELS: its name, then each spelling with its row count.
MERGED_CLASS = "{name!r} from {spellings}"
UNDECLARED_LABELS = (
    "{path}: label column {column!r} has values {extra} outside the declared classes {classes}"
)
#: Note on a sensitive or label column's blank strings, which count as missing values.
BLANK_GROUP = "blank text"
NO_GROUP = (
    "{path}: sensitive column {column!r} holds {value!r}, a missing value that names no group"
)
TOO_MANY_GROUPS = (
    "{path}: sensitive column {column!r} has {n} distinct values; at most {max_groups} groups "
    "are allowed (bin it first)"
)

ONE_GROUP = (
    "{path}: sensitive column {column!r} has only the value {group!r}; need at least 2 groups "
    "(fairness penalties and dp_diff/eo_diff compare groups): choose another column, or leave "
    "out dataset.sensitive"
)
ONE_GROUP_IN_SPLIT = (
    "{path}: the {split} split holds only the group {found!r} of sensitive column {column!r} "
    "(groups: {groups}), so its fairness penalty or dp_diff/eo_diff would compare nothing; add "
    "rows of the smaller groups, change val_fraction/test_fraction or split_seed"
)


def _warn(message: str) -> None:
    # Point the warning at the first caller outside this module (load_dataset's).
    frame: FrameType | None = sys._getframe(1)
    level = 2  # 1 is this function
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DataWarning, stacklevel=level)


@dataclass(frozen=True)
class Split:
    """One split: features ``x`` (float32, (n, n_features)), class ids ``y`` (int64),
    group codes ``s`` (int64, index into ``Dataset.group_names``) or None."""

    x: torch.Tensor
    y: torch.Tensor
    s: torch.Tensor | None


@dataclass(frozen=True)
class Dataset:
    """Encoded train/val/test splits plus what a model and server need to know.

    ``raw_test`` holds the test rows as raw records (feature, sensitive and label
    columns, unscaled): ``schema.transform(raw_test.to_dict("records"))``
    reproduces ``test.x``. ``raw_train`` holds the training rows the same way:
    the registry's drift reference is computed from these exact values.
    """

    name: str
    train: Split
    val: Split
    test: Split
    schema: FeatureSchema
    n_classes: int
    input_shape: tuple[int, ...]
    perturb_mask: torch.Tensor
    bounds: tuple[float, float] | None
    group_names: list[str]
    fingerprint: str
    raw_test: pd.DataFrame = field(repr=False, compare=False)
    raw_train: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def n_features(self) -> int:
        """Width of a flat feature row."""
        return int(self.perturb_mask.shape[0])


@dataclass(frozen=True)
class _Builtin:
    """How to load one built-in; which it is, its default sensitive column and
    whether it is an image dataset come from :mod:`~regtune.trainables.catalog`."""

    label: str
    classes: tuple[Label, ...]
    features: tuple[str, ...] | None = None  # None: every column but label and `drop`
    drop: tuple[str, ...] = ()
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    image_shape: tuple[int, ...] | None = None


def _prepare_german(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(
        credit=table["credit"].map({1: "good", 2: "bad"}),
        sex=table["personal_status"].map(GERMAN_SEX),
    )


def _prepare_compas(table: pd.DataFrame) -> pd.DataFrame:
    # ProPublica's filter (compas-analysis notebook), then the two compared groups.
    keep = (
        table["days_b_screening_arrest"].between(-30, 30)
        & (table["is_recid"] != -1)
        & (table["c_charge_degree"] != "O")
        & table["score_text"].notna()
        & table["race"].isin(COMPAS_RACES)
    )
    return table.loc[keep].reset_index(drop=True)


_LOADERS: dict[str, _Builtin] = {
    "digits": _Builtin("digit", tuple(range(10)), image_shape=(1, 8, 8)),
    "breast_cancer": _Builtin("diagnosis", ("malignant", "benign")),
    "adult": _Builtin("income", ("<=50K", ">50K"), drop=("fnlwgt", SPLIT_COLUMN)),
    "german": _Builtin("credit", ("bad", "good"), prepare=_prepare_german),
    "compas": _Builtin("two_year_recid", (0, 1), features=COMPAS_FEATURES, prepare=_prepare_compas),
}
#: How to load each built-in of :data:`regtune.trainables.catalog.BUILTINS`, in its order.
BUILTINS: dict[str, _Builtin] = {name: _LOADERS[name] for name in catalog.BUILTIN_DATASETS}
DIGITS_SCALE = (0.0, 16.0)  # (center, scale): raw pixels are 0..16


def _as_config(cfg: DatasetConfig | str) -> DatasetConfig:
    if isinstance(cfg, DatasetConfig):
        return cfg
    try:
        return DatasetConfig.model_validate({"name": cfg})
    except ValidationError as exc:
        problems = validation_problems(exc, ["dataset"])
        raise SpecError.from_problems("invalid dataset:", problems) from exc


def _read_table(cfg: DatasetConfig, cache_dir: Path | None) -> tuple[pd.DataFrame, str]:
    if cfg.name in BUILTINS:
        path = fetch_dataset(cfg.name, cache_dir=cache_dir)
    else:
        problems = check_data_file(cfg)
        if len(problems) == 1:  # first: a URI, or a ~user that names no user
            raise DataError(str(problems[0]), problems)
        path = expand_user(str(cfg.path))
        if problems:
            raise DataError.from_problems(f"{path}: cannot use this file:", problems)
    try:
        if cfg.name == "csv":
            table = pd.read_csv(path, sep=cfg.sep or ",")
        else:
            table = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        message = UNREADABLE_FILE.format(path=path, kind=cfg.name, error=exc)
        if cfg.name in BUILTINS:
            message += REBUILD_CACHE.format(name=cfg.name)
        raise DataError(message) from exc
    spec = BUILTINS.get(cfg.name)
    if spec is not None and spec.prepare is not None:
        table = spec.prepare(table)
    return table, str(path)


def _check_columns(
    table: pd.DataFrame,
    src: str,
    label: str,
    feats: list[str],
    cfg: DatasetConfig,
    sens: str | None,
) -> None:
    keys = {"label": "label", "feature": "features", "categorical": "categorical"}

    def need(column: str, role: str) -> None:
        if column not in table.columns:
            available = list(table.columns)
            message = MISSING_COLUMN.format(path=src, role=role, column=column, available=available)
            problem = Problem(f"dataset.{keys.get(role, role)}", message)
            raise DataError(str(problem), [problem])

    need(label, "label")
    if not feats:
        raise DataError(NO_FEATURES.format(path=src, column=label))
    for column in feats:
        need(column, "feature")
    if label in feats:
        raise DataError(LABEL_IS_FEATURE.format(path=src, column=label))
    for column in cfg.categorical or []:
        need(column, "categorical")
        if column not in feats:
            raise DataError(CATEGORICAL_NOT_FEATURE.format(path=src, column=column, features=feats))
    if sens is not None:
        need(sens, "sensitive")
    if len(table) < MIN_ROWS:
        raise DataError(TOO_FEW_ROWS.format(path=src, n=len(table), min_rows=MIN_ROWS))


def _bytes_as_text(
    table: pd.DataFrame, src: str, feats: list[str], label: str, sens: str | None
) -> pd.DataFrame:
    """Read the used columns holding bytes (a Parquet BINARY column: Hive,
    Impala and older Spark write strings so) as the UTF-8 text they hold, as
    a string column would be read (``'red'``, not ``"b'red'"``).

    Raises:
        DataError: a used column holding bytes that are not UTF-8, naming it,
            its role, how many rows and the first of them.
    """
    problems: list[Problem] = []
    for column, roles in column_roles(feats, label, sens).items():
        col = table[column]
        if isinstance(col.dtype, pd.CategoricalDtype):  # a Parquet dictionary column
            uniques = col.cat.categories.tolist()
            codes = col.cat.codes.to_numpy()
        elif is_object_dtype(col):
            present = col.notna().to_numpy()
            if not present.any() or not isinstance(col.iloc[int(present.argmax())], bytes):
                continue
            codes, found = pd.factorize(col, use_na_sentinel=True)
            uniques = list(found)
        else:
            continue
        if not uniques or not all(isinstance(value, bytes) for value in uniques):
            continue
        texts: list[str | None] = []
        bad: list[int] = []
        for i, value in enumerate(uniques):
            try:
                texts.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(None)
                bad.append(i)
        if bad:
            rows = np.flatnonzero(np.isin(codes, bad))
            value = col.iloc[int(rows[0])]
            shown = repr(value[:SHOWN_BYTES]) + ("..." if len(value) > SHOWN_BYTES else "")
            role, key, fix = role_wording(
                roles, NOT_UTF8_FEATURE_FIX, NOT_UTF8_NAMED_FIX, NOT_UTF8_BOTH_FIX
            )
            message = NOT_UTF8.format(
                path=src,
                column=column,
                count=len(rows),
                row=int(rows[0]) + 1,
                value=shown,
                role=role,
                fix=fix,
            )
            problems.append(Problem(f"dataset.{key}", message))
        elif isinstance(col.dtype, pd.CategoricalDtype):
            table = table.assign(**{column: col.cat.rename_categories(texts)})
        else:
            # Missing rows (code -1) take the last entry, None; the Series reads
            # the strings as pandas reads a string column.
            values = np.array([*texts, None], dtype=object)[codes]
            table = table.assign(**{column: pd.Series(values.tolist(), index=col.index)})
    if len(problems) == 1:
        raise DataError(str(problems[0]), problems)
    if problems:
        raise DataError.from_problems(f"{src}: columns of bytes that are not text:", problems)
    return table


def _markers_as_missing(
    table: pd.DataFrame,
    src: str,
    feats: list[str],
    declared: set[str],
    sensitive: str | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read :data:`MISSING_MARKERS` as missing in text columns that are otherwise
    numbers (those become numeric); refuse a feature not in ``declared``
    (``categorical``) that is mostly numbers but holds other strings.

    A ``sensitive`` column that is not a feature gets the same markers rule
    (a ``?`` among 0/1 is a missing value, not a group), but no refusal: every
    other value of it is a group.

    Returns:
        The table, and per converted column which markers were found
        (``"'?'"``), for the missing-values message.
    """
    notes: dict[str, str] = {}
    problems: list[Problem] = []
    only_groups = sensitive if sensitive is not None and sensitive not in feats else None
    for column in [*feats, *([only_groups] if only_groups is not None else [])]:
        col = table[column]
        if column in declared or not (is_object_dtype(col) or is_string_dtype(col)):
            continue
        # A text column whose sampled rows are mostly not numbers is left as
        # it is without parsing every distinct value (slow for identifiers).
        present = col.dropna()
        sample = present.sample(n=min(len(present), NUMERIC_SAMPLE), random_state=0)
        sample = sample.astype(str).str.strip()
        sample = sample[~sample.isin(MISSING_MARKERS)]
        if sample.empty or float(pd.to_numeric(sample, errors="coerce").notna().mean()) < 0.5:
            continue
        # Each distinct value once: a column of a million rows has few.
        counts = col.value_counts(dropna=True)
        keys = pd.Series(counts.index.astype(str)).str.strip()
        marker = keys.isin(MISSING_MARKERS).to_numpy()
        numbers = pd.to_numeric(keys, errors="coerce").to_numpy(dtype=np.float64)
        ok = ~np.isnan(numbers) & ~marker
        rows = counts.to_numpy()
        n_rest = int(rows[~marker].sum())
        if not n_rest or not ok.any():
            continue
        share = float(rows[ok].sum()) / n_rest
        if share == 1.0:
            mapping = dict(zip(counts.index[ok], numbers[ok], strict=True))
            table = table.assign(**{column: col.map(mapping).astype(np.float64)})
            found = sorted(set(keys[marker]))
            if found:
                notes[column] = ", ".join(repr(m) for m in found)
        elif share >= MOSTLY and column != only_groups:
            stray = ~ok & ~marker
            values = [f"{v!r} ({n} rows)" for v, n in zip(keys[stray], rows[stray], strict=True)]
            hidden = len(values) - SHOWN_ROWS
            more = f" and {hidden} other values" if hidden > 0 else ""
            message = NON_NUMERIC_VALUES.format(
                path=src, column=column, share=share, values=", ".join(values[:SHOWN_ROWS]) + more
            )
            problems.append(Problem("dataset.features", message))
    if problems:
        raise DataError.from_problems(f"{src}: columns with values of the wrong kind:", problems)
    return table, notes


def _canonical_column(col: pd.Series) -> list[str | None]:
    """:func:`~regtune.trainables.schema.canonical_value` of each row of ``col``."""
    if is_object_dtype(col):  # mixed Python values: 1 and True are one hash key, so per row
        return [canonical_value(v) for v in col.tolist()]
    # One dtype: each distinct value once (a million rows hold few).
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    names = [canonical_value(v) for v in uniques.tolist()]
    return [names[c] if c >= 0 else None for c in codes.tolist()]


def _blank_texts(col: pd.Series) -> np.ndarray:
    """Rows of ``col`` holding a string that is empty once canonical (only spaces)."""
    return np.array([name == "" for name in _canonical_column(col)], dtype=bool)


def _missing_rows(
    table: pd.DataFrame,
    src: str,
    columns: list[str],
    cfg: DatasetConfig,
    notes: dict[str, str],
    blank_missing: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Refuse (``missing: error``) or drop (``missing: drop``, with a warning)
    the rows holding a missing or non-finite value in ``columns``; an error
    names every such column, its count and first rows. In the ``blank_missing``
    columns (the sensitive and label columns) a blank string (spaces only) is
    missing too: its canonical value is empty, which names no group or class."""
    bad_rows = pd.Series(False, index=table.index)
    parts: list[str] = []
    counts: list[str] = []
    for column in columns:
        col = table[column]
        bad = col.isna()
        infinite = 0
        if is_numeric_dtype(col) and not is_bool_dtype(col):
            numbers = col.to_numpy(dtype=np.float64, na_value=np.nan)
            bad |= ~np.isfinite(numbers)
            # 'inf', or a number too large for a float (1e400, a 400-digit integer).
            infinite = int(np.isinf(numbers).sum())
        found = [notes[column]] if column in notes else []
        if column in blank_missing and not is_numeric_dtype(col):
            blank = _blank_texts(col)
            if blank.any():
                bad |= blank
                found.append(BLANK_GROUP)
        count = int(bad.sum())
        if not count:
            continue
        bad_rows |= bad
        rows = (np.flatnonzero(bad.to_numpy()) + 1).tolist()
        markers = f", including {', '.join(found)} read as missing" if found else ""
        if infinite:
            markers += INFINITE_VALUES.format(n="all" if infinite == count else infinite)
        elif count == len(table):
            markers += EMPTY_COLUMN
        parts.append(
            NAN_COLUMN.format(
                column=column,
                count=count,
                markers=markers,
                first=", ".join(map(str, rows[:SHOWN_ROWS])),
                more=", ..." if count > SHOWN_ROWS else "",
            )
        )
        counts.append(f"{column!r} {count}")
    dropped = int(bad_rows.sum())
    if not dropped:
        return table
    if cfg.missing == "error":
        message = NAN_VALUES.format(
            path=src, n=len(parts), rows=len(table), columns="; ".join(parts), dropped=dropped
        )
        raise DataError(message, [Problem("dataset.path", message)])
    kept = table.loc[~bad_rows].reset_index(drop=True)
    _warn(
        DROPPED_ROWS.format(path=src, dropped=dropped, rows=len(table), columns=", ".join(counts))
    )
    if len(kept) < MIN_ROWS:
        raise DataError(TOO_FEW_ROWS.format(path=src, n=len(kept), min_rows=MIN_ROWS))
    return kept


def _inferred_problems(
    table: pd.DataFrame, src: str, feats: list[str], categorical: set[str], declared: set[str]
) -> None:
    """Refuse date/time features (dtype, or strings not declared categorical that
    mostly look like dates); warn about identifier-like and many-level
    categorical features."""
    problems: list[Problem] = []
    for column in feats:
        col = table[column]
        if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col):
            example = str(col.dropna().iloc[0]) if col.notna().any() else str(col.dtype)
            message = DATETIME_COLUMN.format(path=src, column=column, what=f"e.g. {example!r}")
            problems.append(Problem("dataset.features", message))
            continue
        if column not in categorical:
            continue
        if column not in declared and col.notna().any():
            # Distinct values, at most DATE_SAMPLE of them: enough to tell dates.
            head = col.dropna().iloc[: DATE_SAMPLE * 20]
            text = pd.Series(pd.unique(head)[:DATE_SAMPLE]).astype(str)
            dates = text.str.match(_DATE_LIKE)
            if float(dates.mean()) >= MOSTLY:
                example = str(text[dates].iloc[0])
                what = f"e.g. {example!r}"
                message = DATETIME_COLUMN.format(path=src, column=column, what=what)
                problems.append(Problem("dataset.features", message))
                continue
        levels = int(col.nunique(dropna=True))
        if levels == len(table) and levels > MIN_ROWS:
            _warn(IDENTIFIER_COLUMN.format(path=src, column=column, n=levels))
        elif levels > MANY_LEVELS:
            _warn(MANY_LEVELS_COLUMN.format(path=src, column=column, n=levels, rows=len(table)))
    if problems:
        raise DataError.from_problems(f"{src}: columns that cannot be features:", problems)


def _positive_hit(uniq: list[Label], positive: Label) -> int | None:
    """Position of the class ``positive`` names among the classes ``uniq`` (one
    canonical value each), compared as the server compares values
    (:class:`~regtune.trainables.schema.ValueIndex`): by canonical form (``1``,
    ``1.0`` and ``"1"`` are one value, ``" yes"`` is ``"yes"``), a string re-read
    as the kind every value has (``"true"`` for a True/False label, ``"1.0"`` for
    a numeric one); True/False on a 0/1 label names 1/0."""
    names = [str(canonical_value(v)) for v in uniq]
    if isinstance(positive, bool) and sorted(names) == ["0", "1"]:
        # YAML's `positive_label: true` on a 0/1 label names class 1 (as 1 == True).
        positive = int(positive)
    return ValueIndex(names, legacy=False, what="positive_label").code(positive)


def _class_value(value: Label, name: str) -> Label:
    """What names the class of label ``value`` whose canonical value is ``name``:
    ``value`` itself when it is written so (an int, a bool, a string without outer
    spaces), an integral float as its int (``1.0`` is ``1``: the served answer is
    ``"1"``, as for an int column), else ``name`` (``" yes"`` is ``"yes"``)."""
    if str(value) == name:
        return value
    if isinstance(value, float) and value.is_integer() and name.lstrip("-").isdigit():
        return int(name)
    return name


def _label_names(values: pd.Series) -> list[str]:
    """The canonical value of each label (missing and blank rows are gone by now)."""
    return [name or "" for name in _canonical_column(values)]


def _merged_classes(values: pd.Series, names: list[str], src: str) -> dict[str, Label]:
    """Each class's canonical name (``names``: each row's) and the value naming it
    (:func:`_class_value`); a :class:`DataWarning` names the classes spelled
    several ways, with each spelling's row count (most first): each becomes one class."""
    rows = Counter(zip(names, values.tolist(), map(type, values.tolist()), strict=True))
    classes: dict[str, Label] = {}
    spellings: dict[str, list[str]] = {}
    for (name, value, _), n in rows.most_common():  # most rows first, then as met
        classes.setdefault(name, _class_value(value, name))
        spellings.setdefault(name, []).append(f"{value!r} ({n} row{'s' if n != 1 else ''})")
    merged = [
        MERGED_CLASS.format(name=classes[name], spellings=", ".join(shown))
        for name, shown in sorted(spellings.items())
        if len(shown) > 1
    ]
    if merged:
        message = MERGED_LABELS.format(
            path=src, column=values.name, n=len(merged), merged="; ".join(merged)
        )
        _warn(message)
    return classes


def _classes(
    values: pd.Series,
    names: list[str],
    src: str,
    cfg: DatasetConfig,
    declared: tuple[Label, ...] | None,
) -> tuple[Label, ...]:
    """The label's classes in class-id order, one per canonical value (``names``:
    each row's, see :func:`_merged_classes`); ``declared`` (a built-in's) are kept
    as written, the label values matched to them canonically; ``positive_label``
    is the last."""
    uniq = list(_merged_classes(values, names, src).values())
    try:
        uniq.sort()
    except TypeError:  # mixed types: order by string form
        uniq.sort(key=str)
    column, positive = values.name, cfg.positive_label
    if positive is not None:
        hit = _positive_hit(uniq, positive)
        if hit is None:
            text = isinstance(positive, bool) and any(isinstance(v, str) for v in uniq)
            raise DataError(
                UNKNOWN_POSITIVE.format(path=src, positive=positive, column=column, values=uniq)
                + (YAML_BOOL_HINT if text else "")
            )
        if len(uniq) > 2:
            raise DataError(
                NOT_BINARY.format(
                    path=src, positive=positive, column=column, n=len(uniq), values=uniq
                )
            )
        if declared is None:
            declared = (*(v for i, v in enumerate(uniq) if i != hit), uniq[hit])
        else:  # a built-in's classes, as written there
            known = {canonical_value(c): c for c in declared}
            first = known.get(canonical_value(uniq[hit]), uniq[hit])
            declared = (*(c for c in declared if c != first), first)
    if len(uniq) < 2:
        raise DataError(SINGLE_CLASS.format(path=src, column=column, values=uniq))
    if declared is None:
        return tuple(uniq)
    allowed = {canonical_value(c) for c in declared}
    extra = [v for v in uniq if canonical_value(v) not in allowed]
    if extra:
        raise DataError(
            UNDECLARED_LABELS.format(path=src, column=column, extra=extra, classes=list(declared))
        )
    return declared


def _class_ids(names: list[str], classes: tuple[Label, ...]) -> np.ndarray:
    """Each label's class id (``names``: each row's canonical value)."""
    code = {canonical_value(c): i for i, c in enumerate(classes)}
    return np.array([code[name] for name in names], dtype=np.int64)


def _split(
    idx: np.ndarray, y: np.ndarray, n_out: int, seed: int, *, unstratified: list[str]
) -> list[np.ndarray]:
    # Integer sizes: fractions like 0.15 / 0.85 would round up by float error.
    n_out = min(max(n_out, 1), len(idx) - 1)
    # Imported here: trial workers unpickle Datasets through this module and
    # never split, so they skip scikit-learn's ~1-2 s import.
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(idx, test_size=n_out, random_state=seed, stratify=y)
    except ValueError:  # a class too small to stratify: fall back to a plain shuffle
        unstratified.append(f"{n_out}")
        return train_test_split(idx, test_size=n_out, random_state=seed)


def _split_indices(
    y: np.ndarray,
    cfg: DatasetConfig,
    official_test: np.ndarray | None,
    *,
    src: str,
    classes: tuple[Label, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx, seed = np.arange(len(y)), cfg.split_seed % 2**32
    plain: list[str] = []
    if official_test is not None:
        rest, test = idx[~official_test], idx[official_test]
    else:
        rest, test = _split(idx, y, round(cfg.test_share * len(y)), seed, unstratified=plain)
    n_val = round(cfg.val_fraction * (len(rest) if official_test is not None else len(y)))
    train, val = _split(rest, y[rest], n_val, seed, unstratified=plain)
    if plain:
        counts = np.bincount(y, minlength=len(classes))
        small = [f"{classes[c]!r} ({n} row)" for c, n in enumerate(counts.tolist()) if 0 < n < 2]
        what = "the test and validation splits are" if len(plain) == 2 else "a split is"
        if small:
            _warn(NOT_STRATIFIED.format(path=src, small=", ".join(small), what=what))
        else:  # every class has 2 rows, but a split is too small for one of each
            sizes = " and ".join(plain)
            _warn(SPLIT_TOO_SMALL.format(path=src, k=len(classes), sizes=sizes, what=what))
    return np.sort(train), np.sort(val), np.sort(test)


def _check_split_groups(
    group_of_row: list[str],
    parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    groups: list[str],
    src: str,
    column: str,
) -> None:
    """Refuse a split holding a single sensitive group: training's fairness
    penalty and each split's dp_diff/eo_diff would be 0 whatever the model does."""
    for split, rows in zip(("training", "validation", "test"), parts, strict=True):
        found = sorted({group_of_row[i] for i in rows.tolist()})
        if len(found) == 1:
            message = ONE_GROUP_IN_SPLIT.format(
                path=src, split=split, found=found[0], column=column, groups=groups
            )
            raise DataError(message)


def _fingerprint(raw: pd.DataFrame, official: np.ndarray | None, cfg: DatasetConfig) -> str:
    # The effective test share, so a config that leaves it to the default has
    # the fingerprint it had when the default was spelled out.
    described = cfg.model_copy(update={"test_fraction": cfg.test_share})
    # The csv separator is how the file is written, not what it holds; a key
    # added later counts only when set, so older fingerprints still match.
    later = {"sep"} | ({"missing"} if cfg.missing == "error" else set())
    digest = hashlib.sha256(described.model_dump_json(exclude={"path", *later}).encode())
    digest.update(json.dumps([[str(c), str(t)] for c, t in raw.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(raw, index=False).to_numpy().tobytes())
    if official is not None:
        digest.update(official.tobytes())
    return digest.hexdigest()


def load_dataset(cfg: DatasetConfig | str, *, cache_dir: Path | None = None) -> Dataset:
    """Load, check, split and encode a dataset (a built-in name or a config).

    Built-ins are fetched into the cache on first use (see ``fetch``).

    Raises:
        SpecError: unknown dataset name.
        DataError: missing/unreadable file, missing column, a wrong
            separator or repeated header name, missing values (every such
            column at once, unless ``missing: drop``), a date or
            mostly-numeric text column, too few rows, bad label values, too
            many sensitive groups or a single one (in the file or in a
            split); each names the file, the column and what
            was expected.

    Warns:
        DataWarning: rows dropped (``missing: drop``), an identifier-like or
            many-valued categorical feature, a split that cannot be stratified.
    """
    cfg = _as_config(cfg)
    spec = BUILTINS.get(cfg.name)
    table, src = _read_table(cfg, cache_dir)
    label = spec.label if spec is not None else str(cfg.label)
    sens = cfg.sensitive or (catalog.BUILTINS[cfg.name].sensitive if spec is not None else None)
    skip = {label, *(spec.drop if spec is not None else ())}
    default_feats = spec.features if spec is not None else None
    if cfg.features is not None:
        feats = list(cfg.features)
    else:
        feats = list(default_feats or [c for c in table.columns if c not in skip])
    _check_columns(table, src, label, feats, cfg, sens)
    if spec is None:
        table = _bytes_as_text(table, src, feats, label, sens)
    declared = set(cfg.categorical or [])
    notes: dict[str, str] = {}
    if spec is None:
        table, notes = _markers_as_missing(table, src, feats, declared, sens)
    used = list(dict.fromkeys([*feats, *([sens] if sens else []), label]))
    blank_missing = (label, *([sens] if sens else []))
    table = _missing_rows(table, src, used, cfg, notes, blank_missing)
    label_names = _label_names(table[label])
    classes = _classes(
        table[label], label_names, src, cfg, spec.classes if spec is not None else None
    )

    categorical = set(cfg.categorical) if cfg.categorical is not None else {
        f for f in feats if not is_numeric_dtype(table[f]) or is_bool_dtype(table[f])
    }  # fmt: skip
    if spec is None:
        _inferred_problems(table, src, feats, categorical, declared)
    for column in feats:
        col = table[column]
        if column not in categorical and (not is_numeric_dtype(col) or is_bool_dtype(col)):
            raise DataError(NOT_NUMERIC_COLUMN.format(path=src, column=column, dtype=col.dtype))
    groups: list[str] = []
    group_of_row: list[str] = []
    if sens is not None:
        # Named by canonical value, as the schema, the server and predict() read
        # them: a float 0/1 column's groups are "0" and "1", " Male" is "Male".
        group_of_row = [name or "" for name in _canonical_column(table[sens])]
        if "" in group_of_row:  # missing or blank: _missing_rows refuses or drops them first
            value = table[sens].iloc[group_of_row.index("")]
            raise DataError(NO_GROUP.format(path=src, column=sens, value=value))
        groups = sorted(set(group_of_row))
        if len(groups) < 2:
            raise DataError(ONE_GROUP.format(path=src, column=sens, group=groups[0]))
        if len(groups) > MAX_GROUPS:
            raise DataError(
                TOO_MANY_GROUPS.format(path=src, column=sens, n=len(groups), max_groups=MAX_GROUPS)
            )

    raw = table[list(dict.fromkeys([*feats, *([sens] if sens else []), label]))]
    official = None
    if spec is not None and catalog.BUILTINS[cfg.name].official_test:
        official = (table[SPLIT_COLUMN] == "test").to_numpy()
    y_all = _class_ids(label_names, classes)  # raw holds table's rows, in order
    parts = _split_indices(y_all, cfg, official, src=src, classes=classes)
    if sens is not None:
        _check_split_groups(group_of_row, parts, groups, src, sens)
    image = spec.image_shape if spec is not None else None
    bounds = (0.0, 1.0) if image is not None else None
    schema = FeatureSchema.fit(
        raw.iloc[parts[0]],
        numeric=[f for f in feats if f not in categorical],
        categorical=[f for f in feats if f in categorical],
        label=label,
        classes=classes,
        sensitive=sens,
        sensitive_values=groups,
        image_shape=image,
        fixed_scale=DIGITS_SCALE if image is not None else None,
        bounds=bounds,
    )
    lookup = {g: code for code, g in enumerate(groups)}
    s_all = np.array([lookup[g] for g in group_of_row]) if sens else None
    splits = [
        Split(
            x=schema.encode_table(raw.iloc[rows]),
            y=torch.from_numpy(y_all[rows]),
            s=None if s_all is None else torch.from_numpy(s_all[rows].astype(np.int64)),
        )
        for rows in parts
    ]
    return Dataset(
        name=cfg.name,
        train=splits[0],
        val=splits[1],
        test=splits[2],
        schema=schema,
        n_classes=len(classes),
        input_shape=image or (schema.n_features,),
        perturb_mask=schema.perturb_mask(),
        bounds=bounds,
        group_names=groups,
        fingerprint=_fingerprint(raw, official, cfg),
        raw_test=raw.iloc[parts[2]].reset_index(drop=True),
        raw_train=raw.iloc[parts[0]].reset_index(drop=True),
    )


def describe_dataset(ds: Dataset) -> str:
    """What was read and inferred, in a few lines for a user to check before
    training: rows per split, the label's classes (the last is class 1, the
    positive one of a binary label), numeric and categorical inputs (with
    their number of values: one one-hot input each), the sensitive groups."""
    schema = ds.schema
    rows = "/".join(str(int(part.y.shape[0])) for part in (ds.train, ds.val, ds.test))
    lines = [
        f"dataset {ds.name}: {rows} rows (train/val/test), {ds.n_features} inputs",
        f"  label {schema.label!r}: classes {', '.join(repr(c) for c in schema.classes)}",
    ]
    if schema.image_shape is not None:
        lines.append(f"  image {'x'.join(map(str, schema.image_shape))}")
    else:
        numeric = ", ".join(f.name for f in schema.numeric) or "none"
        lines.append(f"  numeric ({len(schema.numeric)}): {numeric}")
        categorical = ", ".join(f"{f.name} ({len(f.vocabulary)})" for f in schema.categorical)
        n_cat = len(schema.categorical)
        lines.append(f"  categorical ({n_cat}, values in training): {categorical or 'none'}")
    if schema.sensitive is not None:
        groups = ", ".join(repr(g) for g in ds.group_names)
        lines.append(f"  sensitive {schema.sensitive!r}: groups {groups}")
    return "\n".join(lines)

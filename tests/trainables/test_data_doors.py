"""The data-file doors of a user's CSV/Parquet: each bad file of a new user's
trial (missing values in several columns, '?' in a numeric column, an
identifier and a date column, a repeated header name, a ';'-separated file,
a label class of one row), built small here, gets a clear error or warning
naming what was wrong and what to do; the fixed file loads."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from pydantic import ValidationError

from regtune.errors import DataError, SpecError
from regtune.search_spaces.load import load_spec, load_train_config
from regtune.trainables import catalog
from regtune.trainables import data as data_mod
from regtune.trainables.config import DatasetConfig, parse_train_config
from regtune.trainables.data import DataWarning, describe_dataset, load_dataset
from regtune.trainables.sources import DUPLICATE_HEADER

N = 120


def _people(n: int = N) -> pd.DataFrame:
    """A small adult-like table: numeric age/hours, text workclass, sex, income."""
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(float),
            "workclass": rng.choice(["Private", "State-gov", "Self-emp"], n),
            "hours": rng.integers(20, 60, n),
            "sex": rng.choice(["Female", "Male"], n),
            "income": rng.choice(["<=50K", ">50K"], n, p=[0.7, 0.3]),
        }
    )


def _write(tmp: Path, table: pd.DataFrame, name: str = "t.csv", **kw: Any) -> Path:
    path = tmp / name
    if name.endswith(".parquet"):
        table.to_parquet(path)
    else:
        table.to_csv(path, index=False, **kw)
    return path


def _cfg(path: Path, **kw: Any) -> DatasetConfig:
    kind = "parquet" if path.suffix == ".parquet" else "csv"
    return DatasetConfig(name=kind, path=str(path), label="income", **kw)


def _rows(ds: data_mod.Dataset) -> int:
    return sum(int(part.y.shape[0]) for part in (ds.train, ds.val, ds.test))


def test_every_column_with_missing_values_is_named_in_one_error(tmp_path: Path) -> None:
    table = _people().astype({"age": object})
    table.loc[[0, 5, 9], "age"] = "?"  # a numeric column with '?': missing, not a category
    table.loc[[2], "age"] = None
    table.loc[[3, 4], "workclass"] = ""  # read as missing by pandas
    path = _write(tmp_path, table)
    with pytest.raises(DataError) as info:
        load_dataset(_cfg(path))
    message = str(info.value)
    assert "in 2 column(s) of 120 rows" in message
    assert data_mod.NAN_COLUMN.format(
        column="age", count=4, markers=", including '?' read as missing", first="1, 3, 6, 10",
        more="",
    ) in message  # fmt: skip
    assert "'workclass' 2 rows (rows 4, 5)" in message
    assert "dataset.missing: drop to drop the 6 rows" in message
    assert [p.path for p in info.value.problems] == ["dataset.path"]
    # missing: drop trains on the other rows and says how many it dropped.
    with pytest.warns(DataWarning, match=re.escape("dropped 6 of 120 rows")) as caught:
        ds = load_dataset(_cfg(path, missing="drop"))
    assert "'age' 4, 'workclass' 2" in str(caught[0].message)
    assert _rows(ds) == 114 and [f.name for f in ds.schema.numeric] == ["age", "hours"]
    # Dropping so many rows that fewer than MIN_ROWS remain is refused.
    table.loc[: N - 5, "hours"] = np.nan
    with pytest.warns(DataWarning), pytest.raises(DataError, match="table has 4 rows"):
        load_dataset(_cfg(_write(tmp_path, table, "few.csv"), missing="drop"))


def test_missing_policy_and_separator_values_are_checked() -> None:
    with pytest.raises(ValidationError, match="'error' or 'drop'"):
        DatasetConfig(name="csv", path="x.csv", label="y", missing="fill")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=re.escape("';', '\\t' or '|'")):
        DatasetConfig(name="csv", path="x.csv", label="y", sep=":")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="'sep' applies only to dataset 'csv'"):
        DatasetConfig(name="parquet", path="x.parquet", label="y", sep=";")
    with pytest.raises(SpecError, match=r"dataset\.missing"):
        parse_train_config({"dataset": {"name": "digits", "missing": "skip"}})


def test_a_question_mark_in_a_text_column_stays_a_category(tmp_path: Path) -> None:
    table = _people()
    table.loc[[1, 2], "workclass"] = "?"
    ds = load_dataset(_cfg(_write(tmp_path, table)))
    (workclass,) = [f for f in ds.schema.categorical if f.name == "workclass"]
    assert "?" in workclass.vocabulary


def test_a_mostly_numeric_column_with_stray_strings_is_refused_naming_them(
    tmp_path: Path,
) -> None:
    table = _people().astype({"age": object, "hours": object})
    table.loc[[0, 1, 2], "age"] = "unknown"
    table.loc[[7], "age"] = "27 yrs"
    table.loc[[8], "hours"] = "forty"
    path = _write(tmp_path, table)
    with pytest.raises(DataError) as info:
        load_dataset(_cfg(path))
    message = str(info.value)
    assert "column 'age' is numeric in 97% of its rows but also holds 'unknown' (3 rows), " \
        "'27 yrs' (1 rows)" in message  # fmt: skip
    assert "column 'hours' is numeric in 99%" in message and "'forty' (1 rows)" in message
    assert [p.path for p in info.value.problems] == ["dataset.features", "dataset.features"]
    # Declared categorical, every value is a category: the user's choice.
    ds = load_dataset(_cfg(path, categorical=["age", "hours", "workclass", "sex"]))
    assert ds.schema.numeric == ()


def test_date_columns_are_refused_and_identifiers_warned(tmp_path: Path) -> None:
    table = _people()
    days = pd.date_range("2020-01-01", periods=N, freq="D")
    dated = table.assign(
        customer_id=[f"C{i:06d}" for i in range(N)], signup=days.strftime("%Y-%m-%d")
    )
    path = _write(tmp_path, dated)
    with (
        pytest.warns(DataWarning, match="'customer_id' has a different value in each of its 120"),
        pytest.raises(DataError, match=re.escape("'signup' holds dates/times (e.g. '2020-01-01')")),
    ):
        load_dataset(_cfg(path))
    # Parquet keeps the type: refused from the schema, before any row is read.
    parquet = _write(tmp_path, table.assign(signup=days), "t.parquet")
    (problem,) = data_mod.check_data_file(_cfg(parquet))
    assert problem.path == "dataset.features"
    assert "column 'signup' holds dates/times (timestamp[" in problem.message
    with pytest.raises(DataError, match="derive numeric features from it"):
        load_dataset(_cfg(parquet))
    # Without them the file loads, quietly.
    ds = load_dataset(_cfg(path, features=["age", "workclass", "hours", "sex"]))
    assert ds.schema.input_names() == ["age", "hours", "workclass", "sex"]


def test_a_categorical_with_many_values_is_warned(tmp_path: Path) -> None:
    table = _people(300).assign(city=[f"town{i % 150}" for i in range(300)])
    with pytest.warns(DataWarning, match="'city' has 150 distinct values in 300 rows"):
        load_dataset(_cfg(_write(tmp_path, table)))


def test_a_semicolon_file_is_refused_from_the_header_naming_the_separator(
    tmp_path: Path,
) -> None:
    table = _people()
    semi = _write(tmp_path, table, "semi.csv", sep=";")
    (problem,) = data_mod.check_data_file(_cfg(semi))
    assert problem.path == "dataset.sep"
    assert "the header is one column 'age;workclass;hours;sex;income' that holds ';'" in (
        problem.message
    )
    assert "set dataset.sep: ';'" in problem.message
    with pytest.raises(DataError, match=re.escape("set dataset.sep: ';'")):
        load_dataset(_cfg(semi))
    tab = _write(tmp_path, table, "tab.csv", sep="\t")
    (problem,) = data_mod.check_data_file(_cfg(tab))
    assert "set dataset.sep: '\\t'" in problem.message
    # With the separator set, the files load as the comma one does: the
    # separator is not part of the data's identity (fingerprint).
    comma = load_dataset(_cfg(_write(tmp_path, table)))
    for path, sep in ((semi, ";"), (tab, "\t")):
        ds = load_dataset(_cfg(path, sep=sep))
        assert ds.fingerprint == comma.fingerprint


def test_the_separator_is_refused_before_a_sweep_or_run_starts(tmp_path: Path) -> None:
    _write(tmp_path, _people(), "semi.csv", sep=";")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: semi\n"
        "dataset: {name: csv, path: semi.csv, label: income}\n"
        "model: {arch: logreg}\n"
        "penalties: {l2: {loguniform: [1.0e-5, 1.0e-2]}}\n"
        "budget: {samples: 2, max_epochs: 2}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert "line 2: dataset.sep:" in str(info.value)
    run = tmp_path / "run.yaml"
    run.write_text("dataset: {name: csv, path: semi.csv, label: income}\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"dataset\.sep: .*set dataset\.sep: ';'"):
        load_train_config(str(run))


def test_a_repeated_header_name_is_refused_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    table = _people()
    body = table.assign(hours2=table["hours"] + 1).to_csv(index=False, header=False)
    path.write_text("age,workclass,hours,sex,income,hours\n" + body, encoding="utf-8")
    expected = DUPLICATE_HEADER.format(
        path=path, column="hours", n=2, positions=[3, 6], renamed=["hours", "hours.1"]
    )
    (problem,) = data_mod.check_data_file(_cfg(path))
    assert (problem.path, problem.message) == ("dataset.path", expected)
    with pytest.raises(DataError, match=re.escape(expected)):
        load_dataset(_cfg(path))
    (problem,) = data_mod.check_data_file(_cfg(path, features=["age", "hours.1"]))
    assert problem.message == expected
    # Neither copy used: the file loads.
    ds = load_dataset(_cfg(path, features=["age", "workclass"]))
    assert ds.schema.input_names() == ["age", "workclass"]
    # Empty names (trailing commas of a spreadsheet export) are no repeat.
    trailing = tmp_path / "trailing.csv"
    rows = table.to_csv(index=False, header=False).replace("\n", ",,\n")
    trailing.write_text("age,workclass,hours,sex,income,,\n" + rows, encoding="utf-8")
    assert data_mod.check_data_file(_cfg(trailing, features=["age", "hours"])) == []
    with pytest.raises(DataError, match="'Unnamed: 5' 120 rows, every row: an empty column"):
        load_dataset(_cfg(trailing))


def test_repeated_features_and_a_sensitive_label_are_refused() -> None:
    base = {"name": "csv", "path": "x.csv", "label": "income"}
    with pytest.raises(ValidationError, match=re.escape("lists ['age'] more than once")):
        DatasetConfig(**base, features=["age", "age", "hours"])
    with pytest.raises(ValidationError, match=re.escape("lists ['sex'] more than once")):
        DatasetConfig(**base, categorical=["sex", "sex"])
    with pytest.raises(ValidationError, match="sensitive column 'income' is the label"):
        DatasetConfig(**base, sensitive="income")
    with pytest.raises(SpecError, match=r"dataset\.features: .*more than once"):
        parse_train_config({"dataset": {**base, "features": ["age", "age"]}})
    # A built-in's label is fixed, and known without loading it.
    with pytest.raises(ValidationError, match="sensitive column 'income' is the label"):
        DatasetConfig(name="adult", sensitive="income")
    assert {n: d.label for n, d in catalog.BUILTINS.items()} == {
        n: b.label for n, b in data_mod.BUILTINS.items()
    }


def test_a_label_class_of_one_row_is_named_when_the_split_cannot_be_stratified(
    tmp_path: Path,
) -> None:
    table = _people()
    table.loc[17, "income"] = "unknown"
    with pytest.warns(DataWarning) as caught:
        ds = load_dataset(_cfg(_write(tmp_path, table)))
    (warning,) = caught
    assert str(warning.message).startswith(
        f"{tmp_path / 't.csv'}: label class(es) 'unknown' (1 row) too small to stratify"
    )
    assert "not stratified by label" in str(warning.message)
    assert warning.filename == __file__  # points at the caller, not regtune's insides
    assert _rows(ds) == N and ds.n_classes == 3


def test_describe_dataset_says_what_was_inferred(tmp_path: Path) -> None:
    ds = load_dataset(_cfg(_write(tmp_path, _people()), sensitive="sex", positive_label=">50K"))
    lines = describe_dataset(ds).splitlines()
    rows = "/".join(str(int(p.y.shape[0])) for p in (ds.train, ds.val, ds.test))
    assert lines == [
        f"dataset csv: {rows} rows (train/val/test), {ds.n_features} inputs",
        "  label 'income': classes '<=50K', '>50K'",
        "  numeric (2): age, hours",
        "  categorical (2, values in training): workclass (3), sex (2)",
        "  sensitive 'sex': groups 'Female', 'Male'",
    ]


def test_regtune_train_prints_the_warnings_before_the_first_epoch(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from regtune.platform.cli import app

    table = _people().assign(customer_id=[f"C{i:06d}" for i in range(N)])
    table.loc[[3, 4], "age"] = np.nan
    _write(tmp_path, table)
    run = tmp_path / "run.yaml"
    run.write_text(
        "dataset: {name: csv, path: t.csv, label: income, missing: drop}\n"
        "model: {arch: logreg}\n"
        "training: {epochs: 1, robust_every: 0}\n",
        encoding="utf-8",
    )

    # As a user's shell shows them: pytest records warnings (or makes them
    # errors), Python's default prints them on stderr.
    def show(message: Any, category: Any, filename: str, lineno: int, *_: Any) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno))

    with warnings.catch_warnings():
        warnings.simplefilter("default", DataWarning)
        warnings.showwarning = show
        result = CliRunner().invoke(app, ["train", str(run)])
    assert result.exit_code == 0, result.output
    err = result.stderr
    dropped = err.index("dropped 2 of 120 rows with missing or non-finite values ('age' 2)")
    identifier = err.index("categorical column 'customer_id' has a different value in each")
    assert max(dropped, identifier) < err.index("epoch 1/1")


def test_a_split_smaller_than_the_number_of_classes_says_so(tmp_path: Path) -> None:
    table = _people(60).assign(income=[f"band{i % 10}" for i in range(60)])  # 6 rows each
    with pytest.warns(DataWarning) as caught:
        ds = load_dataset(_cfg(_write(tmp_path, table)))
    (warning,) = caught
    assert "is too small to hold each of the 10 label classes" in str(warning.message)
    assert "a split of 9 and 9 rows" in str(warning.message) and ds.n_classes == 10


def _flagged(n: int = 60) -> pd.DataFrame:
    """A small table whose sensitive column ``female`` is 0/1 and label ``income``."""
    rng = np.random.default_rng(2)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "female": np.arange(n) % 2,
            "income": rng.choice(["<=50K", ">50K"], n),
        }
    )


def test_a_float_sensitive_column_names_its_groups_as_the_server_does(tmp_path: Path) -> None:
    # One blank cell makes pandas read the 0/1 column as floats 0.0 / 1.0.
    table = _flagged().astype({"female": float})
    table.loc[7, "female"] = np.nan
    path = _write(tmp_path, table)
    with pytest.raises(DataError, match=re.escape("'female' 1 rows (rows 8)")):
        load_dataset(_cfg(path, sensitive="female"))
    with pytest.warns(DataWarning, match=r"dropped 1 of 60 rows.*values \('female' 1\)"):
        ds = load_dataset(_cfg(path, sensitive="female", missing="drop"))
    assert ds.group_names == ["0", "1"]
    assert ds.schema.sensitive_values == ("0", "1") and ds.schema.group_names() == ["0", "1"]
    assert describe_dataset(ds).splitlines()[-1] == "  sensitive 'female': groups '0', '1'"
    # Each row's code is the group of its value, as a client's record is looked up.
    test = ds.raw_test.to_dict("records")
    assert ds.test.s is not None
    assert ds.test.s.tolist() == ds.schema.sensitive_codes(test).tolist()
    assert ds.test.s.tolist() == [int(r["female"]) for r in test]


def test_sensitive_values_that_differ_only_in_spelling_are_one_group(tmp_path: Path) -> None:
    table = _people()
    table.loc[[3, 8], "sex"] = " Male"
    table.loc[[5], "sex"] = "Female  "
    ds = load_dataset(_cfg(_write(tmp_path, table), sensitive="sex"))
    assert ds.group_names == ["Female", "Male"]
    rows = [ds.raw_train, ds.raw_test]
    codes = torch.cat([ds.train.s, ds.test.s]).tolist()  # type: ignore[list-item]
    values = pd.concat(rows)["sex"].str.strip().tolist()
    assert codes == [ds.group_names.index(v) for v in values]
    (sex,) = [f for f in ds.schema.categorical if f.name == "sex"]
    assert sex.vocabulary == ("Female", "Male")  # the feature reads them the same way


def test_missing_sensitive_values_follow_dataset_missing_even_off_the_features(
    tmp_path: Path,
) -> None:
    # A '?' among the 0/1 of a sensitive column that is not a feature is a missing
    # value (as in a numeric feature), not a third group; so is a blank group name.
    table = _flagged().astype({"female": object})
    table.loc[[4, 9], "female"] = "?"
    path = _write(tmp_path, table)
    cfg = {"sensitive": "female", "features": ["age"]}
    with pytest.raises(DataError) as info:
        load_dataset(_cfg(path, **cfg))
    assert "'female' 2 rows, including '?' read as missing (rows 5, 10)" in str(info.value)
    with pytest.warns(DataWarning, match=r"dropped 2 of 60 rows.*values \('female' 2\)"):
        ds = load_dataset(_cfg(path, **cfg, missing="drop"))
    assert ds.group_names == ["0", "1"] and ds.schema.input_names() == ["age"]
    text = _people()
    text.loc[[2, 6], "sex"] = "   "
    blank = _write(tmp_path, text, "blank.csv")
    with pytest.raises(DataError) as info:
        load_dataset(_cfg(blank, sensitive="sex"))
    assert "'sex' 2 rows, including blank text read as missing (rows 3, 7)" in str(info.value)
    with pytest.warns(DataWarning, match=r"dropped 2 of 120 rows.*values \('sex' 2\)"):
        ds = load_dataset(_cfg(blank, sensitive="sex", missing="drop"))
    assert ds.group_names == ["Female", "Male"]


def test_positive_label_is_matched_by_canonical_value(tmp_path: Path) -> None:
    # A float 0/1 label (one missing cell dropped): "1" names 1.0, as a client's 1 would.
    table = _flagged().assign(income=np.arange(60) % 3 == 0).astype({"income": float})
    table.loc[11, "income"] = np.nan
    path = _write(tmp_path, table)
    for positive in ("1", 1, "1.0", 1.0):
        with pytest.warns(DataWarning, match="dropped 1 of 60 rows"):
            ds = load_dataset(_cfg(path, positive_label=positive, missing="drop"))
        assert ds.schema.classes == (0, 1), positive
        assert [type(c) for c in ds.schema.classes] == [int, int], positive
    with pytest.warns(DataWarning), pytest.raises(DataError, match="positive_label '2' is not"):
        load_dataset(_cfg(path, positive_label="2", missing="drop"))
    # YAML's `positive_label: true` / `false` on a 0/1 label names 1 / 0.
    for positive, classes in ((True, (0, 1)), (False, (1, 0))):
        with pytest.warns(DataWarning, match="dropped 1 of 60 rows"):
            ds = load_dataset(_cfg(path, positive_label=positive, missing="drop"))
        assert ds.schema.classes == classes, positive
    # Text labels: outer spaces do not count; True/False labels read 'true'.
    words = _people().assign(income=np.where(np.arange(N) % 3 == 0, "yes", "no"))
    ds = load_dataset(_cfg(_write(tmp_path, words, "w.csv"), positive_label=" no "))
    assert ds.schema.classes == ("yes", "no")
    # An unquoted `yes` in a YAML spec is True: the error says so.
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "dataset: {name: csv, path: w.csv, label: income, positive_label: yes}\n", encoding="utf-8"
    )
    with pytest.raises(DataError) as info:
        load_dataset(parse_train_config(load_train_config(str(spec))).dataset)
    assert str(info.value).endswith(
        "positive_label True is not a value of label column 'income'; values: ['no', 'yes']"
        + data_mod.YAML_BOOL_HINT
    )
    flags = _people().assign(income=np.arange(N) % 3 == 0)
    ds = load_dataset(_cfg(_write(tmp_path, flags, "f.parquet"), positive_label="false"))
    assert ds.schema.classes == (True, False)
    # Label values that are one value canonically are one class, the positive one here.
    spaced = words.assign(income=np.where(np.arange(N) % 2 == 0, "yes", "yes "))
    spaced.loc[[1, 4], "income"] = " no"
    with pytest.warns(DataWarning, match=r"'yes' from 'yes' \(59 rows\), 'yes ' \(59 rows\)"):
        ds = load_dataset(_cfg(_write(tmp_path, spaced, "s.csv"), positive_label="yes"))
    assert ds.schema.classes == ("no", "yes")


def test_label_values_that_differ_only_in_spelling_are_one_class(tmp_path: Path) -> None:
    table = _people()
    table.loc[[3, 8], "income"] = ">50K "
    table.loc[[5], "income"] = " <=50K"
    path = _write(tmp_path, table)
    n_high = int((table["income"] == ">50K").sum())
    n_low = int((table["income"] == "<=50K").sum())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(_cfg(path))
    (warning,) = caught
    assert warning.category is DataWarning and str(warning.message) == (
        f"{path}: label column 'income' spells 2 class(es) in more than one way, each read as "
        "one class, as the server reads a value (canonically: integral floats as integers, "
        f"strings NFC without outer spaces): '<=50K' from '<=50K' ({n_low} rows), ' <=50K' "
        f"(1 row); '>50K' from '>50K' ({n_high} rows), '>50K ' (2 rows); if they are meant as "
        "different classes, give them different values in the file"
    )
    assert ds.schema.classes == ("<=50K", ">50K") and ds.n_classes == 2
    # Each row's class id is that of its value written canonically.
    raw = pd.concat([ds.raw_train, ds.raw_test])["income"].str.strip().tolist()
    ids = torch.cat([ds.train.y, ds.test.y]).tolist()
    assert ids == [ds.schema.classes.index(v) for v in raw]
    assert describe_dataset(ds).splitlines()[1] == "  label 'income': classes '<=50K', '>50K'"
    # positive_label names the merged class (it was refused as matching two values).
    with pytest.warns(DataWarning, match="spells 2 class"):
        ds = load_dataset(_cfg(path, positive_label="<=50K"))
    assert ds.schema.classes == (">50K", "<=50K")


def test_a_float_label_has_the_classes_of_an_int_label(tmp_path: Path) -> None:
    # One blank cell makes pandas read the 0/1 label as floats 0.0 / 1.0.
    table = _flagged().assign(income=np.arange(60) % 3 == 0).astype({"income": int})
    whole = load_dataset(_cfg(_write(tmp_path, table, "int.csv")))
    table = table.astype({"income": float})
    table.loc[11, "income"] = np.nan
    with pytest.warns(DataWarning, match="dropped 1 of 60 rows"):
        ds = load_dataset(_cfg(_write(tmp_path, table), missing="drop"))
    assert ds.schema.classes == whole.schema.classes == (0, 1)
    assert [type(c) for c in ds.schema.classes] == [int, int]
    assert [str(c) for c in ds.schema.classes] == ["0", "1"]  # the server's answers
    raw = pd.concat([ds.raw_train, ds.raw_test])["income"].tolist()
    assert torch.cat([ds.train.y, ds.test.y]).tolist() == [int(v) for v in raw]
    # Non-integral values keep their float names.
    halves = table.assign(income=np.where(np.arange(60) % 2 == 0, 0.5, 1.5))
    ds = load_dataset(_cfg(_write(tmp_path, halves, "h.csv")))
    assert ds.schema.classes == (0.5, 1.5)


def test_a_blank_label_is_a_missing_value(tmp_path: Path) -> None:
    table = _people()
    table.loc[[2, 6], "income"] = "  "
    path = _write(tmp_path, table)
    with pytest.raises(DataError) as info:
        load_dataset(_cfg(path))
    assert "'income' 2 rows, including blank text read as missing (rows 3, 7)" in str(info.value)
    with pytest.warns(DataWarning, match=r"dropped 2 of 120 rows.*values \('income' 2\)"):
        ds = load_dataset(_cfg(path, missing="drop"))
    assert ds.schema.classes == ("<=50K", ">50K")


@pytest.mark.parametrize("name", list(data_mod.BUILTINS))
def test_builtins_keep_their_class_names(name: str, data_cache: Path) -> None:
    declared = data_mod.BUILTINS[name].classes
    ds = load_dataset(name, cache_dir=data_cache)
    assert ds.schema.classes == declared
    assert [type(c) for c in ds.schema.classes] == [type(c) for c in declared]
    raw = pd.concat([ds.raw_train, ds.raw_test])[ds.schema.label].tolist()
    assert torch.cat([ds.train.y, ds.test.y]).tolist() == [declared.index(v) for v in raw]
    if name == "adult":
        assert [str(c) for c in ds.schema.classes] == ["<=50K", ">50K"]
        flipped = load_dataset(
            DatasetConfig(name="adult", positive_label="<=50K"), cache_dir=data_cache
        )
        assert flipped.schema.classes == (">50K", "<=50K")


def test_a_saved_dataframe_index_is_refused_unless_features_leave_it_out(tmp_path: Path) -> None:
    # pandas' default to_csv writes the index first, under an empty header cell.
    table = _people()
    path = tmp_path / "indexed.csv"
    table.to_csv(path)
    (problem,) = data_mod.check_data_file(_cfg(path))
    assert problem.path == "dataset.features"
    assert "column 'Unnamed: 0' is how pandas names a column with no name" in problem.message
    assert "looks like a saved DataFrame index" in problem.message
    assert "write the file with index=False" in problem.message
    with pytest.raises(DataError, match="looks like a saved DataFrame index"):
        load_dataset(_cfg(path))
    # A file read with that column and written again names it 'Unnamed: 0'.
    again = tmp_path / "again.parquet"
    pd.read_csv(path).to_parquet(again)
    with pytest.raises(DataError, match="'Unnamed: 0' is how pandas names"):
        load_dataset(_cfg(again))
    # Listing the columns to use leaves it out: the file loads without it.
    feats = ["age", "workclass", "hours", "sex"]
    ds = load_dataset(_cfg(path, features=feats))
    assert (
        ds.schema.input_names() == load_dataset(_cfg(_write(tmp_path, table))).schema.input_names()
    )
    assert "Unnamed: 0" not in ds.raw_train.columns


@pytest.mark.parametrize(
    ("values", "type_", "kind"),
    [
        ([[1, 2]] * N, None, "list<element: int64>"),
        ([{"a": 1}] * N, None, "struct<a: int64>"),
        ([b"xy"] * N, pa.binary(2), "fixed_size_binary[2]"),
    ],
)
def test_a_parquet_nested_or_fixed_size_binary_column_is_refused_from_the_schema(
    tmp_path: Path, values: list[Any], type_: pa.DataType | None, kind: str
) -> None:
    path = tmp_path / "t.parquet"
    table = pa.Table.from_pandas(_people(), preserve_index=False)
    pq.write_table(table.append_column("extra", pa.array(values, type_)), path)
    expected = (
        f"{path}: column 'extra' has the Parquet type {kind}, whose values (lists, structs, "
        "maps, fixed-size bytes) are neither numbers nor categories, so it cannot be a feature; "
        "leave it out of 'features'"
    )
    (problem,) = data_mod.check_data_file(_cfg(path))
    assert problem.path == "dataset.features"
    assert problem.message.startswith(expected)
    with pytest.raises(DataError, match=re.escape(expected)):
        load_dataset(_cfg(path))
    # As the label or the sensitive column it is refused too, under that key.
    (problem,) = data_mod.check_data_file(_cfg(path, features=["age"], sensitive="extra"))
    assert (
        problem.path == "dataset.sensitive" and "cannot be the sensitive column" in problem.message
    )
    # Left out of the features, the file loads.
    ds = load_dataset(_cfg(path, features=["age", "workclass", "hours", "sex"]))
    assert ds.n_features > 0


def _text_table(kind: pa.DataType, bad: dict[str, list[int]] | None = None) -> pa.Table:
    """_people() as Parquet columns of ``kind`` (strings, or bytes as Hive, Impala
    and older Spark write them): workclass plain, sex dictionary-encoded, income
    the label; workclass row 4 (index 3) missing. ``bad``: rows per column whose
    value starts with a byte that is no UTF-8."""
    people = _people()
    columns: dict[str, Any] = {"age": people["age"], "hours": people["hours"]}
    for column in ("workclass", "sex", "income"):
        values: list[Any] = people[column].tolist()
        if column == "workclass":
            values[3] = None
        if kind != pa.string():
            values = [None if v is None else v.encode() for v in values]
        for row in (bad or {}).get(column, []):
            values[row] = b"\xff" + values[row]
        array = pa.array(values, kind)
        columns[column] = array.dictionary_encode() if column == "sex" else array
    return pa.table(columns)


@pytest.mark.parametrize("kind", [pa.binary(), pa.large_binary()])
def test_a_parquet_binary_column_of_text_loads_as_that_text(
    tmp_path: Path, kind: pa.DataType
) -> None:
    """Hive, Impala and older Spark write strings as plain BINARY: read as the
    text they hold, as a feature, the label or the sensitive column, the same
    dataset as the file written with strings (not "b'Male'")."""
    text, raw = tmp_path / "text.parquet", tmp_path / "bytes.parquet"
    pq.write_table(_text_table(pa.string()), text)
    pq.write_table(_text_table(kind), raw)
    assert pq.read_schema(raw).field("workclass").type == kind
    cfg = _cfg(raw, sensitive="sex", missing="drop")
    assert data_mod.check_data_file(cfg) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the dropped row
        ds = load_dataset(cfg)
        expected = load_dataset(_cfg(text, sensitive="sex", missing="drop"))
    assert ds.group_names == ["Female", "Male"]
    workclass = ds.schema.categorical[0]
    assert workclass.name == "workclass"
    assert workclass.vocabulary == ("Private", "Self-emp", "State-gov")
    assert ds.schema.classes == ("<=50K", ">50K")
    assert ds.fingerprint == expected.fingerprint
    assert ds.schema.to_json() == expected.schema.to_json()
    pd.testing.assert_frame_equal(ds.raw_train, expected.raw_train)
    assert torch.equal(ds.train.x, expected.train.x) and torch.equal(ds.test.s, expected.test.s)


def test_a_parquet_binary_column_that_is_not_utf8_is_refused_by_row(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(_text_table(pa.binary(), {"workclass": [8, 4]}), path)
    value = repr(b"\xff" + _people()["workclass"][4].encode())
    expected = (
        f"dataset.features: {path}: column 'workclass' holds bytes (a Parquet binary column) "
        "that are not UTF-8 text in 2 rows (row 1 is the first data row; first: row 5, "
        f"{value}), so it cannot be a feature; leave it out of 'features'"
    )
    with pytest.raises(DataError) as info:
        load_dataset(_cfg(path, missing="drop"))
    assert str(info.value).startswith(expected)
    # Every such used column at once, each under its key; the label is read as text.
    pq.write_table(_text_table(pa.binary(), {"workclass": [8, 4], "sex": [6]}), path)
    with pytest.raises(DataError) as info:
        load_dataset(_cfg(path, sensitive="sex", missing="drop"))
    assert [p.path for p in info.value.problems] == ["dataset.features", "dataset.sensitive"]
    assert "column 'sex' holds bytes" in str(info.value)
    shown = repr(b"\xff" + _people()["sex"][6].encode())
    assert f"first: row 7, {shown}), so it cannot be the sensitive column; " in str(info.value)
    # As the label; left out of the features, the file loads.
    pq.write_table(_text_table(pa.binary(), {"income": [0]}), path)
    with pytest.raises(DataError, match="so it cannot be the label; choose another column"):
        load_dataset(_cfg(path, missing="drop"))
    pq.write_table(_text_table(pa.binary(), {"workclass": [8]}), path)
    ds = load_dataset(_cfg(path, features=["age", "hours", "sex"]))
    assert ds.schema.classes == ("<=50K", ">50K")


def test_a_uri_data_path_is_refused_plainly(tmp_path: Path) -> None:
    cfg = DatasetConfig(name="csv", path="s3://my-bucket/data.csv", label="income")
    expected = "dataset.path: must be a local file path; got the URI 's3://my-bucket/data.csv'"
    (problem,) = data_mod.check_data_file(cfg)
    assert str(problem).startswith(expected)
    with pytest.raises(DataError, match=re.escape(expected)):
        load_dataset(cfg)
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: t\ndataset: {name: csv, path: 's3://my-bucket/data.csv', label: y}\n"
        "penalties: {l2: {loguniform: [1.0e-5, 1.0e-2]}}\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError, match=re.escape("line 2: " + expected)):
        load_spec(spec)


def test_a_data_path_under_an_unknown_user_is_refused_plainly() -> None:
    cfg = DatasetConfig(name="csv", path="~nosuchuser-rt/data.csv", label="income")
    expected = "dataset.path: ~nosuchuser-rt/data.csv: cannot expand '~nosuchuser-rt'"
    (problem,) = data_mod.check_data_file(cfg)
    assert str(problem).startswith(expected)
    with pytest.raises(DataError, match=re.escape(expected)):
        load_dataset(cfg)
